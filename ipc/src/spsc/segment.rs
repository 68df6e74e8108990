//! Where an endpoint's segment is: mapped in this process (open), or only
//! a descriptor (parked). A process that makes thousands of links, each
//! to hand to a child it forks, keeps them parked while it forks (every
//! mapping it holds makes each fork slower) and opens its own ends after.

use serde::{Serialize, Serializer};

use super::error::SpscError;
use super::layout::Header;
use crate::shm::cell::ShmCell;
use crate::shm::{ShmError, UnmappedSegment};

pub(super) enum Segment {
    Open(ShmCell<Header>),
    Parked(UnmappedSegment),
}

impl Segment {
    #[inline]
    pub(super) fn cell(&self) -> Result<&ShmCell<Header>, SpscError> {
        match self {
            Segment::Open(cell) => Ok(cell),
            Segment::Parked(_) => Err(SpscError::Parked),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self, Segment::Open(_))
    }

    /// Maps a parked segment (kept out of forks, as every endpoint is).
    pub(super) fn open(&mut self) -> Result<(), ShmError> {
        let Segment::Parked(parked) = self else {
            return Ok(());
        };
        let cell = ShmCell::<Header>::from_segment(parked.try_clone()?.map()?)?;
        cell.segment().exclude_from_forks()?;
        *self = Segment::Open(cell);
        Ok(())
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Both forms travel as a segment: the child maps it either way.
        match self {
            Segment::Open(cell) => cell.serialize(serializer),
            Segment::Parked(parked) => parked.serialize(serializer),
        }
    }
}
