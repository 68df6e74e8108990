//! Where `--exec` puts what its commands did, on the supervisor side, as
//! GNU parallel does: `--tag` (each output line prefixed with the
//! arguments and a TAB), `--results DIR` (each command's stdout, stderr and
//! sequence number in files, `DIR/1/ARG/2/ARG/...`), `--joblog FILE` (a
//! line per command run, in GNU parallel's format, read by the same
//! tools), and `--halt` (when to stop early).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CommandOutput;

/// GNU parallel's joblog header.
pub const JOBLOG_HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// A joblog, open for appending (a clone shares the file).
#[derive(Clone, Debug)]
pub struct Joblog {
    file: Arc<std::fs::File>,
}

impl Joblog {
    /// Opens `path`: emptied first unless `append` (GNU parallel's
    /// `+FILE`, or a resumed run); the header goes first into an empty one.
    pub fn open(path: &Path, append: bool) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if !append {
            file.set_len(0)?;
        }
        if file.metadata()?.len() == 0 {
            (&file).write_all(JOBLOG_HEADER.as_bytes())?;
        }
        Ok(Joblog {
            file: Arc::new(file),
        })
    }

    /// The line of one command run: `seq`, how it went, `command` as run.
    pub fn record(&self, seq: u64, output: &CommandOutput, command: &str) -> std::io::Result<()> {
        let line = format!(
            "{seq}\t:\t{:.3}\t{:>10.3}\t0\t{}\t{}\t{}\t{}\n",
            output.started_unix,
            output.runtime,
            output.stdout.len(),
            output.exit_code,
            output.signal,
            command.replace('\n', " ")
        );
        // One write per line, in append mode: lines never interleave.
        (&*self.file).write_all(line.as_bytes())
    }
}

/// The directory of one task under `--results root`: `root/1/A/2/B/...`
/// with each argument escaped as GNU parallel does (`\` as `\\`, `/` as
/// `\_`), and an empty, `.` or `..` argument prefixed with `\` so that
/// it stays inside `root`.
pub fn results_dir(root: &Path, args: &[String]) -> PathBuf {
    let mut dir = root.to_path_buf();
    for (n, arg) in args.iter().enumerate() {
        dir.push((n + 1).to_string());
        dir.push(escape(arg));
    }
    dir
}

fn escape(arg: &str) -> String {
    let escaped = arg.replace('\\', "\\\\").replace('/', "\\_");
    match escaped.as_str() {
        "" | "." | ".." => format!("\\{escaped}"),
        _ => escaped,
    }
}

/// Writes a task's `seq`, `stdout` and `stderr` files under `--results`.
pub fn write_results(
    root: &Path,
    args: &[String],
    seq: u64,
    output: &CommandOutput,
) -> std::io::Result<()> {
    let dir = results_dir(root, args);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("seq"), seq.to_string())?;
    std::fs::write(dir.join("stdout"), &output.stdout)?;
    std::fs::write(dir.join("stderr"), &output.stderr)
}

/// `bytes` with each line prefixed by `tag` and a TAB (a last line
/// without its newline is prefixed too).
pub fn tagged(tag: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(line);
    }
    out
}

/// What `--halt` counts.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum HaltOn {
    /// Commands given up on (failed every attempt).
    Fail,
    /// Commands that succeeded.
    Success,
    /// Either.
    Done,
}

/// GNU parallel's `--halt when,why=N` (or `N%`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HaltRule {
    /// `now`: kill what runs; `soon`: start nothing new, let it finish.
    pub now: bool,
    pub on: HaltOn,
    /// How many, or (with `percent`) what share of all the commands.
    pub count: f64,
    pub percent: bool,
}

impl HaltRule {
    /// Parses `never`, `soon,fail=1`, `now,success=30%`, `done=...`, and
    /// GNU parallel's short forms `0`, `1`, `2`, `-1`, `-2` and `N%`.
    /// `Ok(None)` for never.
    pub fn parse(text: &str) -> Result<Option<HaltRule>, String> {
        let long = match text {
            "0" | "never" => return Ok(None),
            "1" => "soon,fail=1".to_string(),
            "2" => "now,fail=1".to_string(),
            "-1" => "soon,success=1".to_string(),
            "-2" => "now,success=1".to_string(),
            t if t.ends_with('%') && t[..t.len() - 1].parse::<u32>().is_ok() => {
                format!("soon,fail={t}")
            }
            t => t.to_string(),
        };
        let bad =
            || format!("--halt `{text}`: expected never, or soon|now,fail|success|done=N or =N%");
        let (when, rest) = long.split_once(',').ok_or_else(bad)?;
        let now = match when {
            "now" => true,
            "soon" => false,
            _ => return Err(bad()),
        };
        let (why, amount) = rest.split_once('=').ok_or_else(bad)?;
        let on = match why {
            "fail" => HaltOn::Fail,
            "success" => HaltOn::Success,
            "done" => HaltOn::Done,
            _ => return Err(bad()),
        };
        let (digits, percent) = match amount.strip_suffix('%') {
            Some(d) => (d, true),
            None => (amount, false),
        };
        let count: u64 = digits.parse().map_err(|_| bad())?;
        if count == 0 || (percent && count > 100) {
            return Err(bad());
        }
        Ok(Some(HaltRule {
            now,
            on,
            count: count as f64,
            percent,
        }))
    }

    /// Whether the run should stop, with `failed` and `succeeded` of `total`.
    pub fn reached(&self, failed: u64, succeeded: u64, total: u64) -> bool {
        let counted = match self.on {
            HaltOn::Fail => failed,
            HaltOn::Success => succeeded,
            HaltOn::Done => failed + succeeded,
        };
        let needed = if self.percent {
            total as f64 * self.count / 100.0
        } else {
            self.count
        };
        counted > 0 && counted as f64 >= needed
    }

    /// The rule as written: `soon,fail=1`.
    pub fn text(&self) -> String {
        let when = if self.now { "now" } else { "soon" };
        let on = match self.on {
            HaltOn::Fail => "fail",
            HaltOn::Success => "success",
            HaltOn::Done => "done",
        };
        let pct = if self.percent { "%" } else { "" };
        format!("{when},{on}={}{pct}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_rules_parse_as_gnu_parallel_reads_them() {
        assert_eq!(HaltRule::parse("never"), Ok(None));
        let rule = HaltRule::parse("1").unwrap().unwrap();
        assert_eq!(rule.text(), "soon,fail=1");
        assert!(HaltRule::parse("2").unwrap().unwrap().now);
        let pct = HaltRule::parse("now,success=30%").unwrap().unwrap();
        assert!(!pct.reached(0, 2, 10));
        assert!(pct.reached(0, 3, 10));
        assert_eq!(
            HaltRule::parse("5%").unwrap().unwrap().text(),
            "soon,fail=5%"
        );
        assert!(HaltRule::parse("soon").is_err());
        assert!(HaltRule::parse("later,fail=1").is_err());
        assert!(HaltRule::parse("soon,fail=0").is_err());
        let done = HaltRule::parse("soon,done=3").unwrap().unwrap();
        assert!(done.reached(1, 2, 100));
    }

    #[test]
    fn results_stay_inside_their_directory() {
        let root = Path::new("r");
        let args = ["a/b".to_string(), "..".to_string(), "x\\y".to_string()];
        assert_eq!(
            results_dir(root, &args),
            Path::new("r/1/a\\_b/2/\\../3/x\\\\y")
        );
        assert_eq!(results_dir(root, &[String::new()]), Path::new("r/1/\\"));
    }

    #[test]
    fn tags_prefix_every_line() {
        assert_eq!(tagged("a b", b"x\ny"), b"a b\tx\na b\ty".to_vec());
        assert_eq!(tagged("t", b""), Vec::<u8>::new());
    }
}
