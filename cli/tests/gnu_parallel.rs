//! `--exec` with GNU parallel's daily options: `::: a b c` inputs,
//! `{#}` and `{%}`, `--colsep` with `{1}`, `--tag`, `--results DIR`,
//! `--joblog` (compared field by field with GNU parallel's own on the same
//! inputs), and `--halt`.

use std::path::{Path, PathBuf};
mod common;

use std::process::{Command, Output, Stdio};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gnu-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The supervisor with `args`, quiet, in `dir`, with `stdin` as input.
fn supervisor(dir: &Path, args: &[&str], stdin: &str) -> Output {
    common::with_stdin(
        Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .current_dir(dir)
            .arg("--quiet")
            .args(args),
        stdin,
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn command_line_inputs_sequence_numbers_and_slots() {
    let dir = temp_dir("inputs");
    let out = supervisor(
        &dir,
        &[
            "--workers",
            "2",
            "--keep-order",
            "--exec",
            "echo {#} {%} {}",
            ":::",
            "a",
            "b c",
            "d",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<String>> = stdout(&out)
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect();
    assert_eq!(lines.len(), 3);
    for (k, (line, want)) in lines.iter().zip(["a", "b c", "d"]).enumerate() {
        assert_eq!(line[0], (k + 1).to_string(), "{{#}}");
        assert!(
            line[1] == "1" || line[1] == "2",
            "{{%}} is a slot: {line:?}"
        );
        assert_eq!(line[2..].join(" "), want);
    }
    // Two sources: every combination, the first varying slowest.
    let out = supervisor(
        &dir,
        &[
            "--keep-order",
            "--exec",
            "echo {2}{1}",
            ":::",
            "a",
            "b",
            ":::",
            "1",
            "2",
        ],
        "",
    );
    assert_eq!(stdout(&out), "1a\n2a\n1b\n2b\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn slots_are_never_shared_by_two_running_commands() {
    let dir = temp_dir("slots");
    // Each command holds its slot's lock file while it runs: a second
    // command in the same slot at once would find it taken.
    let script = "set -C; : > slot{%} || { echo clash; exit 1; }; sleep 0.02; rm slot{%}";
    let inputs: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let mut args = vec![
        "--workers",
        "3",
        "--shell",
        "--max-attempts",
        "1",
        "--exec",
        script,
        ":::",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let out = supervisor(&dir, &args, "");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains("clash"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn columns_tags_and_results() {
    let dir = temp_dir("columns");
    let out = supervisor(
        &dir,
        &["--keep-order", "--colsep", ",", "--exec", "echo {2}-{1}"],
        "x, y\nz,w\n",
    );
    assert_eq!(stdout(&out), "y-x\nw-z\n");
    // A regular expression, as GNU parallel's: runs of digits; TABs with
    // an empty column between two; spaces around a separator trimmed.
    let gnu_installed = Command::new("parallel").arg("--version").output().is_ok();
    let cases = [
        ("[0-9]+", "a1b22c\n", "[a] [b] [c]\n"),
        ("\\t", "a\t\tb\n", "[a] [] [b]\n"),
        (",", " a , b \n", "[a] [b] []\n"),
    ];
    for (sep, input, expected) in cases {
        let template = "echo [{1}] [{2}] [{3}]";
        let out = supervisor(&dir, &["--colsep", sep, "--exec", template], input);
        assert_eq!(stdout(&out), expected, "--colsep {sep}");
        if gnu_installed {
            let gnu = common::with_stdin(
                Command::new("parallel").args(["--will-cite", "--colsep", sep, template]),
                input,
            );
            assert_eq!(stdout(&gnu), expected, "GNU parallel, --colsep {sep}");
        }
    }
    // (Inputs on the command line: a usage error exits before reading stdin.)
    let bad = supervisor(&dir, &["--colsep", "(", "--exec", "echo", ":::", "a"], "");
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a regular expression"));
    let out = supervisor(
        &dir,
        &[
            "--keep-order",
            "--tag",
            "--shell",
            "--exec",
            "echo 1; echo 2; : {}",
            ":::",
            "a",
            "b c",
        ],
        "",
    );
    assert_eq!(stdout(&out), "a\t1\na\t2\nb c\t1\nb c\t2\n");
    let out = supervisor(
        &dir,
        &[
            "--results",
            "res",
            "--shell",
            "--exec",
            "echo out {}; echo err {} >&2",
            ":::",
            "a/b",
            "..",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "", "--results prints nothing");
    let a = dir.join("res/1/a\\_b");
    assert_eq!(
        std::fs::read_to_string(a.join("stdout")).expect("stdout"),
        "out a/b\n"
    );
    assert_eq!(
        std::fs::read_to_string(a.join("stderr")).expect("stderr"),
        "err a/b\n"
    );
    assert_eq!(std::fs::read_to_string(a.join("seq")).expect("seq"), "1");
    let up = dir.join("res/1/\\..");
    assert_eq!(
        std::fs::read_to_string(up.join("stdout")).expect("stdout"),
        "out ..\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn halt_soon_fail_1_starts_nothing_after_the_first_failure() {
    let dir = temp_dir("halt");
    let out = supervisor(
        &dir,
        &[
            "--workers",
            "1",
            "--max-attempts",
            "1",
            "--halt",
            "soon,fail=1",
            "--json",
            "--report",
            "report.json",
            "--shell",
            "--exec",
            "echo {} >> ran; exit {}",
            ":::",
            "0",
            "0",
            "5",
            "0",
            "0",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ran")).expect("ran"),
        "0\n0\n5\n"
    );
    let report = std::fs::read_to_string(dir.join("report.json")).expect("report");
    let report: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    assert_eq!(report["tasks"]["done"], 2);
    assert_eq!(report["tasks"]["dead"], 1);
    assert_eq!(report["tasks"]["remaining"], 2);
    assert_eq!(report["reason"], "--halt soon,fail=1: 1 command failed");
    // now,success=1: the first success stops the rest at once.
    let out = supervisor(
        &dir,
        &[
            "--workers",
            "2",
            "--halt",
            "now,success=1",
            "--shell",
            "--exec",
            "sleep {}; echo {}",
            ":::",
            "30",
            "0.1",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).lines().next(), Some("0.1"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A joblog's rows by sequence number, without the times (fields 3, 4).
fn joblog_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).expect("joblog");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| {
            let fields: Vec<String> = l.split('\t').map(String::from).collect();
            assert_eq!(fields.len(), 9, "{l}");
            let start: f64 = fields[2].parse().expect("Starttime");
            assert!(start > 1e9, "seconds since the epoch: {start}");
            let runtime: f64 = fields[3].trim().parse().expect("JobRuntime");
            assert!(runtime >= 0.0);
            [0, 1, 4, 5, 6, 7, 8]
                .iter()
                .map(|&i| fields[i].clone())
                .collect()
        })
        .collect();
    rows.sort_by_key(|r| r[0].parse::<u64>().unwrap_or(0));
    rows
}

#[test]
fn the_joblog_reads_as_gnu_parallels() {
    let dir = temp_dir("joblog");
    // Exit codes, a signal, output sizes and a quoted argument.
    let command = "echo {}; [ {} = 3 ] && kill -9 $$; exit {}";
    let values = ["0", "1", "3", "2", "0"];
    let mut ours = vec![
        "--workers",
        "2",
        "--max-attempts",
        "1",
        "--joblog",
        "ours",
        "--shell",
        "--exec",
        command,
        ":::",
    ];
    ours.extend(values);
    let out = supervisor(&dir, &ours, "");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = joblog_rows(&dir.join("ours"));
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[1],
        [
            "2",
            ":",
            "0",
            "2",
            "1",
            "0",
            "echo 1; [ 1 = 3 ] && kill -9 $$; exit 1"
        ]
    );
    assert_eq!(
        rows[2][4..6],
        ["0", "9"],
        "killed by SIGKILL: {:?}",
        rows[2]
    );
    // `+FILE` appends.
    let out = supervisor(
        &dir,
        &["--joblog", "+ours", "--exec", "true", ":::", "x"],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(joblog_rows(&dir.join("ours")).len(), 6);
    let Ok(gnu) = Command::new("parallel")
        .current_dir(&dir)
        .args(["--will-cite", "-j2", "--joblog", "gnu", command, ":::"])
        .args(values)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    else {
        eprintln!("GNU parallel is not installed: not compared (scripts/test installs it)");
        return;
    };
    assert!(gnu.code().is_some());
    assert_eq!(
        rows,
        joblog_rows(&dir.join("gnu")),
        "ours, then GNU parallel's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lines of `text`, sorted (commands finish in any order).
fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn a_failing_command_runs_once_and_its_output_is_printed_as_gnu_parallel_does() {
    let dir = temp_dir("failing");
    // Each run leaves a line in runs.{}; `b` fails, `a` and `c` succeed.
    let command = "echo run >> runs.{}; echo out {}; [ {} != b ]";
    let run = |runner: &str, extra: &[&str]| -> (Output, Vec<usize>) {
        for v in ["a", "b", "c"] {
            let _ = std::fs::remove_file(dir.join(format!("runs.{v}")));
        }
        let out = if runner == "ours" {
            let mut args = vec!["--workers", "2", "--shell"];
            args.extend(extra);
            args.extend(["--exec", command, ":::", "a", "b", "c"]);
            supervisor(&dir, &args, "")
        } else {
            Command::new("parallel")
                .current_dir(&dir)
                .args(["--will-cite", "-j2"])
                .args(extra)
                .args([command, ":::", "a", "b", "c"])
                .output()
                .expect("GNU parallel")
        };
        let runs = ["a", "b", "c"]
            .iter()
            .map(|v| {
                std::fs::read_to_string(dir.join(format!("runs.{v}")))
                    .map_or(0, |t| t.lines().count())
            })
            .collect();
        (out, runs)
    };
    // Once by default: a failed command's verdict stands, and its output
    // is printed like any other.
    let (out, runs) = run("ours", &[]);
    assert_eq!(runs, [1, 1, 1]);
    assert_eq!(sorted_lines(&stdout(&out)), ["out a", "out b", "out c"]);
    assert_eq!(out.status.code(), Some(3), "a dead letter");
    // --retries 3: three runs of `b`, its output printed once.
    let (retried, runs) = run("ours", &["--retries", "3"]);
    assert_eq!(runs, [1, 3, 1]);
    assert_eq!(sorted_lines(&stdout(&retried)), ["out a", "out b", "out c"]);
    // The joblog has a line per input, its last run's, as GNU's.
    let (_, runs) = run("ours", &["--retries", "3", "--joblog", "retried.log"]);
    assert_eq!(runs, [1, 3, 1]);
    let rows = joblog_rows(&dir.join("retried.log"));
    let exits: Vec<&str> = rows.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(exits, ["0", "1", "0"], "{rows:?}");
    // --keep-order prints the failed one in its place.
    let (ordered, _) = run("ours", &["--keep-order"]);
    assert_eq!(stdout(&ordered), "out a\nout b\nout c\n");
    if Command::new("parallel").arg("--version").output().is_err() {
        eprintln!("GNU parallel is not installed: not compared (scripts/test installs it)");
        return;
    }
    for extra in [&[][..], &["--retries", "3"][..]] {
        let (gnu, gnu_runs) = run("gnu", extra);
        let (ours, our_runs) = run("ours", extra);
        assert_eq!(our_runs, gnu_runs, "runs with {extra:?}: ours, then GNU's");
        let (_, _) = run(
            "gnu",
            &[extra, &["--joblog", "gnu-retried.log"][..]].concat(),
        );
        assert_eq!(
            rows,
            joblog_rows(&dir.join("gnu-retried.log")),
            "the joblog with {extra:?}: ours (--retries 3), then GNU's"
        );
        assert_eq!(
            sorted_lines(&stdout(&ours)),
            sorted_lines(&stdout(&gnu)),
            "stdout with {extra:?}: ours, then GNU's"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_timed_out_command_is_logged_and_printed_as_gnu_parallel_does() {
    let dir = temp_dir("timeout");
    // `a` dies of the first SIGTERM; `b` ignores SIGTERM and needs the
    // SIGKILL at the end of GNU's --termseq.
    let command = "[ {} = b ] && trap '' TERM; echo start {}; sleep 30";
    let out = supervisor(
        &dir,
        &[
            "--workers",
            "2",
            "--task-timeout",
            "0.3",
            "--joblog",
            "log",
            "--shell",
            "--exec",
            command,
            ":::",
            "a",
            "b",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sorted_lines(&stdout(&out)), ["start a", "start b"]);
    let exit_and_signal = |rows: Vec<Vec<String>>| -> Vec<(String, String, String)> {
        let mut rows: Vec<_> = rows
            .into_iter()
            .map(|r| (r[6].clone(), r[4].clone(), r[5].clone()))
            .collect();
        rows.sort();
        rows
    };
    let ours = exit_and_signal(joblog_rows(&dir.join("log")));
    let expected = |v: &str, signal: &str| {
        (
            command.replace("{}", v),
            "-1".to_string(),
            signal.to_string(),
        )
    };
    assert_eq!(ours, [expected("a", "15"), expected("b", "9")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out after"));
    // GNU parallel's own joblog for the same commands says the same.
    if let Ok(gnu) = Command::new("parallel")
        .current_dir(&dir)
        .args([
            "--will-cite",
            "-j2",
            "--timeout",
            "0.3",
            "--joblog",
            "gnu.log",
        ])
        .args([command, ":::", "a", "b"])
        .output()
    {
        assert_eq!(sorted_lines(&stdout(&gnu)), ["start a", "start b"]);
        assert_eq!(exit_and_signal(joblog_rows(&dir.join("gnu.log"))), ours);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A command with shell syntax outside quotes (a pipe, `;`, a
/// redirection, a glob) runs under `sh -c`, as GNU parallel runs every
/// command: the same output as GNU's on the same inputs. Split into words
/// (before, and now with `--no-shell`), `echo {} | tr 1 X` printed
/// `1 | tr 1 X` and every command "succeeded".
#[test]
fn a_command_with_shell_syntax_runs_under_a_shell_as_in_gnu_parallel() {
    let dir = temp_dir("shell-syntax");
    std::fs::write(dir.join("a.tmp"), "").expect("a file");
    std::fs::write(dir.join("b.tmp"), "").expect("a file");
    let command = "echo {} | tr 1 X; ls *.tmp | wc -l; test {} -ne 2 && echo {} > out-{}";
    let out = supervisor(&dir, &["--keep-order", "--exec", command], "1\n2\n3\n");
    assert_eq!(out.status.code(), Some(3), "task 2 failed: a dead letter");
    let ours = stdout(&out);
    assert_eq!(ours, "X\n2\n2\n2\n3\n2\n");
    for (file, expected) in [
        ("out-1", Some("1\n")),
        ("out-2", None),
        ("out-3", Some("3\n")),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(file)).ok().as_deref(),
            expected
        );
    }
    let gnu_installed = Command::new("parallel").arg("--version").output().is_ok();
    if gnu_installed {
        let gnu = common::with_stdin(
            Command::new("parallel")
                .current_dir(&dir)
                .args(["--will-cite", "-k", command]),
            "1\n2\n3\n",
        );
        assert_eq!(stdout(&gnu), ours, "GNU parallel's output");
    }
    // Quoted, the same characters are an argument's; --no-shell splits
    // the command into words whatever it holds.
    let quoted = supervisor(&dir, &["--exec", "echo '{} | x;' \"*\"", ":::", "1"], "");
    assert_eq!(stdout(&quoted), "1 | x; *\n");
    let words = supervisor(
        &dir,
        &["--no-shell", "--exec", "echo {} | x;", ":::", "1"],
        "",
    );
    assert_eq!(words.status.code(), Some(0));
    assert_eq!(stdout(&words), "1 | x;\n");
    let _ = std::fs::remove_dir_all(&dir);
}
