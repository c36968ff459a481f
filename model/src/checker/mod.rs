//! The stateright model of rdb: servers running the [`crate::Peer`], clients proposing values,
//! a network that may lose, reorder or duplicate, and crashes that keep only [`crate::Durable`].
//!
//! A [`ModelConfig`] names one bounded configuration; [`ModelConfig::into_model`] builds the
//! stateright model with every property of [`properties`]. Bounds are enforced with
//! `within_boundary` (terms, messages in flight), never with a depth limit, so a run explores
//! every reachable state of its configuration.

mod actor;
pub mod contract;
pub mod engine;
pub mod properties;
mod run;
pub mod simulate;
mod step;
pub mod symmetric;
pub mod trace;

pub use actor::{ClientState, Ghost, ModelActor, ModelMsg, NodeState, ServerState, Value};
pub use run::{
    check, explore_flags, CheckReport, ConfigReport, Discovery, PropertyReport, PropertyStatus,
};

use crate::bugs::Bug;
use crate::peer::{FlowControl, Term};
use stateright::actor::{ActorModel, ActorModelState, LossyNetwork, Network};
use stateright::Expectation;
use std::fmt;
use std::str::FromStr;

/// The stateright model type.
pub type RaftModel = ActorModel<ModelActor, ModelConfig, ()>;
/// One state of the model.
pub type RaftState = ActorModelState<ModelActor, ()>;

/// How the model's network treats messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkKind {
    /// Any order; each message is delivered at most once.
    Unordered,
    /// Any order; a message may be delivered again and again.
    Duplicating,
    /// First in, first out between each pair of actors.
    Ordered,
}

impl NetworkKind {
    /// The names accepted on the command line.
    pub const NAMES: [&'static str; 3] = ["unordered", "duplicating", "ordered"];
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkKind::Unordered => "unordered",
            NetworkKind::Duplicating => "duplicating",
            NetworkKind::Ordered => "ordered",
        })
    }
}

impl FromStr for NetworkKind {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "unordered" => Ok(NetworkKind::Unordered),
            "duplicating" => Ok(NetworkKind::Duplicating),
            "ordered" => Ok(NetworkKind::Ordered),
            _ => Err(format!(
                "unknown network `{name}`; expected one of {}",
                NetworkKind::NAMES.join(", ")
            )),
        }
    }
}

/// One bounded configuration of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelConfig {
    /// A short name for reports.
    pub name: String,
    /// Number of servers (1 to 5).
    pub servers: usize,
    /// No server goes past this term.
    pub max_term: Term,
    /// Number of clients, each proposing one distinct value.
    pub client_requests: usize,
    /// How many servers may be crashed at once (crash, then recover from Durable).
    pub max_crashes: usize,
    /// Network semantics.
    pub network: NetworkKind,
    /// Whether messages may be lost.
    pub lossy: bool,
    /// At most this many messages in flight (heartbeats would otherwise grow the network forever).
    pub max_in_flight: usize,
    /// Whether leaders' heartbeat timers fire. Off, leaders still replicate on every proposal
    /// and rejection; only the periodic retransmission is left out of the schedules.
    pub heartbeats: bool,
    /// At most this many entries in one AppendEntries (flow control); `None`: no cap.
    pub batch: Option<u64>,
    /// At most this many AppendEntries with entries in flight to one follower (flow control);
    /// `None`: no cap.
    pub window: Option<usize>,
    /// Pre-vote and leader stickiness (§9.6) on every server.
    pub pre_vote: bool,
    /// Operators, each asking one server of its choice, once, to take over leadership
    /// (leadership transfer, §3.10).
    pub transfers: usize,
    /// Persistence is a step of its own: a step's `Persist` is written later, entry by entry,
    /// and its `send_after_persist` messages leave after it; a crash in between loses what
    /// was not written. Off, a step's persist is written with the step. Needs an unordered
    /// network (a server busy writing leaves messages in flight).
    pub persist_steps: bool,
    /// Explore one representative per permutation of server ids (DFS checker).
    pub symmetry: bool,
    /// A planted bug, if any.
    pub bug: Option<Bug>,
    /// Stop at the first violated Always property (and skip the rest of a suite): a planted
    /// bug or a mutant needs one counterexample, not a complete exploration.
    pub stop_at_first_violation: bool,
    /// The Always properties judged (`--property`), one bit per index in
    /// [`properties::ALL`] ([`properties::always_mask`]); `None`: every one. The others are not
    /// evaluated at all, so a search runs on past their violations. The Sometimes properties
    /// are searched either way.
    pub judged: Option<u32>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: "custom".into(),
            servers: 3,
            max_term: 2,
            client_requests: 1,
            max_crashes: 0,
            network: NetworkKind::Unordered,
            lossy: false,
            max_in_flight: 3,
            heartbeats: true,
            batch: None,
            window: None,
            pre_vote: false,
            transfers: 0,
            persist_steps: false,
            symmetry: true,
            bug: None,
            stop_at_first_violation: false,
            judged: None,
        }
    }
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: servers={} max_term={} client_requests={} max_crashes={} network={} lossy={} \
             max_in_flight={} heartbeats={} batch={} window={} pre_vote={} transfers={} \
             symmetry={}",
            self.name,
            self.servers,
            self.max_term,
            self.client_requests,
            self.max_crashes,
            self.network,
            self.lossy,
            self.max_in_flight,
            self.heartbeats,
            cap(self.batch),
            cap(self.window.map(|w| w as u64)),
            self.pre_vote,
            self.transfers,
            self.symmetry
        )?;
        if self.persist_steps {
            write!(f, " persist_steps=true")?;
        }
        if let Some(bug) = self.bug {
            write!(f, " bug={bug}")?;
        }
        if let Some(mask) = self.judged {
            write!(f, " properties={}", properties::mask_names(mask).join(","))?;
        }
        Ok(())
    }
}

/// A flow-control cap as printed: its value, or `unlimited`.
fn cap(value: Option<u64>) -> String {
    value.map_or_else(|| "unlimited".into(), |v| v.to_string())
}

impl ModelConfig {
    /// Whether this configuration evaluates `properties::ALL[i]`: every Sometimes property,
    /// and the Always properties that [`ModelConfig::judged`] names (all when it names none).
    pub fn judges(&self, i: usize) -> bool {
        properties::ALL[i].expectation == properties::Expect::Sometimes
            || properties::judges_always(self.judged, i)
    }

    /// The Peer's flow control under this configuration. Bytes are not capped: a model
    /// command is one byte, so a byte cap would be an entry cap.
    pub fn flow(&self) -> FlowControl {
        FlowControl {
            max_entries: self.batch.unwrap_or(u64::MAX),
            max_bytes: u64::MAX,
            max_inflight: self.window.unwrap_or(usize::MAX),
            max_inflight_bytes: u64::MAX,
        }
    }

    /// The default check: a suite of configurations that each add one dimension to a small
    /// base, as TLC users keep several MC configs. Together they cover 3 servers, crashes with
    /// recovery, message loss, one and two client requests, two and three terms, flow control
    /// (one entry per AppendEntries, a window of one) and every Sometimes property. A new
    /// leader's blank entry (§8) is an entry of its own, so one request already gives logs of
    /// several entries and terms. Heartbeats are optional steps, so `base` also explores every
    /// schedule without them.
    pub fn default_suite() -> Vec<ModelConfig> {
        let base = ModelConfig {
            name: "base".into(),
            max_in_flight: 4,
            ..ModelConfig::default()
        };
        vec![
            // Elections with their blank entries, a request, heartbeats and check-quorum, two
            // terms.
            base.clone(),
            // A second request: more entries of one term, a later leader commits them.
            ModelConfig {
                name: "two-requests".into(),
                client_requests: 2,
                heartbeats: false,
                max_in_flight: 3,
                ..base.clone()
            },
            // Flow control: one entry per AppendEntries, one in flight per follower: a window
            // fills, a follower catches up batch by batch.
            ModelConfig {
                name: "flow-control".into(),
                heartbeats: false,
                batch: Some(1),
                window: Some(1),
                ..base.clone()
            },
            // A server crashes and recovers from its Durable state.
            ModelConfig {
                name: "crash".into(),
                max_crashes: 1,
                max_in_flight: 3,
                heartbeats: false,
                ..base.clone()
            },
            // Pre-vote and leader stickiness (§9.6): every election starts with a pre-vote
            // round, and a server that follows a leader ignores requests of a newer term.
            ModelConfig {
                name: "pre-vote".into(),
                pre_vote: true,
                max_in_flight: 3,
                ..base.clone()
            },
            // Leadership transfer (§3.10): an operator asks a server to take over; its leader
            // catches it up and sends TimeoutNow, or gives up at its election timeout. A
            // client's proposal may reach the leader during the transfer.
            ModelConfig {
                name: "transfer".into(),
                transfers: 1,
                max_in_flight: 3,
                heartbeats: false,
                ..base.clone()
            },
            // The same with pre-vote and stickiness: the transferee campaigns without a
            // pre-vote round, and servers that follow the leader answer its vote requests.
            // (No client: pre-vote rounds fill the slots in flight.)
            ModelConfig {
                name: "transfer-pre-vote".into(),
                transfers: 1,
                pre_vote: true,
                client_requests: 0,
                max_in_flight: 3,
                heartbeats: false,
                ..base.clone()
            },
            // Three terms with loss: a lost message frees its slot, so two messages in flight
            // carry three elections. One entry per AppendEntries, one in flight: a follower
            // can store an earlier term's entry without the new leader's blank entry after it
            // (Figure 8).
            ModelConfig {
                name: "three-terms-lossy".into(),
                lossy: true,
                max_term: 3,
                max_in_flight: 2,
                heartbeats: false,
                batch: Some(1),
                window: Some(1),
                ..base.clone()
            },
            // Persistence as a step of its own: a step's writes reach storage after it, entry
            // by entry, and the messages that wait for them leave after that; a server
            // crashes between its leader's AppendEntries and its own write, or in the middle
            // of a write. (One term: every step is two or more, so the space grows fast.)
            ModelConfig {
                name: "persist".into(),
                persist_steps: true,
                max_crashes: 1,
                max_term: 1,
                max_in_flight: 2,
                heartbeats: false,
                ..base
            },
        ]
    }

    /// The default suite with a planted bug: every bug of the catalogue must be caught by the
    /// very bounds that check the correct Peer. A bug run stops at its first counterexample.
    pub fn bug_suite(bug: Bug) -> Vec<ModelConfig> {
        ModelConfig::default_suite()
            .into_iter()
            .map(|config| ModelConfig {
                name: format!("bug {bug} / {}", config.name),
                bug: Some(bug),
                stop_at_first_violation: true,
                ..config
            })
            .collect()
    }

    /// Checks the bounds; the message names the offending flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=5).contains(&self.servers) {
            return Err(format!("--servers must be 1 to 5, got {}", self.servers));
        }
        if self.max_term == 0 {
            return Err("--max-term must be at least 1".into());
        }
        if self.client_requests > 8 {
            return Err(format!(
                "--client-requests must be at most 8, got {}",
                self.client_requests
            ));
        }
        if self.max_crashes > self.servers {
            return Err(format!(
                "--max-crashes must be at most --servers ({}), got {}",
                self.servers, self.max_crashes
            ));
        }
        if self.max_in_flight == 0 {
            return Err("--max-in-flight must be at least 1".into());
        }
        if self.transfers > 2 {
            return Err(format!(
                "--transfers must be at most 2, got {}",
                self.transfers
            ));
        }
        if self.batch == Some(0) {
            return Err("--batch must be at least 1".into());
        }
        if self.persist_steps && self.network == NetworkKind::Ordered {
            return Err(
                "--persist-steps needs an unordered network: on an ordered one, a message to a \
                 server busy writing would be consumed unread"
                    .into(),
            );
        }
        if self.window == Some(0) {
            return Err("--window must be at least 1".into());
        }
        Ok(())
    }

    /// Builds the stateright model.
    pub fn into_model(self) -> RaftModel {
        let servers = self.servers;
        let network = match self.network {
            NetworkKind::Unordered => Network::new_unordered_nonduplicating([]),
            NetworkKind::Duplicating => Network::new_unordered_duplicating([]),
            NetworkKind::Ordered => Network::new_ordered([]),
        };
        let lossy = if self.lossy {
            LossyNetwork::Yes
        } else {
            LossyNetwork::No
        };
        let max_crashes = self.max_crashes;
        let bug = self.bug;
        let heartbeats = self.heartbeats;
        let flow = self.flow();
        let pre_vote = self.pre_vote;
        let persist_steps = self.persist_steps;
        let clients = (0..self.client_requests).map(move |i| ModelActor::Client {
            servers,
            value: i as Value + 1,
        });
        let admins = (0..self.transfers).map(move |_| ModelActor::Admin { servers });
        let mut model = ActorModel::new(self, ())
            .actors((0..servers).map(|_| ModelActor::Server {
                servers,
                bug,
                heartbeats,
                flow,
                pre_vote,
                persist_steps,
            }))
            .actors(clients)
            .actors(admins)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(max_crashes)
            .within_boundary(within_boundary);
        for property in properties::ALL {
            model = match property.expectation {
                properties::Expect::Always => {
                    model.property(Expectation::Always, property.name, property.condition)
                }
                properties::Expect::Sometimes => {
                    model.property(Expectation::Sometimes, property.name, property.condition)
                }
            };
        }
        model
    }
}

/// The bounds: terms, messages in flight, log lengths, and crashes of servers only.
///
/// A log holds at most one command more than there are client requests (and a blank entry per
/// term, which the term bound limits). Only a duplicating network can append a value twice: it
/// delivers a client's proposal again, as a client that retries would send it. One such retry
/// is explored; without the bound, a leader whose followers are all being probed (so that a
/// proposal sends nothing) would append the same value forever.
fn within_boundary(cfg: &ModelConfig, state: &RaftState) -> bool {
    state.network.len() <= cfg.max_in_flight
        && state.actor_states.iter().all(|s| {
            s.server().is_none_or(|s| {
                let commands = s.peer.log().iter().filter(|e| e.command.is_some()).count();
                s.peer.term() <= cfg.max_term && commands <= cfg.client_requests + 1
            })
        })
        && state.crashed[cfg.servers..].iter().all(|crashed| !crashed)
}
