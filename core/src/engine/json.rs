//! Normalising caller JSON into the JSON Cedar accepts.
//!
//! Cedar has no floating point and no null. JSON and protobuf `Struct` carry numbers as
//! doubles, so a whole number such as `3` or `3.0` becomes a Long, and a fraction, a null, a
//! non-finite number or a number outside Cedar's range is an error that names the field.

use serde_json::{Map, Number, Value};

use crate::input::RequestError;

/// The largest integer a double represents exactly (2^53).
const MAX_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// Returns `value` with whole numbers as integers, or the first problem found under `path`
/// (such as `context.items[2]`).
pub(super) fn normalize_json(
    value: Value,
    path: &str,
    max_depth: usize,
) -> Result<Value, RequestError> {
    let mut path_buf = path.to_owned();
    normalize(value, &mut path_buf, max_depth)
}

fn normalize(value: Value, path: &mut String, depth_left: usize) -> Result<Value, RequestError> {
    let invalid = |path: &str, reason: String| RequestError::Invalid {
        field: path.to_owned(),
        reason,
    };
    match value {
        Value::Null => Err(invalid(path, "null is not a Cedar value".to_owned())),
        Value::Bool(_) | Value::String(_) => Ok(value),
        Value::Number(n) => normalize_number(&n).map_err(|reason| invalid(path, reason)),
        Value::Array(items) => {
            let depth_left = descend(path, depth_left)?;
            let len = path.len();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                out.push(normalize(item, path, depth_left)?);
                path.truncate(len);
            }
            Ok(Value::Array(out))
        }
        Value::Object(fields) => {
            let depth_left = descend(path, depth_left)?;
            Ok(Value::Object(normalize_map(fields, path, depth_left)?))
        }
    }
}

fn descend(path: &str, depth_left: usize) -> Result<usize, RequestError> {
    depth_left
        .checked_sub(1)
        .ok_or_else(|| RequestError::TooDeep {
            field: path.to_owned(),
        })
}

/// Normalises every field of a record (one level is already accounted for by the caller).
pub(super) fn normalize_map(
    fields: Map<String, Value>,
    path: &mut String,
    depth_left: usize,
) -> Result<Map<String, Value>, RequestError> {
    let len = path.len();
    let mut out = Map::with_capacity(fields.len());
    for (key, item) in fields {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&key);
        let item = normalize(item, path, depth_left)?;
        path.truncate(len);
        out.insert(key, item);
    }
    Ok(out)
}

fn normalize_number(n: &Number) -> Result<Value, String> {
    if let Some(i) = n.as_i64() {
        return Ok(Value::from(i));
    }
    if n.as_u64().is_some() {
        return Err(format!("`{n}` is out of range for a Cedar long"));
    }
    let Some(f) = n.as_f64() else {
        return Err(format!("`{n}` is not a number Cedar accepts"));
    };
    if !f.is_finite() {
        return Err(format!("`{f}` is not a number Cedar accepts"));
    }
    if f.fract() != 0.0 {
        return Err(format!(
            "`{n}` is not an integer; Cedar has no floating-point numbers (pass a decimal as a string)"
        ));
    }
    if f.abs() > MAX_EXACT_DOUBLE {
        return Err(format!(
            "`{n}` is too large to be exact as a floating-point number; pass it as an integer below 2^53"
        ));
    }
    // INVARIANT: |f| <= 2^53, so the cast is exact.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "whole number within ±2^53, checked above"
    )]
    let whole = f as i64;
    Ok(Value::from(whole))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn norm(v: Value) -> Result<Value, String> {
        normalize_json(v, "context", 4).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_become_integers() {
        assert_eq!(
            norm(json!({"a": 3.0, "b": [1.0, -2]})).unwrap(),
            json!({"a": 3, "b": [1, -2]})
        );
    }

    #[test]
    fn fractions_nulls_and_huge_numbers_name_their_field() {
        assert_eq!(
            norm(json!({"amount": 1.5})).unwrap_err(),
            "context.amount: `1.5` is not an integer; Cedar has no floating-point numbers (pass a decimal as a string)"
        );
        assert_eq!(
            norm(json!({"items": [1, null]})).unwrap_err(),
            "context.items[1]: null is not a Cedar value"
        );
        let huge = norm(json!({"n": 1e300})).unwrap_err();
        assert!(
            huge.starts_with("context.n: `") && huge.contains("is too large"),
            "{huge}"
        );
        assert!(
            norm(json!({"n": u64::MAX}))
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(norm(json!({"a": {"b": {"c": {"d": 1}}}})).is_ok());
        assert_eq!(
            norm(json!({"a": {"b": {"c": {"d": {"e": 1}}}}})).unwrap_err(),
            "context.a.b.c.d: nested too deeply"
        );
    }
}
