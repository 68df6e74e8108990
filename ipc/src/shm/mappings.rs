//! Every shared mapping this crate made in this process, so that a child
//! started by ipc's `fork` can unmap all of them right after the fork: the
//! child then maps only the segments it was handed (it decodes its
//! arguments afresh from the descriptors it was given), and a bug in one
//! child cannot write into a sibling's segments through a copy of the
//! parent's mappings.
//!
//! Mappings kept out of forks (`MADV_DONTFORK`) are recorded too, but a
//! child has no such pages to unmap.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Mutex;

/// Start address -> (length, kept out of forks).
static MAPPINGS: Mutex<BTreeMap<usize, (usize, bool)>> = Mutex::new(BTreeMap::new());

pub(super) fn register(ptr: NonNull<u8>, len: usize) {
    let mut table = MAPPINGS.lock().unwrap_or_else(|p| p.into_inner());
    table.insert(ptr.as_ptr() as usize, (len, false));
}

pub(super) fn exclude_from_forks(ptr: NonNull<u8>) {
    let mut table = MAPPINGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(entry) = table.get_mut(&(ptr.as_ptr() as usize)) {
        entry.1 = true;
    }
}

pub(super) fn unregister(ptr: NonNull<u8>) {
    let mut table = MAPPINGS.lock().unwrap_or_else(|p| p.into_inner());
    table.remove(&(ptr.as_ptr() as usize));
}

/// In a child just forked by ipc, before anything else runs: unmaps every
/// mapping the parent had made through this crate. The parent's objects
/// that referred to them are never used or dropped here (a `SharedMemory`
/// only unmaps in the process that mapped it).
///
/// The table's lock could only be held if another thread of the parent
/// held it at the fork, which ipc's fork refuses unless told
/// `allow_threads`; then the mappings are left in place.
pub(crate) fn forget_parent_mappings() {
    let Ok(mut table) = MAPPINGS.try_lock() else {
        return;
    };
    for (&start, &(len, kept_out)) in table.iter() {
        if !kept_out {
            // SAFETY: a mapping the parent made and this child will never
            // use: nothing in the child refers to it but parent objects
            // that the child neither uses nor drops.
            unsafe { crate::os::memory::unmap(start as *mut u8, len) };
            super::forgotten::remember(start, len);
        }
    }
    table.clear();
    // A later touch of one of them is said in words before the signal.
    super::forgotten::install_handler();
}
