//! A two-phase computation with a `Barrier`: each of four processes fills its
//! quarter of a shared array (phase 1), waits for the others, then sums the
//! whole array (phase 2), which is only right if every quarter is done.
//!
//! ```text
//! cargo run -p outlast-ipc --example barrier_phases [-- spawn]
//! ```

use std::time::Duration;

use outlast_ipc::sync::Barrier;
use outlast_ipc::value::Array;
use outlast_ipc::{Process, StartMethod};

const PARTIES: usize = 4;
const PER_PARTY: usize = 1000;

fn phases((me, data, barrier): (usize, Array<u64>, Barrier)) -> Result<u64, String> {
    // Phase 1: my quarter holds 1..=PER_PARTY, offset by my number.
    {
        let mut d = data.lock().map_err(|e| e.to_string())?;
        for i in 0..PER_PARTY {
            d[me * PER_PARTY + i] = (me * PER_PARTY + i + 1) as u64;
        }
    }
    barrier
        .wait_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    // Phase 2: everyone's numbers are there.
    let all = data.to_vec().map_err(|e| e.to_string())?;
    Ok(all.iter().sum())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let data = Array::new(PARTIES * PER_PARTY, 0u64)?;
    let barrier = Barrier::new(PARTIES as u32)?;
    let mut parties = Vec::new();
    for me in 0..PARTIES {
        let mut p = Process::new(phases, (me, data.clone(), barrier.clone())).start_method(method);
        p.start()?;
        parties.push(p);
    }
    let n = (PARTIES * PER_PARTY) as u64;
    for (me, p) in parties.iter_mut().enumerate() {
        let sum = p.join()??;
        println!("party {me} saw sum {sum} (expected {})", n * (n + 1) / 2);
    }
    Ok(())
}
