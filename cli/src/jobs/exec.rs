//! `--exec COMMAND`: its options, and the input lines read from a file or stdin.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use outlast_worker::jobs::exec::Exec;

use super::{args, CliJob};

/// The options of `--exec`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --exec")]
pub struct ExecArgs {
    /// The command run for each input line. `{}` is the line, `{.}` the
    /// line without its extension, `{/}` its base name, `{//}` its
    /// directory, `{/.}` its base name without extension; with none of
    /// these, the line is the last argument.
    #[arg(long, value_name = "COMMAND")]
    pub exec: String,
    /// Read the lines from this file [default: standard input].
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Run the command with `sh -c` (replacements are shell-quoted).
    #[arg(long)]
    pub shell: bool,
    /// Print outputs in input order (each waits for the ones before it).
    #[arg(long)]
    pub keep_order: bool,
    /// Seconds a command may run before it is killed and its attempt fails.
    #[arg(long, value_parser = args::seconds, value_name = "SECONDS")]
    pub task_timeout: Option<Duration>,
}

impl CliJob for Exec {
    type Args = ExecArgs;

    fn build(args: ExecArgs) -> Result<Exec, String> {
        let lines = match &args.input {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| format!("cannot read --input {}: {e}", path.display()))?;
                read_lines(std::io::BufReader::new(file))
            }
            None => read_lines(std::io::stdin().lock()),
        }
        .map_err(|e| format!("cannot read the input lines: {e}"))?;
        Ok(Exec::new(&args.exec, lines)?
            .shell(args.shell)
            .keep_order(args.keep_order)
            .task_timeout(args.task_timeout))
    }
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
