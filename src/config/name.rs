//! The rule for provider and session names, shared by the provider,
//! session and maintenance keys.

/// How [`valid_name`] is explained in error messages.
pub(super) const NAME_RULE: &str = "1 to 64 characters from A-Z a-z 0-9 _ . -";

/// `[A-Za-z0-9_.-]{1,64}`, and not `.` or `..` (which a URL path would
/// collapse). Used for provider names and configured session names.
pub(super) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "."
        && name != ".."
}
