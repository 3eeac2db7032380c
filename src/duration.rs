//! Durations as settings write them (`250ms`, `2s`, `1m`, `1h`, `0`): shared by the flags
//! (`config`) and the issuers file (`identity`), which import it from here rather than from
//! each other.

use std::time::Duration;

/// Parses `0`, `250ms`, `2s`, `1m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `250ms`, `2s` or `1m`"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        _ => Err(format!(
            "`{text}` is not a duration such as `250ms`, `2s` or `1m`"
        )),
    }
}
