//! Error words that come from serde, from a type's own code or from a
//! peer's bytes, kept to a bounded length: a refusal may quote what the
//! peer sent, and the peer chooses how long that is.

use std::fmt::{Display, Write};

/// The longest message kept, in bytes (before the "..." that marks a cut).
const MESSAGE_MAX: usize = 240;

/// `message` formatted, cut at [`MESSAGE_MAX`] bytes (on a character
/// boundary), without formatting the rest.
pub(super) fn capped(message: impl Display) -> String {
    let mut words = Capped(String::new());
    // An error only means the cap was reached: what fits is kept.
    let _ = write!(words, "{message}");
    words.0
}

/// A string that takes at most [`MESSAGE_MAX`] bytes, then refuses.
struct Capped(String);

impl Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() >= MESSAGE_MAX {
            return Err(std::fmt::Error);
        }
        let room = MESSAGE_MAX - self.0.len();
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.0.push_str(&s[..cut]);
        self.0.push_str("...");
        Err(std::fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_words_stay_and_long_ones_are_cut_on_a_character() {
        assert_eq!(capped(format_args!("odd: {}", 3)), "odd: 3");
        let long = capped("é".repeat(1000));
        assert!(
            long.ends_with("...") && long.len() <= MESSAGE_MAX + 3,
            "{long}"
        );
        assert_eq!(capped("x".repeat(MESSAGE_MAX)).len(), MESSAGE_MAX);
    }
}
