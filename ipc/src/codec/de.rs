//! postcard's format, read by the codec itself: what `postcard::take_from_bytes`
//! accepts and refuses, with two differences.
//!
//! - A `Vec` of `u8`, `i8`, `f32` or `f64` anywhere in a value is copied
//!   out whole when serde's own visitor for that vector asks for it (see
//!   [`bulk`]), instead of one element at a time: seconds for 100 MB in a
//!   debug build, a `memcpy` here.
//! - A value nested deeper than the calling thread's stack can hold is
//!   refused ([`Fault::TooDeep`]) before the stack overflows. A recursive
//!   type (`enum Tree { Leaf, Node(Box<Tree>) }`) lets a peer nest as deep
//!   as its bytes go, and an overflow aborts the whole process.
//!
//! Everything else follows postcard rule for rule, down to the error each
//! malformed input gives (where postcard drops the words of an error
//! raised by serde or by the type, they are kept); a property test decodes
//! the same bytes both ways.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::bulk;
use crate::os::stack;

/// Stack kept free below the deepest level decoded: room for the
/// deserialization code of one level (unoptimised, in a debug build) and
/// for the way back with the error.
const STACK_RESERVE: usize = 256 * 1024;

/// Sequences shorter than this are read member by member whatever their
/// type: finding whether a sequence is a bulk vector costs a few calls.
const BULK_FROM: usize = 16;

/// Levels entered before the stack is looked at: most values are shallower,
/// and pay nothing. Each level takes well under 1 KiB of stack, even
/// unoptimised, so these fit in the reserve.
const UNCHECKED_LEVELS: usize = 32;

/// Why a value could not be read.
#[derive(Debug)]
pub(super) enum Fault {
    /// What postcard would say of these bytes.
    Format(postcard::Error),
    /// The bytes are well formed, but the type refused what they hold:
    /// serde's words (an unknown variant index, a length a fixed-size
    /// array cannot take) or the type's own (a `try_from` that failed),
    /// cut to 240 bytes. postcard keeps none of them. Boxed: every
    /// reader's result is as large as this error (one pointer, where a
    /// `String` is three or a `Box<str>` two).
    #[allow(clippy::box_collection)]
    Invalid(Box<String>),
    /// The type asked what comes next (`deserialize_any`, or a field's or
    /// variant's name), which postcard does not write.
    SelfDescribing,
    /// Nested `depth` levels deep, the stack had no room for one more.
    TooDeep { depth: usize },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Format(e) => e.fmt(f),
            Fault::Invalid(why) => f.write_str(why),
            Fault::SelfDescribing => f.write_str("the type reads a self-describing format"),
            Fault::TooDeep { depth } => {
                write!(f, "value nested more than {depth} levels deep")
            }
        }
    }
}

impl std::error::Error for Fault {}

impl de::Error for Fault {
    fn custom<T: std::fmt::Display>(msg: T) -> Fault {
        Fault::Invalid(Box::new(super::words::capped(msg)))
    }
}

impl From<postcard::Error> for Fault {
    fn from(e: postcard::Error) -> Fault {
        Fault::Format(e)
    }
}

/// The deserializer: reads from the front of a byte slice.
pub(super) struct Decoder<'de> {
    input: &'de [u8],
    depth: usize,
    /// Below this stack address, no deeper level is entered; `None` until
    /// a value nests deeper than [`UNCHECKED_LEVELS`].
    floor: Option<usize>,
}

impl<'de> Decoder<'de> {
    pub(super) fn new(input: &'de [u8]) -> Decoder<'de> {
        Decoder {
            input,
            depth: 0,
            floor: None,
        }
    }

    // The readers below fail with postcard's own (one-byte) error: a
    // `Fault` is larger, and every byte read would carry its size.

    /// The bytes not read yet.
    pub(super) fn rest(&self) -> &'de [u8] {
        self.input
    }

    #[inline]
    fn pop(&mut self) -> Result<u8, postcard::Error> {
        let (&byte, rest) = self
            .input
            .split_first()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.input = rest;
        Ok(byte)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], postcard::Error> {
        if self.input.len() < n {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    /// A LEB128 number of at most `max_bytes` bytes, the last of which may
    /// be at most `last_max` (postcard's check that it fits the type).
    ///
    /// Plain indexing and arithmetic, as [`varints`](Self::varints): in a
    /// debug build a range iterator and a `pop` per byte were a quarter of
    /// the time a `Pool::map` of `u64`s spent taking its results.
    #[inline]
    fn varint(&mut self, max_bytes: u32, last_max: u8) -> Result<u64, postcard::Error> {
        let input = self.input;
        let max = max_bytes as usize;
        let mut n = 0u64;
        let mut i = 0;
        while i < max && i < input.len() {
            let byte = input[i];
            n |= ((byte & 0x7f) as u64) << (7 * i);
            i += 1;
            if byte & 0x80 == 0 {
                if i == max && byte > last_max {
                    return Err(postcard::Error::DeserializeBadVarint);
                }
                self.input = &input[i..];
                return Ok(n);
            }
        }
        match i == max {
            true => Err(postcard::Error::DeserializeBadVarint),
            false => Err(postcard::Error::DeserializeUnexpectedEnd),
        }
    }

    #[inline]
    fn varint_u128(&mut self) -> Result<u128, postcard::Error> {
        let mut n = 0u128;
        for i in 0..19 {
            let byte = self.pop()?;
            n |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 18 && byte > 0b11 {
                    break;
                }
                return Ok(n);
            }
        }
        Err(postcard::Error::DeserializeBadVarint)
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, postcard::Error> {
        self.varint(3, 0b11).map(|n| n as u16)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, postcard::Error> {
        self.varint(5, 0b1111).map(|n| n as u32)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, postcard::Error> {
        self.varint(10, 0b1)
    }

    /// A length: a `usize` as postcard writes it (a `u64` here).
    #[inline]
    fn length(&mut self) -> Result<usize, postcard::Error> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| postcard::Error::DeserializeBadVarint)
    }

    /// A vector serde's own visitor asked for, of `len` elements, read in
    /// one loop: bytes and floats copied whole, integers' varints decoded
    /// here rather than through serde one element at a time (in a debug
    /// build, 1.1 s for ten million `u64`s that way). `None` if the
    /// visitor's value is not that vector after all.
    // Kept out of line: the common short sequence should not carry it.
    #[inline(never)]
    fn vec_in_one_loop<T>(
        &mut self,
        element: bulk::Element,
        len: usize,
    ) -> Option<Result<T, Fault>> {
        use bulk::Element::*;
        match element {
            U8 | I8 | F32 | F64 => {
                let taken = bulk::take_in_a_row::<T>(element, len, self.input)?;
                Some(taken.map_err(Fault::from).map(|(value, rest)| {
                    self.input = rest;
                    value
                }))
            }
            U16 => self.varints(len, 3, 0b11, |n| n as u16),
            U32 => self.varints(len, 5, 0b1111, |n| n as u32),
            U64 => self.varints(len, 10, 0b1, |n| n),
            Usize => self.varints(len, 10, 0b1, |n| n as usize),
            I16 => self.varints(len, 3, 0b11, |n| unzigzag(n) as i16),
            I32 => self.varints(len, 5, 0b1111, |n| unzigzag(n) as i32),
            I64 => self.varints(len, 10, 0b1, unzigzag),
            Isize => self.varints(len, 10, 0b1, |n| unzigzag(n) as isize),
        }
    }

    /// `len` varints of at most `max_bytes` bytes (the last at most
    /// `last_max`: postcard's checks, in its order), each made an `E`, as
    /// the `T` they make if `T` is a `Vec<E>`; `None` (read member by
    /// member instead) if it is not, or if fewer bytes than numbers are
    /// left, so that nothing is reserved beyond the bytes present.
    ///
    /// A loop of plain indexing and arithmetic: in a debug build each
    /// helper called per number costs as much as the number itself.
    fn varints<E: Copy + Default, T>(
        &mut self,
        len: usize,
        max_bytes: u32,
        last_max: u8,
        make: fn(u64) -> E,
    ) -> Option<Result<T, Fault>> {
        if !bulk::is_vec_of::<T, E>() || len > self.input.len() {
            return None;
        }
        let bytes = self.input;
        let mut numbers = vec![E::default(); len];
        let slots: &mut [E] = &mut numbers;
        let mut at = 0;
        let mut k = 0;
        while k < len {
            let mut n = 0u64;
            let mut i = 0;
            loop {
                if at == bytes.len() {
                    return Some(Err(postcard::Error::DeserializeUnexpectedEnd.into()));
                }
                let byte = bytes[at];
                at += 1;
                n |= ((byte & 0x7f) as u64) << (7 * i);
                if byte & 0x80 == 0 {
                    if i == max_bytes - 1 && byte > last_max {
                        return Some(Err(postcard::Error::DeserializeBadVarint.into()));
                    }
                    break;
                }
                i += 1;
                if i == max_bytes {
                    return Some(Err(postcard::Error::DeserializeBadVarint.into()));
                }
            }
            slots[k] = make(n);
            k += 1;
        }
        self.input = &bytes[at..];
        bulk::vec_as::<E, T>(numbers).map(Ok)
    }

    /// Enters one level deeper, if the stack has room for it; each
    /// successful call is paired with a [`leave`](Self::leave).
    #[inline]
    fn enter(&mut self) -> Result<(), Fault> {
        if self.depth >= UNCHECKED_LEVELS {
            let floor = *self
                .floor
                .get_or_insert_with(|| stack::limit(STACK_RESERVE));
            if stack::here() < floor {
                return Err(Fault::TooDeep { depth: self.depth });
            }
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        self.depth -= 1;
    }

    #[inline]
    fn members<V: Visitor<'de>>(&mut self, left: usize, visitor: V) -> Result<V::Value, Fault> {
        self.enter()?;
        let value = visitor.visit_seq(Members {
            decoder: &mut *self,
            left,
        });
        self.leave();
        value
    }
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Fault;

    fn is_human_readable(&self) -> bool {
        false
    }

    /// postcard does not describe itself: every reader must know the type.
    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Fault> {
        Err(Fault::SelfDescribing)
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        match self.pop()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(postcard::Error::DeserializeBadBool.into()),
        }
    }

    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_i8(self.pop()? as i8)
    }

    #[inline]
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let n = self.u16()?;
        visitor.visit_i16(unzigzag(n.into()) as i16)
    }

    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let n = self.u32()?;
        visitor.visit_i32(unzigzag(n.into()) as i32)
    }

    #[inline]
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let n = self.u64()?;
        visitor.visit_i64(unzigzag(n))
    }

    #[inline]
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let n = self.varint_u128()?;
        visitor.visit_i128(((n >> 1) as i128) ^ -((n & 1) as i128))
    }

    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_u8(self.pop()?)
    }

    #[inline]
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_u16(self.u16()?)
    }

    #[inline]
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_u32(self.u32()?)
    }

    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_u64(self.u64()?)
    }

    #[inline]
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_u128(self.varint_u128()?)
    }

    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let mut bits = [0u8; 4];
        bits.copy_from_slice(self.take(4)?);
        visitor.visit_f32(f32::from_le_bytes(bits))
    }

    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let mut bits = [0u8; 8];
        bits.copy_from_slice(self.take(8)?);
        visitor.visit_f64(f64::from_le_bytes(bits))
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let len = self.length()?;
        if len > 4 {
            return Err(postcard::Error::DeserializeBadChar.into());
        }
        let c = std::str::from_utf8(self.take(len)?)
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or(postcard::Error::DeserializeBadChar)?;
        visitor.visit_char(c)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let len = self.length()?;
        let s = std::str::from_utf8(self.take(len)?)
            .map_err(|_| postcard::Error::DeserializeBadUtf8)?;
        visitor.visit_borrowed_str(s)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let len = self.length()?;
        let s = std::str::from_utf8(self.take(len)?)
            .map_err(|_| postcard::Error::DeserializeBadUtf8)?;
        visitor.visit_str(s)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let len = self.length()?;
        visitor.visit_borrowed_bytes(self.take(len)?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let len = self.length()?;
        visitor.visit_bytes(self.take(len)?)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        match self.pop()? {
            0 => visitor.visit_none(),
            1 => {
                self.enter()?;
                let value = visitor.visit_some(&mut *self);
                self.leave();
                value
            }
            _ => Err(postcard::Error::DeserializeBadOption.into()),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fault> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fault> {
        self.enter()?;
        let value = visitor.visit_newtype_struct(&mut *self);
        self.leave();
        value
    }

    /// A vector of bytes or floats is copied whole; any other sequence is
    /// read member by member.
    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let len = self.length()?;
        // A short vector costs little either way; a check costs every time.
        if len >= BULK_FROM {
            if let Some(element) = bulk::vec_element::<V>() {
                if let Some(value) = self.vec_in_one_loop(element, len) {
                    return value;
                }
            }
        }
        self.members(len, visitor)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Fault> {
        self.members(len, visitor)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Fault> {
        self.members(len, visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        let left = self.length()?;
        self.enter()?;
        let value = visitor.visit_map(Members {
            decoder: &mut *self,
            left,
        });
        self.leave();
        value
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fault> {
        self.members(fields.len(), visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fault> {
        self.enter()?;
        let value = visitor.visit_enum(&mut *self);
        self.leave();
        value
    }

    /// postcard writes no field or variant names.
    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Fault> {
        Err(Fault::SelfDescribing)
    }

    #[inline]
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Fault> {
        Err(Fault::SelfDescribing)
    }
}

/// The members of a sequence, tuple or struct, or the entries of a map
/// (each a key, then its value): `left` more to read.
struct Members<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    left: usize,
}

impl<'de> Members<'_, 'de> {
    #[inline]
    fn next<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Fault> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }

    /// The announced count only when the bytes left could hold it, so
    /// that a reader sizing its buffer from the hint sizes it from what
    /// arrived, not from what was announced.
    #[inline]
    fn plausible_count(&self) -> Option<usize> {
        (self.decoder.input.len() >= self.left).then_some(self.left)
    }
}

impl<'de> de::SeqAccess<'de> for Members<'_, 'de> {
    type Error = Fault;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Fault> {
        self.next(seed)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.plausible_count()
    }
}

impl<'de> de::MapAccess<'de> for Members<'_, 'de> {
    type Error = Fault;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Fault> {
        self.next(seed)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Fault> {
        seed.deserialize(&mut *self.decoder)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.plausible_count()
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = Fault;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Fault> {
        let index = self.u32()?;
        let index: de::value::U32Deserializer<Fault> = index.into_deserializer();
        let variant = seed.deserialize(index)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = Fault;

    #[inline]
    fn unit_variant(self) -> Result<(), Fault> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Fault> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Fault> {
        self.members(len, visitor)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fault> {
        self.members(fields.len(), visitor)
    }
}
