//! What a leader knows of its followers' logs (§5.3), how much it may send each of them (flow
//! control), and the commit index it can derive from them (§5.4.2).
//!
//! Each follower has a [`Progress`]: the next index to send, the highest index known to be
//! stored there, and its [`Flow`]. A follower whose position is not known yet is probed one
//! message at a time; once a probe is acknowledged the leader pipelines messages to it, up to
//! a window counted in messages and in bytes ([`FlowControl`]). A rejection sends it back to
//! probing. The [`ProgressTracker`] holds one [`Progress`] per follower; membership changes
//! belong there, since it alone knows who counts toward a quorum.

use super::quorum;
use super::types::{Index, NodeId};
use std::collections::{btree_map, BTreeMap, VecDeque};
use std::fmt;

/// How much a leader may send one follower: the caps of one AppendEntries and of the window of
/// AppendEntries in flight. Every field is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FlowControl {
    /// At most this many entries in one AppendEntries.
    pub max_entries: u64,
    /// At most this many bytes of commands (see [`crate::Payload`]) in one AppendEntries,
    /// except that a message always carries at least one entry when there is one to send.
    pub max_bytes: u64,
    /// At most this many AppendEntries with entries in flight to one follower whose position
    /// is known.
    pub max_inflight: usize,
    /// No AppendEntries leaves while this many bytes of entries are in flight to the follower.
    pub max_inflight_bytes: u64,
}

impl FlowControl {
    /// No cap a model run or a test can reach: every entry from the next index on in one
    /// message.
    pub const UNLIMITED: FlowControl = FlowControl {
        max_entries: u64::MAX,
        max_bytes: u64::MAX,
        max_inflight: usize::MAX,
        max_inflight_bytes: u64::MAX,
    };

    /// The field that is out of range, if any.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_entries == 0 {
            return Err("flow control: max_entries must be at least 1".into());
        }
        if self.max_bytes == 0 {
            return Err("flow control: max_bytes must be at least 1".into());
        }
        if self.max_inflight == 0 {
            return Err("flow control: max_inflight must be at least 1".into());
        }
        if self.max_inflight_bytes == 0 {
            return Err("flow control: max_inflight_bytes must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for FlowControl {
    /// One MiB or 4,096 entries per message, and 64 messages or 16 MiB in flight per follower.
    fn default() -> Self {
        FlowControl {
            max_entries: 4096,
            max_bytes: 1 << 20,
            max_inflight: 64,
            max_inflight_bytes: 16 << 20,
        }
    }
}

/// The AppendEntries in flight to one follower, oldest first: the index of the last entry of
/// each, with its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inflight {
    sent: VecDeque<(Index, u64)>,
    bytes: u64,
}

impl Inflight {
    /// The number of messages in flight.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The bytes of entries in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The last index of every message in flight, oldest first.
    pub fn last_indexes(&self) -> impl Iterator<Item = Index> + '_ {
        self.sent.iter().map(|(index, _)| *index)
    }

    /// Every message in flight, oldest first: its last index and its bytes.
    pub fn messages(&self) -> impl Iterator<Item = (Index, u64)> + '_ {
        self.sent.iter().copied()
    }

    /// Whether the window is full: no further message may leave.
    fn is_full(&self, flow: &FlowControl) -> bool {
        self.sent.len() >= flow.max_inflight || self.bytes >= flow.max_inflight_bytes
    }

    fn push(&mut self, last: Index, bytes: u64) {
        self.sent.push_back((last, bytes));
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Forgets every message whose entries are acknowledged: those ending at or before `index`.
    fn free_up_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.sent.front() {
            if last > index {
                break;
            }
            self.sent.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Counts `bytes` in flight whatever the messages say: only the planted bug
    /// `inflight-bytes-leak` calls it.
    pub(super) fn leak_bytes(&mut self, bytes: u64) {
        self.bytes = bytes;
    }

    /// Forgets the oldest message, taken to be lost.
    fn free_oldest(&mut self) {
        if let Some((_, bytes)) = self.sent.pop_front() {
            self.bytes -= bytes;
        }
    }
}

/// How a leader sends to one follower.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flow {
    /// The follower's position is not known: one AppendEntries at a time, from `next`, without
    /// moving `next`. `paused` once it is sent, until its answer or the next heartbeat.
    Probe {
        /// A probe is in flight.
        paused: bool,
    },
    /// The follower's log matches up to `matched`: AppendEntries are pipelined, `next` moving
    /// past each as it is sent, while the window has room.
    Replicate {
        /// The messages in flight.
        inflight: Inflight,
    },
}

/// What a leader knows of one follower's log (§5.3), and how it sends to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Progress {
    /// The next index to send. Invariant: `matched < next <= last_index + 1`.
    pub next: Index,
    /// The highest index known to be stored on the follower.
    pub matched: Index,
    /// Probing or pipelining.
    pub flow: Flow,
}

impl Progress {
    /// A follower of a new leader whose log ends at `last_index`: nothing is known to match,
    /// and the leader first probes with what follows its own last entry (§5.3).
    fn new(last_index: Index) -> Self {
        Progress {
            next: last_index + 1,
            matched: 0,
            flow: Flow::Probe { paused: false },
        }
    }

    /// Whether no AppendEntries may leave now: a probe is in flight, or the window is full.
    pub fn is_paused(&self, flow: &FlowControl) -> bool {
        match &self.flow {
            Flow::Probe { paused } => *paused,
            Flow::Replicate { inflight } => inflight.is_full(flow),
        }
    }

    /// The next heartbeat: a paused probe may go again, and a full window forgets its oldest
    /// message (taken to be lost, so that a lost message is found out by the rejection of the
    /// next one).
    pub(super) fn resume(&mut self, flow: &FlowControl) {
        match &mut self.flow {
            Flow::Probe { paused } => *paused = false,
            Flow::Replicate { inflight } => {
                if inflight.is_full(flow) {
                    inflight.free_oldest();
                }
            }
        }
    }

    /// An AppendEntries after `next - 1` carrying `count` entries of `bytes` bytes has left. A
    /// probe pauses; a pipelined message moves `next` past its entries and is counted in the
    /// window.
    pub(super) fn sent(&mut self, count: u64, bytes: u64) {
        match &mut self.flow {
            Flow::Probe { paused } => *paused = true,
            Flow::Replicate { inflight } => {
                if count > 0 {
                    self.next += count;
                    inflight.push(self.next - 1, bytes);
                }
            }
        }
    }

    /// The follower stores every entry up to `index`. A stale acknowledgement, reordered
    /// behind a later one, moves nothing back. An answered probe starts pipelining right after
    /// the matched index.
    pub(super) fn acknowledge(&mut self, index: Index) {
        if index < self.matched {
            return;
        }
        self.matched = index;
        match &mut self.flow {
            Flow::Probe { .. } => {
                self.next = index + 1;
                self.flow = Flow::Replicate {
                    inflight: Inflight::default(),
                };
            }
            Flow::Replicate { inflight } => {
                self.next = self.next.max(index + 1);
                inflight.free_up_to(index);
            }
        }
    }

    /// The follower refused an AppendEntries: its log may match the leader's only up to
    /// `hint`. It is probed again right after the hint, but never at or below what is known to
    /// match. A hint below the matched index does not make a rejection stale, even while
    /// pipelining: the follower's hint skips the whole run of its conflicting entry's term
    /// down to its commit index, and that run can reach below the entries it acknowledged
    /// (stale entries of the term of its matched ones, after a lost message): such a
    /// rejection is answered by a probe right after the match, or the follower would refuse
    /// every later message and never be repaired. A rejection that really is stale costs one
    /// probe the follower accepts at once.
    pub(super) fn back_off(&mut self, hint: Index) {
        self.next = (hint + 1).max(self.matched + 1);
        self.flow = Flow::Probe { paused: false };
    }

    /// The bytes in flight (0 while probing).
    pub fn inflight_bytes(&self) -> u64 {
        match &self.flow {
            Flow::Replicate { inflight } => inflight.bytes(),
            Flow::Probe { .. } => 0,
        }
    }

    /// The planted bug `inflight-bytes-leak`: the window keeps counting `bytes` after an
    /// acknowledgement freed messages.
    pub(super) fn planted_keep_bytes(&mut self, bytes: u64) {
        if let Flow::Replicate { inflight } = &mut self.flow {
            inflight.leak_bytes(bytes);
        }
    }

    /// The planted bug `probe-below-match`: probe right after a rejection's hint, below the
    /// match too.
    pub(super) fn planted_probe_after(&mut self, hint: Index) {
        self.next = hint + 1;
        self.flow = Flow::Probe { paused: false };
    }

    /// The planted bug `rejection-below-match-taken-as-stray`: while pipelining, a rejection
    /// whose hint lies below the match index is taken for a stale one and changes nothing.
    pub(super) fn planted_looks_stray(&self, hint: Index) -> bool {
        matches!(self.flow, Flow::Replicate { .. }) && hint < self.matched
    }

    /// The first broken invariant for a leader whose log ends at `last_index` and sends under
    /// `flow`: `matched < next <= last_index + 1`, and a window within its cap whose messages
    /// end, in order, after `matched` and before `next`.
    pub(super) fn violation(&self, last_index: Index, flow: &FlowControl) -> Option<String> {
        if !(self.matched < self.next && self.next <= last_index + 1) {
            return Some(format!(
                "next {} and matched {} out of range for last index {last_index}",
                self.next, self.matched
            ));
        }
        if let Flow::Replicate { inflight } = &self.flow {
            if inflight.len() > flow.max_inflight {
                return Some(format!(
                    "{} messages in flight, over the window of {}",
                    inflight.len(),
                    flow.max_inflight
                ));
            }
            let mut previous = self.matched;
            for last in inflight.last_indexes() {
                if last <= previous || last >= self.next {
                    return Some(format!(
                        "a message in flight ends at {last}, outside ({previous}, {})",
                        self.next
                    ));
                }
                previous = last;
            }
            let bytes: u64 = inflight.sent.iter().map(|(_, b)| b).sum();
            if bytes != inflight.bytes {
                return Some(format!(
                    "{} bytes counted in flight, {bytes} sent",
                    inflight.bytes
                ));
            }
        }
        None
    }
}

/// The leader's [`Progress`] of every other member.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgressTracker {
    /// One entry per follower.
    followers: BTreeMap<NodeId, Progress>,
}

impl ProgressTracker {
    /// The progress of a new leader whose log ends at `last_index`, with `followers`.
    pub(super) fn new(followers: impl IntoIterator<Item = NodeId>, last_index: Index) -> Self {
        followers
            .into_iter()
            .map(|id| (id, Progress::new(last_index)))
            .collect()
    }

    /// The progress of `follower`, if it is one.
    pub fn get(&self, follower: &NodeId) -> Option<&Progress> {
        self.followers.get(follower)
    }

    /// The progress of `follower`, to change it.
    ///
    /// # Panics
    /// When `follower` is not a follower: the Peer only calls it for another member, and a
    /// leader tracks every other member.
    pub(super) fn follower_mut(&mut self, follower: NodeId) -> &mut Progress {
        self.followers
            .get_mut(&follower)
            .expect("a leader tracks every other member")
    }

    /// Every follower with its progress, in id order.
    pub fn iter(&self) -> btree_map::Iter<'_, NodeId, Progress> {
        self.followers.iter()
    }

    /// The number of followers.
    pub fn len(&self) -> usize {
        self.followers.len()
    }

    /// Whether there is no follower (a cluster of one).
    pub fn is_empty(&self) -> bool {
        self.followers.is_empty()
    }

    /// The highest index stored on `quorum` servers, counting the leader, whose log ends at
    /// `leader_last_index` (§5.4.2: a candidate for the commit index).
    pub(super) fn quorum_index(&self, leader_last_index: Index, quorum: usize) -> Index {
        let mut matched: Vec<Index> = self.followers.values().map(|p| p.matched).collect();
        matched.push(leader_last_index);
        quorum::quorum_index(matched, quorum)
    }
}

impl FromIterator<(NodeId, Progress)> for ProgressTracker {
    fn from_iter<I: IntoIterator<Item = (NodeId, Progress)>>(iter: I) -> Self {
        ProgressTracker {
            followers: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a ProgressTracker {
    type Item = (&'a NodeId, &'a Progress);
    type IntoIter = btree_map::Iter<'a, NodeId, Progress>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::ops::Index<&NodeId> for ProgressTracker {
    type Output = Progress;

    /// # Panics
    /// When `follower` is not a follower.
    fn index(&self, follower: &NodeId) -> &Progress {
        &self.followers[follower]
    }
}

/// Printed as the map of followers to their progress.
impl fmt::Debug for ProgressTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.followers.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_OF_TWO: FlowControl = FlowControl {
        max_entries: 2,
        max_bytes: 100,
        max_inflight: 2,
        max_inflight_bytes: 1000,
    };

    fn replicating(next: Index, matched: Index) -> Progress {
        Progress {
            next,
            matched,
            flow: Flow::Replicate {
                inflight: Inflight::default(),
            },
        }
    }

    #[test]
    fn a_new_leader_probes_after_its_log() {
        let tracker = ProgressTracker::new([2, 3], 4);
        for (_, p) in &tracker {
            assert_eq!((p.next, p.matched), (5, 0));
            assert_eq!(p.flow, Flow::Probe { paused: false });
        }
        assert_eq!(tracker.len(), 2);
    }

    #[test]
    fn a_probe_pauses_until_answered_or_the_next_heartbeat() {
        let mut p = Progress::new(4);
        p.sent(0, 0);
        assert!(p.is_paused(&WINDOW_OF_TWO));
        assert_eq!(p.next, 5, "a probe does not move next");
        p.resume(&WINDOW_OF_TWO);
        assert!(!p.is_paused(&WINDOW_OF_TWO));
        p.sent(0, 0);
        p.acknowledge(4);
        assert_eq!(
            p,
            replicating(5, 4),
            "an answered probe pipelines after the match"
        );
    }

    #[test]
    fn pipelining_stops_at_the_window_and_acknowledgements_free_it() {
        let mut p = replicating(1, 0);
        p.sent(2, 10);
        p.sent(1, 5);
        assert_eq!(p.next, 4);
        assert!(
            p.is_paused(&WINDOW_OF_TWO),
            "two messages fill a window of two"
        );
        assert!(p.violation(3, &WINDOW_OF_TWO).is_none());
        p.acknowledge(2);
        assert!(!p.is_paused(&WINDOW_OF_TWO));
        let Flow::Replicate { inflight } = &p.flow else {
            panic!("still pipelining")
        };
        assert_eq!(inflight.last_indexes().collect::<Vec<_>>(), vec![3]);
        assert_eq!(inflight.bytes(), 5);
    }

    #[test]
    fn a_window_is_full_by_bytes_too() {
        let flow = FlowControl {
            max_inflight_bytes: 8,
            ..WINDOW_OF_TWO
        };
        let mut p = replicating(1, 0);
        p.sent(1, 9);
        assert!(p.is_paused(&flow));
    }

    #[test]
    fn a_heartbeat_frees_the_oldest_message_of_a_full_window() {
        let mut p = replicating(1, 0);
        p.sent(1, 1);
        p.sent(1, 1);
        p.resume(&WINDOW_OF_TWO);
        assert!(!p.is_paused(&WINDOW_OF_TWO));
        p.sent(1, 1);
        assert!(p.violation(3, &WINDOW_OF_TWO).is_none());
    }

    #[test]
    fn a_stale_acknowledgement_moves_nothing_back() {
        let mut p = replicating(6, 5);
        p.acknowledge(3);
        assert_eq!(p, replicating(6, 5));
        p.acknowledge(7);
        assert_eq!(p, replicating(8, 7));
    }

    #[test]
    fn back_off_probes_again_above_the_match() {
        let mut p = replicating(9, 3);
        p.back_off(2);
        assert_eq!(
            (p.next, p.flow.clone()),
            (4, Flow::Probe { paused: false }),
            "a hint below the match, while pipelining: right after the match"
        );
        let mut p = replicating(9, 3);
        p.back_off(5);
        assert_eq!((p.next, p.flow.clone()), (6, Flow::Probe { paused: false }));
        p.back_off(1);
        assert_eq!(p.next, 4, "never at or below the matched index");
    }

    #[test]
    fn violations_name_what_is_out_of_range() {
        assert!(replicating(3, 3).violation(5, &WINDOW_OF_TWO).is_some());
        assert!(replicating(7, 3).violation(5, &WINDOW_OF_TWO).is_some());
        let mut p = replicating(1, 0);
        p.sent(1, 1);
        p.sent(1, 1);
        p.sent(1, 1);
        let why = p
            .violation(3, &WINDOW_OF_TWO)
            .expect("three in a window of two");
        assert!(why.contains("over the window of 2"), "{why}");
    }

    #[test]
    fn validate_names_the_zero_field() {
        let flow = FlowControl {
            max_inflight: 0,
            ..FlowControl::default()
        };
        assert!(flow.validate().unwrap_err().contains("max_inflight"));
        assert!(FlowControl::default().validate().is_ok());
        assert!(FlowControl::UNLIMITED.validate().is_ok());
    }

    #[test]
    fn quorum_index_counts_the_leader() {
        let mut tracker = ProgressTracker::new([2, 3, 4, 5], 0);
        tracker.follower_mut(2).acknowledge(4);
        tracker.follower_mut(3).acknowledge(2);
        // Stored on the leader (7), 2 (4) and 3 (2): three of five reach 2.
        assert_eq!(tracker.quorum_index(7, 3), 2);
        assert_eq!(tracker.quorum_index(7, 2), 4);
    }
}
