//! Decision test cases kept with a bundle (`tests/*.yaml`), run by `verdict test` and by
//! `cargo test`.
//!
//! ```yaml
//! cases:
//!   - name: nested team member may read the roadmap
//!     request:
//!       principal: User::"bob"
//!       action: read
//!       resource: Document::"roadmap"
//!       context: {scopes: ["documents:read"]}
//!     expect:
//!       decision: allow
//!       reasons: [document-read]      # each must be a determining policy; [] means none
//!       errors: 0                     # evaluation errors (default 0)
//!       properties: {ssn: deny}       # per requested property
//!   - name: a fraction is not a Long
//!     request: {principal: User::"a", action: read, resource: Document::"d", context: {n: 1.5}}
//!     expect:
//!       invalid: "context.n"          # the request is rejected; the message contains this
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bundle::LoadError;
use crate::diagnostics::io_reason;
use crate::engine::{Decision, Outcome};
use crate::input::CheckInput;
use crate::limits::Limits;
use crate::snapshot::Snapshot;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for readers of the file")]
    description: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: CheckInput,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Allow,
    Deny,
}

impl Expected {
    fn matches(self, outcome: Outcome) -> bool {
        matches!(
            (self, outcome),
            (Self::Allow, Outcome::Allow) | (Self::Deny, Outcome::Deny)
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Option<Expected>,
    reasons: Option<Vec<String>>,
    errors: Option<usize>,
    #[serde(default)]
    properties: BTreeMap<String, Expected>,
    relation_depth_exceeded: Option<bool>,
    invalid: Option<String>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case file.
    pub path: PathBuf,
    /// The line of the case's `name:` in the file (1-based; 0 if not found).
    pub line: usize,
    /// The case's name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
    /// The policies that determined the decision (none for a rejected request), for coverage.
    pub determining: Vec<String>,
    /// The request's action id, such as `read`.
    pub action: String,
    /// The request's resource type, such as `Document`.
    pub resource_type: String,
}

impl CaseResult {
    /// Returns `file:line` (or just the file when the line is unknown).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.path.display().to_string()
        } else {
            format!("{}:{}", self.path.display(), self.line)
        }
    }
}

/// Returns the case files of a bundle: `DIR/tests/*.yaml` and `*.yml`, sorted; route files
/// (`routes.yaml`, `*.routes.yaml`) are the loader's, not decision tables.
pub fn discover(bundle_dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let dir = bundle_dir.join("tests");
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        LoadError::file(
            &dir,
            format!("cannot read test directory: {}", io_reason(&e)),
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| LoadError::file(&dir, io_reason(&e)))?
            .path();
        let is_yaml = path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        let is_routes = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(crate::bundle::is_route_file_name);
        if is_yaml && !is_routes {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs every case of one file against `snapshot`; a file that cannot be read or parsed is an
/// error with its line and column.
pub fn run_file(snapshot: &Snapshot, path: &Path) -> Result<Vec<CaseResult>, LoadError> {
    run_file_matching(snapshot, path, |_| true).map(|(results, _)| results)
}

/// Runs the cases of one file whose name `keep` accepts; returns their results and the number
/// of cases left out.
pub fn run_file_matching(
    snapshot: &Snapshot,
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<CaseResult>, usize), LoadError> {
    let (text, file) = read_case_file(path)?;
    let lines = case_lines(&text);
    let mut results = Vec::with_capacity(file.cases.len());
    let mut left_out = 0;
    for (index, case) in file.cases.into_iter().enumerate() {
        let line = lines.get(index).copied().unwrap_or(0);
        if !keep(&case.name) {
            left_out += 1;
            continue;
        }
        let action = case.request.action.clone();
        let resource_type = case.request.resource.entity_type.clone();
        let (failure, determining) = match run_case(snapshot, case.request, &case.expect) {
            Ok(determining) => (None, determining),
            Err((failure, determining)) => (Some(failure), determining),
        };
        results.push(CaseResult {
            path: path.to_path_buf(),
            line,
            name: case.name,
            failure,
            determining,
            action,
            resource_type,
        });
    }
    Ok((results, left_out))
}

/// Checks one case file without running it, as `verdict validate` does: it must be readable,
/// well-formed, use only known keys, and each case's `expect` must say what to expect. Returns
/// the number of cases.
pub fn check_file(path: &Path) -> Result<usize, LoadError> {
    let (text, file) = read_case_file(path)?;
    let lines = case_lines(&text);
    for (index, case) in file.cases.iter().enumerate() {
        let line = lines.get(index).copied().unwrap_or(0);
        if case.expect.decision.is_none() && case.expect.invalid.is_none() {
            let message = format!("case `{}`: {NEEDS_AN_EXPECTATION}", case.name);
            return Err(if line == 0 {
                LoadError::file(path, message)
            } else {
                LoadError::at(path, line, 1, message)
            });
        }
    }
    Ok(file.cases.len())
}

const NEEDS_AN_EXPECTATION: &str = "`expect` needs a `decision` or an `invalid`";

/// Reads and parses a case file; a file that cannot be read or parsed is an error with its
/// line and column.
fn read_case_file(path: &Path) -> Result<(String, CaseFile), LoadError> {
    // A FIFO or device named like a table would block the read (and `verdict validate`, which
    // reads the tables too): only a regular file is read.
    let metadata = std::fs::metadata(path)
        .map_err(|e| LoadError::file(path, format!("cannot read: {}", io_reason(&e))))?;
    if !metadata.is_file() {
        return Err(LoadError::file(
            path,
            "is not a regular file; a case file must be one",
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::file(path, format!("cannot read: {}", io_reason(&e))))?;
    let file: CaseFile = serde_yaml_ng::from_str(&text).map_err(|e| match e.location() {
        Some(at) => LoadError::at(path, at.line(), at.column(), yaml_reason(&e)),
        None => LoadError::file(path, yaml_reason(&e)),
    })?;
    Ok((text, file))
}

fn yaml_reason(error: &serde_yaml_ng::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The line where each case of `cases:` starts, in order, from the document's own spans (the
/// file was already parsed by serde, which reports no positions for values that parse).
fn case_lines(text: &str) -> Vec<usize> {
    use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};
    let Ok(documents) = MarkedYaml::load_from_str(text) else {
        return Vec::new();
    };
    let Some(cases) = documents
        .first()
        .and_then(|document| document.data.as_mapping_get("cases"))
    else {
        return Vec::new();
    };
    match &cases.data {
        YamlData::Sequence(items) => items.iter().map(|item| item.span.start.line()).collect(),
        _ => Vec::new(),
    }
}

/// Runs one case; returns the determining policies with the verdict, or why it failed.
fn run_case(
    snapshot: &Snapshot,
    input: CheckInput,
    expect: &Expect,
) -> Result<Vec<String>, (String, Vec<String>)> {
    if expect.decision.is_none() && expect.invalid.is_none() {
        return Err((NEEDS_AN_EXPECTATION.to_owned(), Vec::new()));
    }
    let decision = snapshot.check(input, &Limits::default());
    let decision = match (decision, &expect.invalid) {
        (Err(error), Some(wanted)) => {
            let message = error.to_string();
            return if message.contains(wanted.as_str()) {
                Ok(Vec::new())
            } else {
                Err((
                    format!("expected a rejection containing `{wanted}`, got `{message}`"),
                    Vec::new(),
                ))
            };
        }
        (Err(error), None) => return Err((format!("request rejected: {error}"), Vec::new())),
        (Ok(decision), Some(wanted)) => {
            return Err((
                format!(
                    "expected a rejection containing `{wanted}`, got {}",
                    describe(&decision)
                ),
                decision.determining_policies.clone(),
            ));
        }
        (Ok(decision), None) => decision,
    };
    match check_decision(&decision, expect) {
        Ok(()) => Ok(decision.determining_policies),
        Err(failure) => Err((failure, decision.determining_policies)),
    }
}

fn describe(decision: &Decision) -> String {
    let mut text = format!(
        "{} (determining: [{}], errors: {}",
        decision.outcome.as_str(),
        decision.determining_policies.join(", "),
        decision.errors.len()
    );
    for error in &decision.errors {
        text.push_str(&format!("; {}: {}", error.policy_id, error.message));
    }
    if decision.relation_depth_exceeded {
        text.push_str(", relation depth exceeded");
    }
    text.push(')');
    text
}

fn check_decision(decision: &Decision, expect: &Expect) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(wanted) = expect.decision
        && !wanted.matches(decision.outcome)
    {
        problems.push(format!("expected {wanted:?}").to_lowercase());
    }
    match expect.reasons.as_deref() {
        Some([]) if !decision.determining_policies.is_empty() => {
            problems.push("expected no determining policies".to_owned());
        }
        Some(reasons) => {
            for reason in reasons {
                if !decision.determining_policies.contains(reason) {
                    problems.push(format!(
                        "expected `{reason}` among the determining policies"
                    ));
                }
            }
        }
        None => {}
    }
    let wanted_errors = expect.errors.unwrap_or(0);
    if decision.errors.len() != wanted_errors {
        problems.push(format!("expected {wanted_errors} evaluation errors"));
    }
    if let Some(wanted) = expect.relation_depth_exceeded
        && wanted != decision.relation_depth_exceeded
    {
        problems.push(format!("expected relation_depth_exceeded: {wanted}"));
    }
    for (name, wanted) in &expect.properties {
        match decision.properties.iter().find(|p| &p.name == name) {
            Some(property) if wanted.matches(property.outcome) => {}
            Some(property) => problems.push(format!(
                "expected property `{name}` {}, got {}",
                format!("{wanted:?}").to_lowercase(),
                property.outcome.as_str()
            )),
            None => problems.push(format!("property `{name}` was not requested")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}; got {}",
            problems.join("; "),
            describe(decision)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_found_where_they_start_whatever_their_style() {
        let text = "cases:\n  - name: a\n    x: 1\n  - {name: \"b\", x: 2}\n  -\n    # a comment\n    name: >-\n      a\n  - name: a\n";
        assert_eq!(case_lines(text), [2, 4, 7, 9]);
        assert_eq!(case_lines("cases: 3\n"), Vec::<usize>::new());
        assert_eq!(case_lines("[1, 2]\n"), Vec::<usize>::new());
    }
}
