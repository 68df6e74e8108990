//! What a pool's workers run. A task is a chunk of items of one call: it
//! names the function and a trampoline instantiated for its types (both
//! as [`CodeRef`]s, like a `Process` entry), then the items' arguments.
//! The worker's [`PoolRunner`] decodes each item, calls the function,
//! catches a panic with its location, and appends the item's [`Reply`],
//! length-prefixed. A panic is the item's answer, not a failed attempt: it
//! is not retried (the same input would panic again).
//!
//! A chunk's input: `Call`, the item count (varint), each item's postcard
//! bytes. Its output: each item's reply as a little-endian `u32` length
//! and its bytes.
//!
//! Under `panic = "abort"` a panic cannot be caught: the worker ends right
//! after the panic hook. The hook then appends the item's `Panicked` reply
//! to the chunk's output so far and sends that, short, as the chunk's
//! output ([`outlast_worker::last_words`]); the pool settles the items it
//! answers and runs the rest again. A panicking item is its own answer in
//! either build, and the others are unaffected; an aborting build pays
//! for a new worker.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};

use outlast_ipc::codec::{read_varint, write_varint};
use outlast_ipc::process::CodeRef;
use outlast_worker::job::TaskContext;
use outlast_worker::runner::Runner;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Calls the function at `func` on the item at the front of `args`
/// (moving past it) and appends its framed [`Reply`] to the chunk's output.
pub(crate) type Trampoline = fn(func: *const (), args: &mut &[u8], out: &ChunkOutput);

/// What a pool's worker gives back for one item.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply<R> {
    Returned(R),
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// The item could not be decoded or its result encoded.
    Failed(String),
    /// The function returned `Err`: its error, as text (`{:#}`, which
    /// shows an `anyhow` error's chain).
    Err(String),
}

/// The head of every pool task's input: which function, through which
/// trampoline. The arguments' postcard bytes follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Call {
    trampoline: CodeRef,
    func: CodeRef,
}

impl Call {
    /// `f(T) -> R`.
    pub(crate) fn one<T, R>(f: fn(T) -> R) -> Self
    where
        T: DeserializeOwned,
        R: Serialize,
    {
        Call {
            trampoline: CodeRef::new(call_one::<T, R> as Trampoline as *const ()),
            func: CodeRef::new(f as *const ()),
        }
    }

    /// `f(A, B) -> R`, given `(A, B)`.
    pub(crate) fn two<A, B, R>(f: fn(A, B) -> R) -> Self
    where
        A: DeserializeOwned,
        B: DeserializeOwned,
        R: Serialize,
    {
        Call {
            trampoline: CodeRef::new(call_two::<A, B, R> as Trampoline as *const ()),
            func: CodeRef::new(f as *const ()),
        }
    }

    /// `f(T) -> Result<R, E>`: an `Err` is the item's error, as text.
    pub(crate) fn fallible<T, R, E>(f: fn(T) -> Result<R, E>) -> Self
    where
        T: DeserializeOwned,
        R: Serialize,
        E: std::fmt::Display,
    {
        Call {
            trampoline: CodeRef::new(call_fallible::<T, R, E> as Trampoline as *const ()),
            func: CodeRef::new(f as *const ()),
        }
    }

    /// Starts a chunk of `count` items in `out`.
    pub(crate) fn write_head(&self, count: usize, out: &mut Vec<u8>) -> Result<(), String> {
        outlast_worker::work::encode_into(self, out)?;
        write_varint(count as u64, out);
        Ok(())
    }
}

/// The worker side of a pool: any function, per task.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PoolRunner {
    pub(crate) init: Option<super::init::InitCall>,
}

thread_local! {
    /// Where the last panic happened, for its item's error.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The output of the chunk this thread runs, if it runs one.
    static CHUNK_OUTPUT: ChunkOutput = const { ChunkOutput::new() };
    /// Whether this thread runs the pool's initializer.
    static INITIALIZING: Cell<bool> = const { Cell::new(false) };
}

/// A chunk's output is sent once it holds this many bytes, with the
/// items answered so far; the pool runs the rest in other chunks.
pub(crate) const CHUNK_OUTPUT_BYTES: usize = 4 << 20;

/// A chunk's replies so far. Borrowed only while a reply is appended,
/// never while the item's function runs, so a panic hook can take it.
pub(crate) struct ChunkOutput {
    bytes: RefCell<Vec<u8>>,
    /// Whether a chunk is running.
    open: Cell<bool>,
}

impl ChunkOutput {
    const fn new() -> Self {
        ChunkOutput {
            bytes: RefCell::new(Vec::new()),
            open: Cell::new(false),
        }
    }

    /// Appends `reply`, framed.
    fn append<R: Serialize>(&self, reply: &Reply<R>) {
        if let Ok(mut out) = self.bytes.try_borrow_mut() {
            append_reply(reply, &mut out);
        }
    }
}

/// The panic hook of a pool's worker. An unwinding build notes where the
/// panic happened, for `guarded` to put beside the message. An aborting
/// build cannot return to `guarded`: the hook sends the chunk's replies
/// so far and this item's `Panicked` as the chunk's (short) output; a
/// panicking initializer ends the worker as one that could not start, as
/// it does when it unwinds; any other panic (not an item's) is left to
/// `fallback` (the process's own hook, which reports it as the worker's
/// death).
fn on_panic(info: &PanicHookInfo<'_>, fallback: &(dyn Fn(&PanicHookInfo<'_>) + Sync + Send)) {
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    if !cfg!(panic = "abort") {
        PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
        return;
    }
    let message = outlast_ipc::process::panic_message(info.payload());
    if INITIALIZING.try_with(Cell::get).unwrap_or(false) {
        outlast_worker::runtime::exit_cannot_start(super::init::initializer_panicked(
            &message,
            location.as_deref(),
        ));
    }
    let reply = Reply::<()>::Panicked { message, location };
    let partial = CHUNK_OUTPUT.try_with(|chunk| {
        if !chunk.open.get() {
            return None;
        }
        let mut out = chunk.bytes.try_borrow_mut().ok()?;
        append_reply(&reply, &mut out);
        Some(std::mem::take(&mut *out))
    });
    let sent = match partial {
        Ok(Some(output)) => outlast_worker::last_words::send(output).is_ok(),
        _ => false,
    };
    if !sent {
        fallback(info);
    }
}

impl Runner for PoolRunner {
    fn name(&self) -> String {
        "pool".into()
    }

    /// A task is a chunk sized to about 2 ms of work: reporting each costs
    /// little, and a caller waiting on one item gets it while its worker
    /// runs the next chunk, however long that one takes.
    fn report_each_task(&self) -> bool {
        true
    }

    fn start(&mut self) -> Result<(), String> {
        // A panicking item is an answer sent back, not noise on stderr.
        let fallback = panic::take_hook();
        panic::set_hook(Box::new(move |info| on_panic(info, &*fallback)));
        let Some(init) = &self.init else {
            return Ok(());
        };
        INITIALIZING.with(|flag| flag.set(true));
        let ran = init.run();
        INITIALIZING.with(|flag| flag.set(false));
        ran
    }

    fn run_task(&self, input: &[u8], ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String> {
        let (call, rest): (Call, &[u8]) =
            postcard::take_from_bytes(input).map_err(|e| format!("not a pool task: {e}"))?;
        let (count, mut args) = read_varint(rest).ok_or("not a pool task: no item count")?;
        // SAFETY: the parent made `call` with Call::one / Call::two from a
        // Trampoline of this executable and the function it was
        // instantiated for; the parent is trusted by its workers.
        let trampoline =
            unsafe { std::mem::transmute::<*const (), Trampoline>(call.trampoline.address()) };
        // SAFETY: as above; the trampoline casts it back to its own type.
        let func = unsafe { call.func.address() };
        CHUNK_OUTPUT.with(|out| {
            *out.bytes.borrow_mut() = Vec::with_capacity(args.len() + 16);
            out.open.set(true);
            for i in 0..count {
                trampoline(func, &mut args, out);
                if i % 64 == 63 {
                    ctx.beat();
                }
                // Answers so far, the rest to run in chunks of their own:
                // a chunk sized on small results held all its large ones
                // (hundreds of 5 MB results, 1.8 GB, in the worker and
                // then the pool, each result waiting for the last).
                if i + 1 < count && out.bytes.borrow().len() >= CHUNK_OUTPUT_BYTES {
                    break;
                }
            }
            out.open.set(false);
            Ok(std::mem::take(&mut *out.bytes.borrow_mut()))
        })
    }
}

fn call_one<T: DeserializeOwned, R: Serialize>(
    func: *const (),
    args: &mut &[u8],
    out: &ChunkOutput,
) {
    // SAFETY: `func` came from `Call::one::<T, R>`, which took it from a
    // `fn(T) -> R` and paired it with this very instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(T) -> R>(func) };
    let reply = match outlast_ipc::codec::take_payload::<T>(args) {
        Ok((item, rest)) => {
            *args = rest;
            guarded(move || f(item))
        }
        Err(e) => Reply::Failed(format!("cannot decode the item: {e}")),
    };
    out.append(&reply);
}

fn call_fallible<T: DeserializeOwned, R: Serialize, E: std::fmt::Display>(
    func: *const (),
    args: &mut &[u8],
    out: &ChunkOutput,
) {
    // SAFETY: `func` came from `Call::fallible::<T, R, E>`, which took it
    // from a `fn(T) -> Result<R, E>` and paired it with this very
    // instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(T) -> Result<R, E>>(func) };
    let reply = match outlast_ipc::codec::take_payload::<T>(args) {
        Ok((item, rest)) => {
            *args = rest;
            match guarded(move || f(item)) {
                Reply::Returned(Ok(value)) => Reply::Returned(value),
                Reply::Returned(Err(e)) => Reply::Err(format!("{e:#}")),
                Reply::Panicked { message, location } => Reply::Panicked { message, location },
                Reply::Failed(why) => Reply::Failed(why),
                Reply::Err(why) => Reply::Err(why),
            }
        }
        Err(e) => Reply::Failed(format!("cannot decode the item: {e}")),
    };
    out.append(&reply);
}

fn call_two<A, B, R>(func: *const (), args: &mut &[u8], out: &ChunkOutput)
where
    A: DeserializeOwned,
    B: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: `func` came from `Call::two::<A, B, R>`, which took it from
    // a `fn(A, B) -> R` and paired it with this very instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(A, B) -> R>(func) };
    let reply = match outlast_ipc::codec::take_payload::<(A, B)>(args) {
        Ok(((a, b), rest)) => {
            *args = rest;
            guarded(move || f(a, b))
        }
        Err(e) => Reply::Failed(format!("cannot decode the item: {e}")),
    };
    out.append(&reply);
}

/// `Call` constructors and trampolines for functions of 1 and 3 to 6
/// arguments, given as a tuple (`starmap`): each like [`Call::two`].
macro_rules! star_calls {
    ($($ctor:ident $trampoline:ident ($($arg:ident $var:ident),+);)+) => {$(
        impl Call {
            pub(crate) fn $ctor<$($arg,)+ R>(f: fn($($arg),+) -> R) -> Self
            where
                $($arg: DeserializeOwned,)+
                R: Serialize,
            {
                Call {
                    trampoline: CodeRef::new($trampoline::<$($arg,)+ R> as Trampoline as *const ()),
                    func: CodeRef::new(f as *const ()),
                }
            }
        }

        fn $trampoline<$($arg: DeserializeOwned,)+ R: Serialize>(
            func: *const (),
            args: &mut &[u8],
            out: &ChunkOutput,
        ) {
            // SAFETY: `func` came from the constructor above, which took it
            // from a function of exactly these argument and result types and
            // paired it with this very instantiation.
            let f = unsafe { std::mem::transmute::<*const (), fn($($arg),+) -> R>(func) };
            let reply = match outlast_ipc::codec::take_payload::<($($arg,)+)>(args) {
                Ok((($($var,)+), rest)) => {
                    *args = rest;
                    guarded(move || f($($var),+))
                }
                Err(e) => Reply::Failed(format!("cannot decode the item: {e}")),
            };
            out.append(&reply);
        }
    )+};
}

star_calls! {
    star_one call_star_one (A a);
    three call_three (A a, B b, C c);
    four call_four (A a, B b, C c, D d);
    five call_five (A a, B b, C c, D d, E e);
    six call_six (A a, B b, C c, D d, E e, F f6);
}

/// Runs `f`, turning a panic into its message and location.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Reply<R> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Reply::Returned(value),
        Err(payload) => {
            let message = outlast_ipc::process::panic_message(payload.as_ref());
            let location = PANIC_LOCATION.with(|slot| slot.borrow_mut().take());
            Reply::Panicked { message, location }
        }
    }
}

/// Appends `reply` to `out` as a `u32` length and its postcard bytes,
/// encoded in place.
fn append_reply<R: Serialize>(reply: &Reply<R>, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let encoded = match reply {
        // Variant 0, then the value: postcard's bytes for the enum, with
        // the value through `encode_append` (a byte vector copied whole).
        Reply::Returned(value) => {
            out.push(0);
            outlast_ipc::codec::encode_append(value, out)
        }
        other => outlast_ipc::codec::encode_append(other, out),
    };
    if let Err(e) = encoded {
        out.truncate(at + 4);
        // A `Failed` is the same bytes whatever R is.
        let failed = Reply::<()>::Failed(format!("cannot encode the result: {e}"));
        let _ = outlast_ipc::codec::encode_append(&failed, out);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Where each framed reply of a chunk's output lies in it, in item order:
/// at most `count` of them, filling the output exactly, or `None`. Fewer
/// than `count` is a short output (see [`answers_short`]).
///
/// Plain indexing and arithmetic: a debug build pays for each helper
/// called per reply (this ran for every item of a `map`).
pub(crate) fn split_replies(output: &[u8], count: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let mut replies = Vec::with_capacity(count);
    let total = output.len();
    let mut found = 0;
    let mut at = 0usize;
    while found < count && at < total {
        if total - at < 4 {
            return None;
        }
        let len = output[at] as usize
            | (output[at + 1] as usize) << 8
            | (output[at + 2] as usize) << 16
            | (output[at + 3] as usize) << 24;
        let start = at + 4;
        if len > total - start {
            return None;
        }
        replies.push(start..start + len);
        found += 1;
        at = start + len;
    }
    (at == total).then_some(replies)
}

/// Whether `replies` (of `output`) may answer only the first items of a
/// chunk of `count`: some but not all, and either the last a panic (an
/// aborting build's last words; the items after it did not run) or the
/// output grown to [`CHUNK_OUTPUT_BYTES`] (sent early, the rest to run in
/// other chunks).
pub(crate) fn answers_short(
    output: &[u8],
    replies: &[std::ops::Range<usize>],
    count: usize,
) -> bool {
    // Reply::Panicked is variant 1: its first byte.
    let last_panicked = replies
        .last()
        .and_then(|r| output.get(r.clone()))
        .is_some_and(|reply| reply.first() == Some(&1));
    let full = output.len() >= CHUNK_OUTPUT_BYTES;
    !replies.is_empty() && replies.len() < count && (last_panicked || full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_replies_round_trip() {
        let mut out = Vec::new();
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            out.clear();
            write_varint(n, &mut out);
            assert_eq!(read_varint(&out), Some((n, &[][..])));
        }
        out.clear();
        append_reply(&Reply::Returned(7u32), &mut out);
        append_reply(&Reply::<u32>::Failed("x".into()), &mut out);
        let replies = split_replies(&out, 2).expect("two replies");
        assert!(matches!(
            postcard::from_bytes(&out[replies[0].clone()]),
            Ok(Reply::Returned(7u32))
        ));
        assert_eq!(split_replies(&out, 3).map(|r| r.len()), Some(2), "short");
        assert!(!answers_short(&out, &replies, 3), "not ended by a panic");
        assert!(split_replies(&out, 1).is_none(), "too many");
        assert!(
            split_replies(&[0xff; 11], 1).is_none(),
            "a length past the end"
        );
        // Cut anywhere, the replies no longer fill the output: refused.
        for cut in 0..out.len() {
            let whole = split_replies(&out[..cut], 2).is_some_and(|r| r.len() == 2);
            assert!(!whole, "cut at {cut}");
        }
        assert!(split_replies(&[1, 0, 0], 1).is_none(), "a length cut short");
        let empty = split_replies(&[0, 0, 0, 0], 1).expect("one empty reply");
        assert_eq!((empty.len(), empty[0].clone()), (1, 4..4));
        let panicked = Reply::<u32>::Panicked {
            message: "no".into(),
            location: None,
        };
        append_reply(&panicked, &mut out);
        let replies = split_replies(&out, 5).expect("three replies");
        assert!(answers_short(&out, &replies, 5), "ended by a panic");
        assert!(!answers_short(&out, &replies, 3), "not short");
        assert!(!answers_short(&[], &[], 5), "nothing answered");
        // Sent early for its size: two replies of a chunk of five.
        let mut full = Vec::new();
        let big = Reply::Returned(vec![9u8; CHUNK_OUTPUT_BYTES / 2]);
        append_reply(&big, &mut full);
        append_reply(&big, &mut full);
        let replies = split_replies(&full, 5).expect("two replies");
        assert!(answers_short(&full, &replies, 5), "a full output");
        out.clear();
        append_reply(&Reply::Returned(vec![9u8; 100]), &mut out);
        let replies = split_replies(&out, 5).expect("one reply");
        assert!(!answers_short(&out, &replies, 5), "short of a full output");
    }
}
