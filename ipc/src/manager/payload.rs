//! A value's bytes as a request or a reply carries them. On the server a
//! dict keeps each value shared, so a reply holds the value itself, not a
//! copy made to be sent (a 100 MB value cost a fresh 100 MB buffer per
//! `get`); received, a payload is the bytes read off the wire, owned, or
//! a large value's sealed memfd, mapped. On the wire it is written as one
//! byte string, as a `Vec<u8>` with `serde_bytes` was: the wire is
//! unchanged (a sealed value is announced apart, see [`super::sealed`]).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use super::sealed::SealedValue;

/// A value's encoded bytes in a [`Reply`](super::Reply).
#[derive(Clone)]
pub enum Payload {
    /// Bytes of its own (what a client receives).
    Owned(Vec<u8>),
    /// Bytes the server also keeps.
    Shared(Arc<Vec<u8>>),
    /// A large value in a sealed memfd, mapped (a local manager's):
    /// the server keeps it, a client reads it where it lies.
    Sealed(Arc<SealedValue>),
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Owned(Vec::new())
    }
}

impl Payload {
    /// The bytes as a vector: moved out when this payload holds the only
    /// reference, copied otherwise.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Owned(bytes) => bytes,
            Payload::Shared(bytes) => {
                Arc::try_unwrap(bytes).unwrap_or_else(|bytes| (*bytes).clone())
            }
            Payload::Sealed(value) => value.to_vec(),
        }
    }

    /// As the server keeps it: shared with the replies that will carry it
    /// (own bytes are moved behind an `Arc`, not copied).
    pub(super) fn stored(self) -> Payload {
        match self {
            Payload::Owned(bytes) => Payload::Shared(Arc::new(bytes)),
            kept => kept,
        }
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Payload::Owned(bytes) => bytes,
            Payload::Shared(bytes) => bytes,
            Payload::Sealed(value) => value,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Owned(bytes)
    }
}

impl From<Arc<Vec<u8>>> for Payload {
    fn from(bytes: Arc<Vec<u8>>) -> Self {
        Payload::Shared(bytes)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ByteBuf::deserialize(deserializer).map(|bytes| Payload::Owned(bytes.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_written_as_a_vector_of_bytes_was() {
        #[derive(Serialize)]
        struct Before(#[serde(with = "serde_bytes")] Option<Vec<u8>>);
        let bytes = vec![1u8, 2, 3, 200];
        let before = postcard::to_allocvec(&Before(Some(bytes.clone()))).unwrap();
        for payload in [
            Payload::from(bytes.clone()),
            Payload::from(Arc::new(bytes.clone())),
        ] {
            let ours = postcard::to_allocvec(&Some(payload.clone())).unwrap();
            assert_eq!(ours, before);
            let back: Option<Payload> = postcard::from_bytes(&ours).unwrap();
            assert_eq!(back, Some(payload));
        }
        let shared = Arc::new(bytes.clone());
        let kept = shared.clone();
        // Shared with the store, it is copied; alone, moved.
        assert_eq!(Payload::Shared(shared).into_vec(), bytes);
        assert_eq!(Payload::Shared(kept).into_vec(), bytes);
    }
}
