//! The replicated state machine: a key-value map that applies committed commands in log order.

use crate::command::Command;
use model::Index;
use std::collections::BTreeMap;

/// What applying one command produced; it goes back to the client that proposed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandResult {
    /// A put or delete: whether the key held a value just before.
    Written {
        /// Whether the key existed before this write.
        existed: bool,
    },
    /// A get: the value at this point of the log.
    Read {
        /// The value, if the key exists.
        value: Option<Vec<u8>>,
    },
}

/// The key-value map and how far into the log it has applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    map: BTreeMap<String, Vec<u8>>,
    applied: Index,
}

impl KvStore {
    /// The index of the last applied entry.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Applies the entry at `index`, which must be the next one. A blank entry (no command)
    /// changes nothing but still advances the applied index.
    pub fn apply(&mut self, index: Index, command: Option<&Command>) -> Option<CommandResult> {
        assert_eq!(index, self.applied + 1, "entries are applied in log order");
        self.applied = index;
        let result = match command? {
            Command::Put { key, value } => CommandResult::Written {
                existed: self.map.insert(key.clone(), value.clone()).is_some(),
            },
            Command::Delete { key } => CommandResult::Written {
                existed: self.map.remove(key).is_some(),
            },
            Command::Get { key } => CommandResult::Read {
                value: self.map.get(key).cloned(),
            },
        };
        Some(result)
    }

    /// The current value of `key` (not linearizable on its own: for tests and status only).
    pub fn peek(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_in_order_and_reports_results() {
        let mut kv = KvStore::default();
        let put = Command::Put {
            key: "a".into(),
            value: b"1".to_vec(),
        };
        assert_eq!(
            kv.apply(1, Some(&put)),
            Some(CommandResult::Written { existed: false })
        );
        assert_eq!(kv.apply(2, None), None);
        assert_eq!(
            kv.apply(3, Some(&Command::Get { key: "a".into() })),
            Some(CommandResult::Read {
                value: Some(b"1".to_vec())
            })
        );
        assert_eq!(
            kv.apply(4, Some(&Command::Delete { key: "a".into() })),
            Some(CommandResult::Written { existed: true })
        );
        assert_eq!(kv.applied(), 4);
        assert!(kv.is_empty());
    }

    #[test]
    #[should_panic(expected = "log order")]
    fn refuses_to_skip_an_entry() {
        KvStore::default().apply(2, None);
    }
}
