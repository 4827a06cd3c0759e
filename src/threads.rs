//! Thread names: every thread is named, and Linux keeps at most 15 bytes of a name.

/// `prefix` followed by the id's `[A-Za-z0-9-]` characters, at most 15 bytes in all, so a
/// task's threads are recognisable in `top -H` and `/proc/<pid>/task` whatever the id holds.
pub fn thread_name(prefix: &str, id: &str) -> String {
    let mut name = prefix.to_owned();
    name.extend(
        id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(15usize.saturating_sub(prefix.len())),
    );
    name
}
