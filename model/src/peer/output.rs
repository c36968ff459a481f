//! What one step of the Peer asks its driver to do.

use super::types::{Index, Message, NodeId, Timer};

/// Which part of [`crate::Durable`] a step changed. The driver writes it to stable storage
/// (one fsync for a whole batch of steps) before it sends `send_after_persist`, applies
/// entries up to `commit`, or answers a client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// The term or the vote changed.
    pub hard_state: bool,
    /// The log changed from this index on: storage must drop every entry at or after it and
    /// write the Peer's entries from it to the end. `None`: the log did not change.
    pub log_from: Option<Index>,
}

impl Persist {
    /// Whether anything must be written.
    pub fn is_needed(&self) -> bool {
        self.hard_state || self.log_from.is_some()
    }

    /// Folds a later step's changes into this one (for a driver that batches steps).
    pub fn merge(&mut self, later: Persist) {
        self.hard_state |= later.hard_state;
        self.log_from = match (self.log_from, later.log_from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A timer request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerCommand {
    /// Arm the timer (again): it fires once, after the driver's chosen duration.
    Set(Timer),
    /// Disarm the timer if it is armed.
    Cancel(Timer),
}

/// The result of one input. Everything here is an instruction to the driver; the Peer has
/// already updated itself.
///
/// Ordering contract (written here because every driver must keep it):
/// 1. `send_now` may leave at once, even before `persist` is durable. Only a leader's
///    AppendEntries are here: the leader counts its own log toward a commit only in a later
///    step, and the driver finishes this step's persist before it feeds the Peer more input
///    (Raft dissertation §10.2.1).
/// 2. `persist` must be durable (fsync'd) before anything below happens.
/// 3. `send_after_persist` may leave: vote grants, append acknowledgements and a candidate's
///    vote requests all promise something about durable state.
/// 4. Entries up to `commit` may be applied, and their clients answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output<C> {
    /// What to write to stable storage.
    pub persist: Persist,
    /// Messages that may be sent before `persist` is durable.
    pub send_now: Vec<(NodeId, Message<C>)>,
    /// Messages that may be sent only after `persist` is durable.
    pub send_after_persist: Vec<(NodeId, Message<C>)>,
    /// The new commit index, when it advanced in this step.
    pub commit: Option<Index>,
    /// Timers to arm or disarm, in order.
    pub timers: Vec<TimerCommand>,
}

impl<C> Default for Output<C> {
    fn default() -> Self {
        Output {
            persist: Persist::default(),
            send_now: Vec::new(),
            send_after_persist: Vec::new(),
            commit: None,
            timers: Vec::new(),
        }
    }
}

impl<C> Output<C> {
    /// True when the step asks for nothing at all.
    pub fn is_empty(&self) -> bool {
        !self.persist.is_needed()
            && self.send_now.is_empty()
            && self.send_after_persist.is_empty()
            && self.commit.is_none()
            && self.timers.is_empty()
    }

    /// Every message of the step, in the order the driver may send them.
    pub fn messages(&self) -> impl Iterator<Item = &(NodeId, Message<C>)> {
        self.send_now.iter().chain(self.send_after_persist.iter())
    }

    /// Appends a later step's output to this one (for a driver that batches steps).
    pub fn merge(&mut self, later: Output<C>) {
        self.persist.merge(later.persist);
        self.send_now.extend(later.send_now);
        self.send_after_persist.extend(later.send_after_persist);
        self.commit = later.commit.or(self.commit);
        self.timers.extend(later.timers);
    }
}
