//! How an SPSC endpoint travels to a child as a `Process` argument: its
//! segment (a descriptor), the ring's sizes, and its private position with
//! its last view of the peer's; the child checks the sizes against the
//! segment, keeps the mapping out of forks, and records itself in the
//! header as that end's process.

use std::sync::atomic::Ordering;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::end::End;
use super::layout::Header;
use super::segment::Segment;
use super::{MAX_CAPACITY, MIN_CAPACITY};
use crate::shm::cell::ShmCell;

#[derive(Serialize, Deserialize)]
struct EndpointWire<C> {
    cell: C,
    cap: u64,
    aux_bytes: u64,
    /// The endpoint's private position and its last view of the other's.
    pos: u64,
    seen: u64,
}

/// Writes `end` (with its positions); the end belongs to the child now.
pub(super) fn serialize<S: Serializer>(
    end: &End,
    pos: u64,
    seen: u64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    end.handed_over.store(true, Ordering::Release);
    EndpointWire {
        cell: &end.seg,
        cap: end.cap as u64,
        aux_bytes: end.aux_bytes as u64,
        pos,
        seen,
    }
    .serialize(serializer)
}

/// Reads an end and its positions; `claim` records this process in the
/// header as the end's owner.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
    claim: fn(&Header),
) -> Result<(End, u64, u64), D::Error> {
    let wire = EndpointWire::<ShmCell<Header>>::deserialize(deserializer)?;
    let (cap, aux_bytes) = check(&wire).map_err(D::Error::custom)?;
    wire.cell
        .segment()
        .exclude_from_forks()
        .map_err(D::Error::custom)?;
    claim(wire.cell.state());
    let end = End::new(Segment::Open(wire.cell), cap, aux_bytes);
    Ok((end, wire.pos, wire.seen))
}

/// Checks a received endpoint's sizes against its segment: (cap, aux bytes).
fn check(wire: &EndpointWire<ShmCell<Header>>) -> Result<(usize, usize), String> {
    let cap = usize::try_from(wire.cap).map_err(|e| e.to_string())?;
    let aux = usize::try_from(wire.aux_bytes).map_err(|e| e.to_string())?;
    let ok = cap.is_power_of_two()
        && (MIN_CAPACITY..=MAX_CAPACITY).contains(&cap)
        && aux % 64 == 0
        && aux
            .checked_add(cap)
            .is_some_and(|n| n <= wire.cell.extra_len())
        && wire.pos % 8 == 0
        && wire.seen % 8 == 0;
    if ok {
        Ok((cap, aux))
    } else {
        Err(format!(
            "an SPSC endpoint of {cap} ring bytes and {aux} aux bytes does not fit its segment"
        ))
    }
}
