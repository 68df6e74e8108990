//! The worker protocol, version 1: JSON objects, one per line (UTF-8,
//! `\n` ends a frame), over the program's stdin and stdout.
//!
//! | direction | frame | meaning |
//! |---|---|---|
//! | program → us | `{"hello":"outlast","protocol":1}` | first, once: ready for tasks |
//! | us → program | `{"id":7,"input":"a line"}` | run task 7 |
//! | program → us | `{"id":7,"output":VALUE}` | task 7's result: any JSON value |
//! | program → us | `{"id":7,"error":"why"}` | task 7 failed (retried, then a dead letter) |
//! | program → us | `{"beat":true}` | alive, still working (optional) |
//! | us → program | end of its stdin | no more tasks: exit |
//!
//! One task at a time: the next is sent once the last is answered.
//! Anything else (a line that is not such a JSON object, a frame over the
//! cap, an answer for another id, a second hello, the program's stdout
//! closed) breaks the protocol: the program is killed, the task's attempt
//! fails with that reason, and a new program takes its place.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The protocol version this build speaks.
pub const PROTOCOL: u64 = 1;

/// The task frame for task `id` with input `input`, newline included.
pub fn task_frame(id: u64, input: &str) -> String {
    // serde_json quotes any string; the fields' order is fixed (clients
    // may rely on it, as the shell example does).
    let quoted = serde_json::to_string(input).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"id\":{id},\"input\":{quoted}}}\n")
}

/// What one line from the program said.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Hello { protocol: u64 },
    Output { id: u64, value: String },
    Error { id: u64, message: String },
    Beat,
}

/// A line read as a frame; `Err` says why it is none.
pub fn parse_frame(line: &[u8]) -> Result<Frame, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire<'a> {
        hello: Option<String>,
        protocol: Option<u64>,
        id: Option<u64>,
        /// Present, even as `null` (which `Option` alone would read as absent).
        #[serde(borrow, default, deserialize_with = "present")]
        output: Option<&'a RawValue>,
        error: Option<String>,
        beat: Option<bool>,
        /// Allowed and ignored: a client's note on its progress.
        #[serde(borrow)]
        #[allow(dead_code)]
        progress: Option<&'a RawValue>,
    }
    let text = std::str::from_utf8(line).map_err(|_| "a line that is not UTF-8".to_string())?;
    let wire: Wire = serde_json::from_str(text.trim_end_matches(['\r', '\n']))
        .map_err(|e| format!("a line that is not a frame ({e}): {}", excerpt(text)))?;
    match wire {
        Wire {
            hello: Some(name),
            protocol,
            id: None,
            output: None,
            error: None,
            ..
        } => {
            if name != "outlast" {
                return Err(format!("a hello from `{name}`, not `outlast`"));
            }
            Ok(Frame::Hello {
                protocol: protocol.unwrap_or(0),
            })
        }
        Wire {
            id: Some(id),
            output: Some(value),
            error: None,
            hello: None,
            ..
        } => Ok(Frame::Output {
            id,
            value: value.get().to_string(),
        }),
        Wire {
            id: Some(id),
            error: Some(message),
            output: None,
            hello: None,
            ..
        } => Ok(Frame::Error { id, message }),
        Wire {
            beat: Some(_),
            id: None,
            hello: None,
            ..
        } => Ok(Frame::Beat),
        Wire {
            progress: Some(_),
            hello: None,
            output: None,
            error: None,
            ..
        } => Ok(Frame::Beat),
        _ => Err(format!(
            "a frame that is none of hello, output, error, beat: {}",
            excerpt(text)
        )),
    }
}

/// A field that is there, whatever its value (`null` included).
fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue as Deserialize>::deserialize(deserializer).map(Some)
}

/// The start of `text`, for an error.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < text.len() { "..." } else { "" };
    format!("`{}{cut}`", text[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_as_the_protocol_says() {
        assert_eq!(
            parse_frame(br#"{"hello":"outlast","protocol":1}"#),
            Ok(Frame::Hello { protocol: 1 })
        );
        assert_eq!(
            parse_frame(b"{\"id\":3,\"output\":{\"a\": [1, 2]}}\n"),
            Ok(Frame::Output {
                id: 3,
                value: "{\"a\": [1, 2]}".into()
            })
        );
        assert_eq!(
            parse_frame(br#"{"id":3,"error":"no"}"#),
            Ok(Frame::Error {
                id: 3,
                message: "no".into()
            })
        );
        assert_eq!(
            parse_frame(br#"{"id":4,"output":null}"#),
            Ok(Frame::Output {
                id: 4,
                value: "null".into()
            })
        );
        assert_eq!(parse_frame(br#"{"beat":true}"#), Ok(Frame::Beat));
        assert_eq!(parse_frame(br#"{"id":3,"progress":0.5}"#), Ok(Frame::Beat));
        for garbage in [
            &b"hello"[..],
            b"{}",
            br#"{"id":3}"#,
            br#"{"id":3,"output":1,"error":"x"}"#,
            br#"{"id":-1,"output":1}"#,
            br#"{"id":3,"output":1,"extra":2}"#,
            b"\xff\xfe",
        ] {
            assert!(parse_frame(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn task_frames_quote_their_input() {
        assert_eq!(
            task_frame(2, "a \"b\"\n"),
            "{\"id\":2,\"input\":\"a \\\"b\\\"\\n\"}\n"
        );
    }
}
