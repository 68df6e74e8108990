//! `supervisor worker-conformance PROGRAM`: checks that a worker program
//! speaks the worker protocol (docs/worker-protocol.md), as any client
//! library can run it. The program under test is the conformance echo
//! worker of its client: each task's output is its input string, and the
//! input `fail` is answered with an error frame. Each check prints `ok` or
//! `FAIL` with why; the exit code is 0 only if all pass.

use std::time::Duration;

use outlast_worker::jobs::exec::template::split_words;
use outlast_worker::jobs::worker_cmd::program::{Answer, Program};

/// A line on stdout; a reader gone (`| head`) is not an error here.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Each check's time limit.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs the checks against `command`; the process exit code.
pub fn run(command: &str) -> u8 {
    let argv = match split_words(command) {
        Ok(argv) if !argv.is_empty() => argv,
        _ => {
            eprintln!("supervisor worker-conformance: no program in `{command}`");
            return 2;
        }
    };
    say!(
        "checking `{command}` as its client's echo worker (each output is the task's input; \
         the input `fail` is an error): docs/worker-protocol.md"
    );
    let mut failed = 0;
    let mut passed = 0;
    let mut report = |name: &str, result: Result<(), String>| match result {
        Ok(()) => {
            passed += 1;
            say!("ok    {name}");
        }
        Err(why) => {
            failed += 1;
            say!("FAIL  {name}: {why}");
        }
    };
    // Frames up to 64 MiB: the largest it is asked to echo is 1 MiB.
    let frames = (64 << 20, "the conformance check's 64 MiB");
    let mut program = match Program::start(&argv, 1, frames, PATIENCE, &mut || {}) {
        Ok(program) => {
            report("says hello with protocol 1 first", Ok(()));
            program
        }
        Err(why) => {
            report("says hello with protocol 1 first", Err(why));
            say!("failed: the program cannot be checked further");
            return 1;
        }
    };
    let big = "x".repeat(1 << 20);
    let unicode = "é \"quoted\" \\ back\tslash ☃ \u{1F980}";
    let echoes: [(&str, u64, &str); 5] = [
        ("echoes a plain input", 1, "hello"),
        ("echoes quotes, backslashes, tabs and non-ASCII", 2, unicode),
        ("echoes an empty input", 3, ""),
        ("echoes a 1 MiB input", 4, &big),
        ("keeps an id up to 2^53 - 1", (1 << 53) - 1, "id"),
    ];
    for (name, id, input) in echoes {
        let result = match program.call(id, input, Some(PATIENCE), &mut || {}) {
            Ok(Answer::Output(value)) => match serde_json::from_str::<String>(&value) {
                Ok(text) if text == input => Ok(()),
                Ok(text) => Err(format!("output {:?}, not the input", cut(&text))),
                Err(_) => Err(format!("output {}, not a JSON string", cut(&value))),
            },
            Ok(Answer::Error(message)) => Err(format!("an error frame: {message}")),
            Err(why) => Err(why),
        };
        report(name, result);
    }
    let result = match program.call(5, "fail", Some(PATIENCE), &mut || {}) {
        Ok(Answer::Error(_)) => Ok(()),
        Ok(Answer::Output(value)) => Err(format!("an output {}, not an error frame", cut(&value))),
        Err(why) => Err(why),
    };
    report("answers a failing task with an error frame", result);
    let mut many = Ok(());
    for id in 100..1100u64 {
        let input = id.to_string();
        match program.call(id, &input, Some(PATIENCE), &mut || {}) {
            Ok(Answer::Output(value)) if value == format!("\"{input}\"") => {}
            Ok(other) => {
                many = Err(format!("task {id}: {other:?}"));
                break;
            }
            Err(why) => {
                many = Err(format!("task {id}: {why}"));
                break;
            }
        }
    }
    report("answers 1,000 tasks in a row", many);
    let ended = match program.finish(PATIENCE) {
        Ok(how) if how == "it exited with code 0" => Ok(()),
        Ok(how) => Err(how),
        Err(why) => Err(why),
    };
    report("exits with code 0 when its stdin closes", ended);
    if failed == 0 {
        say!("passed ({passed} checks)");
        0
    } else {
        say!("failed ({failed} of {} checks)", failed + passed);
        1
    }
}

/// The start of `text`, for a line.
fn cut(text: &str) -> String {
    text.chars().take(60).collect()
}
