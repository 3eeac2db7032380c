//! Durations as settings write them (`250ms`, `2s`, `1m30s`, `0`): shared by the flags
//! (`config`) and the issuers file (`identity`), which import it from here rather than from
//! each other.

use std::time::Duration;

/// Parses a duration: `0`, or humantime's format (`250ms`, `2s`, `1m`, `1h30m`, `1day`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as `250ms`, `2s` or `1m` ({e})"))
}
