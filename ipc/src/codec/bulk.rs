//! Whole-buffer encoding of the values a debug build is slowest at: a
//! vector (or slice) of `u8`, `i8`, `f32` or `f64`, wherever it lies in a
//! value.
//!
//! serde hands a `Vec<u8>` to the encoder one element at a time, through
//! generic code that is compiled in the user's crate: unoptimised in a
//! debug build, that is tens of nanoseconds a byte, seconds for 100 MB. The
//! bytes postcard writes for such a vector are its length (LEB128) and its
//! elements as they lie in memory (one byte each, or little-endian IEEE
//! floats), so for these types the codec's encoder and decoder write and
//! read the same bytes with one copy. Types are recognised by their
//! `TypeId` (`typeid` also covers types that are not `'static`, such as
//! the `&Vec<u8>` serde passes the encoder); on the decoding side, by the
//! type of the visitor serde's `Vec<E>` hands the decoder, learnt once by
//! asking serde. Everything else goes through serde as before, and the
//! bytes on the wire are identical either way.

use std::any::TypeId;
use std::mem::ManuallyDrop;
use std::sync::OnceLock;

use serde::de::{Deserialize, Visitor};

use super::DecodeError;

/// The largest LEB128 encoding of a `u64`.
const MAX_VARINT: usize = 10;

fn same<T: ?Sized, U: ?Sized>() -> bool {
    typeid::of::<T>() == typeid::of::<U>()
}

/// Views `value` as a `U`, which it is.
///
/// # Safety
/// `T` must be `U` up to lifetimes (checked with [`same`], which ignores
/// them). The only types viewed with a lifetime are the references serde
/// passes `collect_seq`; the view borrows `value`, so what it refers to
/// outlives the view.
unsafe fn view<T: ?Sized, U>(value: &T) -> &U {
    // SAFETY: per the caller, `value` points at a valid `U`.
    unsafe { &*(value as *const T as *const U) }
}

/// Moves `value` into a `T`, which it is.
///
/// # Safety
/// As for [`view`]: `U` must be `T`.
unsafe fn into<U, T>(value: U) -> T {
    let value = ManuallyDrop::new(value);
    // SAFETY: per the caller the types are one, so this is a move; the
    // source is never dropped (ManuallyDrop), so nothing is freed twice.
    unsafe { std::ptr::read(&*value as *const U as *const T) }
}

/// The elements of a slice of plain numbers as bytes, with their count.
fn counted<E: bytemuck::Pod>(elements: &[E]) -> (usize, &[u8]) {
    (elements.len(), bytemuck::cast_slice(elements))
}

/// If `items` (what serde's `Vec<E>` or `[E]` hands `collect_seq`) is a
/// `&Vec<E>` or `&[E]` of a bulk element type: the element count and the
/// elements' bytes, as postcard writes them after the count.
pub(super) fn sequence_bytes<I>(items: &I) -> Option<(usize, &[u8])> {
    // A `&Vec` is one pointer, a `&[E]` two: anything else is neither, and
    // is told so without a type-id comparison (a call in a debug build).
    let size = std::mem::size_of::<I>();
    if size == std::mem::size_of::<&Vec<u8>>() {
        if same::<I, &Vec<u8>>() {
            // SAFETY: `I` is `&Vec<u8>` (checked just above).
            return Some(counted(unsafe { view::<I, &Vec<u8>>(items) }.as_slice()));
        }
        if same::<I, &Vec<i8>>() {
            // SAFETY: `I` is `&Vec<i8>` (checked just above).
            return Some(counted(unsafe { view::<I, &Vec<i8>>(items) }.as_slice()));
        }
        if cfg!(target_endian = "little") {
            if same::<I, &Vec<f64>>() {
                // SAFETY: `I` is `&Vec<f64>` (checked just above).
                return Some(counted(unsafe { view::<I, &Vec<f64>>(items) }.as_slice()));
            }
            if same::<I, &Vec<f32>>() {
                // SAFETY: `I` is `&Vec<f32>` (checked just above).
                return Some(counted(unsafe { view::<I, &Vec<f32>>(items) }.as_slice()));
            }
        }
    } else if size == std::mem::size_of::<&[u8]>() {
        if same::<I, &[u8]>() {
            // SAFETY: `I` is `&[u8]` (checked just above).
            return Some(counted(unsafe { view::<I, &[u8]>(items) }));
        }
        if same::<I, &[i8]>() {
            // SAFETY: `I` is `&[i8]` (checked just above).
            return Some(counted(unsafe { view::<I, &[i8]>(items) }));
        }
        if cfg!(target_endian = "little") {
            if same::<I, &[f64]>() {
                // SAFETY: `I` is `&[f64]` (checked just above).
                return Some(counted(unsafe { view::<I, &[f64]>(items) }));
            }
            if same::<I, &[f32]>() {
                // SAFETY: `I` is `&[f32]` (checked just above).
                return Some(counted(unsafe { view::<I, &[f32]>(items) }));
            }
        }
    }
    None
}

/// A value read whole, and the bytes after it.
type Taken<'de, T> = Result<(T, &'de [u8]), postcard::Error>;

/// The element types whose vectors the decoder reads in one loop: the
/// first four as bytes in a row (copied whole), the rest as varints in a
/// row (decoded by the decoder itself, not through serde per element).
#[derive(Clone, Copy)]
pub(super) enum Element {
    U8,
    I8,
    F32,
    F64,
    U16,
    U32,
    U64,
    Usize,
    I16,
    I32,
    I64,
    Isize,
}

impl Element {
    /// The type of serde's visitor for a `Vec` of this element.
    fn visitor(self) -> Option<TypeId> {
        match self {
            Element::U8 => visitor_of::<Vec<u8>>(),
            Element::I8 => visitor_of::<Vec<i8>>(),
            Element::F32 => visitor_of::<Vec<f32>>(),
            Element::F64 => visitor_of::<Vec<f64>>(),
            Element::U16 => visitor_of::<Vec<u16>>(),
            Element::U32 => visitor_of::<Vec<u32>>(),
            Element::U64 => visitor_of::<Vec<u64>>(),
            Element::Usize => visitor_of::<Vec<usize>>(),
            Element::I16 => visitor_of::<Vec<i16>>(),
            Element::I32 => visitor_of::<Vec<i32>>(),
            Element::I64 => visitor_of::<Vec<i64>>(),
            Element::Isize => visitor_of::<Vec<isize>>(),
        }
    }
}

/// Every [`Element`], in the order of [`VISITORS`].
const ELEMENTS: [Element; 12] = [
    Element::U8,
    Element::I8,
    Element::F32,
    Element::F64,
    Element::U16,
    Element::U32,
    Element::U64,
    Element::Usize,
    Element::I16,
    Element::I32,
    Element::I64,
    Element::Isize,
];

/// The type of the visitor serde's `Deserialize for Vec<E>` hands the
/// decoder's `deserialize_seq`, for each of [`ELEMENTS`]; `None` if serde
/// does not ask for a sequence.
static VISITORS: OnceLock<[Option<TypeId>; 12]> = OnceLock::new();

/// Which vector of an [`Element`] `V` is serde's visitor for, if any.
pub(super) fn vec_element<'de, V: Visitor<'de>>() -> Option<Element> {
    // serde's visitor for a `Vec` holds nothing: for any other size, no
    // type-id call.
    if const { std::mem::size_of::<V>() != 0 } {
        return None;
    }
    let visitors = VISITORS.get_or_init(|| ELEMENTS.map(Element::visitor));
    let id = Some(typeid::of::<V>());
    // A plain loop, not an iterator chain: calls in a debug build.
    for i in 0..ELEMENTS.len() {
        if visitors[i] == id {
            return Some(ELEMENTS[i]);
        }
    }
    None
}

/// Whether `T` is `Vec<E>`.
pub(super) fn is_vec_of<T, E>() -> bool {
    same::<T, Vec<E>>()
}

/// `elements` as the `T` it is, if `T` is `Vec<E>`.
pub(super) fn vec_as<E, T>(elements: Vec<E>) -> Option<T> {
    if !is_vec_of::<T, E>() {
        return None;
    }
    // SAFETY: `T` is `Vec<E>` (checked just above).
    Some(unsafe { into::<Vec<E>, T>(elements) })
}

/// If `element` is laid out in a row (bytes, or little-endian floats) and
/// `T` is a vector of it: `count` elements copied whole from the front of
/// `input`, as the `T` it is, and the bytes after them; `None` otherwise.
/// Nothing is allocated unless `input` holds the elements announced.
pub(super) fn take_in_a_row<T>(
    element: Element,
    count: usize,
    input: &[u8],
) -> Option<Taken<'_, T>> {
    fn take<E: bytemuck::Pod, T>(count: usize, input: &[u8]) -> Option<Taken<'_, T>> {
        // The visitor's value is the vector itself, checked here rather
        // than inferred from serde's code.
        if !is_vec_of::<T, E>() {
            return None;
        }
        Some(take_counted::<E>(count, input).map(|(elements, rest)| {
            // SAFETY: `T` is `Vec<E>` (checked just above).
            (unsafe { into::<Vec<E>, T>(elements) }, rest)
        }))
    }
    let floats_in_a_row = cfg!(target_endian = "little");
    match element {
        Element::U8 => take::<u8, T>(count, input),
        Element::I8 => take::<i8, T>(count, input),
        Element::F32 if floats_in_a_row => take::<f32, T>(count, input),
        Element::F64 if floats_in_a_row => take::<f64, T>(count, input),
        _ => None,
    }
}

/// The type of the visitor `T`'s `Deserialize` hands `deserialize_seq`,
/// found by asking it to deserialize from a probe that only takes note.
fn visitor_of<T: for<'de> Deserialize<'de>>() -> Option<TypeId> {
    struct Probe<'a>(&'a mut Option<TypeId>);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a sequence"))
        }

        fn deserialize_seq<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            *self.0 = Some(typeid::of::<V>());
            Err(serde::de::Error::custom("noted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct tuple
            tuple_struct map struct enum identifier ignored_any
        }
    }

    let mut noted = None;
    let _ = T::deserialize(Probe(&mut noted));
    noted
}

/// `payload`, a whole payload the caller owns, as a `T` if `T` is
/// `Vec<u8>`: its own buffer with the length prefix cut off in place (a
/// move within memory already touched, where a copy would fault in a new
/// buffer page by page). Bytes after the announced length are dropped,
/// as [`try_take`]'s caller ignores them. `Err(payload)` back for any
/// other `T`.
///
/// With `exact`, bytes after the announced length are an error
/// ([`DecodeError::TrailingBytes`]), as [`super::decode_payload`] says.
pub(crate) fn try_own<T>(
    mut payload: Vec<u8>,
    exact: bool,
) -> Result<Result<T, DecodeError>, Vec<u8>> {
    if const { std::mem::size_of::<T>() != std::mem::size_of::<Vec<u8>>() } || !same::<T, Vec<u8>>()
    {
        return Err(payload);
    }
    let malformed = DecodeError::Malformed(postcard::Error::DeserializeUnexpectedEnd);
    let Some((count, rest)) = read_varint(&payload) else {
        return Ok(Err(malformed));
    };
    let prefix = payload.len() - rest.len();
    let Some(end) = usize::try_from(count)
        .ok()
        .and_then(|n| prefix.checked_add(n))
        .filter(|&end| end <= payload.len())
    else {
        return Ok(Err(malformed));
    };
    if exact && end < payload.len() {
        return Ok(Err(DecodeError::TrailingBytes {
            extra: payload.len() - end,
        }));
    }
    payload.truncate(end);
    payload.drain(..prefix);
    // SAFETY: `T` is `Vec<u8>` (checked above).
    Ok(Ok(unsafe { into::<Vec<u8>, T>(payload) }))
}

/// `count` `E`s from the front of `input`, copied out whole, and the
/// bytes after them.
fn take_counted<E: bytemuck::Pod>(
    count: usize,
    input: &[u8],
) -> Result<(Vec<E>, &[u8]), postcard::Error> {
    let need = count
        .checked_mul(std::mem::size_of::<E>())
        .filter(|&need| need <= input.len())
        .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
    let mut out: Vec<E> = Vec::with_capacity(count);
    let to = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // A large vector is fresh pages: asked for in one call, not a fault each.
    crate::os::memory::prefault_for_writing(to, need);
    // SAFETY: `to` has room for `count` `E`s, which are `need` bytes; the
    // input has at least `need` (checked) and is not `out`'s memory; every
    // bit pattern is an `E` (`Pod`), so the `count` copied are initialised.
    unsafe {
        std::ptr::copy_nonoverlapping(input.as_ptr(), to, need);
        out.set_len(count);
    }
    Ok((out, &input[need..]))
}

/// Appends `n` as LEB128, as postcard writes lengths and integers: for
/// code that writes the wire format's bytes by hand (a frame's value
/// behind a header of its own, as `outlast`'s pool does).
///
///
/// The bytes are written into room reserved first and the length set once:
/// a `push` a byte kept the vector's length in memory between them, and
/// writing a no-op task's result (its id, 3-4 bytes) took a fifth of a
/// worker's time; appending a slice instead called `memmove` for each.
#[inline]
pub fn write_varint(mut n: u64, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
        return;
    }
    out.reserve(MAX_VARINT);
    let len = out.len();
    let spare = out.spare_capacity_mut();
    let mut written = 0;
    while n >= 0x80 && written < MAX_VARINT - 1 {
        spare[written].write((n as u8) | 0x80);
        n >>= 7;
        written += 1;
    }
    spare[written].write(n as u8);
    // SAFETY: the `written + 1` bytes after the length were just written
    // (`spare` has at least MAX_VARINT, reserved above, and `written` is
    // below it).
    unsafe { out.set_len(len + written + 1) };
}

/// A LEB128 `u64` at the front of `bytes`, and the bytes after it; `None`
/// if cut short or longer than a `u64` takes.
pub fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(MAX_VARINT) {
        n |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((n, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::{encode_append, take_payload};
    use super::*;

    /// The same bytes as postcard's, and back, for every bulk type, alone
    /// or inside another value.
    #[test]
    fn varints_are_postcards_and_read_back() {
        let mut values: Vec<u64> = vec![0, 1, 0x7f, 0x80, 0x3fff, 0x4000, u64::MAX - 1, u64::MAX];
        values.extend((0..64).flat_map(|bit| [(1u64 << bit) - 1, 1u64 << bit]));
        for n in values {
            let mut out = vec![0xAA];
            write_varint(n, &mut out);
            let postcards = postcard::to_allocvec(&n).expect("a u64 encodes");
            assert_eq!(out[1..], postcards[..], "{n}");
            assert_eq!(read_varint(&out[1..]), Some((n, &[][..])), "{n}");
        }
    }

    #[test]
    fn bulk_bytes_are_postcards_bytes() {
        fn check<T>(value: T)
        where
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            let mut ours = Vec::new();
            encode_append(&value, &mut ours).expect("encodes");
            assert_eq!(ours, postcard::to_allocvec(&value).expect("postcard"));
            ours.push(0xee);
            let (back, rest) = take_payload::<T>(&ours).expect("decodes");
            assert_eq!(back, value);
            assert_eq!(rest, [0xee]);
        }
        let bytes: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        check(bytes.clone());
        check(Vec::<u8>::new());
        check(vec![-1i8, 0, 127, -128]);
        check(vec![1.5f64, -0.0, f64::MAX, 1e-300]);
        check(vec![2.5f32; 200]);
        check((7u16, bytes.clone(), vec![0.5f32], Some(vec![1i8])));
        check(vec![bytes.clone(), Vec::new(), bytes.clone()]);
        check(bytes.clone().into_boxed_slice());
    }

    #[test]
    fn only_vectors_and_slices_of_bulk_elements_are_copied_whole() {
        assert_eq!(sequence_bytes(&&vec![1u8, 2]), Some((2, &[1u8, 2][..])));
        assert_eq!(sequence_bytes(&&[3u8][..]), Some((1, &[3u8][..])));
        assert_eq!(
            sequence_bytes(&&vec![1.0f64]),
            Some((1, &1.0f64.to_le_bytes()[..]))
        );
        assert!(sequence_bytes(&&vec![1u32]).is_none());
        assert!(sequence_bytes(&&[1u16][..]).is_none());
        assert!(
            sequence_bytes(&vec![1u8]).is_none(),
            "serde passes a reference"
        );
        assert!(vec_element::<serde::de::IgnoredAny>().is_none());
    }

    #[test]
    fn an_owned_payload_becomes_the_vec_it_holds() {
        let value: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut payload = postcard::to_allocvec(&value).expect("postcard");
        let owned: Vec<u8> = try_own(payload.clone(), true)
            .expect("a Vec<u8>")
            .expect("decodes");
        assert_eq!(owned, value);
        payload.push(0xee);
        let owned: Vec<u8> = try_own(payload.clone(), false)
            .expect("a Vec<u8>")
            .expect("decodes");
        assert_eq!(owned, value, "what follows the value is dropped");
        assert!(
            matches!(
                try_own::<Vec<u8>>(payload.clone(), true).expect("a Vec<u8>"),
                Err(DecodeError::TrailingBytes { extra: 1 })
            ),
            "exact: what follows the value is an error"
        );
        payload.truncate(100);
        assert!(
            try_own::<Vec<u8>>(payload, false)
                .expect("a Vec<u8>")
                .is_err(),
            "cut short"
        );
        assert!(try_own::<Vec<u8>>(vec![0xff; 11], false)
            .expect("a Vec<u8>")
            .is_err());
        assert!(
            try_own::<Vec<i8>>(vec![0], false).is_err(),
            "not for other types"
        );
        assert!(try_own::<u64>(vec![0], false).is_err());
    }

    #[test]
    fn a_length_beyond_the_bytes_is_refused_before_allocating() {
        // Announces 2^62 elements: refused from the length alone.
        let mut huge = Vec::new();
        write_varint(1 << 62, &mut huge);
        let cut_short = |r: Result<_, DecodeError>| {
            matches!(
                r,
                Err(DecodeError::Malformed(
                    postcard::Error::DeserializeUnexpectedEnd
                ))
            )
        };
        assert!(cut_short(take_payload::<Vec<f64>>(&huge).map(|_| ())));
        assert!(cut_short(
            take_payload::<(u8, Vec<u8>)>(&[[1].as_slice(), &huge].concat()).map(|_| ())
        ));
        assert!(cut_short(take_payload::<Vec<u8>>(&[5, 1, 2]).map(|_| ())));
        assert!(cut_short(take_payload::<Vec<u8>>(&[]).map(|_| ())));
        assert!(take_payload::<Vec<u8>>(&[0xff; 11]).is_err());
    }
}
