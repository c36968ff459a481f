//! The log's index arithmetic, in one place.
//!
//! Raft numbers log entries from 1, and index 0 stands for the empty prefix, whose term is 0
//! (§5.3). The entries themselves are stored from position 0 of [`Durable::log`]. The Peer
//! sees that vector only through [`RaftLog`] (reading) and [`RaftLogMut`] (writing), which turn
//! Raft's indexes into positions: no other part of the Peer does.
//!
//! Every position is counted from [`RaftLog::first_index`], the index of the first stored
//! entry. It is 1 today; once snapshots compact the head of the log it is the index after the
//! snapshot's, and only this file changes.
//!
//! [`Durable::log`]: super::Durable

use super::types::{Entry, Index, Payload, Term};

/// The index of the first stored entry while nothing is compacted.
const FIRST_INDEX: Index = 1;

/// Where the entry at `index` is stored in a log of `len` entries whose first index is
/// `first`, if the log holds it.
fn position(index: Index, first: Index, len: usize) -> Option<usize> {
    let position = usize::try_from(index.checked_sub(first)?).ok()?;
    (position < len).then_some(position)
}

/// A read-only view of the log in Raft's indexes.
pub(crate) struct RaftLog<'a, C> {
    /// The stored entries: the first one is at [`RaftLog::first_index`].
    entries: &'a [Entry<C>],
}

// Not derived: a derive would ask for `C: Clone`, which a shared view does not need.
impl<C> Clone for RaftLog<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C> Copy for RaftLog<'_, C> {}

impl<'a, C> RaftLog<'a, C> {
    /// A view of `entries`, the first of which has index 1.
    pub(crate) fn new(entries: &'a [Entry<C>]) -> Self {
        RaftLog { entries }
    }

    /// The index of the first stored entry.
    pub(crate) fn first_index(&self) -> Index {
        FIRST_INDEX
    }

    /// The index of the last entry; `first_index() - 1` (0 today) when the log is empty.
    pub(crate) fn last_index(&self) -> Index {
        self.first_index() - 1 + self.entries.len() as Index
    }

    /// The term of the last entry (0 when the log is empty).
    pub(crate) fn last_term(&self) -> Term {
        self.term_at(self.last_index())
    }

    /// The entry at `index`, if the log holds it.
    pub(crate) fn entry(&self, index: Index) -> Option<&'a Entry<C>> {
        position(index, self.first_index(), self.entries.len()).map(|p| &self.entries[p])
    }

    /// The term of the entry at `index`; 0 for index 0 or an index past the end.
    pub(crate) fn term_at(&self, index: Index) -> Term {
        self.entry(index).map_or(0, |entry| entry.term)
    }

    /// Whether the log holds an entry at `prev_index` of term `prev_term` (index 0, the empty
    /// prefix, matches term 0): the consistency check of AppendEntries (§5.3).
    pub(crate) fn matches(&self, prev_index: Index, prev_term: Term) -> bool {
        prev_index <= self.last_index() && self.term_at(prev_index) == prev_term
    }

    /// Whether a log ending at `last_index` with term `last_term` is at least as up-to-date as
    /// this one: a later last term, or the same last term and at least as long (§5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The entries from `index` to the end; empty when `index` is `last_index() + 1`.
    ///
    /// # Panics
    /// When `index` is below the first index or more than one past the last: a leader only
    /// sends from its log, and its progress tracker keeps every next index within it.
    pub(crate) fn entries_from(&self, index: Index) -> &'a [Entry<C>] {
        let start = index
            .checked_sub(self.first_index())
            .and_then(|start| usize::try_from(start).ok())
            .expect("an index at or after the first index of the log");
        &self.entries[start..]
    }

    /// The entries from `index` on that one AppendEntries may carry: at most `max_entries`, and
    /// no more than `max_bytes` bytes of commands unless a single entry is larger (a message
    /// carries at least one entry when there is one). Empty when `index` is `last_index() + 1`.
    /// Returns the entries and their bytes.
    ///
    /// # Panics
    /// As [`RaftLog::entries_from`].
    pub(crate) fn batch_from(
        &self,
        index: Index,
        max_entries: u64,
        max_bytes: u64,
    ) -> (&'a [Entry<C>], u64)
    where
        C: Payload,
    {
        let from = self.entries_from(index);
        let mut bytes = 0u64;
        let mut count = 0usize;
        for entry in from {
            if count as u64 >= max_entries {
                break;
            }
            let size = entry.size();
            if count > 0 && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            count += 1;
        }
        (&from[..count], bytes)
    }

    /// Every entry with its index, in log order.
    pub(crate) fn indexed(&self) -> impl Iterator<Item = (Index, &'a Entry<C>)> {
        (self.first_index()..).zip(self.entries.iter())
    }
}

/// A view of the log that may change it, in Raft's indexes.
pub(crate) struct RaftLogMut<'a, C> {
    /// The stored entries: the first one is at [`RaftLog::first_index`].
    entries: &'a mut Vec<Entry<C>>,
}

impl<'a, C> RaftLogMut<'a, C> {
    /// A view of `entries`, the first of which has index 1.
    pub(crate) fn new(entries: &'a mut Vec<Entry<C>>) -> Self {
        RaftLogMut { entries }
    }

    /// The read-only view.
    pub(crate) fn view(&self) -> RaftLog<'_, C> {
        RaftLog::new(self.entries)
    }

    /// Deletes the entry at `index` and every entry after it; nothing when `index` is past the
    /// end. `index` must be at least the first index: what is compacted stays compacted.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        let keep = index.saturating_sub(self.view().first_index());
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Appends one entry and returns its index.
    pub(crate) fn append(&mut self, entry: Entry<C>) -> Index {
        self.entries.push(entry);
        self.view().last_index()
    }

    /// Appends entries in order.
    pub(crate) fn extend(&mut self, entries: impl IntoIterator<Item = Entry<C>>) {
        self.entries.extend(entries);
    }
}

/// A log of entries with these terms, each carrying the command 0: a fixture for tests.
#[cfg(test)]
pub(crate) fn log_of_terms(terms: &[Term]) -> Vec<Entry<u8>> {
    terms
        .iter()
        .map(|&term| Entry {
            term,
            command: Some(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::log_of_terms as log;
    use super::*;

    #[test]
    fn index_zero_is_the_empty_prefix_of_term_zero() {
        let entries = log(&[1, 2]);
        let view = RaftLog::new(&entries);
        assert_eq!(view.term_at(0), 0);
        assert!(view.entry(0).is_none());
        assert!(view.matches(0, 0));
        assert!(!view.matches(0, 1));
        let empty: Vec<Entry<u8>> = Vec::new();
        let view = RaftLog::new(&empty);
        assert_eq!((view.last_index(), view.last_term()), (0, 0));
    }

    #[test]
    fn a_batch_keeps_to_its_caps_but_carries_at_least_one_entry() {
        let entries: Vec<Entry<String>> = ["aa", "bbb", "c", "dddd"]
            .iter()
            .map(|command| Entry {
                term: 1,
                command: Some(command.to_string()),
            })
            .collect();
        let view = RaftLog::new(&entries);
        let sizes = |(batch, bytes): (&[Entry<String>], u64)| (batch.len(), bytes);
        assert_eq!(sizes(view.batch_from(1, 10, 100)), (4, 10));
        assert_eq!(
            sizes(view.batch_from(1, 2, 100)),
            (2, 5),
            "two entries at most"
        );
        assert_eq!(
            sizes(view.batch_from(1, 10, 6)),
            (3, 6),
            "six bytes at most"
        );
        assert_eq!(
            sizes(view.batch_from(2, 10, 1)),
            (1, 3),
            "one entry over the cap"
        );
        assert_eq!(
            sizes(view.batch_from(5, 10, 100)),
            (0, 0),
            "nothing past the end"
        );
    }

    #[test]
    fn indexes_start_at_one() {
        let entries = log(&[1, 2, 2]);
        let view = RaftLog::new(&entries);
        assert_eq!(view.first_index(), 1);
        assert_eq!((view.last_index(), view.last_term()), (3, 2));
        assert_eq!(view.term_at(1), 1);
        assert_eq!(view.term_at(3), 2);
        assert_eq!(view.term_at(4), 0);
        assert_eq!(view.term_at(Index::MAX), 0);
        assert!(view.matches(2, 2));
        assert!(!view.matches(2, 1));
        assert!(
            !view.matches(4, 0),
            "past the end matches nothing, not even term 0"
        );
        let indexes: Vec<Index> = view.indexed().map(|(index, _)| index).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
    }

    #[test]
    fn entries_from_the_end_is_empty() {
        let entries = log(&[1, 2, 3]);
        let view = RaftLog::new(&entries);
        assert_eq!(view.entries_from(1), &entries[..]);
        assert_eq!(view.entries_from(3), &entries[2..]);
        assert!(view.entries_from(4).is_empty());
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn entries_from_past_the_end_is_misuse() {
        let entries = log(&[1]);
        RaftLog::new(&entries).entries_from(3);
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let entries = log(&[1, 2]);
        let view = RaftLog::new(&entries);
        assert!(view.is_up_to_date(2, 2));
        assert!(
            view.is_up_to_date(1, 3),
            "a later last term wins over length"
        );
        assert!(!view.is_up_to_date(1, 2), "same last term, shorter");
        assert!(
            !view.is_up_to_date(9, 1),
            "an earlier last term loses whatever the length"
        );
    }

    #[test]
    fn truncate_from_keeps_what_is_before() {
        let mut entries = log(&[1, 2, 3]);
        let mut view = RaftLogMut::new(&mut entries);
        view.truncate_from(4);
        assert_eq!(
            view.view().last_index(),
            3,
            "past the end: nothing to delete"
        );
        view.truncate_from(2);
        assert_eq!(view.view().last_index(), 1);
        assert_eq!(
            view.append(Entry {
                term: 4,
                command: None
            }),
            2
        );
        view.truncate_from(1);
        assert_eq!(view.view().last_index(), 0);
    }
}
