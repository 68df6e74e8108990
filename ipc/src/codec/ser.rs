//! postcard's format, written by the codec itself: the same bytes as
//! `postcard::to_allocvec`, with one difference in how they are made. A
//! `Vec` or slice of `u8`, `i8`, `f32` or `f64` anywhere in a value (a
//! struct's field, a tuple's member, an enum's payload) is copied whole,
//! where postcard's serializer takes it one element at a time through
//! serde. In a debug build that per-element path is tens of nanoseconds a
//! byte (1.6 s for 100 MB in a struct); whole, it is a `memcpy`.
//!
//! Everything else is postcard's encoding, rule for rule: LEB128 for
//! unsigned integers of 16 bits and more, zigzag then LEB128 for signed
//! ones, `u8`/`i8`/`bool` as one byte, floats little-endian, strings and
//! byte strings as a length and their bytes, sequences and maps as a
//! length and their members, a variant as its index. A unit test compares
//! the bytes with postcard's for every kind of value.

use serde::ser::{self, Serialize};

use super::bulk;
use super::sink::Sink;

/// Why a value could not be written.
#[derive(Debug)]
pub(super) enum Fault {
    /// A sequence or map began without its length, which postcard writes
    /// first.
    UnknownLength,
    /// The value's own `Serialize` refused, in these words (cut to 240
    /// bytes).
    Refused(String),
    /// A struct left this field out (`#[serde(skip_serializing_if)]`):
    /// with no field names on the wire, the reader would take the next
    /// field's bytes for it.
    SkippedField(&'static str),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::UnknownLength => f.write_str("a sequence or map of unknown length"),
            Fault::Refused(why) => f.write_str(why),
            Fault::SkippedField(field) => write!(f, "field `{field}` skipped"),
        }
    }
}

impl std::error::Error for Fault {}

impl ser::Error for Fault {
    fn custom<T: std::fmt::Display>(msg: T) -> Fault {
        Fault::Refused(super::words::capped(msg))
    }
}

/// The serializer: appends to the sink it holds.
pub(super) struct Encoder<'a, S: Sink + ?Sized = Vec<u8>> {
    out: &'a mut S,
}

impl<'a, S: Sink + ?Sized> Encoder<'a, S> {
    pub(super) fn new(out: &'a mut S) -> Encoder<'a, S> {
        Encoder { out }
    }

    #[inline]
    fn varint(&mut self, n: u64) {
        self.out.varint(n);
    }

    #[inline]
    fn varint_u128(&mut self, mut n: u128) {
        while n >= 0x80 {
            self.out.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    #[inline]
    fn length(&mut self, len: Option<usize>) -> Result<(), Fault> {
        let len = len.ok_or(Fault::UnknownLength)?;
        self.varint(len as u64);
        Ok(())
    }
}

#[inline]
fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

impl<S: Sink + ?Sized> ser::Serializer for &mut Encoder<'_, S> {
    type Ok = ();
    type Error = Fault;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), Fault> {
        self.out.push(u8::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), Fault> {
        self.out.push(v as u8);
        Ok(())
    }

    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), Fault> {
        self.varint(zigzag(v.into()));
        Ok(())
    }

    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), Fault> {
        self.varint(zigzag(v.into()));
        Ok(())
    }

    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), Fault> {
        self.varint(zigzag(v));
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Fault> {
        self.varint_u128(((v << 1) ^ (v >> 127)) as u128);
        Ok(())
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), Fault> {
        self.out.push(v);
        Ok(())
    }

    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), Fault> {
        self.varint(v.into());
        Ok(())
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), Fault> {
        self.varint(v.into());
        Ok(())
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), Fault> {
        self.varint(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Fault> {
        self.varint_u128(v);
        Ok(())
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), Fault> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), Fault> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Fault> {
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), Fault> {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Fault> {
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<(), Fault> {
        self.out.push(0);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Fault> {
        self.out.push(1);
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), Fault> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Fault> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> Result<(), Fault> {
        self.varint(variant_index.into());
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Fault> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), Fault> {
        self.varint(variant_index.into());
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Fault> {
        self.length(len)?;
        Ok(self)
    }

    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self, Fault> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, Fault> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Fault> {
        self.varint(variant_index.into());
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Fault> {
        self.length(len)?;
        Ok(self)
    }

    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, Fault> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Fault> {
        self.varint(variant_index.into());
        Ok(self)
    }

    /// A vector or slice of a bulk element type is its length and its
    /// elements' bytes, copied whole; any other sequence is serde's default.
    fn collect_seq<I>(self, items: I) -> Result<(), Fault>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if let Some((count, bytes)) = bulk::sequence_bytes(&items) {
            self.varint(count as u64);
            self.out.extend_from_slice(bytes);
            return Ok(());
        }
        let items = items.into_iter();
        let len = match items.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        };
        let mut seq = self.serialize_seq(len)?;
        for item in items {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }

    /// Formatted once into a string (postcard formats twice, to count
    /// first). A `Display` that fails is a refusal, not a panic (which
    /// `to_string` would make of it).
    fn collect_str<T: ?Sized + std::fmt::Display>(self, value: &T) -> Result<(), Fault> {
        use std::fmt::Write;
        let mut text = String::new();
        write!(text, "{value}")
            .map_err(|_| Fault::Refused("its `Display` implementation failed".into()))?;
        self.serialize_str(&text)
    }
}

/// Every compound's member is the member's encoding, one after the other.
macro_rules! members {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl<S: Sink + ?Sized> ser::$trait for &mut Encoder<'_, S> {
            type Ok = ();
            type Error = Fault;

            #[inline]
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Fault> {
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result<(), Fault> {
                Ok(())
            }
        }
    )*};
}

members!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl<S: Sink + ?Sized> ser::SerializeMap for &mut Encoder<'_, S> {
    type Ok = ();
    type Error = Fault;

    #[inline]
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Fault> {
        key.serialize(&mut **self)
    }

    #[inline]
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Fault> {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result<(), Fault> {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),* $(,)?) => {$(
        impl<S: Sink + ?Sized> ser::$trait for &mut Encoder<'_, S> {
            type Ok = ();
            type Error = Fault;

            #[inline]
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                _key: &'static str,
                value: &T,
            ) -> Result<(), Fault> {
                value.serialize(&mut **self)
            }

            /// postcard (and serde's default) writes nothing for a skipped
            /// field, and its reader then misreads the rest: refused here,
            /// where the sender can still hear of it.
            fn skip_field(&mut self, key: &'static str) -> Result<(), Fault> {
                Err(Fault::SkippedField(key))
            }

            #[inline]
            fn end(self) -> Result<(), Fault> {
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);
