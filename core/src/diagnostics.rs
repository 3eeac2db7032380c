//! Turning errors into one-line messages, and Cedar's byte offsets into lines and columns.
//!
//! Cedar reports parse and validation errors as miette diagnostics whose labels carry byte
//! offsets into the text it parsed, never a file name or a line. A leaf module: it imports
//! nothing from the crate.

use miette::Diagnostic;

/// Makes a message one line: control characters (a newline inside a quoted string literal, say)
/// are escaped, so that every error stays one `file:line:column: message` line.
pub fn one_line(message: String) -> String {
    if message.chars().any(char::is_control) {
        message
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        message
    }
}

/// The most characters of one quoted piece of input an error message repeats.
pub const MAX_QUOTED_CHARS: usize = 40;
/// The most characters of one error message: a backstop for messages that repeat input
/// without quoting it.
const MAX_MESSAGE_CHARS: usize = 300;

/// Shortens what a message quotes from its input: each backtick-quoted piece longer than
/// [`MAX_QUOTED_CHARS`] keeps its first characters and an ellipsis, and the whole message is
/// cut at a few hundred characters. An error about a file must point at the problem, not
/// repeat the file: errors travel to logs and, for admins, to the `Status` RPC, and a bundle
/// may be a symlink away from a file that is not meant to be shown (issue 15).
pub fn shorten_quotes(message: String) -> String {
    let quoted_too_long = message
        .split('`')
        .skip(1)
        .step_by(2)
        .any(|quoted| quoted.chars().nth(MAX_QUOTED_CHARS).is_some());
    let message = if quoted_too_long {
        message
            .split('`')
            .enumerate()
            .map(|(i, piece)| {
                if i % 2 == 1 {
                    excerpt(piece, MAX_QUOTED_CHARS)
                } else {
                    piece.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("`")
    } else {
        message
    };
    if message.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        excerpt(&message, MAX_MESSAGE_CHARS)
    } else {
        message
    }
}

/// Returns the first `max` characters of `text`, with `…` when something was cut.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Returns an I/O error as a lowercase phrase.
pub fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::InvalidData => "not valid utf-8 text".to_owned(),
        _ => {
            let text = error.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// Returns the 1-based line and character column of a byte offset in `text`. (Not miette's
/// `SourceCode::read_span`, already a dependency: its column counts bytes, so any non-ASCII
/// character earlier on the line would move the reported column.)
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// The line starts of one text, for turning many byte offsets into lines and columns: each
/// lookup is a binary search, where [`line_column`] counts every newline before the offset
/// (quadratic over the 10,000 policies of one file: most of the time a large bundle took to
/// load before issue 20).
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts: 0, then just past every newline.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the lines of `text` (one pass).
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Self { text, starts }
    }

    /// Returns the 1-based line and character column of a byte offset, as [`line_column`].
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let line_start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

/// Finds the position serde_json puts at the end of its messages (`… at line 10 column 2`).
pub fn serde_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.rfind(" at line ")? + " at line ".len()..];
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// Returns an error and all its causes joined with `: `.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// One located problem out of a diagnostic: the byte offset of its first label, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Byte offset of the problem in the text Cedar parsed, when it has a label.
    pub offset: Option<usize>,
    /// The message, its causes, the label and the help, joined with `: `.
    pub message: String,
}

/// Flattens a diagnostic (and the diagnostics related to it) into located messages: the
/// message, its causes, the first label's text and the help, joined with `: `.
pub fn located_messages<D>(diagnostic: &D) -> Vec<Located>
where
    D: Diagnostic + std::error::Error + 'static,
{
    let mut out = vec![locate(diagnostic, error_chain(diagnostic))];
    if let Some(related) = diagnostic.related() {
        for other in related {
            out.push(locate(other, other.to_string()));
        }
    }
    out.dedup();
    out
}

fn locate(diagnostic: &dyn Diagnostic, mut message: String) -> Located {
    let first_label = diagnostic.labels().and_then(|mut labels| labels.next());
    let offset = first_label.as_ref().map(miette::LabeledSpan::offset);
    if let Some(label) = first_label.as_ref().and_then(|l| l.label()) {
        message.push_str(": ");
        message.push_str(label);
    }
    if let Some(help) = diagnostic.help() {
        message.push_str(": ");
        message.push_str(&help.to_string());
    }
    Located { offset, message }
}

/// Returns the candidate nearest to `word` when it is near enough to be a typo of it (edit
/// distance, transpositions counting one, of at most a third of the word's length and at least
/// one), for "did you mean" hints. Ties go to the first candidate.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = strsim::damerau_levenshtein(word, candidate);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_suggests_only_near_names() {
        let names = ["viewer", "owner", "editor"];
        assert_eq!(nearest("veiwer", names), Some("viewer"));
        assert_eq!(nearest("viewers", names), Some("viewer"));
        assert_eq!(nearest("admin", names), None);
        assert_eq!(nearest("viewer", names), None);
        assert_eq!(nearest("Documnet", ["Document", "User"]), Some("Document"));
    }

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        // `é` is two bytes: the offset after it is column 4.
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 8), (3, 1));
        // Past the end and inside a character are clamped, not a panic.
        assert_eq!(line_column(text, 100), (3, 2));
        assert_eq!(line_column(text, 6), (2, 3));
    }

    #[test]
    fn long_quotes_and_long_messages_are_shortened() {
        let long = "x".repeat(100);
        assert_eq!(
            shorten_quotes(format!("`{long}` is not a valid relation")),
            format!("`{}…` is not a valid relation", "x".repeat(40))
        );
        // Short quotes, and text between quotes, are kept as they are.
        assert_eq!(
            shorten_quotes("expected `#` after `Doc`, found `x`".to_owned()),
            "expected `#` after `Doc`, found `x`"
        );
        // An unterminated quote is shortened too: it runs to the end of the message.
        assert_eq!(
            shorten_quotes(format!("unexpected `{long}")),
            format!("unexpected `{}…", "x".repeat(40))
        );
        let unquoted = shorten_quotes("é".repeat(1000));
        assert_eq!(unquoted.chars().count(), 301);
        assert!(unquoted.ends_with('…'));
    }

    #[test]
    fn serde_positions_are_found() {
        assert_eq!(
            serde_position("trailing comma at line 10 column 2"),
            Some((10, 2))
        );
        assert_eq!(serde_position("no position"), None);
    }

    #[test]
    fn cedar_parse_errors_keep_their_label() {
        let err =
            cedar_policy::Policy::parse(None, "permit(principal, action, resource)").unwrap_err();
        let located = located_messages(&err);
        assert_eq!(located[0].offset, Some(35));
        assert_eq!(
            located[0].message,
            "unexpected end of input: expected `;` or identifier"
        );
    }

    #[test]
    fn the_line_index_agrees_with_counting() {
        let text = "a\nbé\n\n  cd\r\nlast";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                index.line_column(offset),
                line_column(text, offset),
                "{offset}"
            );
        }
    }
}
