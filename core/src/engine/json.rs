//! Normalising caller JSON into the JSON Cedar accepts.
//!
//! Cedar has no floating point and no null. JSON and protobuf `Struct` carry numbers as
//! doubles, so a whole number such as `3` or `3.0` becomes a Long, and a fraction, a null, a
//! non-finite number or a number outside Cedar's range is an error that names the field.

use serde_json::{Map, Number, Value};

use crate::input::RequestError;

/// The largest integer a double represents exactly (2^53).
const MAX_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// Normalises every field of a record in place (whole numbers become integers; the record
/// itself is not counted as a level), or returns the first problem found, named by its path
/// under `root` (such as `context.items[2]`). Nothing is allocated unless there is a problem:
/// the field's path is built on the way back up.
pub(super) fn normalize_map(
    fields: &mut Map<String, Value>,
    root: impl FnOnce() -> String,
    max_depth: usize,
) -> Result<(), RequestError> {
    normalize_fields(fields, max_depth).map_err(|fault| fault.into_error(root()))
}

/// A step from a value to one inside it.
enum Step {
    Field(String),
    Index(usize),
}

/// A problem, and the steps from where it was found up to the value normalised (innermost
/// first).
struct Fault {
    steps: Vec<Step>,
    problem: Problem,
}

enum Problem {
    Invalid(String),
    TooDeep,
}

impl Fault {
    fn new(problem: Problem) -> Self {
        Self {
            steps: Vec::new(),
            problem,
        }
    }

    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    fn into_error(self, root: String) -> RequestError {
        let mut field = root;
        for step in self.steps.into_iter().rev() {
            match step {
                Step::Field(name) => {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(&name);
                }
                Step::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        match self.problem {
            Problem::Invalid(reason) => RequestError::Invalid { field, reason },
            Problem::TooDeep => RequestError::TooDeep { field },
        }
    }
}

fn normalize(value: &mut Value, depth_left: usize) -> Result<(), Fault> {
    match value {
        Value::Null => Err(Fault::new(Problem::Invalid(
            "null is not a Cedar value".to_owned(),
        ))),
        Value::Bool(_) | Value::String(_) => Ok(()),
        Value::Number(n) => {
            if !n.is_i64() {
                *value = normalize_number(n).map_err(|r| Fault::new(Problem::Invalid(r)))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let depth_left = descend(depth_left)?;
            for (i, item) in items.iter_mut().enumerate() {
                normalize(item, depth_left).map_err(|f| f.at(Step::Index(i)))?;
            }
            Ok(())
        }
        Value::Object(fields) => normalize_fields(fields, descend(depth_left)?),
    }
}

fn descend(depth_left: usize) -> Result<usize, Fault> {
    depth_left
        .checked_sub(1)
        .ok_or_else(|| Fault::new(Problem::TooDeep))
}

/// Normalises every field of a record (one level is already accounted for by the caller).
fn normalize_fields(fields: &mut Map<String, Value>, depth_left: usize) -> Result<(), Fault> {
    for (key, item) in fields.iter_mut() {
        normalize(item, depth_left).map_err(|f| f.at(Step::Field(key.clone())))?;
    }
    Ok(())
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
        let Value::Object(mut fields) = v else {
            panic!("a record")
        };
        normalize_map(&mut fields, || "context".to_owned(), 3).map_err(|e| e.to_string())?;
        Ok(Value::Object(fields))
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
