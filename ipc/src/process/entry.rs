//! How a child finds the function it must run.
//!
//! The entry is a plain `fn(A) -> R`. A forked child can call it directly; a
//! spawned child is a fresh exec of the same binary, where ASLR has moved every
//! address, but not the *distance* between two functions of one binary. So the
//! parent sends code addresses as offsets from an anchor function, and the
//! child adds its own anchor's address back. The child checks first that it
//! runs the same executable file as its parent (see `spawn`).

use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{codec, handle};

/// What the child writes on its report pipe when its entry is done.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChildReport {
    /// The entry returned; postcard bytes of its `R` (copied whole, not
    /// one element at a time: the same bytes either way).
    Returned(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The entry panicked with this message.
    Panicked(String),
    /// The arguments could not be decoded or the result encoded.
    Failed(String),
}

/// `ChildReport::Returned`'s variant index, as postcard writes it.
const RETURNED_VARIANT: u8 = 0;

impl ChildReport {
    /// The bytes that come before a returned value of `len` bytes in the
    /// encoding of `Returned`: the report is written as these, then the
    /// value as the child encoded it, so a large value is not copied into
    /// a frame first.
    pub(crate) fn returned_prefix(len: usize) -> Vec<u8> {
        let mut prefix = vec![RETURNED_VARIANT];
        codec::write_varint(len as u64, &mut prefix);
        prefix
    }

    /// In the first bytes of a report's payload of `payload_len` bytes: if
    /// it is a `Returned`, where its value starts and how long it is, so
    /// the parent reads the value alone (not the frame, then a copy).
    pub(crate) fn returned_span(head: &[u8], payload_len: usize) -> Option<(usize, usize)> {
        let (&variant, rest) = head.split_first()?;
        if variant != RETURNED_VARIANT {
            return None;
        }
        let (len, after) = codec::read_varint(rest)?;
        let start = head.len() - after.len();
        let len = usize::try_from(len).ok()?;
        (start.checked_add(len)? == payload_len).then_some((start, len))
    }
}

/// A monomorphized runner: decodes `A` (taking handles from `fds`), calls the
/// entry at address `entry`, and encodes the outcome.
pub(crate) type Trampoline = fn(entry: usize, args: &[u8], fds: Vec<OwnedFd>) -> ChildReport;

pub(crate) fn trampoline<A: DeserializeOwned, R: Serialize>(
    entry: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> ChildReport {
    // SAFETY: `entry` is the address of a `fn(A) -> R` of this very binary: the
    // parent took it from a value of that type (Process<A, R>) and the child
    // checked it runs the same executable before resolving the offset; this
    // trampoline was instantiated for the same A and R.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(entry as *const ()) };
    let args: A = match handle::providing_handles(fds, || codec::decode_payload(args)) {
        Ok(args) => args,
        Err(e) => return ChildReport::Failed(format!("cannot decode the arguments: {e}")),
    };
    match panic::catch_unwind(AssertUnwindSafe(move || f(args))) {
        Ok(result) => match handle::collecting_handles(|| {
            let mut bytes = Vec::new();
            codec::encode_append(&result, &mut bytes).map(|()| bytes)
        }) {
            (Ok(bytes), fds) if fds.is_empty() => ChildReport::Returned(bytes),
            (Ok(_), _) => ChildReport::Failed("a result cannot carry handles".into()),
            (Err(e), _) => ChildReport::Failed(format!("cannot serialize the result: {e}")),
        },
        Err(payload) => ChildReport::Panicked(panic_message(payload.as_ref())),
    }
}

/// The text of a panic payload (what `panic!` was given), as `join`
/// reports a child's panic: for code that catches panics itself
/// (`std::panic::catch_unwind`) and wants the same words.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic with a non-string payload)".to_string()
    }
}

/// The reference point for code offsets. Never inlined, so it has an address.
#[inline(never)]
fn anchor() {}

/// The distance of a code address from the anchor.
pub(crate) fn code_offset(addr: usize) -> i64 {
    (addr as i64).wrapping_sub(anchor as *const () as usize as i64)
}

/// The address at `offset` from this process's anchor.
pub(crate) fn code_address(offset: i64) -> usize {
    (anchor as *const () as usize as i64).wrapping_add(offset) as usize
}

/// What a child of another executable image (spawned, or forked by the
/// fork server) is told to run: who it is, and its entry as offsets.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PortableEntry {
    name: String,
    parent_pid: i32,
    parent_name: String,
    trampoline_offset: i64,
    entry_offset: i64,
    #[serde(with = "serde_bytes")]
    args: Vec<u8>,
}

impl PortableEntry {
    /// In the parent: the plan's entry, as offsets this binary's children resolve.
    pub(crate) fn of(plan: &super::ChildPlan<'_>) -> Self {
        let mut entry = Self::without_args(plan);
        entry.args = plan.args.to_vec();
        entry
    }

    /// The same, but for the arguments, which go another way (a large
    /// one, to the fork server, in a memfd of its own: not copied into
    /// the request first).
    pub(crate) fn without_args(plan: &super::ChildPlan<'_>) -> Self {
        PortableEntry {
            name: plan.name.to_string(),
            parent_pid: std::process::id() as i32,
            parent_name: plan.parent_name.clone(),
            trampoline_offset: code_offset(plan.trampoline as usize),
            entry_offset: code_offset(plan.entry),
            args: Vec::new(),
        }
    }

    /// In the child, which runs the parent's very executable (the caller
    /// made sure): takes its name and parent, runs the entry, and exits.
    pub(crate) fn run(mut self, report: std::os::fd::RawFd, fds: Vec<OwnedFd>) -> ! {
        let args = std::mem::take(&mut self.args);
        self.run_with(&args, report, fds)
    }

    /// [`run`](Self::run), with the arguments given apart.
    pub(crate) fn run_with(self, args: &[u8], report: std::os::fd::RawFd, fds: Vec<OwnedFd>) -> ! {
        super::family::become_child(self.parent_pid, self.parent_name);
        super::current::set_current_name(&self.name);
        let trampoline_addr = code_address(self.trampoline_offset);
        // SAFETY: the offset was computed in the parent from a `Trampoline`
        // of this same executable, so the address is that function.
        let trampoline: Trampoline =
            unsafe { std::mem::transmute::<*const (), Trampoline>(trampoline_addr as *const ()) };
        let entry = code_address(self.entry_offset);
        super::child::run_entry_and_exit(report, trampoline, entry, args, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_value_written_behind_its_prefix_is_the_reports_encoding() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut encoded = Vec::new();
            codec::encode_append(&ChildReport::Returned(value.clone()), &mut encoded)
                .expect("encode");
            let mut by_parts = ChildReport::returned_prefix(len);
            let start = by_parts.len();
            by_parts.extend_from_slice(&value);
            assert_eq!(encoded, by_parts, "{len} bytes");
            let head = &encoded[..encoded.len().min(16)];
            assert_eq!(
                ChildReport::returned_span(head, encoded.len()),
                Some((start, len))
            );
        }
    }

    #[test]
    fn other_reports_and_inconsistent_lengths_have_no_returned_span() {
        let mut panicked = Vec::new();
        codec::encode_append(&ChildReport::Panicked("boom".into()), &mut panicked).expect("encode");
        assert_eq!(ChildReport::returned_span(&panicked, panicked.len()), None);
        let prefix = ChildReport::returned_prefix(10);
        // A length that does not end where the payload does.
        assert_eq!(ChildReport::returned_span(&prefix, prefix.len() + 9), None);
        assert_eq!(ChildReport::returned_span(&prefix, prefix.len() + 11), None);
        assert_eq!(ChildReport::returned_span(&[0, 0xff, 0xff], 100), None);
        assert_eq!(ChildReport::returned_span(&[], 0), None);
    }
}
