//! Reading a JSON request body strictly: `application/json` only (415 otherwise), nesting
//! bounded by `--max-json-depth` before any parsing (a 10 MB array of arrays costs one scan,
//! not a recursion), a JSON object at the top, and readers for fields that name the field's
//! path in every error (`evaluations[2].subject.type: expected a string, found a number`).
//!
//! The body's size and arrival time are bounded before it gets here (the server's HTTP layer:
//! 413 and 408).

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::error::HttpError;

/// Returns an error unless the request says its body is JSON: `application/json`, with at most
/// a `charset=utf-8` parameter (JSON is UTF-8, RFC 8259).
pub fn require_json_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let unsupported = |found: &str| {
        HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content-type: expected `application/json`, found {found}"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("none"));
    };
    let Ok(text) = value.to_str() else {
        return Err(unsupported("a value that is not text"));
    };
    let mut parts = text.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or_default();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(unsupported(&format!("`{}`", shorten(media_type))));
    }
    for parameter in parts.filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = value.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")) {
            return Err(unsupported(&format!(
                "`application/json` with `{}`",
                shorten(parameter)
            )));
        }
    }
    Ok(())
}

/// At most 40 characters of a caller's text, for messages.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(40).collect();
        short.push('…');
        short
    }
}

/// Parses `body` as one JSON object nested at most `max_depth` levels deep.
pub fn parse_object(body: &[u8], max_depth: usize) -> Result<Map<String, Value>, HttpError> {
    check_depth(body, max_depth)?;
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        HttpError::invalid(format!(
            "body: not valid JSON: {} at line {} column {}",
            error_kind(&error),
            error.line(),
            error.column()
        ))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(HttpError::wrong_type("body", "a JSON object", &other)),
    }
}

/// What is wrong with a body that does not parse, without quoting it.
fn error_kind(error: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => "it ends too early",
        Category::Syntax => "syntax error",
        Category::Data => "a value out of range",
        Category::Io => "it could not be read",
    }
}

/// Refuses JSON nested deeper than `max_depth` arrays and objects, counting brackets outside
/// strings: one pass over the bytes, whatever they are (a malformed body fails to parse later).
fn check_depth(body: &[u8], max_depth: usize) -> Result<(), HttpError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    crate::telemetry::metrics::record_limit_breach(
                        crate::telemetry::metrics::LimitBreach::JsonDepth,
                    );
                    return Err(HttpError::invalid(format!(
                        "body: JSON nested deeper than the limit of {max_depth} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Returns `object[key]`, with `null` read as absent (JSON writers often send `null` for an
/// unset optional field).
pub fn get<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// Returns the string at `object[key]`, named `path` in errors; `None` when absent.
pub fn optional_string<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<Option<&'v str>, HttpError> {
    match get(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(HttpError::wrong_type(&path(), "a string", other)),
    }
}

/// Returns the non-empty string at `object[key]`, named `path` in errors.
pub fn required_string<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<&'v str, HttpError> {
    match optional_string(object, key, path)? {
        None => Err(HttpError::missing(&path())),
        Some("") => Err(HttpError::invalid(format!("{}: must not be empty", path()))),
        Some(text) => Ok(text),
    }
}

/// Returns the object at `object[key]` (empty when absent), named `path` in errors.
pub fn optional_object(
    object: &Map<String, Value>,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<Map<String, Value>, HttpError> {
    match get(object, key) {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(HttpError::wrong_type(&path(), "an object", other)),
    }
}

/// Returns `value` as an object, named `path` in errors.
pub fn as_object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, HttpError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(HttpError::wrong_type(path, "an object", other)),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_json_is_accepted() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(
                require_json_content_type(&headers(Some(good))).is_ok(),
                "{good}"
            );
        }
        for bad in [
            None,
            Some("text/plain"),
            Some("application/json; charset=latin1"),
            Some("application/jsonp"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let error = require_json_content_type(&headers(bad)).unwrap_err();
            assert_eq!(
                error.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{bad:?}"
            );
            assert!(error.message().starts_with("content-type: "), "{bad:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        let error = parse_object(deep.as_bytes(), 32).unwrap_err();
        assert!(error.message().contains("nested deeper"), "{error:?}");
        // Brackets inside strings do not count.
        let quoted = format!("{{\"a\":\"{}\\\"[\"}}", "[".repeat(100));
        assert!(parse_object(quoted.as_bytes(), 32).is_ok());
    }

    #[test]
    fn malformed_bodies_are_named_without_being_quoted() {
        let error = parse_object(b"{\"subject\": tru", 32).unwrap_err();
        assert!(
            error.message().starts_with("body: not valid JSON"),
            "{error:?}"
        );
        let error = parse_object(b"[1]", 32).unwrap_err();
        assert_eq!(
            error.message(),
            "body: expected a JSON object, found an array"
        );
    }

    #[test]
    fn fields_are_named_with_their_path() {
        let object = parse_object(br#"{"type": 3, "id": "", "p": []}"#, 8).unwrap();
        let path = |name: &'static str| move || format!("subject.{name}");
        assert_eq!(
            required_string(&object, "type", &path("type"))
                .unwrap_err()
                .message(),
            "subject.type: expected a string, found a number"
        );
        assert_eq!(
            required_string(&object, "id", &path("id"))
                .unwrap_err()
                .message(),
            "subject.id: must not be empty"
        );
        assert_eq!(
            required_string(&object, "name", &path("name"))
                .unwrap_err()
                .message(),
            "subject.name: required field is missing"
        );
        assert_eq!(
            optional_object(&object, "p", &path("properties"))
                .unwrap_err()
                .message(),
            "subject.properties: expected an object, found an array"
        );
    }
}
