//! # worker: what runs inside a supervised worker process
//!
//! This crate will hold the `Job` trait, the built-in jobs (`primes`, `sleep`,
//! `echo`, `fault`) and the worker loop (tasks in, results out, heartbeat,
//! signals). It is part of the workspace now so that the layout of
//! `DESIGN.md` holds from the start; the supervisor issue fills it.
