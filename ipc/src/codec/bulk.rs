//! Whole-buffer encoding of the values a debug build is slowest at: a
//! `Vec<u8>`, `Vec<i8>`, `Vec<f32>` or `Vec<f64>` as the whole message.
//!
//! serde hands a `Vec<u8>` to the encoder one element at a time, through
//! generic code that is compiled in the user's crate: unoptimised in a
//! debug build, that is tens of nanoseconds a byte, seconds for 100 MB. The
//! bytes postcard writes for such a vector are its length (LEB128) and its
//! elements as they lie in memory (one byte each, or little-endian IEEE
//! floats), so for these types the same bytes are written, and read back,
//! with one copy. The type is recognised by its `TypeId` (`typeid` also
//! covers types that are not `'static`); everything else goes through
//! serde as before, and the bytes on the wire are identical either way.

use std::mem::ManuallyDrop;

use super::DecodeError;

/// The largest LEB128 encoding of a `u64`.
const MAX_VARINT: usize = 10;

fn same<T: ?Sized, U: ?Sized>() -> bool {
    typeid::of::<T>() == typeid::of::<U>()
}

/// Views `value` as a `U`, which it is.
///
/// # Safety
/// `T` must be `U` (checked with [`same`]; a `TypeId` match also means the
/// same lifetimes here, as none of the bulk types has any).
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

/// The elements of `value` as raw little-endian bytes, with their count, if
/// it is a bulk type.
fn elements<T: ?Sized>(value: &T) -> Option<(usize, &[u8])> {
    // Every bulk type is a `Vec`: anything of another size is not one, and
    // is told so without the four type-id comparisons (calls, in a debug
    // build: a tenth of a `Pool::map` of a million `u64`s).
    if std::mem::size_of_val(value) != std::mem::size_of::<Vec<u8>>() {
        return None;
    }
    if same::<T, Vec<u8>>() {
        // SAFETY: `T` is `Vec<u8>` (checked just above).
        let v: &Vec<u8> = unsafe { view(value) };
        return Some((v.len(), v));
    }
    if same::<T, Vec<i8>>() {
        // SAFETY: `T` is `Vec<i8>` (checked just above).
        let v: &Vec<i8> = unsafe { view(value) };
        return Some((v.len(), bytemuck::cast_slice(v)));
    }
    if cfg!(target_endian = "little") {
        if same::<T, Vec<f64>>() {
            // SAFETY: `T` is `Vec<f64>` (checked just above).
            let v: &Vec<f64> = unsafe { view(value) };
            return Some((v.len(), bytemuck::cast_slice(v)));
        }
        if same::<T, Vec<f32>>() {
            // SAFETY: `T` is `Vec<f32>` (checked just above).
            let v: &Vec<f32> = unsafe { view(value) };
            return Some((v.len(), bytemuck::cast_slice(v)));
        }
    }
    None
}

/// Appends `value`'s postcard bytes if it is a bulk type; false if it is
/// not (the caller encodes it through serde).
pub(crate) fn try_append<T: ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    let Some((count, bytes)) = elements(value) else {
        return false;
    };
    out.reserve(MAX_VARINT + bytes.len());
    write_varint(count as u64, out);
    out.extend_from_slice(bytes);
    true
}

/// Reads a `T` from the front of `payload` if `T` is a bulk type: the
/// value and the bytes after it, or why it is not there. `None` if `T` is
/// not a bulk type. Nothing is allocated before the announced length is
/// known to be present.
pub(crate) fn try_take<T>(payload: &[u8]) -> Option<Result<(T, &[u8]), DecodeError>> {
    // As in `elements`: a constant, so no call for any other size.
    if const { std::mem::size_of::<T>() != std::mem::size_of::<Vec<u8>>() } {
        return None;
    }
    if same::<T, Vec<u8>>() {
        return Some(take_elements::<u8>(payload).map(|(v, rest)| {
            // SAFETY: `T` is `Vec<u8>` (checked just above).
            (unsafe { into::<Vec<u8>, T>(v) }, rest)
        }));
    }
    if same::<T, Vec<i8>>() {
        return Some(take_elements::<i8>(payload).map(|(v, rest)| {
            // SAFETY: `T` is `Vec<i8>` (checked just above).
            (unsafe { into::<Vec<i8>, T>(v) }, rest)
        }));
    }
    if cfg!(target_endian = "little") {
        if same::<T, Vec<f64>>() {
            return Some(take_elements::<f64>(payload).map(|(v, rest)| {
                // SAFETY: `T` is `Vec<f64>` (checked just above).
                (unsafe { into::<Vec<f64>, T>(v) }, rest)
            }));
        }
        if same::<T, Vec<f32>>() {
            return Some(take_elements::<f32>(payload).map(|(v, rest)| {
                // SAFETY: `T` is `Vec<f32>` (checked just above).
                (unsafe { into::<Vec<f32>, T>(v) }, rest)
            }));
        }
    }
    None
}

/// `payload`, a whole payload the caller owns, as a `T` if `T` is
/// `Vec<u8>`: its own buffer with the length prefix cut off in place (a
/// move within memory already touched, where a copy would fault in a new
/// buffer page by page). Bytes after the announced length are dropped,
/// as [`try_take`]'s caller ignores them. `Err(payload)` back for any
/// other `T`.
pub(crate) fn try_own<T>(mut payload: Vec<u8>) -> Result<Result<T, DecodeError>, Vec<u8>> {
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
    payload.truncate(end);
    payload.drain(..prefix);
    // SAFETY: `T` is `Vec<u8>` (checked above).
    Ok(Ok(unsafe { into::<Vec<u8>, T>(payload) }))
}

/// A length-prefixed run of `E`s, copied out whole.
fn take_elements<E: bytemuck::Pod>(payload: &[u8]) -> Result<(Vec<E>, &[u8]), DecodeError> {
    let malformed = || DecodeError::Malformed(postcard::Error::DeserializeUnexpectedEnd);
    let (count, rest) = read_varint(payload).ok_or_else(malformed)?;
    let need = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(std::mem::size_of::<E>()))
        .filter(|&need| need <= rest.len())
        .ok_or_else(malformed)?;
    let mut out = vec![E::zeroed(); need / std::mem::size_of::<E>().max(1)];
    bytemuck::cast_slice_mut::<E, u8>(&mut out).copy_from_slice(&rest[..need]);
    Ok((out, &rest[need..]))
}

/// LEB128, as postcard writes lengths.
fn write_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LEB128 `u64` and the bytes after it; `None` if cut short or too long.
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
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
    use super::*;

    /// The same bytes as postcard's, and back, for every bulk type.
    #[test]
    fn bulk_bytes_are_postcards_bytes() {
        fn check<T>(value: T)
        where
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            let mut ours = Vec::new();
            assert!(try_append(&value, &mut ours));
            assert_eq!(ours, postcard::to_allocvec(&value).expect("postcard"));
            ours.push(0xee);
            let (back, rest) = try_take::<T>(&ours).expect("bulk").expect("decodes");
            assert_eq!(back, value);
            assert_eq!(rest, [0xee]);
        }
        check((0..300u32).map(|i| i as u8).collect::<Vec<u8>>());
        check(Vec::<u8>::new());
        check(vec![-1i8, 0, 127, -128]);
        check(vec![1.5f64, -0.0, f64::MAX, 1e-300]);
        check(vec![2.5f32; 200]);
    }

    #[test]
    fn an_owned_payload_becomes_the_vec_it_holds() {
        let value: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut payload = postcard::to_allocvec(&value).expect("postcard");
        let owned: Vec<u8> = try_own(payload.clone())
            .expect("a Vec<u8>")
            .expect("decodes");
        assert_eq!(owned, value);
        payload.push(0xee);
        let owned: Vec<u8> = try_own(payload.clone())
            .expect("a Vec<u8>")
            .expect("decodes");
        assert_eq!(owned, value, "what follows the value is dropped");
        payload.truncate(100);
        assert!(
            try_own::<Vec<u8>>(payload).expect("a Vec<u8>").is_err(),
            "cut short"
        );
        assert!(try_own::<Vec<u8>>(vec![0xff; 11])
            .expect("a Vec<u8>")
            .is_err());
        assert!(try_own::<Vec<i8>>(vec![0]).is_err(), "not for other types");
        assert!(try_own::<u64>(vec![0]).is_err());
    }

    #[test]
    fn other_types_are_left_to_serde() {
        assert!(!try_append(&vec![1u32], &mut Vec::new()));
        assert!(!try_append(&(vec![1u8],), &mut Vec::new()));
        assert!(try_take::<Vec<u16>>(&[0]).is_none());
        assert!(try_take::<String>(&[0]).is_none());
    }

    #[test]
    fn a_length_beyond_the_bytes_is_refused_before_allocating() {
        // Announces 2^62 elements: refused from the length alone.
        let mut huge = Vec::new();
        write_varint(1 << 62, &mut huge);
        assert!(matches!(try_take::<Vec<f64>>(&huge), Some(Err(_))));
        assert!(matches!(try_take::<Vec<u8>>(&[5, 1, 2]), Some(Err(_))));
        assert!(matches!(try_take::<Vec<u8>>(&[0xff; 11]), Some(Err(_))));
        assert!(matches!(try_take::<Vec<u8>>(&[]), Some(Err(_))));
    }
}
