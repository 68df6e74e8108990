//! `--exec COMMAND`: its options, and the tasks' arguments: input lines
//! (from `--input` or stdin, split at `--colsep`), or GNU parallel's
//! `::: A B C` sources on the command line (several: every combination).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use outlast_worker::jobs::exec::output::{HaltRule, Joblog};
use outlast_worker::jobs::exec::Exec;
use regex::Regex;

use super::{args, CliJob};

/// The most tasks `:::` sources may combine into.
const MAX_COMBINATIONS: usize = 100_000_000;

/// The options of `--exec`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --exec (GNU parallel's names)")]
pub struct ExecArgs {
    /// The command run for each input. `{}` is the input, `{.}` it without
    /// its extension, `{/}` its base name, `{//}` its directory, `{/.}` its
    /// base name without extension; `{1}`, `{2}`, ... a column (--colsep)
    /// or a ::: source, with the same modifiers (`{1.}`); `{#}` the task's
    /// number, `{%}` the worker slot. With none of these, the input is the
    /// last argument.
    #[arg(long, value_name = "COMMAND")]
    pub exec: String,
    /// Read the lines from this file [default: standard input].
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Split each input line into columns where the regular expression
    /// REGEX matches (`,`, `\t`, ` +`, `[;|]`), each trimmed of spaces and
    /// TABs, as GNU parallel: `{1}`, `{2}`, ...
    #[arg(long, value_name = "REGEX", value_parser = column_separator)]
    pub colsep: Option<Regex>,
    /// Run the command with `sh -c` (replacements are shell-quoted): the
    /// default when it has shell syntax outside quotes (`|`, `;`, `&`,
    /// `<`, `>`, `$`, a backquote, parentheses, a glob), as GNU parallel.
    #[arg(long)]
    pub shell: bool,
    /// Split the command into words even when it has shell syntax (a `|`
    /// or `;` outside quotes is then an argument, as with `xargs`).
    #[arg(long, conflicts_with = "shell")]
    pub no_shell: bool,
    /// Print outputs in input order (each waits for the ones before it).
    #[arg(long)]
    pub keep_order: bool,
    /// Prefix each output line with the task's input and a TAB.
    #[arg(long)]
    pub tag: bool,
    /// Keep each task's stdout, stderr and number in DIR/1/INPUT/{stdout,
    /// stderr,seq} instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Log each command's last run to FILE in GNU parallel's joblog format
    /// (`+FILE` appends; a resumed --journal run appends too).
    #[arg(long, value_name = "FILE")]
    pub joblog: Option<String>,
    /// Stop early: `soon,fail=N` (no new commands after N failed; the
    /// running ones finish), `now,fail=N` (kill them too), `success=N`,
    /// `done=N`, or `N%` of all; GNU parallel's 0, 1, 2, -1, -2 too.
    #[arg(long, value_name = "WHEN", value_parser = halt_rule)]
    pub halt: Option<HaltArg>,
    /// How many times a command runs when it fails (a non-zero exit, a
    /// signal, --task-timeout) before it is a dead letter, as GNU
    /// parallel's --retries; raises --max-attempts to match.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: u32,
    /// Seconds a command may run before its attempt fails; it is then
    /// ended as GNU parallel's --termseq ends it (SIGTERM three times, 350
    /// ms in all, then SIGKILL), with its whole process group.
    #[arg(long, value_parser = args::seconds, value_name = "SECONDS")]
    pub task_timeout: Option<Duration>,
    /// Inputs on the command line instead of stdin: `::: a b c` (several
    /// `:::` sources run every combination, `{1}` `{2}`); `:::: FILE`
    /// reads a source's values from FILE's lines.
    #[arg(
        value_name = "::: ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub sources: Vec<String>,
}

/// A parsed `--halt` (`never` is `None` inside).
#[derive(Clone, Debug)]
pub struct HaltArg(Option<HaltRule>);

fn halt_rule(text: &str) -> Result<HaltArg, String> {
    HaltRule::parse(text).map(HaltArg)
}

impl CliJob for Exec {
    type Args = ExecArgs;

    fn build(args: ExecArgs, run: &super::RunContext) -> Result<Exec, String> {
        let colsep = args.colsep.as_ref();
        let inputs = if args.sources.is_empty() {
            input_lines(args.input.as_deref())?
                .into_iter()
                .map(|line| columns(line, colsep))
                .collect()
        } else {
            if args.input.is_some() {
                return Err("give the inputs with --input or with :::, not both".into());
            }
            combinations(&sources(&args.sources)?, colsep)?
        };
        let joblog = match &args.joblog {
            None => None,
            Some(path) => {
                let (path, append) = match path.strip_prefix('+') {
                    Some(rest) => (rest, true),
                    None => (path.as_str(), false),
                };
                Some(
                    Joblog::open(std::path::Path::new(path), append || run.resuming)
                        .map_err(|e| format!("cannot write --joblog {path}: {e}"))?,
                )
            }
        };
        let exec = Exec::with_args(&args.exec, inputs)?;
        let exec = match (args.shell, args.no_shell) {
            (true, _) => exec.shell(true),
            (_, true) => exec.shell(false),
            _ => exec,
        };
        Ok(exec
            .keep_order(args.keep_order)
            .tag(args.tag)
            .results(args.results)
            .joblog(joblog)
            .halt(args.halt.and_then(|h| h.0))
            .retries(args.retries)
            .task_timeout(args.task_timeout))
    }
}

/// The non-empty lines of `path`, or of stdin.
pub fn input_lines(path: Option<&std::path::Path>) -> Result<Vec<String>, String> {
    match path {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot read --input {}: {e}", path.display()))?;
            read_lines(std::io::BufReader::new(file))
        }
        None => read_lines(std::io::stdin().lock()),
    }
    .map_err(|e| format!("cannot read the input lines: {e}"))
}

/// `\t` as a TAB, `\\` as a backslash.
/// `--colsep`'s regular expression; an empty one splits nothing.
fn column_separator(text: &str) -> Result<Regex, String> {
    if text.is_empty() {
        return Err("an empty separator".into());
    }
    Regex::new(text).map_err(|e| format!("not a regular expression: {e}"))
}

/// A line as a task's arguments: itself, or its columns.
fn columns(line: String, colsep: Option<&Regex>) -> Vec<String> {
    match colsep {
        Some(sep) => sep
            .split(&line)
            .map(|c| c.trim_matches([' ', '\t']).to_string())
            .collect(),
        None => vec![line],
    }
}

/// The `:::` and `::::` sources after the options, each a list of values.
fn sources(words: &[String]) -> Result<Vec<Vec<String>>, String> {
    let mut sources: Vec<Vec<String>> = Vec::new();
    let mut from_files = false;
    for word in words {
        match word.as_str() {
            ":::" => {
                sources.push(Vec::new());
                from_files = false;
            }
            "::::" => {
                sources.push(Vec::new());
                from_files = true;
            }
            value => {
                let Some(source) = sources.last_mut() else {
                    return Err(format!(
                        "unexpected argument `{value}`: inputs on the command line follow `:::`"
                    ));
                };
                if from_files {
                    let file = std::fs::File::open(value)
                        .map_err(|e| format!("cannot read :::: {value}: {e}"))?;
                    source.extend(
                        read_lines(std::io::BufReader::new(file))
                            .map_err(|e| format!("cannot read :::: {value}: {e}"))?,
                    );
                } else {
                    source.push(value.to_string());
                }
            }
        }
    }
    if sources.iter().any(Vec::is_empty) {
        return Err("a ::: source with no values".into());
    }
    Ok(sources)
}

/// Every combination of one value from each source, the first source
/// varying slowest (GNU parallel's order); each value split at `colsep`.
fn combinations(
    sources: &[Vec<String>],
    colsep: Option<&Regex>,
) -> Result<Vec<Vec<String>>, String> {
    let count = sources
        .iter()
        .try_fold(1usize, |n, s| n.checked_mul(s.len()))
        .filter(|&n| n <= MAX_COMBINATIONS)
        .ok_or_else(|| {
            format!("the ::: sources combine into more than {MAX_COMBINATIONS} tasks")
        })?;
    let mut out = Vec::with_capacity(count);
    let mut at = vec![0usize; sources.len()];
    for _ in 0..count {
        let mut args = Vec::new();
        for (source, &i) in sources.iter().zip(&at) {
            args.extend(columns(source[i].clone(), colsep));
        }
        out.push(args);
        // The last source varies fastest.
        for k in (0..at.len()).rev() {
            at[k] += 1;
            if at[k] < sources[k].len() {
                break;
            }
            at[k] = 0;
        }
    }
    Ok(out)
}

fn read_lines(reader: impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if !line.is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_combine_first_slowest() {
        let words: Vec<String> = [":::", "a", "b", ":::", "c", "d"]
            .map(String::from)
            .to_vec();
        let got = combinations(&sources(&words).unwrap(), None).unwrap();
        assert_eq!(got, [["a", "c"], ["a", "d"], ["b", "c"], ["b", "d"]]);
        assert!(sources(&["x".to_string()]).is_err());
        assert!(sources(&[":::".to_string()]).is_err());
    }

    #[test]
    fn columns_are_split_at_a_regular_expression_and_trimmed() {
        let sep = |re: &str| column_separator(re).expect("a regular expression");
        assert_eq!(columns("a , b,c".into(), Some(&sep(","))), ["a", "b", "c"]);
        assert_eq!(columns("a\tb".into(), Some(&sep("\\t"))), ["a", "b"]);
        assert_eq!(columns("a\t\tb".into(), Some(&sep("\\t"))), ["a", "", "b"]);
        assert_eq!(
            columns("a1b22c".into(), Some(&sep("[0-9]+"))),
            ["a", "b", "c"]
        );
        assert_eq!(columns("a  b".into(), Some(&sep(" +"))), ["a", "b"]);
        assert_eq!(columns("a,b".into(), None), ["a,b"]);
        assert!(column_separator("(").is_err());
        assert!(column_separator("").is_err());
    }
}
