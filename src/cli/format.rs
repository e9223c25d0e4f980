//! Text helpers for the operator commands: times as UTC text, ages and
//! countdowns that fit a column, cutting and wrapping to the terminal width.

use std::time::Duration;

use crate::clock::Timestamp;

/// The widest line the commands print.
pub const WIDTH: usize = 100;

/// `2027-01-15 08:00:05Z` (UTC, seconds).
pub fn time(t: Timestamp) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.as_millis()) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        None => format!("@{}ms", t.as_millis()),
    }
}

/// A duration in at most two units: `45s`, `5m`, `2h03m`, `3d04h`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago `t` was (`"5m ago"`); a time in the future (a clock set
/// differently from the daemon's) reads `"just now"`.
pub fn ago(now: Timestamp, t: Timestamp) -> String {
    if t >= now {
        return "just now".to_string();
    }
    format!("{} ago", short(now.since(t)))
}

/// How long until `t` (`"in 4m"`), or `"due"` when it has passed.
pub fn until(now: Timestamp, t: Timestamp) -> String {
    if t <= now {
        return "due".to_string();
    }
    format!("in {}", short(t.since(now)))
}

/// `s` cut to `width` characters, ending in `…` when cut.
pub fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` word-wrapped to `width - indent` columns; lines after the first
/// are indented by `indent` spaces. A word longer than a line is cut.
pub fn wrap(text: &str, indent: usize, width: usize) -> String {
    let room = width.saturating_sub(indent).max(20);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word = cut(word, room);
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    lines.push(line);
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_countdowns_fit_a_column() {
        let s = Duration::from_secs;
        assert_eq!(short(s(0)), "0s");
        assert_eq!(short(s(59)), "59s");
        assert_eq!(short(s(61)), "1m");
        assert_eq!(short(s(2 * 3600 + 3 * 60)), "2h03m");
        assert_eq!(short(s(3 * 86_400 + 4 * 3600)), "3d04h");
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(ago(now, now.minus(s(90))), "1m ago");
        assert_eq!(ago(now, now.plus(s(5))), "just now");
        assert_eq!(until(now, now.plus(s(5))), "in 5s");
        assert_eq!(until(now, now), "due");
        assert_eq!(time(Timestamp::from_millis(0)), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn cutting_and_wrapping_respect_the_width() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        let text = "word ".repeat(60);
        let wrapped = wrap(&text, 10, 60);
        for (i, line) in wrapped.lines().enumerate() {
            assert!(line.chars().count() <= 60, "{line:?}");
            if i > 0 {
                assert!(line.starts_with("          word"), "{line:?}");
            }
        }
        assert_eq!(wrap("", 4, 60), "");
    }
}
