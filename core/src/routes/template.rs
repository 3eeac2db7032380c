//! Path templates (`/v1/documents/{id}`, `/v1/admin/**`): their syntax, matching a normalised
//! path, and the precedence order between two templates.
//!
//! A template is `/`, or `/` followed by segments separated by `/`. A segment is a literal
//! (`documents`), a parameter that matches any one segment (`{id}`, a whole segment), or, as the
//! last segment only, `**`, which matches zero or more segments. Templates are compared
//! against paths that `normalize` already cleaned, so a literal is written as the normalised
//! form of what it matches: unreserved characters and `!$&'()+,;=:@`, no `%`, no `.`/`..`.
//!
//! Precedence, for two templates that both match a path: compare them segment by segment from
//! the left; the first position where they differ decides. A literal beats a parameter, a
//! parameter beats `**`, and a template that ends at that position beats `**` there (so
//! `/v1/admin` beats `/v1/admin/**` for `/v1/admin`). The rule only has to decide between
//! templates that can match the same path: two templates that differ first in two different
//! literals never do, and are ordered by the literal's text only to make the order total. Two
//! templates equal at every position have the same *shape* (parameter names do not count):
//! for one method, that is a load error, since one of the two routes could never match.

use std::cmp::Ordering;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter(String),
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// The template as written.
    text: String,
    segments: Vec<Segment>,
    /// Whether it ends in `/**`.
    rest: bool,
}

/// What a template has at one position, ranked: a higher rank is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// `**`: zero or more segments.
    Rest = 0,
    /// The template ends here.
    End = 1,
    Parameter = 2,
    Literal = 3,
}

impl Template {
    /// Parses a template; the error says what is wrong, for a `file:line:column` message.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a path template: it must start with `/`"
            ));
        };
        let mut segments = Vec::new();
        let mut rest = false;
        if body.is_empty() {
            return Ok(Self {
                text: text.to_owned(),
                segments,
                rest,
            });
        }
        let parts: Vec<&str> = body.split('/').collect();
        let last = parts.len() - 1;
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            if part.is_empty() {
                return Err(if i == last {
                    format!(
                        "`{text}` ends in `/`: write the template without it (a trailing slash \
                         in a request is ignored)"
                    )
                } else {
                    format!("`{text}` has an empty segment (`//`)")
                });
            }
            if part == "**" {
                if i != last {
                    return Err(format!(
                        "`{text}`: `**` may only be the last segment (`/**`)"
                    ));
                }
                rest = true;
            } else if let Some(inner) = part.strip_prefix('{') {
                let name = inner.strip_suffix('}').ok_or_else(|| {
                    format!("`{text}`: a parameter is a whole segment, `{{name}}`")
                })?;
                if !is_parameter_name(name) {
                    return Err(format!(
                        "`{text}`: `{name}` is not a parameter name (letters, digits and `_`, \
                         not starting with a digit)"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("`{text}`: the parameter `{name}` appears twice"));
                }
                names.push(name);
                segments.push(Segment::Parameter(name.to_owned()));
            } else {
                check_literal(text, part)?;
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
            rest,
        })
    }

    /// Returns the template as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the position of the parameter `name` among the template's parameters.
    pub(crate) fn parameter_index(&self, name: &str) -> Option<usize> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Parameter(p) => Some(p),
                Segment::Literal(_) => None,
            })
            .position(|p| p == name)
    }

    /// Matches normalised `segments`: the value of each parameter, in order, or `None`.
    pub(crate) fn matches<'p>(&self, segments: &'p [String]) -> Option<Vec<&'p str>> {
        let fits = if self.rest {
            segments.len() >= self.segments.len()
        } else {
            segments.len() == self.segments.len()
        };
        if !fits {
            return None;
        }
        let mut values = Vec::new();
        for (template, segment) in self.segments.iter().zip(segments) {
            match template {
                Segment::Literal(literal) if literal == segment => {}
                Segment::Literal(_) => return None,
                Segment::Parameter(_) => values.push(segment.as_str()),
            }
        }
        Some(values)
    }

    /// Returns what the template has at `position`, with the literal's text.
    fn at(&self, position: usize) -> (Rank, &str) {
        match self.segments.get(position) {
            Some(Segment::Literal(text)) => (Rank::Literal, text),
            Some(Segment::Parameter(_)) => (Rank::Parameter, ""),
            None if self.rest => (Rank::Rest, ""),
            None => (Rank::End, ""),
        }
    }

    /// Orders two templates by precedence: `Greater` when `self` wins over `other` for a path
    /// both match; `Equal` when they have the same shape (see the module header).
    pub(crate) fn precedence(&self, other: &Self) -> Ordering {
        let positions = self.segments.len().max(other.segments.len()) + 1;
        for position in 0..positions {
            let ordering = self.at(position).cmp(&other.at(position));
            if ordering != Ordering::Equal {
                return ordering;
            }
            if matches!(self.at(position).0, Rank::End | Rank::Rest) {
                break;
            }
        }
        Ordering::Equal
    }
}

fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A literal is written in the form `normalize` turns a request's segment into: otherwise it
/// could never match.
fn check_literal(text: &str, literal: &str) -> Result<(), String> {
    if literal == "." || literal == ".." {
        return Err(format!(
            "`{text}`: `.` and `..` segments are resolved in requests, so a template cannot \
             have one"
        ));
    }
    if literal.contains('*') {
        return Err(format!(
            "`{text}`: `*` is not allowed in a literal segment; `/**` as the last segment \
             matches everything below"
        ));
    }
    if literal.contains(['{', '}']) {
        return Err(format!(
            "`{text}`: a parameter is a whole segment, `{{name}}`"
        ));
    }
    if let Some(c) = literal.chars().find(|&c| !is_literal_char(c)) {
        return Err(format!(
            "`{text}`: `{c}` cannot appear in a literal segment (write unreserved characters \
             and `!$&'()+,;=:@`, not percent-encoded)"
        ));
    }
    Ok(())
}

fn is_literal_char(c: char) -> bool {
    super::normalize::is_unreserved(c) || "!$&'()+,;=:@".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Template {
        Template::parse(text).unwrap()
    }

    fn segments(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn parameters_match_one_segment_and_rest_matches_any_number() {
        let doc = t("/v1/documents/{id}");
        assert_eq!(doc.matches(&segments("/v1/documents/d1")), Some(vec!["d1"]));
        assert_eq!(doc.matches(&segments("/v1/documents")), None);
        assert_eq!(doc.matches(&segments("/v1/documents/d1/x")), None);
        let admin = t("/v1/admin/**");
        assert_eq!(admin.matches(&segments("/v1/admin")), Some(vec![]));
        assert_eq!(admin.matches(&segments("/v1/admin/a/b")), Some(vec![]));
        assert_eq!(admin.matches(&segments("/v1/administrator")), None);
        assert_eq!(t("/").matches(&segments("/")), Some(vec![]));
        assert_eq!(t("/").matches(&segments("/a")), None);
    }

    #[test]
    fn literals_are_case_sensitive() {
        assert_eq!(t("/v1/documents").matches(&segments("/V1/Documents")), None);
    }

    #[test]
    fn literal_beats_parameter_beats_rest_and_end_beats_rest() {
        let order = [
            "/v1/admin/users",
            "/v1/admin/{section}",
            "/v1/admin",
            "/v1/admin/**",
            "/v1/{api}/users",
            "/v1/**",
            "/**",
        ];
        for (i, a) in order.iter().enumerate() {
            for b in &order[i + 1..] {
                assert_eq!(t(a).precedence(&t(b)), Ordering::Greater, "{a} over {b}");
                assert_eq!(t(b).precedence(&t(a)), Ordering::Less, "{b} under {a}");
            }
        }
        // Longer beats shorter under `/**`; the leftmost difference decides.
        assert_eq!(
            t("/v1/admin/**").precedence(&t("/v1/**")),
            Ordering::Greater
        );
        assert_eq!(t("/a/b/**").precedence(&t("/a/{x}/c")), Ordering::Greater);
    }

    #[test]
    fn parameter_names_do_not_change_the_shape() {
        assert_eq!(
            t("/v1/documents/{id}").precedence(&t("/v1/documents/{docId}")),
            Ordering::Equal
        );
        assert_eq!(t("/a/**").precedence(&t("/a/**")), Ordering::Equal);
        assert_ne!(t("/a/b").precedence(&t("/a/c")), Ordering::Equal);
    }

    #[test]
    fn bad_templates_say_why() {
        let cases = [
            ("v1/documents", "must start with `/`"),
            ("/v1/documents/", "ends in `/`"),
            ("/v1//documents", "empty segment"),
            ("/v1/**/x", "`**` may only be the last segment"),
            ("/v1/doc-{id}", "a parameter is a whole segment"),
            ("/v1/{id", "a parameter is a whole segment"),
            ("/v1/{1d}", "is not a parameter name"),
            ("/v1/{id}/{id}", "appears twice"),
            ("/v1/../admin", "`.` and `..` segments"),
            ("/v1/*", "`*` is not allowed"),
            ("/v1/a%2Fb", "`%` cannot appear"),
            ("/v1/caf\u{e9}", "cannot appear in a literal segment"),
        ];
        for (text, wanted) in cases {
            let error = Template::parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
