//! `supervisor bench pipe`: one writer process, one reader process, byte
//! messages of 64 B, 4 KiB and 1 MiB. Each size is measured three ways in the
//! same run: plain `write(2)`/`read(2)` on a kernel pipe (the baseline),
//! `Pipe::simplex` (a kernel pipe with our framing), and `Pipe::duplex` (a Unix
//! socket pair with our framing).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use outlast_ipc::{Connection, Pipe, Process};
use serde::{Deserialize, Serialize};

use super::report::Row;
use super::stats::median;

/// How the writer writes, and the reader reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Mode {
    /// One `write(2)` per message, reads of whatever is there.
    Raw,
    /// `send_bytes` / `recv_bytes_reusing`.
    Framed,
}

#[derive(Serialize, Deserialize)]
struct WriterJob {
    conn: Connection,
    size: usize,
    count: usize,
    mode: Mode,
}

/// Sizes measured and how many messages of each make one run.
pub fn plan(quick: bool) -> Vec<(usize, usize)> {
    if quick {
        vec![(64, 20_000), (4096, 5_000), (1 << 20, 40)]
    } else {
        vec![(64, 1_000_000), (4096, 200_000), (1 << 20, 2_000)]
    }
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (size, count) in plan(quick) {
        let subjects: [(&str, Mode, bool); 3] = [
            ("raw pipe write/read", Mode::Raw, false),
            ("ipc Pipe::simplex", Mode::Framed, false),
            ("ipc Pipe::duplex", Mode::Framed, true),
        ];
        // Interleaved, so that a noisy moment hurts every subject alike.
        let mut samples = vec![Vec::with_capacity(runs); subjects.len()];
        for _ in 0..runs {
            for (i, (name, mode, duplex)) in subjects.iter().enumerate() {
                let rate = measure(size, count, *mode, *duplex)
                    .map_err(|e| format!("{name}, {size} B: {e}"))?;
                samples[i].push(rate);
            }
        }
        let rates: Vec<(&str, f64)> = subjects
            .iter()
            .zip(&samples)
            .map(|((name, _, _), s)| (*name, median(s)))
            .collect();
        let baseline = rates[0].1;
        for (name, msgs_per_s) in rates {
            rows.push(Row {
                bench: "pipe",
                subject: name.to_string(),
                size_bytes: Some(size),
                msgs_per_s: Some(msgs_per_s),
                mb_per_s: Some(msgs_per_s * size as f64 / 1e6),
                vs_baseline: (name != "raw pipe write/read").then_some(msgs_per_s / baseline),
                baseline: (name != "raw pipe write/read").then(|| "raw pipe".to_string()),
                runs,
                ..Row::default()
            });
        }
    }
    Ok(rows)
}

/// Messages per second for one run, timed by the reader from its first message.
fn measure(size: usize, count: usize, mode: Mode, duplex: bool) -> Result<f64, String> {
    let (mut reader, writer_end) = if duplex {
        Pipe::duplex().map_err(|e| e.to_string())?
    } else {
        Pipe::simplex().map_err(|e| e.to_string())?
    };
    let job = WriterJob {
        conn: writer_end,
        size,
        count,
        mode,
    };
    let mut child = Process::new(writer, job).named("bench-pipe-writer");
    child.start().map_err(|e| e.to_string())?;
    let rate = match mode {
        Mode::Raw => read_raw(&reader, size, count).map_err(|e| e.to_string())?,
        Mode::Framed => read_framed(&mut reader, size, count).map_err(|e| e.to_string())?,
    };
    let sent = child.join().map_err(|e| e.to_string())?;
    if sent != count {
        return Err(format!("the writer sent {sent} of {count} messages"));
    }
    Ok(rate)
}

fn read_framed(
    reader: &mut Connection,
    size: usize,
    count: usize,
) -> Result<f64, outlast_ipc::RecvError> {
    let mut buf = Vec::with_capacity(size);
    reader.recv_bytes_reusing(&mut buf)?;
    let started = Instant::now();
    for _ in 1..count {
        reader.recv_bytes_reusing(&mut buf)?;
    }
    Ok((count - 1) as f64 / started.elapsed().as_secs_f64())
}

fn read_raw(reader: &Connection, size: usize, count: usize) -> io::Result<f64> {
    let fd = reader.as_raw_fd();
    set_blocking(fd)?;
    let mut buf = vec![0u8; size.max(64 * 1024)];
    let total = size * count;
    let mut got = read_once(fd, &mut buf)?;
    let started = Instant::now();
    while got < total {
        got += read_once(fd, &mut buf)?;
    }
    Ok((count - 1) as f64 / started.elapsed().as_secs_f64())
}

fn read_once(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    }
}

fn set_blocking(fd: i32) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL with integer arguments on our own descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The writer process: returns how many messages it wrote.
fn writer(mut job: WriterJob) -> usize {
    let payload = vec![0xA5u8; job.size];
    let mut sent = 0;
    match job.mode {
        Mode::Raw => {
            let fd = job.conn.as_raw_fd();
            if set_blocking(fd).is_err() {
                return 0;
            }
            for _ in 0..job.count {
                let mut rest: &[u8] = &payload;
                while !rest.is_empty() {
                    // SAFETY: rest is a valid readable slice.
                    let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                    if n <= 0 {
                        return sent;
                    }
                    rest = &rest[n as usize..];
                }
                sent += 1;
            }
        }
        Mode::Framed => {
            for _ in 0..job.count {
                if job.conn.send_bytes(&payload).is_err() {
                    return sent;
                }
                sent += 1;
            }
        }
    }
    sent
}
