//! Tuple syntax: one Zanzibar-style tuple per line, with Cedar entity uids as objects and
//! subjects.
//!
//! ```text
//! Document::"roadmap"#owner@User::"alice"          direct subject
//! Document::"roadmap"#viewer@Team::"eng"#member    userset subject
//! Document::"handbook"#viewer@User::*              wildcard: every User
//! # a comment line; blank lines are ignored; a comment may also follow a tuple
//! ```
//!
//! Entity types are Cedar paths (`Acme::Document`), ids are Cedar string literals with Cedar's
//! escapes, relations are identifiers (so that a policy can say `resource.viewer`). The parser
//! is hand-written rather than Cedar's own because bundles hold millions of tuples; it accepts
//! exactly the uid syntax Cedar accepts, minus whitespace inside a uid.

use std::borrow::Cow;
use std::fmt;

/// Identifiers Cedar reserves; none may name an entity type or a relation.
const RESERVED_IDENTIFIERS: [&str; 10] = [
    "true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar",
];

/// A syntax error in one tuple line or uid, located by its 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column}: {reason}")]
pub struct TupleParseError {
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What was wrong, lowercase, one line.
    pub reason: String,
}

/// An entity uid as written: a type path and an (unescaped) id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityUidText<'a> {
    /// The entity type, such as `Acme::Document`.
    pub entity_type: &'a str,
    /// The id with escapes resolved.
    pub id: Cow<'a, str>,
}

/// The subject of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectText<'a> {
    /// One entity: `User::"alice"`.
    Entity(EntityUidText<'a>),
    /// Everything related to an object by a relation: `Team::"eng"#member`.
    Userset {
        /// The object whose relation is meant.
        object: EntityUidText<'a>,
        /// The relation.
        relation: &'a str,
    },
    /// Every entity of a type: `User::*`.
    Wildcard {
        /// The entity type.
        entity_type: &'a str,
    },
}

/// One parsed tuple, borrowing from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleText<'a> {
    /// The object, such as `Document::"roadmap"`.
    pub object: EntityUidText<'a>,
    /// The relation, such as `viewer`.
    pub relation: &'a str,
    /// The subject.
    pub subject: SubjectText<'a>,
}

/// Returns whether `s` is a Cedar identifier that is not reserved.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    starts_well
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !RESERVED_IDENTIFIERS.contains(&s)
}

/// Formats a uid the way Cedar prints it: `Type::"id"` with the id escaped.
pub fn display_uid(entity_type: &str, id: &str) -> String {
    format!("{entity_type}::\"{}\"", id.escape_debug())
}

/// Writes the tuple in the syntax of a tuple file, ids escaped so that
/// [`parse_tuple_line`] reads back the same tuple: the canonical text of a tuple.
impl fmt::Display for TupleText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@", self.object, self.relation)?;
        match &self.subject {
            SubjectText::Entity(uid) => write!(f, "{uid}"),
            SubjectText::Userset { object, relation } => write!(f, "{object}#{relation}"),
            SubjectText::Wildcard { entity_type } => write!(f, "{entity_type}::*"),
        }
    }
}

impl fmt::Display for EntityUidText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::\"{}\"", self.entity_type, self.id.escape_debug())
    }
}

/// Parses one line of a tuple file: `Ok(None)` for blank and comment lines.
pub fn parse_tuple_line(line: &str) -> Result<Option<TupleText<'_>>, TupleParseError> {
    let mut cursor = Cursor::new(line);
    cursor.skip_whitespace();
    if cursor.at_end() || cursor.peek() == Some('#') {
        return Ok(None);
    }
    let object = cursor.entity_uid("object")?;
    cursor.expect('#', "after the object")?;
    let relation = cursor.identifier("relation")?;
    cursor.expect('@', "after the relation")?;
    let subject = cursor.subject()?;
    if cursor.peek() == Some('#') {
        return Err(cursor.error(
            "unexpected `#` after the subject; a comment needs whitespace before `#`".to_owned(),
        ));
    }
    cursor.skip_whitespace();
    match cursor.peek() {
        None | Some('#') => Ok(Some(TupleText {
            object,
            relation,
            subject,
        })),
        Some(other) => Err(cursor.error(format!(
            "unexpected `{other}` after the subject; a comment must start with `#`"
        ))),
    }
}

/// Parses a whole uid such as `User::"alice"` (no surrounding whitespace).
pub fn parse_entity_uid(text: &str) -> Result<EntityUidText<'_>, TupleParseError> {
    let mut cursor = Cursor::new(text);
    let uid = cursor.entity_uid("entity uid")?;
    if let Some(other) = cursor.peek() {
        return Err(cursor.error(format!("unexpected `{other}` after the entity uid")));
    }
    Ok(uid)
}

/// Checks an entity type path such as `Acme::Document`, without surrounding whitespace.
pub fn parse_entity_type(text: &str) -> Result<&str, TupleParseError> {
    let mut cursor = Cursor::new(text);
    let path = cursor.type_path("entity type")?;
    if cursor.at_end() {
        Ok(path)
    } else {
        Err(cursor.error(format!(
            "`{text}` is not an entity type (identifiers joined by `::`)"
        )))
    }
}

/// A position in a line; `pos` is a byte offset on a char boundary.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn bump(&mut self, c: char) {
        self.pos += c.len_utf8();
    }

    fn column(&self) -> usize {
        self.text[..self.pos].chars().count() + 1
    }

    fn error(&self, reason: String) -> TupleParseError {
        TupleParseError {
            column: self.column(),
            reason,
        }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of line".to_owned(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.bump(c);
        }
    }

    fn expect(&mut self, wanted: char, context: &str) -> Result<(), TupleParseError> {
        if self.peek() == Some(wanted) {
            self.bump(wanted);
            Ok(())
        } else {
            Err(self.error(format!(
                "expected `{wanted}` {context}, found {}",
                self.describe_next()
            )))
        }
    }

    /// Reads `[_a-zA-Z][_a-zA-Z0-9]*` and rejects reserved words.
    fn identifier(&mut self, what: &str) -> Result<&'a str, TupleParseError> {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(self.rest().len());
        let word = &self.text[start..start + len];
        if word.is_empty() || !is_identifier(word) {
            let reason = if word.is_empty() {
                format!("expected {what}, found {}", self.describe_next())
            } else if RESERVED_IDENTIFIERS.contains(&word) {
                format!("`{word}` is a reserved word and cannot be a {what}")
            } else {
                format!("`{word}` is not a valid {what} (it must not start with a digit)")
            };
            return Err(self.error(reason));
        }
        self.pos += len;
        Ok(word)
    }

    /// Reads `Ident(::Ident)*` up to (not including) a `::` that is followed by `"` or `*`.
    fn type_path(&mut self, what: &str) -> Result<&'a str, TupleParseError> {
        let start = self.pos;
        self.identifier(what)?;
        loop {
            let rest = self.rest();
            let Some(after) = rest.strip_prefix("::") else {
                break;
            };
            if after.starts_with('"') || after.starts_with('*') || after.is_empty() {
                break;
            }
            self.pos += 2;
            self.identifier(what)?;
        }
        Ok(&self.text[start..self.pos])
    }

    fn entity_uid(&mut self, what: &str) -> Result<EntityUidText<'a>, TupleParseError> {
        let entity_type = self.type_path(&format!("{what} type"))?;
        if !self.rest().starts_with("::\"") {
            return Err(self.error(format!(
                "expected `::\"` and a quoted id after `{entity_type}`, found {}",
                self.describe_next()
            )));
        }
        self.pos += 2;
        let id = self.string_literal()?;
        Ok(EntityUidText { entity_type, id })
    }

    fn subject(&mut self) -> Result<SubjectText<'a>, TupleParseError> {
        let entity_type = self.type_path("subject type")?;
        if self.rest().starts_with("::*") {
            self.pos += 3;
            if self.peek() == Some('#') {
                // `User::*#member` has no meaning: a wildcard names entities, not usersets.
                return Err(self.error(
                    "a wildcard subject cannot have a relation (`Type::*` means every entity of the type)"
                        .to_owned(),
                ));
            }
            return Ok(SubjectText::Wildcard { entity_type });
        }
        if !self.rest().starts_with("::\"") {
            return Err(self.error(format!(
                "expected `::\"` and a quoted id, or `::*`, after `{entity_type}`, found {}",
                self.describe_next()
            )));
        }
        self.pos += 2;
        let id = self.string_literal()?;
        let object = EntityUidText { entity_type, id };
        // `#` directly after the subject is a userset relation; `#` after whitespace is a comment.
        if self.peek() == Some('#') {
            self.bump('#');
            let relation = self.identifier("subject relation")?;
            return Ok(SubjectText::Userset { object, relation });
        }
        Ok(SubjectText::Entity(object))
    }

    /// Reads a Cedar string literal starting at `"`; borrows when it has no escapes.
    fn string_literal(&mut self) -> Result<Cow<'a, str>, TupleParseError> {
        let open = self.pos;
        self.expect('"', "to open the id")?;
        let body_start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let Some(c) = self.peek() else {
                self.pos = open;
                return Err(self.error("unterminated string: missing closing `\"`".to_owned()));
            };
            match c {
                '"' => {
                    let body = &self.text[body_start..self.pos];
                    self.bump('"');
                    return Ok(match owned {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(body),
                    });
                }
                '\\' => {
                    let buf =
                        owned.get_or_insert_with(|| self.text[body_start..self.pos].to_owned());
                    self.bump('\\');
                    let unescaped = self.escape()?;
                    buf.push(unescaped);
                }
                other => {
                    if let Some(buf) = owned.as_mut() {
                        buf.push(other);
                    }
                    self.bump(other);
                }
            }
        }
    }

    /// Reads the character after a backslash: Cedar's escapes `\n \r \t \\ \0 \' \" \u{…}`.
    fn escape(&mut self) -> Result<char, TupleParseError> {
        let Some(c) = self.peek() else {
            return Err(self.error("unterminated escape at end of line".to_owned()));
        };
        let simple = match c {
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            '\\' => Some('\\'),
            '0' => Some('\0'),
            '\'' => Some('\''),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(ch) = simple {
            self.bump(c);
            return Ok(ch);
        }
        if c == 'u' {
            self.bump('u');
            self.expect('{', "in a `\\u{…}` escape")?;
            let digits_start = self.pos;
            let len = self
                .rest()
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(self.rest().len());
            let digits = &self.text[digits_start..digits_start + len];
            let scalar = (1..=6)
                .contains(&digits.len())
                .then(|| u32::from_str_radix(digits, 16).ok())
                .flatten()
                .and_then(char::from_u32);
            let Some(ch) = scalar else {
                return Err(self.error(format!(
                    "`\\u{{{digits}}}` is not a unicode scalar value (1 to 6 hex digits)"
                )));
            };
            self.pos += len;
            self.expect('}', "to close the `\\u{…}` escape")?;
            return Ok(ch);
        }
        Err(self.error(format!("unknown escape `\\{c}` in string")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_text_of_a_tuple_parses_back_to_the_same_tuple() {
        for line in [
            r##"Doc::"a"#viewer@User::"u1""##,
            r##"Acme::Doc::"q\"uo\\te"#viewer@User::*"##,
            r##"Doc::"tab\there\u{1b}"#viewer@Team::"t'x"#member"##,
        ] {
            let tuple = parse_tuple_line(line).unwrap().unwrap();
            let text = tuple.to_string();
            assert_eq!(parse_tuple_line(&text).unwrap().unwrap(), tuple, "{text}");
        }
    }

    fn uid<'a>(entity_type: &'a str, id: &'a str) -> EntityUidText<'a> {
        EntityUidText {
            entity_type,
            id: Cow::Borrowed(id),
        }
    }

    #[test]
    fn direct_userset_and_wildcard_subjects_parse() {
        let t = parse_tuple_line(r##"Document::"roadmap"#owner@User::"alice""##)
            .unwrap()
            .unwrap();
        assert_eq!(t.object, uid("Document", "roadmap"));
        assert_eq!(t.relation, "owner");
        assert_eq!(t.subject, SubjectText::Entity(uid("User", "alice")));

        let t = parse_tuple_line(r##"  Acme::Doc::"r"#viewer@Acme::Team::"eng"#member  "##)
            .unwrap()
            .unwrap();
        assert_eq!(t.object, uid("Acme::Doc", "r"));
        assert_eq!(
            t.subject,
            SubjectText::Userset {
                object: uid("Acme::Team", "eng"),
                relation: "member"
            }
        );

        let t = parse_tuple_line(r##"Document::"handbook"#viewer@User::* # everyone"##)
            .unwrap()
            .unwrap();
        assert_eq!(
            t.subject,
            SubjectText::Wildcard {
                entity_type: "User"
            }
        );
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        assert_eq!(parse_tuple_line("").unwrap(), None);
        assert_eq!(parse_tuple_line("   \t").unwrap(), None);
        assert_eq!(
            parse_tuple_line("# Team::\"x\"#member@User::\"y\"").unwrap(),
            None
        );
    }

    #[test]
    fn trailing_comment_after_whitespace_is_allowed() {
        let t = parse_tuple_line(r##"Team::"eng"#member@User::"bob"   # joined in May"##)
            .unwrap()
            .unwrap();
        assert_eq!(t.subject, SubjectText::Entity(uid("User", "bob")));
    }

    #[test]
    fn escapes_in_ids_are_resolved() {
        let t = parse_tuple_line(r##"Doc::"a\"b\\c\u{e9}"#owner@User::"x#y@z""##)
            .unwrap()
            .unwrap();
        assert_eq!(t.object.id, "a\"b\\c\u{e9}");
        assert_eq!(t.subject, SubjectText::Entity(uid("User", "x#y@z")));
        assert_eq!(t.object.to_string(), r##"Doc::"a\"b\\cé""##);
    }

    fn err(line: &str) -> TupleParseError {
        parse_tuple_line(line).unwrap_err()
    }

    #[test]
    fn malformed_lines_name_the_column_and_the_problem() {
        let e = err(r##"Document::"roadmap"owner@User::"alice""##);
        assert_eq!(e.column, 20);
        assert_eq!(e.reason, "expected `#` after the object, found `o`");

        let e = err(r##"Document::"roadmap"#owner User::"alice""##);
        assert_eq!(e.column, 26);
        assert_eq!(e.reason, "expected `@` after the relation, found ` `");

        let e = err(r##"Document::"roadmap#owner@User::"alice""##);
        assert_eq!(e.column, 33);
        assert!(e.reason.contains("expected `#` after the object"), "{e}");

        let e = err(r##"Document::"roadmap"#owner@User::"alice"#"##);
        assert_eq!(e.reason, "expected subject relation, found end of line");

        let e = err(r##"Document::"a"#owner@User::"b" extra"##);
        assert_eq!(e.column, 31);
        assert!(
            e.reason.starts_with("unexpected `e` after the subject"),
            "{e}"
        );

        let e = err(r##"Document"roadmap"#owner@User::"alice""##);
        assert_eq!(e.column, 9);

        let e = err(r##"Document::"r"#1owner@User::"alice""##);
        assert_eq!(e.column, 15);
        assert!(e.reason.contains("must not start with a digit"), "{e}");

        let e = err(r##"Document::"r"#in@User::"alice""##);
        assert_eq!(e.reason, "`in` is a reserved word and cannot be a relation");

        let e = err(r##"Document::"r"#owner@User::"alice"##
            .replace("\"alice\"", "\"alice")
            .as_str());
        assert_eq!(e.reason, "unterminated string: missing closing `\"`");
        assert_eq!(e.column, 27);

        let e = err(r##"Document::"r"#viewer@Team::"eng"#member#admin"##);
        assert_eq!(e.column, 40);
        assert_eq!(
            e.reason,
            "unexpected `#` after the subject; a comment needs whitespace before `#`"
        );

        let e = err(r##"Document::"r"#owner@User::*#member"##);
        assert!(
            e.reason
                .starts_with("a wildcard subject cannot have a relation"),
            "{e}"
        );

        let e = err(r##"Document::"r\q"#owner@User::"a""##);
        assert_eq!(e.reason, "unknown escape `\\q` in string");

        let e = err(r##"Document::"\u{110000}"#owner@User::"a""##);
        assert!(e.reason.contains("not a unicode scalar value"), "{e}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = err(r##"Doc::"é"x"##);
        assert_eq!(e.column, 9);
    }

    #[test]
    fn uid_and_type_parsers_reject_trailing_text() {
        assert_eq!(
            parse_entity_uid(r##"User::"alice""##).unwrap(),
            uid("User", "alice")
        );
        assert!(parse_entity_uid(r##"User::"alice" "##).is_err());
        assert!(parse_entity_uid(r##"User::alice"##).is_err());
        assert_eq!(parse_entity_type("Acme::User").unwrap(), "Acme::User");
        assert!(parse_entity_type("Acme::").is_err());
        assert!(parse_entity_type("Acme User").is_err());
        assert!(parse_entity_type("").is_err());
    }

    #[test]
    fn identifiers_follow_cedar() {
        assert!(is_identifier("viewer"));
        assert!(is_identifier("_x9"));
        assert!(!is_identifier("9x"));
        assert!(!is_identifier("has"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a-b"));
    }
}
