//! The driver: the only owner of the [`Peer`]. It runs on its own thread and loops over
//! inbound messages, timer expiries and client proposals, in batches:
//!
//! 1. feed the batch's messages and timeouts to the Peer, then its proposals as one call;
//!    `send_now` messages (a leader's AppendEntries) leave at once;
//! 2. persist everything the batch changed with one fsync (group commit);
//! 3. send `send_after_persist` messages;
//! 4. apply newly committed entries to the key-value map and answer their clients.
//!
//! That is the ordering contract written on [`model::Output`]. A step that has `send_now`
//! messages and also needs a persist is flushed before the Peer sees more input, as the
//! contract requires; proposals come last in a batch so that this costs nothing.
//!
//! With `--record`, the recording's buffered lines are written to its file before a save
//! starts and before anything leaves the node (`send_now`, `send_after_persist`, answers), so
//! that a process killed at any point has on file every step whose effect was seen, and at
//! most an unseen tail is lost.
//!
//! Timers and outbound messages go through the [`Timers`] and [`Outbound`] traits, so the same
//! driver runs with real clocks and gRPC, or under a test's control (conformance replay).
//!
//! A failed save is fatal (fail-stop): the driver sends and answers nothing more, tells the
//! waiting clients that the outcome is unknown, and [`Driver::run`] returns the error, so
//! that the node's supervisor (`rdb-server`'s main) exits and a restart recovers from disk.
//!
//! Inputs arrive through a bounded queue ([`INPUT_QUEUE_CAPACITY`]); proposals waiting to
//! commit are bounded too ([`MAX_PENDING_PROPOSALS`]). Past either bound a client is told the
//! node is overloaded, and nothing of its command enters the log.

use crate::command::Command;
use crate::config::Timing;
use crate::kv::{CommandResult, KvStore};
use crate::record::{RecordedEvent, RecordedInput, RecordedOutput, Recorder};
use crate::storage::{FileStorage, StorageError};
use model::TimerCommand;
use model::{
    Deviation, Entry, Faithful, Index, Message, NodeId, Output, Peer, PeerError, RoleKind, Term,
    Timer,
};
use slog::{crit, warn, Logger};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::oneshot;

/// Where the Peer's timers live: real deadlines, or a test's hand.
pub trait Timers: Send + 'static {
    /// Arms (or re-arms) `timer`.
    fn set(&mut self, timer: Timer);
    /// Disarms `timer`.
    fn cancel(&mut self, timer: Timer);
    /// Whether `timer` is armed.
    fn is_armed(&self, timer: Timer) -> bool;
    /// When the next armed timer fires by itself; `None` if none will.
    fn next_deadline(&self) -> Option<Instant>;
    /// Disarms and returns every timer whose deadline has passed.
    fn take_expired(&mut self, now: Instant) -> Vec<Timer>;
}

/// Timers that fire by the clock: the election timeout is drawn at random from its range
/// each time it is armed (§5.2), the heartbeat is fixed.
pub struct ClockTimers {
    timing: Timing,
    election: Option<Instant>,
    heartbeat: Option<Instant>,
}

impl ClockTimers {
    /// Timers with this timing, none armed.
    pub fn new(timing: Timing) -> Self {
        ClockTimers {
            timing,
            election: None,
            heartbeat: None,
        }
    }
}

impl Timers for ClockTimers {
    fn set(&mut self, timer: Timer) {
        let now = Instant::now();
        match timer {
            Timer::Election => self.election = Some(now + self.timing.random_election_timeout()),
            Timer::Heartbeat => self.heartbeat = Some(now + self.timing.heartbeat()),
        }
    }

    fn cancel(&mut self, timer: Timer) {
        match timer {
            Timer::Election => self.election = None,
            Timer::Heartbeat => self.heartbeat = None,
        }
    }

    fn is_armed(&self, timer: Timer) -> bool {
        match timer {
            Timer::Election => self.election.is_some(),
            Timer::Heartbeat => self.heartbeat.is_some(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.election, self.heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take_expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut expired = Vec::new();
        if self.heartbeat.is_some_and(|at| at <= now) {
            self.heartbeat = None;
            expired.push(Timer::Heartbeat);
        }
        if self.election.is_some_and(|at| at <= now) {
            self.election = None;
            expired.push(Timer::Election);
        }
        expired
    }
}

/// Timers that never fire by themselves: a test fires them with [`Input::FireTimer`].
#[derive(Debug, Default)]
pub struct ManualTimers {
    armed: BTreeSet<Timer>,
}

impl Timers for ManualTimers {
    fn set(&mut self, timer: Timer) {
        self.armed.insert(timer);
    }
    fn cancel(&mut self, timer: Timer) {
        self.armed.remove(&timer);
    }
    fn is_armed(&self, timer: Timer) -> bool {
        self.armed.contains(&timer)
    }
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    fn take_expired(&mut self, _now: Instant) -> Vec<Timer> {
        Vec::new()
    }
}

/// Where the Peer's messages go: gRPC to the other nodes, or a test's queue.
pub trait Outbound: Send + 'static {
    /// Hands `message` over for delivery to `to`. Never blocks; delivery may fail silently,
    /// as Raft tolerates lost messages.
    fn send(&mut self, to: NodeId, message: Message<Command>);

    /// Whether the links a commit needs are busy with earlier messages. While they are, the
    /// driver holds new proposals back and proposes them together later: one larger
    /// AppendEntries instead of many small ones queued behind each other.
    fn congested(&self) -> bool {
        false
    }
}

/// A proposal that did not commit.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the one it follows, when known.
    #[error("not the leader")]
    NotLeader {
        /// The leader, when known.
        leader: Option<NodeId>,
    },
    /// Another entry committed at the proposal's index: it never will, and retrying is safe.
    #[error("another entry committed in the proposal's place; it did not take effect")]
    Overwritten,
    /// The node is shutting down; the outcome is unknown.
    #[error("the node is stopping; the outcome is unknown")]
    Stopped,
    /// Too many proposals are waiting to commit ([`MAX_PENDING_PROPOSALS`]): this one was not
    /// proposed, and retrying later is safe.
    #[error("the node is overloaded; the command was not proposed")]
    Overloaded,
    /// The node failed (its storage did) before the outcome was known: the command may or
    /// may not be in the log, and may still commit after a restart.
    #[error("the node failed: {cause}; the outcome is unknown")]
    Failed {
        /// What failed.
        cause: String,
    },
}

/// A committed and applied proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log index it committed at.
    pub index: Index,
    /// What applying it produced.
    pub result: CommandResult,
}

/// A node's state as a test or operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: RoleKind,
    /// Its current term.
    pub term: Term,
    /// Its vote in the current term.
    pub voted_for: Option<NodeId>,
    /// The leader it knows (itself when leader).
    pub leader: Option<NodeId>,
    /// The highest index known committed.
    pub commit_index: Index,
    /// The highest index applied to the key-value map.
    pub applied_index: Index,
    /// The index of its last log entry.
    pub last_log_index: Index,
    /// The term of its last log entry.
    pub last_log_term: Term,
    /// The whole log, when asked for.
    pub log: Option<Vec<Entry<Command>>>,
    /// Which timers are armed.
    pub armed_timers: Vec<Timer>,
    /// fsync calls made by storage since the node started.
    pub fsyncs: u64,
    /// Log entries written to storage since the node started.
    pub entries_written: u64,
    /// Peer messages refused as impossible since the node started (`model::Refusal`): each
    /// is evidence of a faulty or hostile member, and each is logged as a warning.
    pub refused_messages: u64,
    /// The member a leader is handing leadership to, while it does.
    pub transferee: Option<NodeId>,
}

/// An input for the driver.
pub enum Input {
    /// A message from another node, already validated by the transport.
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        message: Message<Command>,
    },
    /// A client command; the reply comes once it is applied (or cannot be).
    Propose {
        /// The command.
        command: Command,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Applied, ProposeError>>,
    },
    /// Fire an armed timer now (controlled mode). The reply says whether it was armed; an
    /// unarmed timer is not fired.
    FireTimer {
        /// The timer.
        timer: Timer,
        /// Ok when the timer was armed and fired.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Hand leadership to `to` (§3.10). The reply comes at once: the term of the transfer when
    /// it started, or why not; whether it completes is seen in [`NodeState::leader`].
    Transfer {
        /// The member to hand leadership to.
        to: NodeId,
        /// The leader's term, or the Peer's refusal.
        reply: oneshot::Sender<Result<Term, PeerError>>,
    },
    /// Report the node's state once every input before this one is processed and persisted.
    Inspect {
        /// Include the whole log.
        with_log: bool,
        /// Where the state goes.
        reply: oneshot::Sender<NodeState>,
    },
    /// Finish the current batch and stop.
    Shutdown,
}

/// Logs `message` with the node's role, term, leader, last index, commit and applied index.
macro_rules! log_state {
    ($level:ident, $driver:expr, $message:expr $(, $($rest:tt)+)?) => {
        slog::$level!($driver.logger, $message;
            "role" => %$driver.peer.role_kind(),
            "term" => $driver.peer.term(),
            "leader" => $driver.peer.leader(),
            "last_index" => $driver.peer.last_index(),
            "commit" => $driver.peer.commit_index(),
            "applied" => $driver.kv.applied()
            $(, $($rest)+)?
        )
    };
}

/// How often the driver checks whether held-back proposals can go.
const DEFERRED_POLL: std::time::Duration = std::time::Duration::from_micros(500);
/// At most this many proposals are held back; more go at once.
const MAX_DEFERRED: usize = 4096;

/// How many inputs one batch takes at most.
pub const DEFAULT_MAX_BATCH: usize = 4096;

/// How many inputs (peer messages, client commands, inspections) wait for the driver at most.
/// A client command that finds the queue full is answered `RESOURCE_EXHAUSTED`; a peer message
/// is refused to its sender with the same code. Above the benchmark's 256 concurrent clients,
/// so that group commit still gathers them all into one batch.
pub const INPUT_QUEUE_CAPACITY: usize = 1024;

/// How many proposals may wait at once for their entry to be applied (held back or
/// appended and not yet committed). Past it, new proposals are answered
/// [`ProposeError::Overloaded`]: a leader that cannot reach a majority stops taking commands
/// instead of growing its log without bound.
pub const MAX_PENDING_PROPOSALS: usize = 8192;

/// The driver's state. Build it with [`Driver::new`] and run it with [`Driver::run`].
pub struct Driver<T: Timers, O: Outbound, D: Deviation = Faithful> {
    peer: Peer<Command, D>,
    storage: FileStorage,
    kv: KvStore,
    timers: T,
    outbound: O,
    inputs: Receiver<Input>,
    logger: Logger,
    max_batch: usize,
    /// Proposals waiting for their entry to be applied, by index, with the term they were
    /// appended in: if another term's entry is applied there, the proposal was lost. A
    /// truncation of the local log proves nothing (another server may still hold the entry
    /// and commit it), so only the apply decides.
    waiting: BTreeMap<Index, (Term, oneshot::Sender<Result<Applied, ProposeError>>)>,
    /// What the batch's steps asked for that must wait for the persist.
    pending: Output<Command>,
    /// Proposals held back while the outbound links are congested.
    deferred: Vec<(Command, oneshot::Sender<Result<Applied, ProposeError>>)>,
    /// Inspect requests, answered after the batch's persist.
    inspections: Vec<(bool, oneshot::Sender<NodeState>)>,
    entries_written: u64,
    refused_messages: u64,
    last_role: (RoleKind, Term, Option<NodeId>),
    recorder: Option<Recorder>,
    /// A save failed: nothing more may leave the node, and [`Driver::run`] returns this.
    fatal: Option<StorageError>,
    /// Tests only: a sleep after each batch's persist (a slow disk).
    batch_pause: Option<Duration>,
}

impl<T: Timers, O: Outbound, D: Deviation> Driver<T, O, D> {
    /// A driver for `peer` (freshly restored from `storage`, with `restore_output` the output
    /// `Peer::restore` returned).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peer: Peer<Command, D>,
        restore_output: Output<Command>,
        storage: FileStorage,
        timers: T,
        outbound: O,
        inputs: Receiver<Input>,
        logger: Logger,
        max_batch: usize,
        mut recorder: Option<Recorder>,
    ) -> Self {
        if let Some(recorder) = recorder.as_mut() {
            recorder.record(RecordedEvent::Restore {
                members: peer.config().members.clone(),
                flow: peer.config().flow,
                pre_vote: peer.config().pre_vote,
                durable: peer.durable().clone(),
                output: RecordedOutput::from(&restore_output),
            });
        }
        let last_role = (peer.role_kind(), peer.term(), peer.leader());
        let mut driver = Driver {
            peer,
            storage,
            kv: KvStore::default(),
            timers,
            outbound,
            inputs,
            logger,
            max_batch: max_batch.max(1),
            waiting: BTreeMap::new(),
            pending: Output::default(),
            deferred: Vec::new(),
            inspections: Vec::new(),
            entries_written: 0,
            refused_messages: 0,
            last_role,
            recorder,
            fatal: None,
            batch_pause: None,
        };
        driver.absorb(restore_output);
        driver.flush();
        driver
    }

    /// Sleeps `pause` after persisting each batch, as on a slow disk (tests only).
    pub fn with_batch_pause(mut self, pause: Option<Duration>) -> Self {
        self.batch_pause = pause;
        self
    }

    /// Runs until [`Input::Shutdown`] or until every input sender is gone (`Ok`), or until a
    /// save fails (`Err`: the node must stop, see the module docs).
    pub fn run(mut self) -> Result<(), StorageError> {
        log_state!(info, self, "driver started");
        let outcome = self.run_batches();
        let answer = match &outcome {
            Ok(()) => ProposeError::Stopped,
            Err(error) => failed(error),
        };
        for (_, reply) in std::mem::take(&mut self.deferred) {
            let _ = reply.send(Err(answer.clone()));
        }
        for (_, (_, reply)) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(Err(answer.clone()));
        }
        if outcome.is_err() {
            // Commands still queued were never proposed; answer them rather than drop them.
            while let Ok(input) = self.inputs.try_recv() {
                refuse(input, &answer);
            }
        }
        log_state!(info, self, "driver stopped");
        outcome
    }

    fn run_batches(&mut self) -> Result<(), StorageError> {
        loop {
            if let Some(error) = self.fatal.take() {
                return Err(error);
            }
            let mut batch = Vec::new();
            let mut timeouts = self.timers.take_expired(Instant::now());
            if timeouts.is_empty() {
                match self.wait_for_input() {
                    Waited::Input(input) => batch.push(input),
                    Waited::Timeout => timeouts = self.timers.take_expired(Instant::now()),
                    Waited::Closed => return Ok(()),
                }
            }
            while batch.len() < self.max_batch {
                match self.inputs.try_recv() {
                    Ok(input) => batch.push(input),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let stop = self.process(timeouts, batch);
            self.flush();
            if let Some(pause) = self.batch_pause {
                std::thread::sleep(pause);
            }
            if let Some(error) = self.fatal.take() {
                return Err(error);
            }
            if stop {
                return Ok(());
            }
        }
    }

    fn wait_for_input(&self) -> Waited {
        let mut deadline = self.timers.next_deadline();
        if !self.deferred.is_empty() {
            // Look again soon whether the links have drained.
            let soon = Instant::now() + DEFERRED_POLL;
            deadline = Some(deadline.map_or(soon, |at| at.min(soon)));
        }
        let result = match deadline {
            None => self
                .inputs
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => self
                .inputs
                .recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        match result {
            Ok(input) => Waited::Input(input),
            Err(RecvTimeoutError::Timeout) => Waited::Timeout,
            Err(RecvTimeoutError::Disconnected) => Waited::Closed,
        }
    }

    /// Feeds one batch to the Peer: timeouts and messages in arrival order, then every
    /// proposal in one call. Returns whether to stop.
    fn process(&mut self, timeouts: Vec<Timer>, batch: Vec<Input>) -> bool {
        for timer in timeouts {
            self.timeout(timer);
        }
        let mut proposals = Vec::new();
        let mut stop = false;
        for input in batch {
            if let Some(error) = &self.fatal {
                // The Peer's state is no longer backed by the disk: it takes no more input.
                refuse(input, &failed(error));
                continue;
            }
            match input {
                Input::Message { from, message } => self.message(from, message),
                Input::Propose { command, reply } => proposals.push((command, reply)),
                Input::FireTimer { timer, reply } => {
                    if self.timers.is_armed(timer) {
                        self.timers.cancel(timer);
                        self.timeout(timer);
                        self.flush_recording();
                        let _ = reply.send(Ok(()));
                    } else {
                        let _ = reply.send(Err(format!("timer {timer:?} is not armed")));
                    }
                }
                Input::Transfer { to, reply } => {
                    let _ = reply.send(self.transfer(to));
                }
                Input::Inspect { with_log, reply } => self.inspections.push((with_log, reply)),
                Input::Shutdown => stop = true,
            }
        }
        if self.fatal.is_some() {
            return stop;
        }
        let room = MAX_PENDING_PROPOSALS.saturating_sub(self.deferred.len() + self.waiting.len());
        for (_, reply) in proposals.drain(room.min(proposals.len())..) {
            let _ = reply.send(Err(ProposeError::Overloaded));
        }
        self.deferred.extend(proposals);
        // A leader handing leadership over takes no proposals (§3.10): they wait here until
        // the transfer completes (they then learn the new leader) or is given up.
        let transferring = self.peer.transferee().is_some();
        let hold = self.peer.role_kind() == RoleKind::Leader
            && (transferring || self.deferred.len() < MAX_DEFERRED && self.outbound.congested());
        if !self.deferred.is_empty() && !hold {
            let proposals = std::mem::take(&mut self.deferred);
            self.propose(proposals);
        }
        stop
    }

    fn message(&mut self, from: NodeId, message: Message<Command>) {
        let recorded = self.recorder.is_some().then(|| message.clone());
        let kind = message.kind();
        match self.peer.handle_message(from, message) {
            Ok(output) => {
                if let (Some(recorder), Some(message)) = (self.recorder.as_mut(), recorded) {
                    recorder.step(
                        RecordedInput::Message { from, message },
                        &output,
                        &self.peer,
                    );
                }
                self.absorb(output);
            }
            // The Peer did not change: nothing to record, persist or send.
            Err(PeerError::Refused(refusal)) => {
                self.refused_messages += 1;
                log_state!(warn, self, "impossible peer message refused",
                    "from" => from,
                    "message" => kind,
                    "refusal" => refusal.kind(),
                    "reason" => %refusal,
                    "refused_messages" => self.refused_messages);
            }
            Err(error) => {
                warn!(self.logger, "message refused by the Peer"; "from" => from, "error" => %error)
            }
        }
    }

    fn transfer(&mut self, to: NodeId) -> Result<Term, PeerError> {
        let output = self.peer.transfer_leadership(to)?;
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.step(RecordedInput::Transfer(to), &output, &self.peer);
        }
        log_state!(info, self, "leadership transfer started", "to" => to);
        let term = self.peer.term();
        self.absorb(output);
        Ok(term)
    }

    fn timeout(&mut self, timer: Timer) {
        let output = self.peer.handle_timeout(timer);
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.step(RecordedInput::Timeout(timer), &output, &self.peer);
        }
        self.absorb(output);
    }

    fn propose(
        &mut self,
        proposals: Vec<(Command, oneshot::Sender<Result<Applied, ProposeError>>)>,
    ) {
        let (commands, replies): (Vec<_>, Vec<_>) = proposals.into_iter().unzip();
        let recorded = self.recorder.is_some().then(|| commands.clone());
        match self.peer.propose(commands) {
            Ok((first, output)) => {
                if let (Some(recorder), Some(commands)) = (self.recorder.as_mut(), recorded) {
                    recorder.step(RecordedInput::Propose(commands), &output, &self.peer);
                }
                let term = self.peer.term();
                for (offset, reply) in replies.into_iter().enumerate() {
                    self.waiting.insert(first + offset as Index, (term, reply));
                }
                self.absorb(output);
            }
            Err(PeerError::NotLeader { leader }) => {
                // The answer tells what earlier steps did: their lines go first.
                self.flush_recording();
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                }
            }
            // Held back while a transfer runs (see `process`), so not expected; the client
            // retries, and finds the leader the transfer leaves.
            Err(PeerError::Transferring { .. }) => {
                self.flush_recording();
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
                }
            }
            Err(other) => {
                unreachable!("a proposal of commands can only fail with NotLeader: {other}")
            }
        }
    }

    /// Takes one step's output: `send_now` leaves at once, timers change at once, the rest
    /// waits for the batch's persist.
    fn absorb(&mut self, mut output: Output<Command>) {
        if self.fatal.is_some() {
            // Nothing leaves a node whose storage failed.
            return;
        }
        for command in output.timers.drain(..) {
            match command {
                TimerCommand::Set(timer) => self.timers.set(timer),
                TimerCommand::Cancel(timer) => self.timers.cancel(timer),
            }
        }
        let sent_early = !output.send_now.is_empty();
        if sent_early {
            // The steps behind these messages reach the recording before the messages leave.
            self.flush_recording();
        }
        for (to, message) in output.send_now.drain(..) {
            self.outbound.send(to, message);
        }
        self.pending.merge(output);
        self.note_role_change();
        if sent_early && self.pending.persist.is_needed() {
            // The Peer may count this step's entries as its own in the next step, so they
            // must be durable first (Output's contract, rule 1).
            self.flush();
        }
    }

    /// Persists, sends what waited for the persist, applies and answers. After a failed save
    /// it does none of that and sets `fatal`.
    fn flush(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        if pending.persist.is_needed() {
            if let Some(from) = pending.persist.log_from {
                self.entries_written += self.peer.last_index().saturating_sub(from - 1);
            }
            // The steps that asked for this save reach the recording before the save starts:
            // whatever a crash mid-save leaves on disk, the recording explains it.
            self.flush_recording();
            if let Err(error) = self.storage.save(self.peer.durable(), pending.persist) {
                // What the Peer promised may not be durable: continuing could break safety.
                crit!(self.logger, "storage failed; the node stops"; "error" => %error);
                self.fatal = Some(error);
                return;
            }
            if let Some(recorder) = self.recorder.as_mut() {
                let durable = self.peer.durable();
                let entries = pending
                    .persist
                    .log_from
                    .map_or_else(Vec::new, |from| durable.log[(from - 1) as usize..].to_vec());
                recorder.record(RecordedEvent::Persisted {
                    term: durable.term,
                    voted_for: durable.voted_for,
                    log_from: pending.persist.log_from,
                    entries,
                });
            }
        }
        // Every step and save recorded so far reaches the file before its effects leave the
        // node: messages, answers to clients, inspections.
        self.flush_recording();
        for (to, message) in pending.send_after_persist {
            self.outbound.send(to, message);
        }
        if let Some(commit) = pending.commit {
            log_state!(debug, self, "commit advanced", "new_commit" => commit);
        }
        self.apply();
        for (with_log, reply) in std::mem::take(&mut self.inspections) {
            let _ = reply.send(self.state(with_log));
        }
    }

    /// Writes the recording's buffered lines to its file (write(2), no fsync: a killed
    /// process loses nothing the kernel has), so that after a SIGKILL every effect the node
    /// showed has its record on file.
    fn flush_recording(&mut self) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.flush();
        }
    }

    fn apply(&mut self) {
        let commit = self.peer.commit_index();
        let from = self.kv.applied() + 1;
        for index in from..=commit {
            let entry = self
                .peer
                .entry(index)
                .expect("committed entries are in the log");
            let result = self.kv.apply(index, entry.command.as_ref());
            if let Some((term, reply)) = self.waiting.remove(&index) {
                let outcome = match result {
                    Some(result) if term == entry.term => Ok(Applied { index, result }),
                    _ => Err(ProposeError::Overwritten),
                };
                let _ = reply.send(outcome);
            }
        }
        if commit >= from {
            log_state!(debug, self, "applied", "from" => from);
        }
    }

    fn note_role_change(&mut self) {
        let now = (self.peer.role_kind(), self.peer.term(), self.peer.leader());
        if now != self.last_role {
            log_state!(info, self, "role changed", "previous_role" => %self.last_role.0, "previous_term" => self.last_role.1);
            self.last_role = now;
        }
    }

    fn state(&self, with_log: bool) -> NodeState {
        NodeState {
            id: self.peer.id(),
            role: self.peer.role_kind(),
            term: self.peer.term(),
            voted_for: self.peer.voted_for(),
            leader: self.peer.leader(),
            commit_index: self.peer.commit_index(),
            applied_index: self.kv.applied(),
            last_log_index: self.peer.last_index(),
            last_log_term: self.peer.last_term(),
            log: with_log.then(|| self.peer.log().to_vec()),
            armed_timers: [Timer::Election, Timer::Heartbeat]
                .into_iter()
                .filter(|timer| self.timers.is_armed(*timer))
                .collect(),
            fsyncs: self.storage.fsyncs(),
            entries_written: self.entries_written,
            refused_messages: self.refused_messages,
            transferee: self.peer.transferee(),
        }
    }
}

/// Answers an input the driver will not process.
/// What a client whose command met a failed save is told: the outcome is unknown.
fn failed(error: &StorageError) -> ProposeError {
    let full = if error.is_disk_full() {
        " (disk full)"
    } else {
        ""
    };
    ProposeError::Failed {
        cause: format!("storage failed{full}: {error}"),
    }
}

fn refuse(input: Input, answer: &ProposeError) {
    match input {
        Input::Propose { reply, .. } => {
            let _ = reply.send(Err(answer.clone()));
        }
        Input::FireTimer { reply, .. } => {
            let _ = reply.send(Err(answer.to_string()));
        }
        // The transfer did not start; the caller is told the node is not the leader it can
        // use (its storage failed).
        Input::Transfer { reply, .. } => {
            let _ = reply.send(Err(PeerError::NotLeader { leader: None }));
        }
        Input::Message { .. } | Input::Inspect { .. } | Input::Shutdown => {}
    }
}

enum Waited {
    Input(Input),
    Timeout,
    Closed,
}
