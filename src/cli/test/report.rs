//! The reports of a run: text for people, JSON for scripts, JUnit XML for CI systems.
//!
//! JUnit: one `<testsuite>` per case file and one `<testcase>` per case, a `<failure>` for a
//! failed case; a file that could not be read is a suite with one `<error>` case, so CI shows
//! it as broken rather than as fewer tests.

use super::coverage::Coverage;
use super::{TestRun, out};

/// Prints failures (every case with `verbose`), coverage and the summary line; a file that
/// could not be read goes to stderr.
pub(super) fn text(run: &TestRun, coverage: Option<&Coverage>, verbose: bool) {
    for file in &run.files {
        let results = match &file.outcome {
            Ok(results) => results,
            Err(error) => {
                eprintln!("error: {error}");
                continue;
            }
        };
        for result in results {
            match &result.failure {
                None if verbose => out!("ok   {}: {}", result.location(), result.name),
                None => {}
                Some(why) => out!("FAIL {}: {}: {why}", result.location(), result.name),
            }
        }
    }
    if let Some(coverage) = coverage {
        out!("{}", coverage.text().trim_end());
    }
    out!("{}", run.summary());
}

/// Returns the run as one JSON document.
pub(super) fn json(run: &TestRun, coverage: Option<&Coverage>) -> String {
    let files: Vec<serde_json::Value> = run
        .files
        .iter()
        .map(|file| match &file.outcome {
            Ok(results) => serde_json::json!({
                "path": file.path.display().to_string(),
                "cases": results.len(),
                "filtered_out": file.left_out,
            }),
            Err(error) => serde_json::json!({
                "path": file.path.display().to_string(),
                "error": error.to_string(),
            }),
        })
        .collect();
    let cases: Vec<serde_json::Value> = run
        .results()
        .map(|r| {
            serde_json::json!({
                "file": r.path.display().to_string(),
                "line": r.line,
                "name": r.name,
                "passed": r.failure.is_none(),
                "failure": r.failure,
                "determining_policies": r.determining,
            })
        })
        .collect();
    let mut document = serde_json::json!({
        "summary": {
            "passed": run.passed(),
            "failed": run.failed(),
            "filtered_out": run.left_out(),
            "files": run.files.len(),
            "unreadable_files": run.unreadable(),
        },
        "files": files,
        "cases": cases,
    });
    if let (Some(coverage), Some(object)) = (coverage, document.as_object_mut()) {
        object.insert("coverage".to_owned(), coverage.json());
    }
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// Returns the run as JUnit XML.
pub(super) fn junit(run: &TestRun) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"verdict test\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        run.selected() + run.unreadable(),
        run.failed(),
        run.unreadable()
    ));
    for file in &run.files {
        let path = escape(&file.path.display().to_string());
        match &file.outcome {
            Ok(results) => {
                let failures = results.iter().filter(|r| r.failure.is_some()).count();
                xml.push_str(&format!(
                    "  <testsuite name=\"{path}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n",
                    results.len()
                ));
                for result in results {
                    let head = format!(
                        "    <testcase name=\"{}\" classname=\"{path}\" file=\"{path}\" line=\"{}\"",
                        escape(&result.name),
                        result.line
                    );
                    match &result.failure {
                        None => xml.push_str(&format!("{head}/>\n")),
                        Some(why) => xml.push_str(&format!(
                            "{head}>\n      <failure message=\"{}\" type=\"mismatch\">{}</failure>\n    </testcase>\n",
                            escape(why),
                            escape(&format!("{}: {why}", result.location()))
                        )),
                    }
                }
            }
            Err(error) => {
                let message = escape(&error.to_string());
                xml.push_str(&format!(
                    "  <testsuite name=\"{path}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\">\n    <testcase name=\"(read the case file)\" classname=\"{path}\" file=\"{path}\">\n      <error message=\"{message}\" type=\"unreadable\">{message}</error>\n    </testcase>\n"
                ));
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>");
    xml
}

/// Escapes text for an XML attribute or element; characters XML 1.0 cannot hold at all are
/// replaced.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                escaped.push('\u{fffd}');
            }
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_replaces_control_characters() {
        assert_eq!(
            escape("User::\"a\" <&> 'b'\u{1}"),
            "User::&quot;a&quot; &lt;&amp;&gt; &apos;b&apos;\u{fffd}"
        );
    }
}
