//! Segment files: their names, their header, and the records in them.
//!
//! Decoding is pure (bytes in, entries and a verdict out) so that recovery's rules — what is a
//! torn tail and what is corruption — live in one function, [`scan`].

use crate::command::Command;
use model::{Entry, Index, Term};
use std::path::{Path, PathBuf};

/// The first bytes of every segment file.
pub(super) const MAGIC: [u8; 4] = *b"RDBS";
/// The segment format version written after the magic. Version 1 (an older rdb) checksummed
/// only the payload, so a damaged length could pass for a torn write; it is refused.
pub(super) const VERSION: u32 = 2;
/// Bytes of the segment header: magic, then the version as u32 LE.
pub(super) const HEADER_LEN: u64 = 8;
/// Bytes of a record's header: payload length and crc32 (of the length's four bytes, then the
/// payload), both u32 LE.
pub(super) const RECORD_HEADER_LEN: usize = 8;
/// Bytes of the smallest payload: term, index and the command flag.
pub(super) const MIN_PAYLOAD_LEN: usize = 17;

/// The segment header's bytes.
pub(super) fn header() -> [u8; HEADER_LEN as usize] {
    let mut bytes = [0; HEADER_LEN as usize];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..].copy_from_slice(&VERSION.to_le_bytes());
    bytes
}

/// The file name of the segment whose first entry is `first`.
pub(super) fn file_name(first: Index) -> String {
    format!("log-{first:020}.seg")
}

/// The first index named by a segment file name, or `None` if the name is not a segment's.
pub(super) fn parse_file_name(name: &str) -> Option<Index> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Appends the record of entry `index` to `out`.
pub(super) fn encode_record(out: &mut Vec<u8>, index: Index, entry: &Entry<Command>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    out.extend_from_slice(&entry.term.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    match &entry.command {
        None => out.push(0),
        Some(command) => {
            out.push(1);
            command.encode_into(out);
        }
    }
    let payload = &out[start + RECORD_HEADER_LEN..];
    let length = u32::try_from(payload.len()).expect("commands are limited far below 4 GiB");
    let crc = record_crc(length, payload);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum of a record: it covers the length as well as the payload, so that a damaged
/// length is caught wherever the record it claims still fits in the file.
pub(super) fn record_crc(length: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// One segment as the storage tracks it in memory.
#[derive(Debug)]
pub(super) struct Segment {
    /// Index of the segment's first entry (the one in its name), even while it holds none.
    pub(super) first: Index,
    /// The file.
    pub(super) path: PathBuf,
    /// Byte offset of each entry's record: `offsets[k]` is entry `first + k`.
    pub(super) offsets: Vec<u64>,
    /// The file's length in bytes.
    pub(super) len: u64,
}

impl Segment {
    /// A segment in `dir` starting at `first`, as yet without bytes.
    pub(super) fn new(dir: &Path, first: Index) -> Segment {
        Segment {
            first,
            path: dir.join(file_name(first)),
            offsets: Vec::new(),
            len: 0,
        }
    }
}

/// How a segment's bytes end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Every byte belongs to a good record.
    Clean,
    /// The bytes from `offset` on are a record cut short by a crash (or a header cut short).
    Torn {
        /// The torn record's first byte.
        offset: u64,
        /// What gave it away.
        reason: String,
    },
    /// The record at `offset` is damaged in a way a crash during an append cannot explain.
    Damaged {
        /// The damaged record's first byte (0 for the segment header).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What a segment's bytes hold.
#[derive(Debug)]
pub(super) struct Scan {
    /// Byte offset of each good record.
    pub(super) offsets: Vec<u64>,
    /// The good entries, in order.
    pub(super) entries: Vec<Entry<Command>>,
    /// How the bytes end. Everything before a `Torn` or `Damaged` offset is good.
    pub(super) end: End,
}

/// What the log before a segment says about it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Context {
    /// The index its first record must carry.
    pub(super) first: Index,
    /// The term of the entry before it (0 for none): terms never decrease along the log.
    pub(super) previous_term: Term,
    /// The stored term, which no entry may exceed.
    pub(super) stored_term: Term,
}

/// Decodes a whole segment file.
pub(super) fn scan(bytes: &[u8], context: Context) -> Scan {
    let mut scan = Scan {
        offsets: Vec::new(),
        entries: Vec::new(),
        end: End::Clean,
    };
    let header = header();
    if bytes.len() < header.len() {
        scan.end = if header.starts_with(bytes) {
            End::Torn {
                offset: 0,
                reason: format!("segment header cut short at {} bytes", bytes.len()),
            }
        } else {
            damaged(0, "bad segment header".into())
        };
        return scan;
    }
    if bytes[..4] != MAGIC {
        scan.end = damaged(0, "bad segment magic: not an rdb log segment".into());
        return scan;
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("slice of 4"));
    if version != VERSION {
        let reason = if version == 1 {
            "segment format version 1 was written by an older rdb and is not read by this one; \
             start this node on a new data directory and let the leader send it the log"
                .to_string()
        } else {
            format!("unsupported segment version {version}")
        };
        scan.end = damaged(0, reason);
        return scan;
    }

    let mut at = header.len();
    let mut previous_term = context.previous_term;
    while at < bytes.len() {
        let offset = at as u64;
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER_LEN {
            scan.end = End::Torn {
                offset,
                reason: format!("record header cut short at {} bytes", rest.len()),
            };
            return scan;
        }
        let length_field = u32::from_le_bytes(rest[..4].try_into().expect("slice of 4"));
        let length = length_field as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("slice of 4"));
        if length < MIN_PAYLOAD_LEN {
            scan.end = if rest.iter().all(|&byte| byte == 0) {
                // A file system may extend a file before it writes the data.
                End::Torn {
                    offset,
                    reason: "zero bytes to the end of the file".into(),
                }
            } else {
                damaged(offset, format!("bad record length {length}"))
            };
            return scan;
        }
        let Some(payload) = rest[RECORD_HEADER_LEN..].get(..length) else {
            scan.end = End::Torn {
                offset,
                reason: format!(
                    "record of {length} payload bytes extends past the end of the file"
                ),
            };
            return scan;
        };
        let record_end = at + RECORD_HEADER_LEN + length;
        if record_crc(length_field, payload) != crc {
            let reason = "checksum mismatch".to_string();
            scan.end = if record_end == bytes.len() {
                End::Torn { offset, reason }
            } else {
                damaged(offset, reason)
            };
            return scan;
        }
        let index = context.first + scan.entries.len() as u64;
        let entry = match decode_payload(payload, index, previous_term, context.stored_term) {
            Ok(entry) => entry,
            Err(reason) => {
                scan.end = damaged(offset, reason);
                return scan;
            }
        };
        previous_term = entry.term;
        scan.offsets.push(offset);
        scan.entries.push(entry);
        at = record_end;
    }
    scan
}

fn damaged(offset: u64, reason: String) -> End {
    End::Damaged { offset, reason }
}

/// Decodes a payload whose checksum matched, checking it against its place in the log.
fn decode_payload(
    payload: &[u8],
    expected_index: Index,
    previous_term: Term,
    stored_term: Term,
) -> Result<Entry<Command>, String> {
    let term = u64::from_le_bytes(payload[..8].try_into().expect("slice of 8"));
    let index = u64::from_le_bytes(payload[8..16].try_into().expect("slice of 8"));
    if index != expected_index {
        return Err(format!(
            "record holds index {index} where index {expected_index} belongs"
        ));
    }
    if term < previous_term {
        return Err(format!(
            "entry {index} has term {term}, below the previous entry's term {previous_term}"
        ));
    }
    if term > stored_term {
        return Err(format!(
            "entry {index} has term {term}, above the stored term {stored_term}"
        ));
    }
    let command = match (payload[16], &payload[MIN_PAYLOAD_LEN..]) {
        (0, []) => None,
        (0, rest) => return Err(format!("{} bytes after an empty entry", rest.len())),
        (1, bytes) => {
            Some(Command::decode(bytes).map_err(|error| format!("entry {index}: {error}"))?)
        }
        (flag, _) => return Err(format!("entry {index}: bad command flag {flag}")),
    };
    Ok(Entry { term, command })
}
