//! Diagnostic lines from several processes sharing one stderr pipe (a
//! supervisor, its workers and their programs do) arrive whole: with
//! `eprintln!`, which writes a line in pieces, CI once printed "worker
//! worker 21: cannot start: : cannot start: ...".

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn lines_from_four_writers_on_one_pipe_arrive_whole() {
    const WRITERS: usize = 4;
    const LINES: usize = 5000;
    let (read_end, write_end) = outlast_ipc::os::fd::pipe_cloexec().expect("a pipe");
    let mut children = Vec::new();
    for writer in 0..WRITERS {
        let stderr = write_end.try_clone().expect("dup");
        children.push(
            Command::new(env!("CARGO_BIN_EXE_stderr_lines"))
                .args([writer.to_string(), LINES.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr))
                .spawn()
                .expect("a writer"),
        );
    }
    drop(write_end);
    let mut text = String::new();
    std::fs::File::from(read_end)
        .read_to_string(&mut text)
        .expect("read the pipe");
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let padding = "x".repeat(160);
    let mut next = [0usize; WRITERS];
    for line in text.lines() {
        let (writer, rest) = line
            .strip_prefix("writer ")
            .and_then(|l| l.split_once(": line "))
            .unwrap_or_else(|| panic!("a line cut by another: {line:?}"));
        let writer: usize = writer.parse().expect("a writer's number");
        assert_eq!(
            rest,
            format!("{}: {padding}", next[writer]),
            "writer {writer}'s line {} cut or out of order",
            next[writer]
        );
        next[writer] += 1;
    }
    assert_eq!(next, [LINES; WRITERS], "every line of every writer");
}
