//! # worker: what runs inside a supervised worker process
//!
//! Today: [`sieve`], the segmented prime sieve behind the `primes` job. The
//! `Job` trait, the other built-in jobs (`sleep`, `echo`, `fault`) and the
//! worker loop (tasks in, results out, heartbeat, signals) come with the
//! supervisor work, in the layout of `DESIGN.md` (runtime, heartbeat, jobs/).

pub mod sieve;
