//! Lines to stderr, each in one `write(2)`. A worker, its program and the
//! supervisor often share one stderr pipe; `eprintln!` writes a line in
//! pieces (one write per formatted part), so two processes' lines came out
//! spliced ("worker worker 21: cannot start: : cannot start: ..."). A
//! write of up to `PIPE_BUF` (4096) bytes to a pipe is atomic, so a line
//! written whole is never cut by another process's.

use std::io::Write;

/// Writes `line` and a newline to stderr in one write (a longer line than
/// the pipe's atomic size may still be split by the kernel). Errors are
/// ignored, as `eprintln!` would panic on them and a diagnostic must not.
pub fn line(line: std::fmt::Arguments<'_>) {
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
