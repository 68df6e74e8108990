//! Writes `argv[2]` lines to stderr with `outlast_ipc::os::stderr::line`,
//! each naming this writer (`argv[1]`) and its number, padded to 200
//! bytes. The stderr test starts several at once on one pipe and checks
//! that every line arrives whole.

fn main() {
    let mut args = std::env::args().skip(1);
    let writer = args.next().unwrap_or_default();
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let padding = "x".repeat(160);
    for i in 0..count {
        outlast_ipc::os::stderr::line(format_args!("writer {writer}: line {i}: {padding}"));
    }
}
