//! Request paths, cleaned before matching, and query parameters.
//!
//! A path is normalised the way RFC 3986 (section 6.2.2) says, and refused where cleaning it
//! could make Verdict and the service behind the gateway disagree about what is asked:
//!
//! 1. It must start with `/`, and hold only the characters a path may hold (RFC 3986 `pchar`,
//!    `/` and `%`): a raw `\`, space, `#`, control or non-ASCII character is refused.
//! 2. Each segment is percent-decoded where the byte is an unreserved character (`%41` is
//!    `A`, `%2e` is `.`); other escapes stay encoded, with upper-case hex digits (`%c3%a9` is
//!    `%C3%A9`). An encoded slash (`%2F`) or backslash (`%5C`) is refused: a service that decodes
//!    it would see another path than the one that was authorised
//!    (`/v1/documents/..%2fadmin`). A `%` not followed by two hex digits is refused.
//! 3. Empty segments (`//`, a trailing `/`) and `.` segments are dropped; `..` removes the
//!    segment before it, and a `..` that would climb above the root is refused. Dot segments
//!    are resolved after decoding, so `%2e%2e` is `..`: the route matched is the one for the
//!    path the service serves once it resolves them, never a more permissive neighbour.
//!
//! Paths are case-sensitive; only percent-encoding's hex digits are not.

use super::PathRefusal;

/// Returns whether `c` is an RFC 3986 unreserved character.
pub(crate) fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

fn is_path_char(c: char) -> bool {
    is_unreserved(c) || "!$&'()*+,;=:@/%".contains(c)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Reads the escape `%XY` at `bytes[i]` (which is `%`): its byte value.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let high = hex_value(*bytes.get(i + 1)?)?;
    let low = hex_value(*bytes.get(i + 2)?)?;
    Some(high * 16 + low)
}

/// Normalises the path part of a request (without its query): the segments to match.
pub(crate) fn normalize_path(path: &str) -> Result<Vec<String>, PathRefusal> {
    if !path.starts_with('/') {
        return Err(PathRefusal::NotAbsolute);
    }
    if let Some(c) = path.chars().find(|&c| !is_path_char(c)) {
        return Err(if c == '\\' {
            PathRefusal::Backslash
        } else {
            PathRefusal::InvalidCharacter
        });
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = decode_unreserved(raw)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathRefusal::AboveRoot);
                }
            }
            _ => segments.push(segment),
        }
    }
    Ok(segments)
}

/// Decodes the escapes of unreserved characters in one segment and upper-cases the others.
fn decode_unreserved(segment: &str) -> Result<String, PathRefusal> {
    if !segment.contains('%') {
        return Ok(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // INVARIANT: the path was checked to be ASCII, so every byte is a character.
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let byte = escape_at(bytes, i).ok_or(PathRefusal::InvalidPercentEncoding)?;
        match byte {
            b'/' => return Err(PathRefusal::EncodedSlash),
            b'\\' => return Err(PathRefusal::Backslash),
            _ if is_unreserved(char::from(byte)) => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
        i += 3;
    }
    Ok(out)
}

/// Decodes a normalised segment completely, for a parameter's value (a resource id): it must
/// be UTF-8 without control characters.
pub(crate) fn decode_parameter(segment: &str) -> Result<String, PathRefusal> {
    percent_decode(segment, false).ok_or(PathRefusal::InvalidParameter)
}

/// Percent-decodes `text` (with `+` as a space when `plus_is_space`, as in query strings):
/// `None` when an escape is malformed, or the result is not UTF-8 or has a control character.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(escape_at(bytes, i)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    if decoded.chars().any(char::is_control) {
        return None;
    }
    Some(decoded)
}

/// Returns every value of the query parameter `name` (`a=1&a=2` has two), decoded; `Err` when
/// the query cannot be read reliably: a name or one of `name`'s values is malformed.
pub(crate) fn query_values(query: &str, name: &str) -> Result<Vec<String>, ()> {
    let mut values = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        // A name that cannot be decoded might be `name` in disguise: refuse rather than guess.
        let key = percent_decode(raw_key, true).ok_or(())?;
        if key == name {
            values.push(percent_decode(raw_value, true).ok_or(())?);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathRefusal> {
        normalize_path(path).map(|s| format!("/{}", s.join("/")))
    }

    #[test]
    fn duplicate_and_trailing_slashes_and_dot_segments_are_cleaned() {
        assert_eq!(norm("/v1//documents///d1/"), Ok("/v1/documents/d1".into()));
        assert_eq!(norm("/v1/./documents/."), Ok("/v1/documents".into()));
        assert_eq!(
            norm("/v1/documents/d1/../d2"),
            Ok("/v1/documents/d2".into())
        );
        assert_eq!(norm("/"), Ok("/".into()));
        assert_eq!(norm("//"), Ok("/".into()));
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(norm("/v1/%64ocuments/%7e"), Ok("/v1/documents/~".into()));
        assert_eq!(norm("/v1/caf%c3%a9"), Ok("/v1/caf%C3%A9".into()));
        // Decoded dots are dot segments.
        assert_eq!(norm("/v1/documents/%2e%2E/admin"), Ok("/v1/admin".into()));
        assert_eq!(norm("/v1/%2e/x"), Ok("/v1/x".into()));
    }

    #[test]
    fn encoded_slashes_backslashes_and_climbing_above_the_root_are_refused() {
        assert_eq!(
            norm("/v1/documents/..%2fadmin"),
            Err(PathRefusal::EncodedSlash)
        );
        assert_eq!(norm("/v1/documents/a%2Fb"), Err(PathRefusal::EncodedSlash));
        assert_eq!(
            norm("/v1/documents/..%5cadmin"),
            Err(PathRefusal::Backslash)
        );
        assert_eq!(
            norm("/v1/documents\\..\\admin"),
            Err(PathRefusal::Backslash)
        );
        assert_eq!(norm("/v1/../../etc"), Err(PathRefusal::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathRefusal::AboveRoot));
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert_eq!(norm("v1/documents"), Err(PathRefusal::NotAbsolute));
        assert_eq!(norm(""), Err(PathRefusal::NotAbsolute));
        assert_eq!(norm("*"), Err(PathRefusal::NotAbsolute));
        assert_eq!(norm("/v1/a%2"), Err(PathRefusal::InvalidPercentEncoding));
        assert_eq!(norm("/v1/a%zz"), Err(PathRefusal::InvalidPercentEncoding));
        assert_eq!(norm("/v1/a b"), Err(PathRefusal::InvalidCharacter));
        assert_eq!(norm("/v1/a#b"), Err(PathRefusal::InvalidCharacter));
        assert_eq!(norm("/v1/caf\u{e9}"), Err(PathRefusal::InvalidCharacter));
        assert_eq!(norm("/v1/\n"), Err(PathRefusal::InvalidCharacter));
    }

    #[test]
    fn parameters_decode_completely_but_never_to_control_characters() {
        assert_eq!(decode_parameter("caf%C3%A9"), Ok("café".into()));
        assert_eq!(decode_parameter("a%20b+c"), Ok("a b+c".into()));
        assert_eq!(decode_parameter("a%00"), Err(PathRefusal::InvalidParameter));
        assert_eq!(decode_parameter("%FF"), Err(PathRefusal::InvalidParameter));
    }

    #[test]
    fn query_values_are_decoded_and_repeats_kept() {
        assert_eq!(
            query_values("a=1&b=x+y%21&a=2", "a"),
            Ok(vec!["1".into(), "2".into()])
        );
        assert_eq!(query_values("a=1&b=x+y%21", "b"), Ok(vec!["x y!".into()]));
        assert_eq!(query_values("flag&x=1", "flag"), Ok(vec![String::new()]));
        assert_eq!(query_values("", "a"), Ok(vec![]));
        assert_eq!(query_values("%zz=1&a=1", "a"), Err(()));
        assert_eq!(query_values("a=%zz", "a"), Err(()));
        // A malformed value of another parameter does not matter.
        assert_eq!(query_values("b=%zz&a=1", "a"), Ok(vec!["1".into()]));
    }
}
