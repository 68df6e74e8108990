//! serde helpers for the protocol's lists of byte strings (`#[serde(with
//! = "...")]`): each string is written as bytes, one copy, rather than as
//! a sequence of `u8`, one call per byte through generic code that a debug
//! build leaves unoptimised (seconds for `items()` over a 100 MB value).
//! postcard writes the same bytes either way, so the wire is unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::{ByteBuf, Bytes};

use super::Payload;

/// Keys with their values.
type Pairs = Vec<(Vec<u8>, Payload)>;
/// Keys with their values, if asked for.
type MaybePairs = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// `Vec<Vec<u8>>` (a request's) or `Vec<Payload>` (a reply's).
pub(super) mod list {
    use super::*;

    pub fn serialize<S: Serializer, B: AsRef<[u8]>>(list: &[B], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|b| Bytes::new(b.as_ref())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, B: From<Vec<u8>>>(
        d: D,
    ) -> Result<Vec<B>, D::Error> {
        let list = Vec::<ByteBuf>::deserialize(d)?;
        Ok(list.into_iter().map(|b| B::from(b.into_vec())).collect())
    }
}

/// `Vec<(Vec<u8>, Payload)>`.
pub(super) mod pairs {
    use super::*;

    pub fn serialize<S: Serializer>(pairs: &[(Vec<u8>, Payload)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(pairs.iter().map(|(k, v)| (Bytes::new(k), Bytes::new(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k.into_vec(), Payload::from(v.into_vec())))
            .collect())
    }
}

/// `Vec<(Vec<u8>, Option<Vec<u8>>)>`.
pub(super) mod pairs_maybe {
    use super::*;

    pub fn serialize<S: Serializer>(
        pairs: &[(Vec<u8>, Option<Vec<u8>>)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            pairs
                .iter()
                .map(|(k, v)| (Bytes::new(k), v.as_deref().map(Bytes::new))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MaybePairs, D::Error> {
        let pairs = Vec::<(ByteBuf, Option<ByteBuf>)>::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.map(ByteBuf::into_vec)))
            .collect())
    }
}

/// `Vec<(Vec<u8>, T)>`: the keys as bytes, each `T` as it serializes.
pub(super) mod keyed {
    use super::*;

    pub fn serialize<S: Serializer, T: Serialize>(
        pairs: &[(Vec<u8>, T)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(pairs.iter().map(|(k, t)| (Bytes::new(k), t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<(Vec<u8>, T)>, D::Error> {
        let pairs = Vec::<(ByteBuf, T)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(k, t)| (k.into_vec(), t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Fast {
        #[serde(with = "list")]
        list: Vec<Vec<u8>>,
        #[serde(with = "pairs")]
        pairs: Vec<(Vec<u8>, Payload)>,
        #[serde(with = "pairs_maybe")]
        maybe: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        #[serde(with = "keyed")]
        keyed: Vec<(Vec<u8>, u32)>,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Plain {
        list: Vec<Vec<u8>>,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        maybe: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        keyed: Vec<(Vec<u8>, u32)>,
    }

    #[test]
    fn the_wire_is_what_plain_serde_writes() {
        let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let plain = Plain {
            list: vec![vec![], vec![1, 2, 3], big.clone()],
            pairs: vec![(vec![9], big.clone()), (vec![], vec![])],
            maybe: vec![(vec![1], None), (big.clone(), Some(vec![7; 200]))],
            keyed: vec![(big.clone(), 5), (vec![], u32::MAX)],
        };
        let fast = Fast {
            list: plain.list.clone(),
            pairs: plain
                .pairs
                .iter()
                .map(|(k, v)| (k.clone(), Payload::from(v.clone())))
                .collect(),
            maybe: plain.maybe.clone(),
            keyed: plain.keyed.clone(),
        };
        let wire = postcard::to_allocvec(&plain).expect("plain");
        assert_eq!(postcard::to_allocvec(&fast).expect("fast"), wire);
        assert_eq!(postcard::from_bytes::<Fast>(&wire).expect("read"), fast);
    }

    #[test]
    fn a_list_announcing_more_than_it_holds_is_an_error() {
        // A count of 2^32 strings, then one string of a byte.
        let wire = [0x80, 0x80, 0x80, 0x80, 0x10, 1, 7];
        assert!(postcard::from_bytes::<Fast>(&wire).is_err());
    }
}
