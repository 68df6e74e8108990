//! # supervisor: keeps worker processes alive for a job
//!
//! The library behind the `supervisor` binary. Today it holds the IPC
//! benchmarks (`supervisor bench pipe|spawn`); the fleet, the dispatch ledger,
//! shutdown, reports and the control socket follow the layout in `DESIGN.md`.

pub mod bench;
