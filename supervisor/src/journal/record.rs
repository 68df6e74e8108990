//! The journal's bytes: a 12-byte header (`OUTLASTJ` and a format
//! version), then frames. A frame is the payload's length (u32, little
//! endian), a CRC32C of that length and the payload (u32), and the payload:
//! one [`Record`] in postcard. The checksum covers the length too, so a
//! flipped bit anywhere in a frame is seen, and a frame cut short by a
//! crash is seen by its length running past the end of the file.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The first bytes of every journal.
pub(crate) const MAGIC: &[u8; 8] = b"OUTLASTJ";
/// The format this code writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Header: magic, then the version.
pub(crate) const HEADER_LEN: u64 = 12;
/// Length and checksum before each payload.
pub(crate) const FRAME_HEAD: u64 = 8;
/// No payload is larger: a task's output (1 GiB at most) and its fields.
pub(crate) const MAX_PAYLOAD: u64 = (1 << 30) + (1 << 20);

/// What a journal says the job is; a run of another job is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// The job's name, e.g. `primes`.
    pub name: String,
    /// Its one-line description, for people (not compared).
    pub describe: String,
    /// How many tasks it has.
    pub tasks: u64,
    /// A digest of the job's own bytes and of its tasks' inputs.
    pub digest: u64,
}

impl JobIdentity {
    /// The same job: name, task count and digest (the description is for
    /// people, and may say things that change from run to run).
    pub fn same_job(&self, other: &JobIdentity) -> bool {
        self.name == other.name && self.tasks == other.tasks && self.digest == other.digest
    }
}

/// One entry of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// The job, first in every journal.
    Job(JobIdentity),
    /// A run started (or resumed) with this journal.
    Run {
        pid: u32,
        unix_ms: u64,
        resumed: u64,
    },
    /// Task `id` succeeded on attempt `attempt`; its output, as the job encoded it.
    Done {
        id: u64,
        attempt: u32,
        output: ByteBuf,
    },
    /// Task `id` was given up on.
    Dead {
        id: u64,
        failures: u32,
        exit_code: Option<i32>,
        cause: String,
    },
}

/// The header every journal starts with.
pub(crate) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends `record` as one frame to `out`.
pub(crate) fn encode_frame(record: &Record, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEAD as usize]);
    if let Err(e) = postcard::to_extend(record, Appender(out)) {
        out.truncate(start);
        return Err(e);
    }
    let len = (out.len() - start) as u64 - FRAME_HEAD;
    let Ok(len) = u32::try_from(len) else {
        out.truncate(start);
        return Err(postcard::Error::SerializeBufferFull);
    };
    let len_bytes = len.to_le_bytes();
    let crc = checksum(&len_bytes, &out[start + FRAME_HEAD as usize..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Lets postcard write straight into the end of a borrowed buffer.
struct Appender<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Appender<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// The frame checksum: CRC32C of the length's bytes, then the payload.
pub(crate) fn checksum(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_holds_its_length_and_checksum() {
        let mut out = vec![7u8];
        let record = Record::Done {
            id: 3,
            attempt: 1,
            output: ByteBuf::from(vec![1, 2, 3]),
        };
        encode_frame(&record, &mut out).unwrap();
        assert_eq!(out[0], 7, "appended after what was there");
        let len = u32::from_le_bytes(out[1..5].try_into().unwrap());
        let crc = u32::from_le_bytes(out[5..9].try_into().unwrap());
        let payload = &out[9..];
        assert_eq!(len as usize, payload.len());
        assert_eq!(crc, checksum(&len.to_le_bytes(), payload));
        assert_eq!(postcard::from_bytes::<Record>(payload).unwrap(), record);
    }
}
