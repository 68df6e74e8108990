//! Reading a journal: every valid frame from the start, in order, up to
//! the first that is not (cut short by a crash, a checksum that does not
//! match, a payload that does not decode). What follows it is dropped and
//! said in one line; the valid prefix is the journal. A frame's announced
//! length is checked against what the file holds before anything is read,
//! so a garbage length costs nothing.

use std::io::{BufReader, Read};
use std::path::Path;

use super::record::{checksum, Record, FRAME_HEAD, HEADER_LEN, MAGIC, MAX_PAYLOAD, VERSION};
use super::JournalError;

/// Where the valid prefix ends and why the rest was dropped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Offset of the first byte dropped (the end of the valid prefix).
    pub at: u64,
    /// Bytes dropped, from `at` to the end of the file.
    pub bytes: u64,
    /// Why, in words: `a record cut short`, `a checksum mismatch`, ...
    pub why: String,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} bytes at offset {} ({}); the records before are kept",
            self.bytes, self.at, self.why
        )
    }
}

/// What a scan found besides the records it handed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// The file's length when read.
    pub file_len: u64,
    /// The end of the valid prefix.
    pub valid_len: u64,
    pub dropped: Option<Dropped>,
}

/// Reads the journal at `path`, handing each valid record to `each` with
/// its offset. An empty file is a journal with nothing in it; one that
/// does not start with the header is not a journal (an error: it is not
/// ours to truncate).
pub(crate) fn scan(
    path: &Path,
    each: &mut dyn FnMut(Record, u64) -> Result<(), JournalError>,
) -> Result<Scanned, JournalError> {
    let file = std::fs::File::open(path).map_err(|e| JournalError::io(path, "open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| JournalError::io(path, "read", e))?
        .len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let done = |valid_len: u64, why: Option<String>| Scanned {
        file_len,
        valid_len,
        dropped: why.map(|why| Dropped {
            at: valid_len,
            bytes: file_len - valid_len,
            why,
        }),
    };
    if file_len == 0 {
        return Ok(done(0, None));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    let got =
        read_up_to(&mut reader, &mut header).map_err(|e| JournalError::io(path, "read", e))?;
    if got < header.len() {
        // A header cut short is a journal whose first write was torn,
        // if what is there is the start of ours.
        if header[..got.min(MAGIC.len())] == MAGIC[..got.min(MAGIC.len())] {
            return Ok(done(0, Some("its header cut short".into())));
        }
        return Err(JournalError::NotAJournal(path.to_path_buf()));
    }
    if &header[..8] != MAGIC {
        return Err(JournalError::NotAJournal(path.to_path_buf()));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != VERSION {
        return Err(JournalError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let mut at = HEADER_LEN;
    let mut payload = Vec::new();
    loop {
        let left = file_len - at;
        if left == 0 {
            return Ok(done(at, None));
        }
        if left < FRAME_HEAD {
            return Ok(done(at, Some("a record cut short".into())));
        }
        let mut head = [0u8; FRAME_HEAD as usize];
        reader
            .read_exact(&mut head)
            .map_err(|e| JournalError::io(path, "read", e))?;
        let len_bytes = [head[0], head[1], head[2], head[3]];
        let len = u64::from(u32::from_le_bytes(len_bytes));
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_PAYLOAD {
            return Ok(done(
                at,
                Some(format!(
                    "a record announcing {len} bytes, more than any record"
                )),
            ));
        }
        if len > left - FRAME_HEAD {
            return Ok(done(at, Some("a record cut short".into())));
        }
        // Bounded by what the file holds, checked just above.
        payload.resize(len as usize, 0);
        reader
            .read_exact(&mut payload)
            .map_err(|e| JournalError::io(path, "read", e))?;
        if checksum(&len_bytes, &payload) != crc {
            return Ok(done(at, Some("a checksum mismatch".into())));
        }
        let record = match postcard::from_bytes::<Record>(&payload) {
            Ok(record) => record,
            Err(e) => return Ok(done(at, Some(format!("an undecodable record: {e}")))),
        };
        each(record, at)?;
        at += FRAME_HEAD + len;
    }
}

/// Reads until `buf` is full or the end; how many bytes it got.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
