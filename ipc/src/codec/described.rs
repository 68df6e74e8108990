//! [`Described`]: a value that travels with its field names and types, for
//! the serde types the wire format cannot read back.
//!
//! postcard writes values bare (no names, no types), which is what makes it
//! small and fast, but a type that reads itself by asking what comes next
//! (serde's `deserialize_any`) cannot be read from it: an internally tagged
//! or untagged enum, a `#[serde(flatten)]` field, `serde_json::Value`, and
//! a struct whose `skip_serializing_if` leaves fields out. Wrapped in
//! `Described`, such a value is written as CBOR (through `ciborium`, a
//! maintained self-describing serde format) and carried as one byte string
//! inside the message: everything else in the message stays postcard.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::stack_guard;
use crate::os::stack;

/// A value sent with its names and types, so that any serde type travels:
/// `#[serde(tag = "...")]`, `#[serde(untagged)]`, `#[serde(flatten)]`,
/// `#[serde(skip_serializing_if)]`, `serde_json::Value`. Use it where the
/// plain form is refused (`DecodeError::SelfDescribing`,
/// `EncodeError::SkippedField`, `EncodeError::UnknownLength`): as a `Pool`
/// item or result, a `Queue` item, a `Pipe` message, a `Process` argument,
/// a `Manager` value, or a field of any of them.
///
/// A described value is larger than a plain one (its field names travel)
/// and slower to write and read; a plain type is the better choice
/// wherever it works. A large vector inside one goes element by element
/// (10 MB of `Vec<u8>`: 2.8 s in a debug build, where a plain one is a
/// copy): carry it beside the described part, as in
/// `(Described(header), bytes)`.
///
/// ```
/// use outlast_ipc::Described;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// #[serde(tag = "kind")]
/// enum Shape {
///     Circle { r: f64 },
///     Square { side: f64 },
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut ours, mut theirs) = outlast_ipc::Pipe::duplex()?;
/// ours.send(&Described(Shape::Circle { r: 1.5 }))?;
/// let Described(shape) = theirs.recv::<Described<Shape>>()?;
/// assert_eq!(shape, Shape::Circle { r: 1.5 });
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Described<T>(pub T);

impl<T> Described<T> {
    /// The value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Described<T> {
    fn from(value: T) -> Self {
        Described(value)
    }
}

impl<T> Deref for Described<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Described<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize> Serialize for Described<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut cbor = Vec::new();
        ciborium::into_writer(&self.0, &mut cbor)
            .map_err(|e| serde::ser::Error::custom(format!("cannot describe the value: {e}")))?;
        serializer.serialize_bytes(&cbor)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Described<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(CborBytes(PhantomData))
    }
}

/// The most levels of arrays and maps a described value may nest:
/// serde_json's bound. Deeper than the stack allows is refused too, at any
/// level (see [`stack_guard`](super::stack_guard)).
const MAX_DEPTH: usize = 128;

/// Stack kept free below the deepest level read: room for one level of
/// ciborium's and the type's code, unoptimised, and the way back.
const STACK_RESERVE: usize = 256 * 1024;

/// Reads `T` from the CBOR bytes of a described value.
fn read<T: DeserializeOwned>(cbor: &[u8]) -> Result<T, String> {
    use ciborium::de::Error;
    ciborium::de::from_reader_with_recursion_limit::<Guarded<T>, _>(cbor, MAX_DEPTH)
        .map(|Guarded(value)| value)
        .map_err(|e| {
            let why = match e {
                Error::Io(_) => "its CBOR ends early".to_string(),
                Error::Syntax(at) => format!("byte {at} of its CBOR is malformed"),
                Error::Semantic(_, why) => why,
                Error::RecursionLimitExceeded => {
                    format!("it nests more than {MAX_DEPTH} arrays and maps")
                }
            };
            format!("a described value that does not read back: {why}")
        })
}

/// `T`, read through the stack guard.
struct Guarded<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Guarded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let floor = stack::limit(STACK_RESERVE);
        T::deserialize(stack_guard::Deserializer::new(deserializer, floor)).map(Guarded)
    }
}

/// Takes the byte string a described value travels as (or, from a format
/// that writes bytes as a list of numbers, that list).
struct CborBytes<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for CborBytes<T> {
    type Value = Described<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a described value (CBOR bytes)")
    }

    fn visit_bytes<E: de::Error>(self, cbor: &[u8]) -> Result<Self::Value, E> {
        read(cbor).map(Described).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The length a peer announces is a hint, not a promise: grown with
        // what arrives.
        let mut cbor = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            cbor.push(byte);
        }
        self.visit_bytes(&cbor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_payload, encode_append};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(tag = "kind")]
    enum Shape {
        Circle { r: f64 },
        Square { side: f64 },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Extra {
        colour: String,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Order {
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        shape: Shape,
        either: Either,
        #[serde(flatten)]
        extra: Extra,
        counts: BTreeMap<u32, Vec<u8>>,
    }

    fn order(note: Option<&str>) -> Order {
        Order {
            id: 7,
            note: note.map(str::to_string),
            shape: Shape::Square { side: 2.5 },
            either: Either::Text("x".into()),
            extra: Extra {
                colour: "red".into(),
            },
            counts: BTreeMap::from([(1, vec![1, 2, 3]), (9, vec![])]),
        }
    }

    fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
        let mut bytes = Vec::new();
        encode_append(value, &mut bytes).expect("encodes");
        decode_payload(&bytes).expect("decodes")
    }

    /// Each attribute the plain form refuses reads back, inside a plain
    /// message (a tuple with a plain member beside it).
    #[test]
    fn what_the_plain_form_refuses_reads_back_described() {
        for note in [Some("fragile"), None] {
            let sent = (Described(order(note)), 42u32);
            let (Described(got), plain) = round_trip(&sent);
            assert_eq!(got, order(note));
            assert_eq!(plain, 42);
        }
        // The plain form of the same value is refused, so the wrapper is
        // what makes the difference.
        let mut bytes = Vec::new();
        assert!(encode_append(&order(None), &mut bytes).is_err());
    }

    /// Garbage where the CBOR should be is an error in words, whatever
    /// the bytes: never a panic, never an allocation past what arrived.
    #[test]
    fn garbage_inside_is_refused_in_words() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..400usize {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut bytes = Vec::new();
            crate::codec::write_varint(garbage.len() as u64, &mut bytes);
            bytes.extend_from_slice(&garbage);
            if let Err(e) = decode_payload::<Described<Order>>(&bytes) {
                assert!(!e.to_string().is_empty());
            }
        }
        // A byte string announcing far more than arrives.
        let mut bytes = Vec::new();
        crate::codec::write_varint(9, &mut bytes);
        bytes.extend_from_slice(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let e = decode_payload::<Described<Vec<u8>>>(&bytes).expect_err("truncated");
        assert!(
            e.to_string()
                .contains("a described value that does not read back"),
            "{e}"
        );
    }

    /// Nested as deep as a peer likes, a described value is refused in
    /// words, never a stack overflow (which aborts the process): arrays in
    /// arrays past the depth bound, and a type that nests without arrays
    /// (ciborium reads `Link(Option<Box<Link>>)` from anything but null by
    /// recursing without end), on a 2 MiB thread and on a 128 KiB one.
    #[test]
    fn a_deep_value_is_refused_not_an_overflow() {
        #[derive(Serialize, Deserialize, Debug)]
        struct Link(Option<Box<Link>>);
        #[derive(Serialize, Deserialize, Debug)]
        struct Tree(Vec<Tree>);
        // An array in an array ... 10,000 deep.
        let mut cbor = vec![0x81u8; 10_000];
        cbor.push(0x80);
        let mut bytes = Vec::new();
        crate::codec::write_varint(cbor.len() as u64, &mut bytes);
        bytes.extend_from_slice(&cbor);
        for stack in [2 << 20, 128 << 10] {
            let bytes = bytes.clone();
            let said = std::thread::Builder::new()
                .stack_size(stack)
                .spawn(move || {
                    let link = decode_payload::<Described<Link>>(&bytes).expect_err("endless");
                    let tree = decode_payload::<Described<Tree>>(&bytes).expect_err("too deep");
                    (link.to_string(), tree.to_string())
                })
                .expect("a thread")
                .join()
                .expect("no overflow");
            assert!(said.0.contains(TOO_DEEP_WORDS), "{}", said.0);
            assert!(said.1.contains("does not read back"), "{}", said.1);
        }
        // A tree within the bound reads back.
        let mut tree = Tree(Vec::new());
        for _ in 0..100 {
            tree = Tree(vec![tree]);
        }
        let mut depth = 0;
        let mut at = &round_trip(&Described(tree)).0;
        while let [inner] = at.0.as_slice() {
            depth += 1;
            at = inner;
        }
        assert_eq!(depth, 100);
    }

    const TOO_DEEP_WORDS: &str = "nested deeper than this thread's stack can read";
}
