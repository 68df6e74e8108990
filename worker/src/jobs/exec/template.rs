//! A command template and the words it makes for one task, with GNU
//! parallel's replacement strings:
//!
//! | string | becomes |
//! |---|---|
//! | `{}` | the arguments, joined by spaces (one argument: the line) |
//! | `{.}` `{/}` `{//}` `{/.}` | the same without extension, base name, directory, base name without extension |
//! | `{N}` `{N.}` `{N/}` `{N//}` `{N/.}` | argument N (a `--colsep` column, or the Nth `:::` source), from 1; empty past the last |
//! | `{#}` | the task's sequence number, from 1 |
//! | `{%}` | the worker's slot, from 1: no two commands running at once share one |
//!
//! A template with none of them gets the arguments as its last words.
//! A template without shell syntax is split into words as `sh` would
//! (quotes, backslashes) and each word is filled in, so an argument never
//! becomes two words. One with shell syntax outside quotes (a pipe, `;`,
//! a redirection, `$`, a glob: [`shell_syntax`]) runs under `sh -c`, as
//! GNU parallel runs every command and as GNU make and Ruby's `system` run
//! a command that needs it; each argument is then shell-quoted into the
//! script. (Split into words, `echo {} | tr 1 X` printed `1 | tr 1 X`.)

use serde::{Deserialize, Serialize};

/// What one task of `--exec` is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecInput {
    /// `{#}`: the task's sequence number, from 1.
    pub seq: u64,
    /// The arguments: one input line, its `--colsep` columns, or one value
    /// from each `:::` source.
    pub args: Vec<String>,
}

/// The program and its arguments for `input`, run in worker slot `slot`.
pub fn command_for(
    template: &str,
    shell: bool,
    input: &ExecInput,
    slot: u32,
) -> Result<Vec<String>, String> {
    if shell {
        let (script, used) = substitute(template, input, slot, &shell_quote);
        let script = if used {
            script
        } else {
            let quoted: Vec<String> = input.args.iter().map(|a| shell_quote(a)).collect();
            format!("{script} {}", quoted.join(" "))
        };
        return Ok(vec!["sh".into(), "-c".into(), script]);
    }
    let mut any = false;
    let mut words = Vec::new();
    for word in split_words(template)? {
        let (word, used) = substitute(&word, input, slot, &|s: &str| s.to_string());
        any |= used;
        words.push(word);
    }
    if !any {
        words.extend(input.args.iter().cloned());
    }
    Ok(words)
}

/// Which part of an argument a replacement string takes.
#[derive(Clone, Copy)]
enum Part {
    Whole,
    NoExtension,
    Base,
    Dir,
    BaseNoExtension,
}

impl Part {
    /// The part's suffix in a replacement string, longest first so that
    /// `{/.}` is not read as `{/}`.
    const SUFFIXES: [(&'static str, Part); 5] = [
        ("//", Part::Dir),
        ("/.", Part::BaseNoExtension),
        ("/", Part::Base),
        (".", Part::NoExtension),
        ("", Part::Whole),
    ];

    fn of(self, arg: &str) -> String {
        let path = std::path::Path::new(arg);
        let base = || {
            path.file_name()
                .map_or(arg.to_string(), |b| b.to_string_lossy().into_owned())
        };
        match self {
            Part::Whole => arg.to_string(),
            Part::NoExtension => strip_extension(arg),
            Part::Base => base(),
            Part::BaseNoExtension => strip_extension(&base()),
            Part::Dir => match path.parent().map(|d| d.to_string_lossy().into_owned()) {
                Some(d) if !d.is_empty() => d,
                _ => ".".to_string(),
            },
        }
    }
}

fn strip_extension(s: &str) -> String {
    match s.rfind('.') {
        Some(dot) if dot > 0 && !s[dot..].contains('/') => s[..dot].to_string(),
        _ => s.to_string(),
    }
}

/// The replacement string at the start of `text`: its length and value
/// (before quoting; `None` for a value that is already words, `{}` of
/// several arguments under a shell, whose parts are quoted one by one).
fn replacement(
    text: &str,
    input: &ExecInput,
    slot: u32,
    quote: &dyn Fn(&str) -> String,
) -> Option<(usize, String)> {
    let inner_end = text.find('}')?;
    let inner = &text[1..inner_end];
    let len = inner_end + 1;
    match inner {
        "#" => return Some((len, input.seq.to_string())),
        "%" => return Some((len, slot.to_string())),
        _ => {}
    }
    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
    let (index, suffix) = inner.split_at(digits);
    let (_, part) = Part::SUFFIXES.iter().find(|(s, _)| *s == suffix)?;
    if digits > 0 {
        let n: usize = index.parse().ok()?;
        if n == 0 {
            return None;
        }
        let arg = input.args.get(n - 1).map_or(String::new(), |a| part.of(a));
        return Some((len, quote(&arg)));
    }
    let parts: Vec<String> = input.args.iter().map(|a| quote(&part.of(a))).collect();
    Some((len, parts.join(" ")))
}

/// `template` with the replacement strings filled in from `input`, each
/// passed through `quote`; and whether any was there.
fn substitute(
    template: &str,
    input: &ExecInput,
    slot: u32,
    quote: &dyn Fn(&str) -> String,
) -> (String, bool) {
    let mut out = String::with_capacity(template.len() + 32);
    let mut used = false;
    let mut rest = template;
    while let Some(brace) = rest.find('{') {
        out.push_str(&rest[..brace]);
        rest = &rest[brace..];
        match replacement(rest, input, slot, quote) {
            Some((len, value)) => {
                out.push_str(&value);
                used = true;
                rest = &rest[len..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    (out, used)
}

/// `s` as one word for `sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The first character of `template` outside quotes that only a shell
/// gives a meaning to: `|`, `&`, `;`, `<`, `>`, `(`, `)`, `$`, a backquote,
/// a newline, the globs `*`, `?` and `[`, `~` or `#` at the start of a
/// word, and a first word that assigns a variable (`LC_ALL=C sort {}`).
/// Replacement strings (`{}`, `{1.}`, `{#}`, ...) are not shell
/// syntax. `None`: the command means the same split into words.
pub fn shell_syntax(template: &str) -> Option<char> {
    // `NAME=value program ...`: an assignment for the program's
    // environment, which only a shell makes.
    let first = template.split_whitespace().next().unwrap_or("");
    if let Some((name, _)) = first.split_once('=') {
        let mut name_chars = name.chars();
        let starts_well = name_chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if starts_well && name_chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Some('=');
        }
    }
    let mut chars = template.chars().peekable();
    let mut word_start = true;
    while let Some(c) = chars.next() {
        let at_start = std::mem::replace(&mut word_start, false);
        match c {
            '\\' => {
                chars.next();
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        // Expansions happen inside double quotes too.
                        '$' | '`' => return Some(c),
                        '\\' => {
                            chars.next();
                        }
                        _ => {}
                    }
                }
            }
            '{' => {
                // A replacement string is ours: skipped whole.
                let inner: String = chars.clone().take_while(|&c| c != '}').collect();
                let closed = chars.clone().nth(inner.chars().count()) == Some('}');
                if closed && is_replacement(&inner) {
                    for _ in 0..=inner.chars().count() {
                        chars.next();
                    }
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '\n' | '*' | '?' | '[' => {
                return Some(c)
            }
            '~' | '#' if at_start => return Some(c),
            c if c.is_whitespace() => word_start = true,
            _ => {}
        }
    }
    None
}

/// Whether `{inner}` is a replacement string.
fn is_replacement(inner: &str) -> bool {
    if inner == "#" || inner == "%" {
        return true;
    }
    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
    Part::SUFFIXES.iter().any(|(s, _)| *s == &inner[digits..])
}

/// Splits a command into words as `sh` would for plain words, quotes and
/// backslashes (no expansions).
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("--exec has an unclosed ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("--exec has an unclosed \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("--exec has an unclosed \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> ExecInput {
        ExecInput {
            seq: 1,
            args: vec![s.to_string()],
        }
    }

    #[test]
    fn shell_syntax_outside_quotes_is_seen_and_replacements_are_not() {
        for (template, found) in [
            ("echo {} | tr 1 X", Some('|')),
            ("test {} -ne 2; echo done", Some(';')),
            ("gzip -c {} > {}.gz", Some('>')),
            ("echo $HOME/{}", Some('$')),
            ("echo \"$(date) {}\"", Some('$')),
            ("rm {//}/*.tmp", Some('*')),
            ("~/bin/tool {}", Some('~')),
            ("cmd {} # a comment", Some('#')),
            ("sleep 1 && echo {}", Some('&')),
            ("convert {} {.}.png {/} {//} {/.}", None),
            ("echo {#} {%} {1} {2.} {}", None),
            ("echo 'a|b; c > d' \"e & f\" g\\;h", None),
            ("echo a~b c#d x=y", None),
            ("LC_ALL=C sort {}", Some('=')),
            ("_X1=a env", Some('=')),
            ("./run --level=3 {}", None),
            ("1x=y cmd", None),
            ("printf '%s\\n' {}", None),
            ("echo {unclosed", None),
            ("{ echo a; }", Some(';')),
        ] {
            assert_eq!(shell_syntax(template), found, "{template}");
        }
    }

    #[test]
    fn replacement_strings_follow_gnu_parallel() {
        let words = command_for(
            "convert {} {.}.png {/} {//} {/.}",
            false,
            &line("dir/a b.jpg"),
            1,
        )
        .unwrap();
        assert_eq!(
            words,
            [
                "convert",
                "dir/a b.jpg",
                "dir/a b.png",
                "a b.jpg",
                "dir",
                "a b"
            ]
        );
    }

    #[test]
    fn without_a_replacement_the_arguments_are_the_last_words() {
        assert_eq!(
            command_for("echo 'x y'", false, &line("z"), 1).unwrap(),
            ["echo", "x y", "z"]
        );
        let two = ExecInput {
            seq: 1,
            args: vec!["a".into(), "b c".into()],
        };
        assert_eq!(
            command_for("echo", false, &two, 1).unwrap(),
            ["echo", "a", "b c"]
        );
    }

    #[test]
    fn a_shell_gets_the_arguments_quoted() {
        assert_eq!(
            command_for("echo {}", true, &line("it's; rm -rf /"), 1).unwrap(),
            ["sh", "-c", r"echo 'it'\''s; rm -rf /'"]
        );
    }

    #[test]
    fn sequence_slot_and_columns() {
        let input = ExecInput {
            seq: 7,
            args: vec!["p/q.r".into(), "s".into()],
        };
        assert_eq!(
            command_for("x {#} {%} {2} {1/.} {1//} {3}| x{}y {9", false, &input, 2).unwrap(),
            ["x", "7", "2", "s", "q", "p", "|", "xp/q.r sy", "{9"]
        );
        // {#} alone is a replacement: the arguments are not appended.
        assert_eq!(
            command_for("echo {#}", false, &input, 1).unwrap(),
            ["echo", "7"]
        );
        assert_eq!(
            command_for("echo {1} {}", true, &input, 1).unwrap(),
            ["sh", "-c", "echo p/q.r p/q.r s"]
        );
    }
}
