//! The recorder: every Peer input and output of a node, and what storage made durable, as
//! JSON Lines. Off unless asked for (`rdb-server --record FILE`); a checker in the `tests`
//! package replays a recording through the model's Peer and checks the run against the model
//! (see `tests/src/validation.rs`).

use crate::command::Command;
use model::{
    Deviation, Durable, Entry, Index, Message, NodeId, Output, Peer, RoleKind, Term, Timer,
};
use model::{FlowControl, TimerCommand};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the Peer was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordedInput {
    /// `handle_message(from, message)`.
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        message: Message<Command>,
    },
    /// `handle_timeout(timer)`.
    Timeout(Timer),
    /// `propose(commands)`.
    Propose(Vec<Command>),
    /// `transfer_leadership(to)`.
    Transfer(NodeId),
}

/// What the Peer answered, field by field as in [`Output`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedOutput {
    /// `persist.hard_state`.
    pub hard_state: bool,
    /// `persist.log_from`.
    pub log_from: Option<Index>,
    /// `send_now`.
    pub send_now: Vec<(NodeId, Message<Command>)>,
    /// `send_after_persist`.
    pub send_after_persist: Vec<(NodeId, Message<Command>)>,
    /// `commit`.
    pub commit: Option<Index>,
    /// `timers`: `true` sets, `false` cancels.
    pub timers: Vec<(Timer, bool)>,
}

impl From<&Output<Command>> for RecordedOutput {
    fn from(output: &Output<Command>) -> Self {
        RecordedOutput {
            hard_state: output.persist.hard_state,
            log_from: output.persist.log_from,
            send_now: output.send_now.clone(),
            send_after_persist: output.send_after_persist.clone(),
            commit: output.commit,
            timers: output
                .timers
                .iter()
                .map(|command| match command {
                    TimerCommand::Set(timer) => (*timer, true),
                    TimerCommand::Cancel(timer) => (*timer, false),
                })
                .collect(),
        }
    }
}

/// One line of a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordedEvent {
    /// The node started: `Peer::restore(members, durable)` and its output.
    Restore {
        /// The cluster's members.
        members: Vec<NodeId>,
        /// The Peer's flow control.
        flow: FlowControl,
        /// Whether the Peer runs pre-vote.
        #[serde(default)]
        pre_vote: bool,
        /// What storage gave back.
        durable: Durable<Command>,
        /// What `restore` answered.
        output: RecordedOutput,
    },
    /// One Peer call and its answer, with the Peer's role, term and commit after it.
    Step {
        /// The call.
        input: RecordedInput,
        /// The answer.
        output: RecordedOutput,
        /// The role after the call.
        role: RoleKind,
        /// The term after the call.
        term: Term,
        /// The commit index after the call.
        commit: Index,
    },
    /// Storage made this durable (one fsync'd save): the hard state, and the log from
    /// `log_from` on when it changed.
    Persisted {
        /// The term written.
        term: Term,
        /// The vote written.
        voted_for: Option<NodeId>,
        /// Where the log was rewritten from, if it was.
        log_from: Option<Index>,
        /// The entries written from `log_from` on.
        entries: Vec<Entry<Command>>,
    },
}

/// A line with its time and node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// Microseconds since the Unix epoch (all nodes of one machine share this clock).
    pub micros: u64,
    /// The node.
    pub node: NodeId,
    /// The event.
    pub event: RecordedEvent,
}

/// Writes a node's recording. A failure to write is reported once and ends the recording,
/// never the node.
pub struct Recorder {
    node: NodeId,
    out: Option<BufWriter<File>>,
}

impl Recorder {
    /// Appends to `path` (a restarted node continues its file). A process killed mid-write
    /// may have left a torn last line; it is ended with a newline, so that this run's first
    /// line starts a line of its own.
    pub fn open(path: &Path, node: NodeId) -> std::io::Result<Recorder> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let length = file.metadata()?.len();
        if length > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(length - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Recorder {
            node,
            out: Some(BufWriter::new(file)),
        })
    }

    /// Records one event.
    pub fn record(&mut self, event: RecordedEvent) {
        let Some(out) = self.out.as_mut() else { return };
        let line = Recorded {
            micros: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            node: self.node,
            event,
        };
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(error) = written {
            eprintln!("rdb-server: recording stopped: {error}");
            self.out = None;
        }
    }

    /// Records a Peer call.
    pub fn step<D: Deviation>(
        &mut self,
        input: RecordedInput,
        output: &Output<Command>,
        peer: &Peer<Command, D>,
    ) {
        self.record(RecordedEvent::Step {
            input,
            output: RecordedOutput::from(output),
            role: peer.role_kind(),
            term: peer.term(),
            commit: peer.commit_index(),
        });
    }

    /// Writes buffered lines to the file (one write(2) when any are buffered; no fsync).
    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(error) = out.flush() {
                eprintln!("rdb-server: recording stopped: {error}");
                self.out = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "rdb-record-{}-{name}-{}.jsonl",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn timeout_step() -> RecordedEvent {
        RecordedEvent::Step {
            input: RecordedInput::Timeout(Timer::Election),
            output: RecordedOutput::from(&Output::<Command>::default()),
            role: RoleKind::Follower,
            term: 0,
            commit: 0,
        }
    }

    #[test]
    fn a_restarted_recorder_appends_and_ends_a_torn_line_first() {
        let path = scratch("torn");
        let mut first = Recorder::open(&path, 1).expect("open");
        first.record(timeout_step());
        first.flush();
        drop(first);
        // A process killed mid-write leaves part of a line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("reopen");
        file.write_all(b"{\"micros\":12,\"no").expect("torn write");
        drop(file);
        let mut second = Recorder::open(&path, 1).expect("open again");
        second.record(timeout_step());
        second.flush();
        drop(second);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"micros\":12,\"no");
        for line in [lines[0], lines[2]] {
            let recorded: Recorded = serde_json::from_str(line).expect("a whole line");
            assert_eq!(recorded.event, timeout_step());
        }
        // A file that ends with a whole line gets nothing added.
        drop(Recorder::open(&path, 1).expect("open a third time"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        let _ = std::fs::remove_file(&path);
    }
}
