//! The codec writes and reads postcard's format itself (so that vectors of
//! bytes and floats anywhere in a value are copied whole, and nesting is
//! bounded by the stack): these properties hold it to postcard's own
//! encoder and decoder, byte for byte and error for error.

use std::collections::BTreeMap;

use outlast_ipc::codec::{encode_append, take_payload, DecodeError, EncodeError};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Newtype(u16);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Variant {
    Plain,
    Wrapped(i32),
    Pair(u8, Vec<u8>),
    Fields { x: f32, signed: Vec<i8> },
}

/// Every kind of value serde has, with the bulk vectors among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Everything {
    flag: bool,
    signed: (i8, i16, i32, i64, i128),
    unsigned: (u8, u16, u32, u64, u128),
    floats: (f32, f64),
    letter: char,
    text: String,
    bytes: Vec<u8>,
    small: Vec<i8>,
    singles: Vec<f32>,
    doubles: Vec<f64>,
    boxed: Box<[u8]>,
    maybe: Option<Vec<u8>>,
    nested: Vec<Vec<u8>>,
    words: Vec<u16>,
    counts: (Vec<u32>, Vec<u64>, Vec<usize>),
    signed_counts: (Vec<i16>, Vec<i32>, Vec<i64>, Vec<isize>),
    map: BTreeMap<String, Vec<f64>>,
    tuple: (u8, Vec<u8>, Unit),
    newtype: Newtype,
    variants: Vec<Variant>,
    buf: serde_bytes::ByteBuf,
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![
        Just(Variant::Plain),
        any::<i32>().prop_map(Variant::Wrapped),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(a, b)| Variant::Pair(a, b)),
        (any::<f32>(), prop::collection::vec(any::<i8>(), 0..40))
            .prop_map(|(x, signed)| Variant::Fields { x, signed }),
    ]
}

fn everything() -> impl Strategy<Value = Everything> {
    let numbers = (
        any::<bool>(),
        any::<(i8, i16, i32, i64, i128)>(),
        any::<(u8, u16, u32, u64, u128)>(),
        any::<(f32, f64)>(),
        any::<char>(),
        ".{0,20}",
    );
    let vectors = (
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(any::<i8>(), 0..50),
        prop::collection::vec(any::<f32>(), 0..50),
        prop::collection::vec(any::<f64>(), 0..50),
        prop::collection::vec(any::<u8>(), 0..50),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..50)),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..5),
        prop::collection::vec(any::<u16>(), 0..40),
    );
    let integers = (
        (
            prop::collection::vec(any::<u32>(), 0..40),
            prop::collection::vec(any::<u64>(), 0..40),
            prop::collection::vec(any::<usize>(), 0..40),
        ),
        (
            prop::collection::vec(any::<i16>(), 0..40),
            prop::collection::vec(any::<i32>(), 0..40),
            prop::collection::vec(any::<i64>(), 0..40),
            prop::collection::vec(any::<isize>(), 0..40),
        ),
    );
    let rest = (
        prop::collection::btree_map(".{0,8}", prop::collection::vec(any::<f64>(), 0..5), 0..4),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..10)),
        any::<u16>(),
        prop::collection::vec(variant(), 0..5),
        prop::collection::vec(any::<u8>(), 0..30),
    );
    (numbers, vectors, integers, rest).prop_map(
        |(
            (flag, signed, unsigned, floats, letter, text),
            (bytes, small, singles, doubles, boxed, maybe, nested, words),
            (counts, signed_counts),
            (map, (t0, t1), newtype, variants, buf),
        )| Everything {
            flag,
            signed,
            unsigned,
            floats,
            letter,
            text,
            bytes,
            small,
            singles,
            doubles,
            boxed: boxed.into_boxed_slice(),
            maybe,
            nested,
            words,
            counts,
            signed_counts,
            map,
            tuple: (t0, t1, Unit),
            newtype: Newtype(newtype),
            variants,
            buf: serde_bytes::ByteBuf::from(buf),
        },
    )
}

fn ours<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_append(value, &mut out).expect("the codec encodes");
    out
}

/// Both decoders on the same bytes: the same value (compared by its
/// debug form, so that NaNs compare), the same bytes left, or the same
/// error.
fn same_reading<T: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> Result<(), String> {
    let theirs = postcard::take_from_bytes::<T>(bytes);
    let ours = take_payload::<T>(bytes);
    match (ours, theirs) {
        (Ok((a, rest_a)), Ok((b, rest_b)))
            if format!("{a:?}") == format!("{b:?}") && rest_a == rest_b =>
        {
            Ok(())
        }
        (Err(DecodeError::Malformed(a)), Err(b)) if a == b => Ok(()),
        // postcard drops the words of serde's and the type's refusals.
        (Err(DecodeError::Refused(_)), Err(postcard::Error::SerdeDeCustom)) => Ok(()),
        (Err(DecodeError::SelfDescribing), Err(postcard::Error::WontImplement)) => Ok(()),
        (ours, theirs) => Err(format!("ours {ours:?}, postcard's {theirs:?}")),
    }
}

proptest! {
    #[test]
    fn the_same_bytes_as_postcard(value in everything()) {
        let bytes = ours(&value);
        prop_assert_eq!(&bytes, &postcard::to_allocvec(&value).expect("postcard encodes"));
        prop_assert_eq!(same_reading::<Everything>(&bytes), Ok(()));
    }

    #[test]
    fn the_same_reading_of_damaged_bytes(
        value in everything(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = ours(&value);
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= byte | 1;
        }
        prop_assert_eq!(same_reading::<Everything>(&bytes), Ok(()));
        let keep = cut.index(bytes.len() + 1);
        prop_assert_eq!(same_reading::<Everything>(&bytes[..keep]), Ok(()));
    }

    #[test]
    fn the_same_reading_of_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(same_reading::<Everything>(&bytes), Ok(()));
        prop_assert_eq!(same_reading::<Vec<Variant>>(&bytes), Ok(()));
        prop_assert_eq!(same_reading::<(Vec<f64>, Vec<u8>, String)>(&bytes), Ok(()));
        // Integer vectors long enough to be read in one loop.
        let mut long = vec![20u8];
        long.extend_from_slice(&bytes);
        prop_assert_eq!(same_reading::<Vec<u16>>(&long), Ok(()));
        prop_assert_eq!(same_reading::<Vec<i32>>(&long), Ok(()));
        prop_assert_eq!(same_reading::<Vec<u64>>(&long), Ok(()));
        prop_assert_eq!(same_reading::<Vec<isize>>(&long), Ok(()));
        prop_assert_eq!(same_reading::<(u16, i128, u128, char, bool, Option<u32>)>(&bytes), Ok(()));
    }
}

/// A recursive type: a peer decides how deep it nests.
#[derive(Debug, Serialize, Deserialize)]
enum Chain {
    End,
    Link(Box<Chain>),
}

/// `Link` `depth` times, then `End`, as postcard writes it.
fn chain(depth: usize) -> Vec<u8> {
    let mut bytes = vec![1u8; depth];
    bytes.push(0);
    bytes
}

fn length(mut chain: &Chain) -> usize {
    let mut n = 0;
    while let Chain::Link(next) = chain {
        n += 1;
        chain = next;
    }
    n
}

#[test]
fn nesting_deeper_than_the_stack_is_an_error_not_an_abort() {
    // Without the bound, a million levels overflow the stack of any
    // thread: SIGSEGV caught by Rust's handler, which aborts the process.
    for stack in [256 * 1024, 2 << 20] {
        let outcome = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(|| {
                let deep = take_payload::<Chain>(&chain(1_000_000)).map(|(c, _)| length(&c));
                let shallow = take_payload::<Chain>(&chain(200)).map(|(c, _)| length(&c));
                (deep, shallow)
            })
            .expect("thread")
            .join()
            .expect("no panic");
        match outcome {
            (Err(DecodeError::TooDeep { depth }), Ok(200)) => {
                assert!(depth >= 200, "{stack}: refused at {depth}");
                assert!(depth < 1_000_000);
            }
            other => panic!("{stack}-byte stack: {other:?}"),
        }
    }
}

#[test]
fn a_refusal_says_why_in_words() {
    let e = take_payload::<Chain>(&chain(10_000_000)).expect_err("too deep");
    let words = e.to_string();
    assert!(
        words.contains("nested more than") && words.contains("stack"),
        "{words}"
    );
}

/// Varints at the edges of each width: the longest encodings, with the
/// last byte just within and just past what the type holds.
#[test]
fn varint_edges_read_as_postcard_reads_them() {
    fn edges(max_bytes: usize) -> Vec<Vec<u8>> {
        let mut cases = Vec::new();
        for last in 0u8..=0x81 {
            for len in [max_bytes - 1, max_bytes, max_bytes + 1] {
                let mut bytes = vec![0xffu8; len.saturating_sub(1)];
                bytes.push(last);
                cases.push(bytes);
            }
        }
        cases
    }
    fn check<T: DeserializeOwned + std::fmt::Debug>(max_bytes: usize) {
        for bytes in edges(max_bytes) {
            if let Err(e) = same_reading::<T>(&bytes) {
                panic!("{} from {bytes:x?}: {e}", std::any::type_name::<T>());
            }
        }
    }
    check::<u16>(3);
    check::<i16>(3);
    check::<u32>(5);
    check::<i32>(5);
    check::<char>(10);
    check::<u64>(10);
    check::<i64>(10);
    check::<String>(10);
    check::<Vec<u8>>(10);
    check::<u128>(19);
    check::<i128>(19);
    check::<Variant>(5);
}

/// A type that refuses some values in its own words.
#[derive(Debug, Serialize, Deserialize)]
#[serde(try_from = "String")]
struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(s: String) -> Result<Name, String> {
        if s.contains(' ') {
            return Err(format!("a name has no spaces: {s:?}"));
        }
        Ok(Name(s))
    }
}

#[test]
fn a_types_refusal_keeps_its_words_within_a_bound() {
    let refused = |bytes: &[u8]| match take_payload::<Name>(bytes) {
        Err(DecodeError::Refused(why)) => why,
        other => panic!("{other:?}"),
    };
    let why = refused(&ours(&"two words".to_string()));
    assert_eq!(why, r#"a name has no spaces: "two words""#);
    // The peer chooses what the refusal quotes: a megabyte of it is cut.
    let long = format!(" {}", "é".repeat(500_000));
    let why = refused(&ours(&long));
    assert!(
        why.len() <= 243 && why.ends_with("..."),
        "{} bytes",
        why.len()
    );
    assert!(take_payload::<Name>(&ours(&"one".to_string())).is_ok());
    // serde's own words: a variant index past the type's.
    let e = take_payload::<Variant>(&[9]).expect_err("no variant 9");
    assert!(e.to_string().contains("variant index"), "{e}");
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    Circle { r: f64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct Flattened {
    #[serde(flatten)]
    inner: Newtype,
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Number(u32),
}

/// What serde's self-describing representations meet: words that name
/// them and say what to do, not postcard's "will never implement".
#[test]
fn self_describing_representations_are_refused_in_words_that_name_them() {
    let words = take_payload::<Tagged>(&ours(&Tagged::Circle { r: 1.0 }))
        .expect_err("tag = kind")
        .to_string();
    assert!(
        words.contains("self-describing") && words.contains("#[serde(tag"),
        "{words}"
    );
    let e = take_payload::<Untagged>(&ours(&Untagged::Number(3))).expect_err("untagged");
    assert!(matches!(e, DecodeError::SelfDescribing), "{e:?}");
    let flattened = Flattened {
        inner: Newtype(1),
        name: "x".into(),
    };
    let e = encode_append(&flattened, &mut Vec::new()).expect_err("flatten");
    assert!(matches!(e, EncodeError::UnknownLength), "{e:?}");
    assert!(e.to_string().contains("flatten"), "{e}");
}

/// A `Serialize` that refuses, in its own words.
struct Unwritable;

impl Serialize for Unwritable {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value stays here"))
    }
}

#[test]
fn a_serialize_refusal_keeps_its_words_and_writes_nothing() {
    let mut out = vec![7u8];
    let e = encode_append(&(1u8, Unwritable), &mut out).expect_err("refused");
    assert!(
        matches!(&e, EncodeError::Refused(why) if why == "this value stays here"),
        "{e:?}"
    );
    assert_eq!(out, [7], "the partial encoding is taken back");
}

#[derive(Debug, Serialize, Deserialize)]
struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<u8>,
    count: u8,
    total: u8,
}

/// postcard writes nothing for a skipped field, and its reader takes the
/// next field's bytes for it: `{None, 1, 5}` would come back as
/// `{Some(5), ..}` or garbage. The codec refuses to write it.
#[test]
fn a_field_skipped_when_written_is_refused_before_it_is_misread() {
    let sparse = Sparse {
        note: None,
        count: 1,
        total: 5,
    };
    let theirs = postcard::to_allocvec(&sparse).expect("postcard writes it");
    assert_eq!(theirs, [1, 5], "postcard leaves the field out");
    assert!(matches!(
        postcard::from_bytes::<Sparse>(&theirs),
        Err(_) | Ok(Sparse { note: Some(5), .. })
    ));
    let e = encode_append(&sparse, &mut Vec::new()).expect_err("refused");
    assert!(
        matches!(e, EncodeError::SkippedField { field: "note" }),
        "{e:?}"
    );
    let written = Sparse {
        note: Some(2),
        ..sparse
    };
    let (back, _) = take_payload::<Sparse>(&ours(&written)).expect("a field present is fine");
    assert_eq!((back.note, back.count, back.total), (Some(2), 1, 5));
}

/// A value whose `Display` fails, written through `collect_str` (as
/// serde writes `IpAddr`, or a type with `serialize_with = collect_str`).
struct BrokenDisplay;

impl std::fmt::Display for BrokenDisplay {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Err(std::fmt::Error)
    }
}

impl Serialize for BrokenDisplay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[test]
fn a_display_that_fails_is_a_refusal_not_a_panic() {
    let e = encode_append(&BrokenDisplay, &mut Vec::new()).expect_err("refused");
    assert!(
        matches!(&e, EncodeError::Refused(why) if why.contains("Display")),
        "{e:?}"
    );
    let addr: std::net::IpAddr = [10, 0, 0, 1].into();
    let (back, _) = take_payload::<std::net::IpAddr>(&ours(&addr)).expect("an address");
    assert_eq!(back, addr);
}
