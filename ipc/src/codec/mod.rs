//! The wire format: every message is one frame, a `u32` little-endian payload
//! length followed by that many bytes of postcard.
//!
//! The length is checked against a maximum frame size *before* anything is
//! allocated for the payload, so a peer that sends a wild length costs us an
//! error, not memory. Decoding is strict: trailing bytes after a value are an
//! error, because in a length-delimited stream they can only mean garbage.

use serde::de::DeserializeOwned;
use serde::Serialize;

mod bulk;
pub use bulk::{read_varint, write_varint};
mod de;
pub(crate) mod debug;
mod described;
pub use described::Described;
mod ser;
mod sink;
pub(crate) use sink::Sink;
pub(crate) mod spill_sink;
mod stack_guard;
mod words;

/// Default maximum payload size of one frame: 1 GiB. A receiver's buffer
/// grows with the bytes that arrive, not with the length announced.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1 << 30;

/// Bytes in a frame header (the little-endian `u32` length).
pub const HEADER_LEN: usize = 4;

/// Why a value could not be turned into a frame.
#[derive(thiserror::Error)]
pub enum EncodeError {
    /// The serialized value is longer than the connection's maximum frame size.
    #[error("message of {len} bytes exceeds the maximum frame size of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// A sequence or map began without its length (`#[serde(flatten)]`
    /// writes a struct so, as does a `collect_seq` of an iterator without
    /// an exact size); the wire format writes each length first.
    #[error("cannot serialize message: a sequence or map of unknown length (as `#[serde(flatten)]` writes a struct), and the wire format (postcard) writes each length first; wrap the value in `Described` (`outlast_ipc::Described`, or `outlast::ipc::Described`) to send it with its names and types")]
    UnknownLength,
    /// The value's own `Serialize` refused, in these words (at most 240
    /// bytes).
    #[error("cannot serialize message: {0}")]
    Refused(String),
    /// A struct left a field out (`#[serde(skip_serializing_if)]`): the
    /// wire format has no field names, so a reader would take the next
    /// field's bytes for the missing one.
    #[error("cannot serialize message: field `{field}` was skipped (`#[serde(skip_serializing_if)]`), and the wire format (postcard) has no field names to tell the reader; drop the attribute (a `None` takes one byte), or wrap the value in `Described` (`outlast_ipc::Described`, or `outlast::ipc::Described`) to send it with its names")]
    SkippedField { field: &'static str },
}

/// Why bytes could not be turned back into a value.
#[derive(thiserror::Error)]
pub enum DecodeError {
    /// The header announces more bytes than the maximum frame size allows.
    #[error("frame header announces {len} bytes, above the maximum frame size of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// Fewer bytes are available than the header announced.
    #[error("frame truncated: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    /// The payload is not a valid postcard encoding of the expected type.
    #[error("undecodable frame payload: {0}")]
    Malformed(postcard::Error),
    /// The payload is well formed, but the expected type refused what it
    /// holds, in these words (serde's, such as an unknown variant index,
    /// or the type's own, such as a failed `try_from`; at most 240 bytes).
    #[error("undecodable frame payload: {0}")]
    Refused(String),
    /// The type reads itself by asking what comes next (serde's
    /// `deserialize_any`: `#[serde(tag = "...")]`, `#[serde(untagged)]`,
    /// `#[serde(flatten)]`, `serde_json::Value`), and postcard, the wire
    /// format, writes no field names or types to answer with.
    #[error("undecodable frame payload: the type reads a self-describing format (as `#[serde(tag = \"...\")]`, `#[serde(untagged)]`, `#[serde(flatten)]` and `serde_json::Value` do), and the wire format (postcard) writes no names or types: wrap the value in `Described` (`outlast_ipc::Described`, or `outlast::ipc::Described`), on both sides, to send it with its names and types, or use serde's default representation")]
    SelfDescribing,
    /// The value is nested (a recursive type: a list, a tree) deeper than
    /// the decoding thread's stack can hold; decoding it would overflow
    /// the stack, which aborts the process.
    #[error("undecodable frame payload: a value nested more than {depth} levels deep, more than this thread's stack can decode")]
    TooDeep { depth: usize },
    /// The payload decoded, but bytes were left over: the stream is garbage.
    #[error("undecodable frame payload: {extra} trailing bytes after the value")]
    TrailingBytes { extra: usize },
}

/// Appends the postcard bytes of `value` to `out`; on an error `out` is
/// left as it was.
///
/// The codec's own encoder writes them (the same bytes as postcard's): a
/// vector or slice of `u8`, `i8`, `f32` or `f64` anywhere in the value is
/// copied whole, also in a debug build.
pub fn encode_append<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let at = out.len();
    let encoded = encode_to(value, out);
    if encoded.is_err() {
        out.truncate(at);
    }
    encoded
}

/// Writes the postcard bytes of `value` into `sink`; on an error, what was
/// written so far stays there (the caller throws it away).
pub(crate) fn encode_to<T: Serialize + ?Sized, S: Sink + ?Sized>(
    value: &T,
    sink: &mut S,
) -> Result<(), EncodeError> {
    value
        .serialize(&mut ser::Encoder::new(sink))
        .map_err(|e| match e {
            ser::Fault::UnknownLength => EncodeError::UnknownLength,
            ser::Fault::Refused(why) => EncodeError::Refused(why),
            ser::Fault::SkippedField(field) => EncodeError::SkippedField { field },
        })
}

/// Serializes `value` as one frame (header + payload) into `out`, replacing its contents.
///
/// `out` keeps its capacity between calls, so a connection can reuse one buffer.
pub fn encode_frame_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    max_frame_size: usize,
) -> Result<(), EncodeError> {
    out.clear();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    encode_append(value, out)?;
    let len = out.len() - HEADER_LEN;
    let header = encode_header(len, max_frame_size)?;
    out[..HEADER_LEN].copy_from_slice(&header);
    Ok(())
}

/// Serializes `value` into a fresh frame.
pub fn encode_frame<T: Serialize + ?Sized>(
    value: &T,
    max_frame_size: usize,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_frame_into(value, &mut out, max_frame_size)?;
    Ok(out)
}

/// The header for a payload of `len` bytes, or `TooLarge`.
pub fn encode_header(len: usize, max_frame_size: usize) -> Result<[u8; HEADER_LEN], EncodeError> {
    let max = max_frame_size.min(u32::MAX as usize);
    if len > max {
        return Err(EncodeError::TooLarge { len, max });
    }
    Ok((len as u32).to_le_bytes())
}

/// Reads a header and checks the announced length against the maximum.
pub fn decode_header(
    header: [u8; HEADER_LEN],
    max_frame_size: usize,
) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max_frame_size {
        return Err(DecodeError::TooLarge {
            len,
            max: max_frame_size,
        });
    }
    Ok(len)
}

/// Decodes one payload (without its header). Every byte must belong to the value.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = take_payload(payload)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { extra: rest.len() });
    }
    Ok(value)
}

/// Decodes a value from the front of `payload`, which the caller gives
/// up: a `Vec<u8>` keeps `payload`'s own buffer (no copy); anything else
/// is [`take_payload`]'s, with the bytes after the value ignored.
pub(crate) fn take_owned_payload<T: DeserializeOwned>(payload: Vec<u8>) -> Result<T, DecodeError> {
    match bulk::try_own(payload, false) {
        Ok(owned) => owned,
        Err(payload) => take_payload(&payload).map(|(value, _rest)| value),
    }
}

/// [`decode_payload`] of a payload the caller gives up: a `Vec<u8>` keeps
/// `payload`'s own buffer (no copy). Every byte must belong to the value.
pub(crate) fn take_owned_exact<T: DeserializeOwned>(payload: Vec<u8>) -> Result<T, DecodeError> {
    match bulk::try_own(payload, true) {
        Ok(owned) => owned,
        Err(payload) => decode_payload(&payload),
    }
}

/// Decodes a value from the front of `payload`: the value and the bytes
/// after it (postcard's `take_from_bytes`, with a vector of `u8`, `i8`,
/// `f32` or `f64` anywhere in the value copied whole, and a value nested
/// deeper than this thread's stack allows refused as
/// [`DecodeError::TooDeep`]).
pub fn take_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<(T, &[u8]), DecodeError> {
    let mut decoder = de::Decoder::new(payload);
    match T::deserialize(&mut decoder) {
        Ok(value) => Ok((value, decoder.rest())),
        Err(de::Fault::Format(e)) => Err(DecodeError::Malformed(e)),
        Err(de::Fault::Invalid(why)) => Err(DecodeError::Refused(*why)),
        Err(de::Fault::SelfDescribing) => Err(DecodeError::SelfDescribing),
        Err(de::Fault::TooDeep { depth }) => Err(DecodeError::TooDeep { depth }),
    }
}

/// Decodes the first frame of `bytes`, returning the value and how many bytes it used.
pub fn decode_frame<T: DeserializeOwned>(
    bytes: &[u8],
    max_frame_size: usize,
) -> Result<(T, usize), DecodeError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(DecodeError::Truncated {
            expected: HEADER_LEN,
            got: bytes.len(),
        });
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(header);
    let len = decode_header(h, max_frame_size)?;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() < len {
        return Err(DecodeError::Truncated {
            expected: len,
            got: payload.len(),
        });
    }
    let value = decode_payload(&payload[..len])?;
    Ok((value, HEADER_LEN + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_over_maximum_is_rejected() {
        let frame = 100u32.to_le_bytes();
        assert!(matches!(
            decode_header(frame, 99),
            Err(DecodeError::TooLarge { len: 100, max: 99 })
        ));
        assert_eq!(decode_header(frame, 100).ok(), Some(100));
    }

    #[test]
    fn encode_refuses_oversized_values() {
        let big = vec![7u8; 1000];
        assert!(matches!(
            encode_frame(&big, 100),
            Err(EncodeError::TooLarge { max: 100, .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut frame = encode_frame(&5u32, 1024).unwrap_or_default();
        frame.push(0);
        frame[0] += 1;
        assert!(matches!(
            decode_frame::<u32>(&frame, 1024),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }
}
