//! [`Traced`]: a result that remembers which thread decoded it, so tests
//! can show where an awaited result was decoded (on the executor's thread
//! or on one of its own) without timing anything.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

/// Bytes, and the name of the thread that decoded them.
pub struct Traced {
    pub bytes: ByteBuf,
    /// Empty until decoded (and for an unnamed thread).
    pub decoded_on: String,
}

impl Serialize for Traced {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.bytes.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Traced {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = ByteBuf::deserialize(d)?;
        let decoded_on = std::thread::current().name().unwrap_or("").to_string();
        Ok(Traced { bytes, decoded_on })
    }
}

/// `len` bytes of 5, not decoded yet (an entry for a child or a worker).
pub fn traced(len: usize) -> Traced {
    Traced {
        bytes: ByteBuf::from(vec![5u8; len]),
        decoded_on: String::new(),
    }
}

/// The name of the thread this runs on.
pub fn this_thread() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}
