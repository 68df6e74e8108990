//! A receiver's ring as a [`Watched`] object: for a future awaiting the
//! next record (an awaited manager call's reply on its lane). The epoch is
//! the sender's tail; the sleep is on the receiver's sleeping flag, which
//! the sender clears and wakes once it publishes past it.
//!
//! Nothing here is trusted: a tail that moves wrongly only wakes the
//! future, whose receiver then checks it.

use std::sync::atomic::{fence, Ordering};

use super::layout::Header;
use crate::shm::cell::ShmCell;
use crate::watch::{Arm, Watched};

/// The ring of one receiver, seen from a watcher thread.
pub(crate) struct TailWatch {
    pub(super) cell: ShmCell<Header>,
}

impl TailWatch {
    fn header(&self) -> &Header {
        self.cell.state()
    }
}

impl Watched for TailWatch {
    fn epoch(&self) -> u64 {
        self.header().tail.0.load(Ordering::Acquire)
    }

    fn ready_now(&self) -> bool {
        // The sender closed: the future reads what is left, then is told.
        self.header().sender.0.closed()
    }

    fn arm(&self, seen: u64) -> Arm<'_> {
        let h = self.header();
        h.receiver_sleeping.0.store(1, Ordering::Relaxed);
        // Dekker with the sender: the flag before our look at its tail,
        // its tail before its look at the flag.
        fence(Ordering::SeqCst);
        if h.tail.0.load(Ordering::Acquire) != seen {
            return Arm::Moved;
        }
        Arm::Word {
            word: &h.receiver_sleeping.0,
            value: 1,
            unfenced: false,
        }
    }

    fn disarm(&self) {
        self.header()
            .receiver_sleeping
            .0
            .store(0, Ordering::Relaxed);
    }

    fn has_costly_look(&self) -> bool {
        true
    }

    fn look_harder(&self) -> bool {
        // A sender SIGKILLed never closed its end: only its death tells.
        self.header().sender.0.gone()
    }
}
