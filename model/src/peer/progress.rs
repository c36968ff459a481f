//! What a leader knows of its followers' logs (§5.3), and the commit index it can derive from
//! them (§5.4.2).
//!
//! Each follower has a [`Progress`]: the next index to send and the highest index known to be
//! stored there. The [`ProgressTracker`] holds one per follower. Flow control (probing a
//! follower one message at a time, a window of entries in flight) belongs in [`Progress`];
//! membership changes belong in the tracker, which alone knows who counts toward a quorum.

use super::quorum;
use super::types::{Index, NodeId};
use std::collections::{btree_map, BTreeMap};
use std::fmt;

/// What a leader knows of one follower's log (§5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Progress {
    /// The next index to send. Invariant: `matched < next <= last_index + 1`.
    pub next: Index,
    /// The highest index known to be stored on the follower.
    pub matched: Index,
}

impl Progress {
    /// A follower of a new leader whose log ends at `last_index`: nothing is known to match,
    /// and the leader first offers what follows its own last entry (§5.3).
    fn new(last_index: Index) -> Self {
        Progress {
            next: last_index + 1,
            matched: 0,
        }
    }

    /// The follower stores every entry up to `index`. A stale acknowledgement, reordered
    /// behind a later one, moves nothing back.
    pub(super) fn acknowledge(&mut self, index: Index) {
        if index > self.matched {
            self.matched = index;
        }
        self.next = self.next.max(index + 1);
    }

    /// The follower's log may match the leader's only up to `hint`: the next request starts
    /// right after it, but never at or below what is known to match.
    pub(super) fn back_off(&mut self, hint: Index) {
        self.next = (hint + 1).max(self.matched + 1);
    }

    /// The leader sends every entry from `next` to its `last_index`, and optimistically counts
    /// them as sent (a lost message is repaired by the next rejection). Returns the index of
    /// the entry just before those sent.
    pub(super) fn send_up_to(&mut self, last_index: Index) -> Index {
        let prev_index = self.next - 1;
        self.next = last_index + 1;
        prev_index
    }

    /// Whether the invariant on `next` and `matched` holds for a leader whose log ends at
    /// `last_index`.
    pub(super) fn is_within(&self, last_index: Index) -> bool {
        self.matched < self.next && self.next <= last_index + 1
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

    #[test]
    fn a_new_leader_offers_what_follows_its_log() {
        let tracker = ProgressTracker::new([2, 3], 4);
        assert_eq!(
            tracker.iter().map(|(id, p)| (*id, *p)).collect::<Vec<_>>(),
            vec![
                (
                    2,
                    Progress {
                        next: 5,
                        matched: 0
                    }
                ),
                (
                    3,
                    Progress {
                        next: 5,
                        matched: 0
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_stale_acknowledgement_moves_nothing_back() {
        let mut p = Progress {
            next: 6,
            matched: 5,
        };
        p.acknowledge(3);
        assert_eq!(
            p,
            Progress {
                next: 6,
                matched: 5
            }
        );
        p.acknowledge(7);
        assert_eq!(
            p,
            Progress {
                next: 8,
                matched: 7
            }
        );
    }

    #[test]
    fn back_off_stops_above_the_match() {
        let mut p = Progress {
            next: 9,
            matched: 3,
        };
        p.back_off(5);
        assert_eq!(p.next, 6);
        p.back_off(1);
        assert_eq!(p.next, 4, "never at or below the matched index");
    }

    #[test]
    fn sending_moves_next_past_the_log() {
        let mut p = Progress::new(2);
        assert_eq!(p.send_up_to(5), 2);
        assert_eq!(p.next, 6);
        assert!(p.is_within(5));
        assert!(!p.is_within(4));
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
