//! A serde `Deserializer` adapter that refuses to go a level deeper once
//! the calling thread's stack is nearly used up, for the formats the codec
//! does not read itself (a [`Described`](super::Described) value's CBOR).
//!
//! Their own depth limits count arrays and maps only, and some types nest
//! without either: `struct Link(Option<Box<Link>>)` read from any CBOR
//! value other than null recurses forever without consuming a byte, and a
//! stack overflow aborts the whole process. Every level (an `Option`'s
//! value, a newtype, a sequence, a map, an enum) goes through a visitor of
//! this adapter, which looks at the stack first.
//!
//! Adapted from `serde_stacker` (David Tolnay, MIT OR Apache-2.0), which
//! grows the stack instead: for a value that recurses without consuming
//! input that would grow without end.

use std::fmt;

use serde::de;

use crate::os::stack;

/// What the adapter says when it stops.
const TOO_DEEP: &str = "a value nested deeper than this thread's stack can read";

/// Refuses another level once the stack is below `floor`.
fn deeper<E: de::Error>(floor: usize) -> Result<(), E> {
    if stack::here() >= floor {
        Ok(())
    } else {
        Err(E::custom(TOO_DEEP))
    }
}

/// Wraps `de`; nothing is read deeper than `floor` (a stack address, from
/// [`stack::limit`]; 0 checks nothing).
pub(super) struct Deserializer<D> {
    de: D,
    floor: usize,
}

impl<D> Deserializer<D> {
    pub(super) fn new(de: D, floor: usize) -> Self {
        Deserializer { de, floor }
    }
}

/// Forwards each `deserialize_*` method with its visitor wrapped.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: de::Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* Visitor { delegate: visitor, floor: self.floor })
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Deserializer<D> {
    type Error = D::Error;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

struct Visitor<V> {
    delegate: V,
    floor: usize,
}

/// Forwards each `visit_*` method of a plain value as it is.
macro_rules! visit_value {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.delegate.$method(v)
        }
    )*};
}

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Visitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.delegate.expecting(f)
    }

    visit_value! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.delegate.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.delegate.visit_none()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        deeper(self.floor)?;
        self.delegate.visit_some(Deserializer::new(de, self.floor))
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        de: D,
    ) -> Result<Self::Value, D::Error> {
        deeper(self.floor)?;
        self.delegate
            .visit_newtype_struct(Deserializer::new(de, self.floor))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        deeper(self.floor)?;
        self.delegate.visit_seq(Access {
            delegate: seq,
            floor: self.floor,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        deeper(self.floor)?;
        self.delegate.visit_map(Access {
            delegate: map,
            floor: self.floor,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        deeper(self.floor)?;
        self.delegate.visit_enum(Access {
            delegate: data,
            floor: self.floor,
        })
    }
}

/// A sequence's, a map's, an enum's or a variant's access, whose values
/// are read through the adapter.
struct Access<A> {
    delegate: A,
    floor: usize,
}

impl<A> Access<A> {
    fn seed<S>(&self, delegate: S) -> Seed<S> {
        Seed {
            delegate,
            floor: self.floor,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.seed(seed);
        self.delegate.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.delegate.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed);
        self.delegate.next_key_seed(seed)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        let seed = self.seed(seed);
        self.delegate.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.delegate.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let floor = self.floor;
        let seed = self.seed(seed);
        self.delegate.variant_seed(seed).map(|(value, variant)| {
            (
                value,
                Access {
                    delegate: variant,
                    floor,
                },
            )
        })
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.delegate.unit_variant()
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed);
        self.delegate.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.delegate.tuple_variant(
            len,
            Visitor {
                delegate: visitor,
                floor: self.floor,
            },
        )
    }

    fn struct_variant<V: de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.delegate.struct_variant(
            fields,
            Visitor {
                delegate: visitor,
                floor: self.floor,
            },
        )
    }
}

/// A seed whose deserializer is wrapped.
struct Seed<S> {
    delegate: S,
    floor: usize,
}

impl<'de, S: de::DeserializeSeed<'de>> de::DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.delegate.deserialize(Deserializer::new(de, self.floor))
    }
}
