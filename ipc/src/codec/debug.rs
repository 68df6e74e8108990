//! `Debug` for the codec's errors (and [`Why`], for other errors that do
//! the same): the variant and its fields as `#[derive(Debug)]` writes
//! them, plus `why`, the error's words. `unwrap()`, `expect()` and a `main` returning
//! `Result<_, Box<dyn Error>>` print an error's `Debug`, and a bare
//! `Decode(SelfDescribing)` or `ThreadsPresent { threads: 2 }` left a user
//! to find out what it means and what to do (wrap the value in
//! `Described`; use the fork server), which the words say.

use std::fmt;

use super::{DecodeError, EncodeError};

/// An error's words, written as a quoted string.
pub(crate) struct Why<'a>(pub(crate) &'a dyn fmt::Display);

impl fmt::Debug for Why<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.to_string(), f)
    }
}

impl fmt::Debug for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = Why(self);
        match self {
            EncodeError::TooLarge { len, max } => f
                .debug_struct("TooLarge")
                .field("len", len)
                .field("max", max)
                .finish(),
            EncodeError::UnknownLength => {
                f.debug_struct("UnknownLength").field("why", &why).finish()
            }
            EncodeError::Refused(words) => f.debug_tuple("Refused").field(words).finish(),
            EncodeError::SkippedField { field } => f
                .debug_struct("SkippedField")
                .field("field", field)
                .field("why", &why)
                .finish(),
        }
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = Why(self);
        match self {
            DecodeError::TooLarge { len, max } => f
                .debug_struct("TooLarge")
                .field("len", len)
                .field("max", max)
                .finish(),
            DecodeError::Truncated { expected, got } => f
                .debug_struct("Truncated")
                .field("expected", expected)
                .field("got", got)
                .finish(),
            DecodeError::Malformed(e) => f
                .debug_struct("Malformed")
                .field("error", e)
                .field("why", &why)
                .finish(),
            DecodeError::Refused(words) => f.debug_tuple("Refused").field(words).finish(),
            DecodeError::SelfDescribing => {
                f.debug_struct("SelfDescribing").field("why", &why).finish()
            }
            DecodeError::TooDeep { depth } => f
                .debug_struct("TooDeep")
                .field("depth", depth)
                .field("why", &why)
                .finish(),
            DecodeError::TrailingBytes { extra } => f
                .debug_struct("TrailingBytes")
                .field("extra", extra)
                .field("why", &why)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `unwrap()` prints says what the error means and what to do.
    #[test]
    fn debug_says_what_to_do() {
        let decode = format!("{:?}", DecodeError::SelfDescribing);
        assert!(decode.starts_with("SelfDescribing { why: \"undecodable frame payload: the type reads a self-describing format"), "{decode}");
        assert!(decode.contains("wrap the value in `Described`"), "{decode}");
        let encode = format!("{:?}", EncodeError::SkippedField { field: "note" });
        assert!(encode.starts_with("SkippedField { field: \"note\", why: \"cannot serialize message: field `note` was skipped"), "{encode}");
    }
}
