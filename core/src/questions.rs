//! The relation questions a front-end asks a snapshot (issue #17): `CheckRelation`,
//! `LookupResources` and `LookupSubjects`, with request-only contextual tuples and stateless
//! page cursors.
//!
//! Owns: validating contextual tuples against the snapshot (as a file tuple is validated), the
//! request-scoped view of a snapshot with them added ([`ContextualTuples`]), and the cursor that
//! binds a page to the snapshot version and the question. Does not own: the search itself
//! (`crate::relations`), protocols, deadlines or streaming (the front-ends).
//!
//! Contextual tuples. The view with contextual tuples is the snapshot with the request's tuples
//! in an overlay on its relation graph (`crate::relations::TupleGraph`), for this request only:
//! the snapshot itself is never modified, and the cost is in proportion to the contextual
//! tuples (and the overlay the snapshot's graph already holds, bounded by the store follower's
//! compaction), not to the graph. Requests without contextual tuples borrow the snapshot and
//! cost nothing extra. At most [`MAX_CONTEXTUAL_TUPLES`] per request.
//!
//! Cursors. A cursor is `v1.<version>.<question>.<after>` (each part hex): the served version
//! it was issued against, a hash of the question (kind, subject or object, relation, type, the
//! contextual tuples), and the last candidate examined. Resuming it against another version is
//! [`RelationError::StaleCursor`] (a page never mixes two snapshots); against another question
//! it is [`RelationError::BadCursor`].

use std::ops::Deref;

use crate::input::{EntityRef, RequestError};
use crate::relations::{
    CheckSubject, FoundSubject, LookupError, Membership, RelationModel, display_uid,
    lookup_resources, lookup_subjects, parse_tuple_line,
};
use crate::snapshot::Snapshot;

/// The most contextual tuples one request may carry (OpenFGA's limit too).
pub const MAX_CONTEXTUAL_TUPLES: usize = 100;

/// The largest page a lookup returns, whatever the caller asks; also the default page size.
pub const MAX_LOOKUP_PAGE: usize = 1_000;

/// Who a relation question is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationSubject {
    /// One entity: `User::"anne"`.
    Entity(EntityRef),
    /// A userset: `Team::"eng"#member`.
    Userset(EntityRef, String),
    /// Every entity of a type: `User::*`.
    Wildcard(String),
}

impl RelationSubject {
    fn as_check(&self) -> CheckSubject<'_> {
        match self {
            Self::Entity(e) => CheckSubject::Entity {
                entity_type: &e.entity_type,
                id: &e.id,
            },
            Self::Userset(e, relation) => CheckSubject::Userset {
                entity_type: &e.entity_type,
                id: &e.id,
                relation,
            },
            Self::Wildcard(entity_type) => CheckSubject::Wildcard { entity_type },
        }
    }

    /// Parses a subject in tuple syntax: `User::"anne"`, `Team::"eng"#member`, `User::*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        use crate::relations::SubjectText;
        let line = format!("X::\"x\"#r@{text}");
        let tuple = match parse_tuple_line(&line) {
            Ok(Some(tuple)) => tuple,
            Ok(None) => return Err("an empty subject".to_owned()),
            Err(error) => return Err(format!("`{text}` is not a subject: {}", error.reason)),
        };
        Ok(match tuple.subject {
            SubjectText::Entity(uid) => {
                Self::Entity(EntityRef::new(uid.entity_type, uid.id.into_owned()))
            }
            SubjectText::Userset { object, relation } => Self::Userset(
                EntityRef::new(object.entity_type, object.id.into_owned()),
                relation.to_owned(),
            ),
            SubjectText::Wildcard { entity_type } => Self::Wildcard(entity_type.to_owned()),
        })
    }

    /// Returns the subject in tuple syntax: `User::"anne"`, `Team::"eng"#member`, `User::*`.
    pub fn text(&self) -> String {
        match self {
            Self::Entity(e) => display_uid(&e.entity_type, &e.id),
            Self::Userset(e, relation) => {
                format!("{}#{relation}", display_uid(&e.entity_type, &e.id))
            }
            Self::Wildcard(entity_type) => format!("{entity_type}::*"),
        }
    }
}

/// Why a relation question has no answer. Front-ends map it by variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    /// A malformed field (a contextual tuple, an empty type): the caller's fault.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The type or relation asked about is not in the model: the caller's fault.
    #[error("{field}: {source}")]
    Unknown {
        /// The field that names it.
        field: &'static str,
        /// What is unknown.
        source: LookupError,
    },
    /// The bundle has no relation model (`*.fga`), so there is nothing to ask.
    #[error("the bundle has no relation model (`*.fga` file): relation questions need one")]
    NoModel,
    /// The cursor was issued by another snapshot version than the one serving.
    #[error(
        "cursor: issued against snapshot `{issued}`, but `{serving}` serves now; start the question again"
    )]
    StaleCursor {
        /// The version the cursor names.
        issued: String,
        /// The version serving.
        serving: String,
    },
    /// The cursor is malformed or belongs to another question.
    #[error("cursor: {0}")]
    BadCursor(&'static str),
}

/// What `CheckRelation` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationAnswer {
    /// Whether the subject holds the relation.
    pub allowed: bool,
    /// The search hit the depth bound before it concluded (then `allowed` is false).
    pub relation_depth_exceeded: bool,
}

/// One page of `LookupResources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcesPage {
    /// Object ids, sorted.
    pub ids: Vec<String>,
    /// Resumes the question; `None` on the last page.
    pub next_cursor: Option<LookupCursor>,
    /// Some candidate could not be decided within the depth bound (left out).
    pub relation_depth_exceeded: bool,
}

/// One page of `LookupSubjects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectsPage {
    /// Subjects, sorted, the wildcard first.
    pub subjects: Vec<RelationSubject>,
    /// Resumes the question; `None` on the last page.
    pub next_cursor: Option<LookupCursor>,
    /// Some candidate could not be decided within the depth bound (left out).
    pub relation_depth_exceeded: bool,
}

/// A page cursor as text (opaque to callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupCursor(String);

impl LookupCursor {
    /// Returns the cursor's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn new(version: &str, question: u64, after: &str) -> Self {
        Self(format!(
            "v1.{}.{question:016x}.{}",
            hex(version.as_bytes()),
            hex(after.as_bytes())
        ))
    }

    /// Returns the position after which to resume, once the cursor is known to belong to
    /// `question` on `version`.
    fn open(text: &str, version: &str, question: u64) -> Result<String, RelationError> {
        let malformed = RelationError::BadCursor("malformed cursor");
        let mut parts = text.split('.');
        let (Some("v1"), Some(issued), Some(hash), Some(after), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed);
        };
        let issued = unhex(issued).ok_or(RelationError::BadCursor("malformed cursor"))?;
        let after = unhex(after).ok_or(malformed)?;
        if issued != version {
            return Err(RelationError::StaleCursor {
                issued,
                serving: version.to_owned(),
            });
        }
        if u64::from_str_radix(hash, 16).ok() != Some(question) {
            return Err(RelationError::BadCursor(
                "the cursor belongs to another question",
            ));
        }
        Ok(after)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// FNV-1a over the question's parts, stable across processes and builds (so a cursor issued by
/// one replica resumes on another serving the same version).
fn question_hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

enum View<'a> {
    Shared(&'a Snapshot),
    Own(Box<Snapshot>),
}

/// A snapshot as one request sees it: with that request's contextual tuples, if any. Ask it
/// every question of the request (`check`, `check_relation`, the lookups): it derefs to the
/// snapshot, and answers name the snapshot's version.
pub struct ContextualTuples<'a> {
    view: View<'a>,
    /// The contextual tuples as written, for cursors.
    texts: Vec<String>,
}

impl Deref for ContextualTuples<'_> {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        match &self.view {
            View::Shared(s) => s,
            View::Own(s) => s,
        }
    }
}

impl Snapshot {
    /// Returns this snapshot with `tuples` (tuple syntax, `Document::"d"#viewer@User::"anne"`)
    /// added for one request. Each is validated as a file tuple is (syntax, schema, the relation
    /// model's type restrictions); the error names `contextual_tuples[i]`.
    pub fn with_contextual_tuples(
        &self,
        tuples: Vec<String>,
    ) -> Result<ContextualTuples<'_>, RequestError> {
        if tuples.is_empty() {
            return Ok(ContextualTuples {
                view: View::Shared(self),
                texts: tuples,
            });
        }
        if tuples.len() > MAX_CONTEXTUAL_TUPLES {
            return Err(RequestError::TooLarge {
                field: "contextual_tuples".to_owned(),
                limit: crate::input::Limit::Entities,
                count: tuples.len(),
                max: MAX_CONTEXTUAL_TUPLES,
            });
        }
        let mut edit = self.tuples().edit();
        for (i, line) in tuples.iter().enumerate() {
            let invalid = |reason: String| RequestError::Invalid {
                field: format!("contextual_tuples[{i}]"),
                reason,
            };
            let tuple = match parse_tuple_line(line) {
                Ok(Some(tuple)) => tuple,
                Ok(None) => return Err(invalid("an empty tuple".to_owned())),
                Err(error) => return Err(invalid(error.reason)),
            };
            self.validate_store_tuple(&tuple).map_err(invalid)?;
            edit.add(&tuple);
        }
        let graph = edit
            .finish()
            .map_err(|_| RequestError::Internal("the tuple index is full".to_owned()))?;
        let scoped = self.with_graph(
            graph,
            self.served_version().to_owned(),
            self.store_revision(),
        );
        Ok(ContextualTuples {
            view: View::Own(Box::new(scoped)),
            texts: tuples,
        })
    }
}

fn unknown(field: &'static str) -> impl Fn(LookupError) -> RelationError {
    move |source| RelationError::Unknown { field, source }
}

/// Refuses a subject whose type (or, for a userset, whose relation) the model does not
/// define, as OpenFGA refuses such a Check or ListObjects: no tuple could ever name it.
fn require_subject(model: &RelationModel, subject: &RelationSubject) -> Result<(), RelationError> {
    let (entity_type, relation) = match subject {
        RelationSubject::Entity(e) => (&e.entity_type, None),
        RelationSubject::Userset(e, relation) => (&e.entity_type, Some(relation)),
        RelationSubject::Wildcard(entity_type) => (entity_type, None),
    };
    if !model.has_type(entity_type) {
        return Err(unknown("subject")(LookupError::UnknownType(
            entity_type.clone(),
        )));
    }
    if let Some(relation) = relation
        && !model.has_relation(entity_type, relation)
    {
        return Err(unknown("subject")(LookupError::UnknownRelation {
            entity_type: entity_type.clone(),
            relation: relation.clone(),
        }));
    }
    Ok(())
}

impl ContextualTuples<'_> {
    fn model(&self) -> Result<&RelationModel, RelationError> {
        self.relation_model().ok_or(RelationError::NoModel)
    }

    /// Answers `CheckRelation`: does `subject` hold `relation` on `object`?
    pub fn check_relation(
        &self,
        object: &EntityRef,
        relation: &str,
        subject: &RelationSubject,
    ) -> Result<RelationAnswer, RelationError> {
        let model = self.model()?;
        if !model.has_type(&object.entity_type) {
            return Err(unknown("object.type")(LookupError::UnknownType(
                object.entity_type.clone(),
            )));
        }
        if !model.has_relation(&object.entity_type, relation) {
            return Err(unknown("relation")(LookupError::UnknownRelation {
                entity_type: object.entity_type.clone(),
                relation: relation.to_owned(),
            }));
        }
        require_subject(model, subject)?;
        let mut check = crate::relations::RelationCheck::new(
            model,
            self.tuples(),
            subject.as_check(),
            self.max_relation_depth(),
        );
        let answer = check.check(&object.entity_type, &object.id, relation);
        Ok(RelationAnswer {
            allowed: answer == Membership::Member,
            relation_depth_exceeded: answer == Membership::DepthExceeded,
        })
    }

    fn question<'q>(&'q self, parts: impl IntoIterator<Item = &'q str>) -> u64 {
        question_hash(
            parts
                .into_iter()
                .chain(self.texts.iter().map(String::as_str)),
        )
    }

    /// Answers one page of `LookupResources`: objects of `resource_type` on which `subject`
    /// holds `relation`, up to `page_size` (capped at [`MAX_LOOKUP_PAGE`]; 0 means the cap),
    /// after `cursor`.
    pub fn lookup_resources(
        &self,
        subject: &RelationSubject,
        relation: &str,
        resource_type: &str,
        page_size: usize,
        cursor: Option<&str>,
    ) -> Result<ResourcesPage, RelationError> {
        let model = self.model()?;
        require_subject(model, subject)?;
        let subject_text = subject.text();
        let question = self.question(["resources", &subject_text, relation, resource_type]);
        let version = self.served_version();
        let after = cursor
            .map(|c| LookupCursor::open(c, version, question))
            .transpose()?;
        let page = lookup_resources(
            model,
            self.tuples(),
            subject.as_check(),
            relation,
            resource_type,
            self.max_relation_depth(),
            after.as_deref(),
            page_len(page_size),
        )
        .map_err(unknown("resource_type"))?;
        Ok(ResourcesPage {
            next_cursor: next(page.more, page.resume_after.as_deref(), version, question),
            ids: page.items,
            relation_depth_exceeded: page.relation_depth_exceeded,
        })
    }

    /// Answers one page of `LookupSubjects`: subjects of `subject_type` (usersets
    /// `subject_type#subject_relation` when that is set) holding `relation` on `object`.
    pub fn lookup_subjects(
        &self,
        object: &EntityRef,
        relation: &str,
        (subject_type, subject_relation): (&str, Option<&str>),
        page_size: usize,
        cursor: Option<&str>,
    ) -> Result<SubjectsPage, RelationError> {
        let model = self.model()?;
        let object_text = display_uid(&object.entity_type, &object.id);
        let question = self.question([
            "subjects",
            &object_text,
            relation,
            subject_type,
            subject_relation.unwrap_or(""),
        ]);
        let version = self.served_version();
        let after = cursor
            .map(|c| LookupCursor::open(c, version, question))
            .transpose()?
            .map(|key| decode_subject_key(&key))
            .transpose()?;
        let page = lookup_subjects(
            model,
            self.tuples(),
            (&object.entity_type, &object.id),
            relation,
            (subject_type, subject_relation),
            self.max_relation_depth(),
            after.as_ref(),
            page_len(page_size),
        )
        .map_err(unknown("subject_type"))?;
        let resume = page.resume_after.as_ref().map(encode_subject_key);
        Ok(SubjectsPage {
            next_cursor: next(page.more, resume.as_deref(), version, question),
            subjects: page
                .items
                .into_iter()
                .map(|found| match (found, subject_relation) {
                    (FoundSubject::Wildcard, _) => {
                        RelationSubject::Wildcard(subject_type.to_owned())
                    }
                    (FoundSubject::Userset(id), Some(r)) => {
                        RelationSubject::Userset(EntityRef::new(subject_type, id), r.to_owned())
                    }
                    (FoundSubject::Entity(id) | FoundSubject::Userset(id), _) => {
                        RelationSubject::Entity(EntityRef::new(subject_type, id))
                    }
                })
                .collect(),
            relation_depth_exceeded: page.relation_depth_exceeded,
        })
    }
}

fn page_len(asked: usize) -> usize {
    if asked == 0 {
        MAX_LOOKUP_PAGE
    } else {
        asked.min(MAX_LOOKUP_PAGE)
    }
}

fn next(more: bool, after: Option<&str>, version: &str, question: u64) -> Option<LookupCursor> {
    more.then(|| LookupCursor::new(version, question, after.unwrap_or("")))
}

fn encode_subject_key(found: &FoundSubject) -> String {
    match found {
        FoundSubject::Wildcard => "*".to_owned(),
        FoundSubject::Entity(id) => format!("e{id}"),
        FoundSubject::Userset(id) => format!("u{id}"),
    }
}

fn decode_subject_key(key: &str) -> Result<FoundSubject, RelationError> {
    if key == "*" {
        return Ok(FoundSubject::Wildcard);
    }
    if let Some(id) = key.strip_prefix('e') {
        return Ok(FoundSubject::Entity(id.to_owned()));
    }
    if let Some(id) = key.strip_prefix('u') {
        return Ok(FoundSubject::Userset(id.to_owned()));
    }
    Err(RelationError::BadCursor("malformed cursor"))
}

#[cfg(test)]
mod tests;
