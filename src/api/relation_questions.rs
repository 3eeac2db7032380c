//! `CheckRelation`, `LookupResources` and `LookupSubjects` of `verdict.v1.Authorization`:
//! protocol in, the snapshot's relation questions (`verdict_core`), protocol out.
//!
//! Lookups stream one message per page. Each page is computed on a blocking thread from the
//! one snapshot loaded for the request (a page's work is bounded by the core), and the next
//! page starts only while the client's deadline (`grpc-timeout`) has not passed; past it the
//! stream ends with DEADLINE_EXCEEDED, after the pages already sent (each with its cursor).
//! (While the first page is computed, tonic's own handling of `grpc-timeout` may answer first:
//! it ends the call with CANCELLED, "Timeout expired".) A page the client asks for after a reload resumes from its cursor, which names the version
//! it was issued against: another version answers FAILED_PRECONDITION, never a mix.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio_stream::Stream;
use tonic::Status;
use verdict_core::RelationSubject;

use super::convert::{contextual_tuples, relation_subject, required_entity, subject_message};
use super::error::ApiError;
use super::proto;
use crate::serving::Served;

/// How many pages a lookup stream buffers ahead of a slow client.
const PAGE_BUFFER: usize = 2;

/// A stream of lookup pages.
pub type PageStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn relation(relation: String, field: &str) -> Result<String, ApiError> {
    if relation.is_empty() {
        return Err(ApiError::InvalidField(format!(
            "{field}: must not be empty"
        )));
    }
    Ok(relation)
}

/// Answers `CheckRelation` from `served`.
pub fn check_relation(
    served: &Served,
    request: proto::CheckRelationRequest,
) -> Result<proto::CheckRelationResponse, ApiError> {
    let proto::CheckRelationRequest {
        object,
        relation: asked,
        subject,
        contextual_tuples: tuples,
        // Honoured before the snapshot is chosen (`fresh_snapshot`).
        consistency: _,
    } = request;
    let object = required_entity(object, "object")?;
    let asked = relation(asked, "relation")?;
    let subject = relation_subject(subject, || "subject".to_owned())?;
    let scoped = served
        .snapshot
        .with_contextual_tuples(contextual_tuples(tuples, "")?)?;
    let answer = scoped.check_relation(&object, &asked, &subject)?;
    Ok(proto::CheckRelationResponse {
        allowed: answer.allowed,
        snapshot_version: served.snapshot.served_version().to_owned(),
        relation_depth_exceeded: answer.relation_depth_exceeded,
    })
}

/// One lookup question, converted and validated, ready to page.
enum Question {
    Resources {
        subject: RelationSubject,
        relation: String,
        resource_type: String,
    },
    Subjects {
        object: verdict_core::EntityRef,
        relation: String,
        subject_type: String,
        subject_relation: Option<String>,
    },
}

/// One page, as either response message.
pub enum Page {
    Resources(proto::LookupResourcesResponse),
    Subjects(proto::LookupSubjectsResponse),
}

impl Page {
    fn cursor(&self) -> &str {
        match self {
            Self::Resources(page) => &page.next_cursor,
            Self::Subjects(page) => &page.next_cursor,
        }
    }
}

fn answer_page(
    served: &Served,
    scoped: &verdict_core::ContextualTuples<'_>,
    question: &Question,
    page_size: usize,
    cursor: Option<&str>,
) -> Result<Page, ApiError> {
    let version = served.snapshot.served_version().to_owned();
    Ok(match question {
        Question::Resources {
            subject,
            relation,
            resource_type,
        } => {
            let page =
                scoped.lookup_resources(subject, relation, resource_type, page_size, cursor)?;
            Page::Resources(proto::LookupResourcesResponse {
                resource_ids: page.ids,
                next_cursor: page
                    .next_cursor
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default(),
                snapshot_version: version,
                relation_depth_exceeded: page.relation_depth_exceeded,
            })
        }
        Question::Subjects {
            object,
            relation,
            subject_type,
            subject_relation,
        } => {
            let page = scoped.lookup_subjects(
                object,
                relation,
                (subject_type, subject_relation.as_deref()),
                page_size,
                cursor,
            )?;
            Page::Subjects(proto::LookupSubjectsResponse {
                subjects: page.subjects.into_iter().map(subject_message).collect(),
                next_cursor: page
                    .next_cursor
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default(),
                snapshot_version: version,
                relation_depth_exceeded: page.relation_depth_exceeded,
            })
        }
    })
}

/// Converts a `LookupResources` request: the question, its contextual tuples, page size and
/// cursor.
pub fn resources_question(request: proto::LookupResourcesRequest) -> Result<Lookup, ApiError> {
    let proto::LookupResourcesRequest {
        subject,
        relation: asked,
        resource_type,
        contextual_tuples: tuples,
        page_size,
        cursor,
        consistency: _,
    } = request;
    if resource_type.is_empty() {
        return Err(ApiError::InvalidField(
            "resource_type: must not be empty".to_owned(),
        ));
    }
    Ok(Lookup {
        question: Question::Resources {
            subject: relation_subject(subject, || "subject".to_owned())?,
            relation: relation(asked, "relation")?,
            resource_type,
        },
        tuples: contextual_tuples(tuples, "")?,
        page_size: usize::try_from(page_size).unwrap_or(usize::MAX),
        cursor: (!cursor.is_empty()).then_some(cursor),
    })
}

/// Converts a `LookupSubjects` request.
pub fn subjects_question(request: proto::LookupSubjectsRequest) -> Result<Lookup, ApiError> {
    let proto::LookupSubjectsRequest {
        object,
        relation: asked,
        subject_type,
        subject_relation,
        contextual_tuples: tuples,
        page_size,
        cursor,
        consistency: _,
    } = request;
    if subject_type.is_empty() {
        return Err(ApiError::InvalidField(
            "subject_type: must not be empty".to_owned(),
        ));
    }
    Ok(Lookup {
        question: Question::Subjects {
            object: required_entity(object, "object")?,
            relation: relation(asked, "relation")?,
            subject_type,
            subject_relation: (!subject_relation.is_empty()).then_some(subject_relation),
        },
        tuples: contextual_tuples(tuples, "")?,
        page_size: usize::try_from(page_size).unwrap_or(usize::MAX),
        cursor: (!cursor.is_empty()).then_some(cursor),
    })
}

/// A converted lookup request.
pub struct Lookup {
    question: Question,
    tuples: Vec<String>,
    page_size: usize,
    cursor: Option<String>,
}

/// Answers the first page now (so that a bad request fails with a status rather than in the
/// stream), then streams the rest from a blocking thread, page by page, until the last page,
/// an error, the deadline, or the client going away.
pub async fn stream<T: Send + 'static>(
    served: Arc<Served>,
    lookup: Lookup,
    deadline: Option<Instant>,
    pick: fn(Page) -> Option<T>,
) -> Result<PageStream<T>, ApiError> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(ApiError::DeadlineExceeded);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(PAGE_BUFFER);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let Lookup {
            question,
            tuples,
            page_size,
            mut cursor,
        } = lookup;
        let scoped = match served.snapshot.with_contextual_tuples(tuples) {
            Ok(scoped) => scoped,
            Err(error) => {
                let _ = first_tx.send(Err(ApiError::Request(error)));
                return;
            }
        };
        let mut first_tx = Some(first_tx);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let status = Status::from(ApiError::DeadlineExceeded);
                match first_tx.take() {
                    Some(first) => {
                        let _ = first.send(Err(ApiError::DeadlineExceeded));
                    }
                    None => {
                        let _ = tx.blocking_send(Err(status));
                    }
                }
                return;
            }
            let page = answer_page(&served, &scoped, &question, page_size, cursor.as_deref());
            let page = match (page, first_tx.take()) {
                (Ok(page), Some(first)) => {
                    let _ = first.send(Ok(()));
                    page
                }
                (Ok(page), None) => page,
                (Err(error), Some(first)) => {
                    let _ = first.send(Err(error));
                    return;
                }
                (Err(error), None) => {
                    let _ = tx.blocking_send(Err(Status::from(error)));
                    return;
                }
            };
            let next = page.cursor().to_owned();
            let Some(message) = pick(page) else { return };
            if tx.blocking_send(Ok(message)).is_err() || next.is_empty() {
                return;
            }
            cursor = Some(next);
        }
    });
    match first_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(ApiError::Internal("lookup worker failed".to_owned())),
    }
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// Picks a `LookupResources` page.
pub fn resources_page(page: Page) -> Option<proto::LookupResourcesResponse> {
    match page {
        Page::Resources(page) => Some(page),
        Page::Subjects(_) => None,
    }
}

/// Picks a `LookupSubjects` page.
pub fn subjects_page(page: Page) -> Option<proto::LookupSubjectsResponse> {
    match page {
        Page::Subjects(page) => Some(page),
        Page::Resources(_) => None,
    }
}
