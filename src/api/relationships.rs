//! The `verdict.v1.Relationships` service (issue #19): writes, reads and the change stream of
//! the relationship store, and the `Consistency` requirement checks carry.
//!
//! Owns: turning the protobuf tuples into validated tuples (every field named in errors, every
//! invalid item reported), refusing tuples the bundle's files define, and the streaming of
//! changes. Does not own: the SQL (`store`), what a valid tuple is (the snapshot says, exactly
//! as for a tuple file), following the store (`store::follow`).
//!
//! Every RPC here is an admin operation: the server's authentication layer lets only admin
//! callers through (`server/auth.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use verdict_core::relations::{
    EntityUidText, SubjectText, TupleText, is_identifier, parse_entity_type, parse_tuple_line,
};
use verdict_core::store::{ChangeKind, ConsistencyToken, StoreChange};

use super::error::ApiError;
use super::proto;
use super::proto::relationships_server::Relationships;
use crate::serving::SnapshotHandle;
use crate::store::{Changes, Precondition, ReadFilter, Store, TupleRow, WriteBatch};
use crate::telemetry::metrics::{StoreWriteResult, record_store_write};

/// The longest entity type, id or relation in a tuple, in bytes.
pub const MAX_TUPLE_PART_BYTES: usize = 1024;

/// At most this many item errors are listed in one answer; the rest are counted.
const MAX_LISTED_ERRORS: usize = 20;

/// The page size of a read that asks for none, and the largest one.
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

/// Messages a watch stream buffers for a slow client before it waits.
const WATCH_BUFFER: usize = 16;

/// The service.
#[derive(Debug)]
pub struct RelationshipsService {
    snapshots: Arc<SnapshotHandle>,
    store: Arc<Store>,
    /// Fires at shutdown: watch streams end.
    shutdown: CancellationToken,
}

impl RelationshipsService {
    /// Returns the service over `store`, validating writes against the snapshots served;
    /// watch streams end when `shutdown` fires.
    pub fn new(
        snapshots: Arc<SnapshotHandle>,
        store: Arc<Store>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            snapshots,
            store,
            shutdown,
        }
    }

    /// Validates a write request against the snapshot served: every error, each naming its
    /// field, or the batch for the store.
    fn validate(&self, request: &proto::WriteRelationshipsRequest) -> Result<WriteBatch, ApiError> {
        let served = self.snapshots.load().ok_or(ApiError::NoSnapshot)?;
        let snapshot = &served.snapshot;
        let max_batch = self.store.config().max_batch;
        if request.updates.len() > max_batch {
            return Err(ApiError::InvalidField(format!(
                "updates: {} updates exceed the batch limit of {max_batch}",
                request.updates.len()
            )));
        }
        if request.updates.is_empty() {
            return Err(ApiError::InvalidField(
                "updates: a write needs at least one update".to_owned(),
            ));
        }
        if request.preconditions.len() > max_batch {
            return Err(ApiError::InvalidField(format!(
                "preconditions: {} preconditions exceed the batch limit of {max_batch}",
                request.preconditions.len()
            )));
        }
        let mut errors = Vec::new();
        let mut batch = WriteBatch {
            ignore_existing: request.ignore_existing,
            ignore_missing: request.ignore_missing,
            ..WriteBatch::default()
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, update) in request.updates.iter().enumerate() {
            let field = format!("updates[{index}]");
            let kind = match proto::Operation::try_from(update.operation) {
                Ok(proto::Operation::Write) => Some(ChangeKind::Write),
                Ok(proto::Operation::Delete) => Some(ChangeKind::Delete),
                _ => {
                    errors.push(format!(
                        "{field}.operation: must be OPERATION_WRITE or OPERATION_DELETE"
                    ));
                    None
                }
            };
            let tuple = match tuple_from_proto(update.tuple.as_ref(), &format!("{field}.tuple")) {
                Ok(tuple) => tuple,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            if let Err(reason) = snapshot.validate_store_tuple(&tuple) {
                errors.push(format!("{field}.tuple: {reason}"));
                continue;
            }
            if snapshot.bundle_defines(&tuple) {
                errors.push(format!(
                    "{field}.tuple: `{tuple}` is defined by the bundle's tuple files; change it \
                     there, not through the API"
                ));
                continue;
            }
            let row = TupleRow::of(&tuple);
            if let Some(first) = seen.insert(row.text.clone(), index) {
                errors.push(format!(
                    "{field}.tuple: the same tuple as updates[{first}]; a batch names a tuple once"
                ));
                continue;
            }
            if let Some(kind) = kind {
                batch.updates.push((kind, row));
            }
        }
        for (index, precondition) in request.preconditions.iter().enumerate() {
            let field = format!("preconditions[{index}]");
            let must_exist =
                match proto::precondition::Requirement::try_from(precondition.requirement) {
                    Ok(proto::precondition::Requirement::MustExist) => true,
                    Ok(proto::precondition::Requirement::MustNotExist) => false,
                    _ => {
                        errors.push(format!(
                            "{field}.requirement: must be REQUIREMENT_MUST_EXIST or \
                         REQUIREMENT_MUST_NOT_EXIST"
                        ));
                        continue;
                    }
                };
            let tuple =
                match tuple_from_proto(precondition.tuple.as_ref(), &format!("{field}.tuple")) {
                    Ok(tuple) => tuple,
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                };
            // A tuple of the bundle's files exists whatever the store holds.
            if snapshot.bundle_defines(&tuple) {
                if !must_exist {
                    return Err(ApiError::Conflict(crate::store::WriteError::Precondition {
                        index,
                        must_exist,
                    }));
                }
                continue;
            }
            batch.preconditions.push(Precondition {
                index,
                must_exist,
                tuple: tuple.to_string(),
            });
        }
        if errors.is_empty() {
            Ok(batch)
        } else {
            Err(ApiError::InvalidField(list_errors(errors)))
        }
    }
}

/// Joins item errors into one message: the first ones, then how many more.
fn list_errors(errors: Vec<String>) -> String {
    let more = errors.len().saturating_sub(MAX_LISTED_ERRORS);
    let mut message = errors
        .into_iter()
        .take(MAX_LISTED_ERRORS)
        .collect::<Vec<_>>()
        .join("; ");
    if more > 0 {
        message.push_str(&format!("; and {more} more invalid items"));
    }
    message
}

/// Reads one protobuf tuple as a tuple, or an error naming the first bad field under `field`.
pub fn tuple_from_proto<'a>(
    tuple: Option<&'a proto::RelationTuple>,
    field: &str,
) -> Result<TupleText<'a>, String> {
    let tuple = tuple.ok_or_else(|| format!("{field}: missing"))?;
    let object = uid_from_proto(tuple.object.as_ref(), &format!("{field}.object"))?;
    let relation = relation_name(&tuple.relation, &format!("{field}.relation"))?;
    let subject_field = format!("{field}.subject");
    let subject = tuple
        .subject
        .as_ref()
        .ok_or_else(|| format!("{subject_field}: missing"))?;
    let subject = if subject.wildcard {
        let entity = subject
            .entity
            .as_ref()
            .ok_or_else(|| format!("{subject_field}.entity: missing"))?;
        let entity_type = entity_type(&entity.r#type, &format!("{subject_field}.entity.type"))?;
        if !entity.id.is_empty() {
            return Err(format!(
                "{subject_field}.entity.id: must be empty for a wildcard subject"
            ));
        }
        if !subject.relation.is_empty() {
            return Err(format!(
                "{subject_field}.relation: must be empty for a wildcard subject"
            ));
        }
        SubjectText::Wildcard { entity_type }
    } else {
        let entity = uid_from_proto(subject.entity.as_ref(), &format!("{subject_field}.entity"))?;
        if subject.relation.is_empty() {
            SubjectText::Entity(entity)
        } else {
            SubjectText::Userset {
                object: entity,
                relation: relation_name(&subject.relation, &format!("{subject_field}.relation"))?,
            }
        }
    };
    Ok(TupleText {
        object,
        relation,
        subject,
    })
}

fn uid_from_proto<'a>(
    entity: Option<&'a proto::EntityRef>,
    field: &str,
) -> Result<EntityUidText<'a>, String> {
    let entity = entity.ok_or_else(|| format!("{field}: missing"))?;
    let entity_type = entity_type(&entity.r#type, &format!("{field}.type"))?;
    if entity.id.is_empty() {
        return Err(format!("{field}.id: must not be empty"));
    }
    if entity.id.len() > MAX_TUPLE_PART_BYTES {
        return Err(format!(
            "{field}.id: {} bytes, more than the limit of {MAX_TUPLE_PART_BYTES}",
            entity.id.len()
        ));
    }
    Ok(EntityUidText {
        entity_type,
        id: Cow::Borrowed(&entity.id),
    })
}

fn entity_type<'a>(text: &'a str, field: &str) -> Result<&'a str, String> {
    if text.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if text.len() > MAX_TUPLE_PART_BYTES {
        return Err(format!(
            "{field}: {} bytes, more than the limit of {MAX_TUPLE_PART_BYTES}",
            text.len()
        ));
    }
    parse_entity_type(text).map_err(|error| format!("{field}: {}", error.reason))
}

fn relation_name<'a>(text: &'a str, field: &str) -> Result<&'a str, String> {
    if text.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if text.len() > MAX_TUPLE_PART_BYTES || !is_identifier(text) {
        return Err(format!(
            "{field}: `{}` is not a relation name (an identifier: letters, digits, `_`)",
            text.chars().take(64).collect::<String>()
        ));
    }
    Ok(text)
}

/// Returns the protobuf form of a stored tuple's canonical text.
fn tuple_to_proto(text: &str) -> Result<proto::RelationTuple, ApiError> {
    let tuple = parse_tuple_line(text).ok().flatten().ok_or_else(|| {
        ApiError::Internal(format!("the store holds an unreadable tuple: {text}"))
    })?;
    let uid = |uid: &EntityUidText<'_>| proto::EntityRef {
        r#type: uid.entity_type.to_owned(),
        id: uid.id.as_ref().to_owned(),
    };
    let subject = match &tuple.subject {
        SubjectText::Entity(entity) => proto::Subject {
            entity: Some(uid(entity)),
            relation: String::new(),
            wildcard: false,
        },
        SubjectText::Userset { object, relation } => proto::Subject {
            entity: Some(uid(object)),
            relation: (*relation).to_owned(),
            wildcard: false,
        },
        SubjectText::Wildcard { entity_type } => proto::Subject {
            entity: Some(proto::EntityRef {
                r#type: (*entity_type).to_owned(),
                id: String::new(),
            }),
            relation: String::new(),
            wildcard: true,
        },
    };
    Ok(proto::RelationTuple {
        object: Some(uid(&tuple.object)),
        relation: tuple.relation.to_owned(),
        subject: Some(subject),
    })
}

fn update_to_proto(change: &StoreChange) -> Result<proto::RelationshipUpdate, ApiError> {
    Ok(proto::RelationshipUpdate {
        operation: match change.kind {
            ChangeKind::Write => proto::Operation::Write,
            ChangeKind::Delete => proto::Operation::Delete,
        } as i32,
        tuple: Some(tuple_to_proto(&change.tuple)?),
    })
}

/// A read cursor: the last key of the page, hex-encoded so that it is opaque and plain ASCII.
fn encode_cursor(last: &str) -> String {
    let mut cursor = String::with_capacity(3 + last.len() * 2);
    cursor.push_str("c1_");
    for byte in last.bytes() {
        cursor.push_str(&format!("{byte:02x}"));
    }
    cursor
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidField("cursor: not a cursor this server issued".to_owned());
    if cursor.is_empty() {
        return Ok(String::new());
    }
    let hex = cursor.strip_prefix("c1_").ok_or_else(invalid)?;
    if hex.len() % 2 != 0 || hex.len() > 16 * MAX_TUPLE_PART_BYTES {
        return Err(invalid());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// Reads a token field, naming it in the error.
pub fn parse_token(text: &str, field: &str) -> Result<u64, ApiError> {
    ConsistencyToken::parse(text)
        .map(ConsistencyToken::revision)
        .map_err(|error| ApiError::InvalidField(format!("{field}: {error}")))
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<proto::WatchRelationshipsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Relationships for RelationshipsService {
    #[tracing::instrument(
        name = "WriteRelationships",
        level = "debug",
        skip_all,
        fields(updates)
    )]
    async fn write_relationships(
        &self,
        request: Request<proto::WriteRelationshipsRequest>,
    ) -> Result<Response<proto::WriteRelationshipsResponse>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("updates", request.updates.len());
        let batch = match self.validate(&request) {
            Ok(batch) => batch,
            Err(error) => {
                record_store_write(match error {
                    ApiError::Conflict(_) => StoreWriteResult::Conflict,
                    ApiError::NoSnapshot => StoreWriteResult::Unavailable,
                    _ => StoreWriteResult::Invalid,
                });
                return Err(error.into());
            }
        };
        match self.store.write(&batch).await {
            Ok(revision) => {
                record_store_write(StoreWriteResult::Ok);
                Ok(Response::new(proto::WriteRelationshipsResponse {
                    written_at: ConsistencyToken::new(revision).to_string(),
                }))
            }
            Err(error) => {
                let error = ApiError::from(error);
                record_store_write(match &error {
                    ApiError::Conflict(_) => StoreWriteResult::Conflict,
                    ApiError::Unavailable(_) => StoreWriteResult::Unavailable,
                    _ => StoreWriteResult::Internal,
                });
                if let ApiError::Unavailable(reason) = &error {
                    tracing::warn!(%reason, "relationship write failed: store unavailable");
                }
                Err(error.into())
            }
        }
    }

    #[tracing::instrument(name = "ReadRelationships", level = "debug", skip_all)]
    async fn read_relationships(
        &self,
        request: Request<proto::ReadRelationshipsRequest>,
    ) -> Result<Response<proto::ReadRelationshipsResponse>, Status> {
        let request = request.into_inner();
        let filter = request.filter.unwrap_or_default();
        for (name, value) in [
            ("filter.object_type", &filter.object_type),
            ("filter.object_id", &filter.object_id),
            ("filter.relation", &filter.relation),
            ("filter.subject_type", &filter.subject_type),
            ("filter.subject_id", &filter.subject_id),
            ("filter.subject_relation", &filter.subject_relation),
        ] {
            if value.len() > MAX_TUPLE_PART_BYTES {
                return Err(ApiError::InvalidField(format!(
                    "{name}: {} bytes, more than the limit of {MAX_TUPLE_PART_BYTES}",
                    value.len()
                ))
                .into());
            }
        }
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            n => {
                return Err(ApiError::InvalidField(format!(
                    "page_size: {n} is more than the limit of {MAX_PAGE_SIZE}"
                ))
                .into());
            }
        };
        let after = decode_cursor(&request.cursor)?;
        let filter = ReadFilter {
            object_type: filter.object_type,
            object_id: filter.object_id,
            relation: filter.relation,
            subject_type: filter.subject_type,
            subject_id: filter.subject_id,
            subject_relation: filter.subject_relation,
        };
        let page = self
            .store
            .read(&filter, &after, page_size as usize)
            .await
            .map_err(ApiError::from)?;
        let next_cursor = match (page.more, page.tuples.last()) {
            (true, Some(last)) => encode_cursor(last),
            _ => String::new(),
        };
        let tuples = page
            .tuples
            .iter()
            .map(|text| tuple_to_proto(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(proto::ReadRelationshipsResponse {
            tuples,
            next_cursor,
            read_at: ConsistencyToken::new(page.revision).to_string(),
        }))
    }

    type WatchRelationshipsStream = WatchStream;

    #[tracing::instrument(name = "WatchRelationships", level = "debug", skip_all)]
    async fn watch_relationships(
        &self,
        request: Request<proto::WatchRelationshipsRequest>,
    ) -> Result<Response<Self::WatchRelationshipsStream>, Status> {
        let request = request.into_inner();
        let after = if request.after.is_empty() {
            self.snapshots.applied_revision().unwrap_or(0)
        } else {
            parse_token(&request.after, "after")?
        };
        // Fail now, with a status, when the log cannot serve this start.
        let first = match self
            .store
            .changes_after(after)
            .await
            .map_err(ApiError::from)?
        {
            Changes::Compacted { compacted_through } => {
                return Err(Status::out_of_range(format!(
                    "after: the change log no longer holds the revisions after it (collected \
                     through {}); read the relationships again and watch from that read's \
                     read_at",
                    ConsistencyToken::new(compacted_through)
                )));
            }
            Changes::Revisions(revisions) => revisions,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let store = Arc::clone(&self.store);
        let revision_rx = self.snapshots.subscribe_revision();
        let shutdown = self.shutdown.clone();
        tokio::spawn(stream_changes(
            store,
            revision_rx,
            shutdown,
            after,
            first,
            tx,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Sends every revision after `after` to `tx`, one message each, until the client goes away,
/// the server shuts down, or the log can no longer serve it (then a final error).
async fn stream_changes(
    store: Arc<Store>,
    mut revision_rx: Option<tokio::sync::watch::Receiver<u64>>,
    shutdown: CancellationToken,
    mut after: u64,
    mut pending: Vec<(u64, Vec<StoreChange>)>,
    tx: tokio::sync::mpsc::Sender<Result<proto::WatchRelationshipsResponse, Status>>,
) {
    let poll = store.config().poll_interval;
    loop {
        for (revision, changes) in pending.drain(..) {
            let updates = match changes.iter().map(update_to_proto).collect() {
                Ok(updates) => updates,
                Err(error) => {
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
            };
            let message = proto::WatchRelationshipsResponse {
                updates,
                changes_through: ConsistencyToken::new(revision).to_string(),
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
            after = revision;
        }
        // Wait for this replica to apply something new (or the poll interval, which also
        // covers a store this replica cannot follow right now), the client to leave, or
        // shutdown.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            () = wait_for_revision_after(revision_rx.as_mut(), after, poll) => {}
        }
        pending = match store.changes_after(after).await {
            Ok(Changes::Revisions(revisions)) => revisions,
            Ok(Changes::Compacted { compacted_through }) => {
                let _ = tx
                    .send(Err(Status::out_of_range(format!(
                        "the change log no longer holds the revisions after {} (collected \
                         through {}); read the relationships again and watch from there",
                        ConsistencyToken::new(after),
                        ConsistencyToken::new(compacted_through)
                    ))))
                    .await;
                return;
            }
            // The store is away: keep the stream, try again at the next wake-up.
            Err(error) => {
                tracing::debug!(%error, "watch could not read the change log; retrying");
                Vec::new()
            }
        };
    }
}

/// Waits until the served revision passes `after`, or `poll` elapses.
async fn wait_for_revision_after(
    revision_rx: Option<&mut tokio::sync::watch::Receiver<u64>>,
    after: u64,
    poll: Duration,
) {
    match revision_rx {
        Some(rx) => {
            let _ = tokio::time::timeout(poll, rx.wait_for(|revision| *revision > after)).await;
        }
        None => tokio::time::sleep(poll).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(entity_type: &str, id: &str) -> Option<proto::EntityRef> {
        Some(proto::EntityRef {
            r#type: entity_type.to_owned(),
            id: id.to_owned(),
        })
    }

    fn tuple(subject: proto::Subject) -> proto::RelationTuple {
        proto::RelationTuple {
            object: entity("Doc", "d\"1"),
            relation: "viewer".to_owned(),
            subject: Some(subject),
        }
    }

    #[test]
    fn protobuf_tuples_round_trip_through_their_canonical_text() {
        for subject in [
            proto::Subject {
                entity: entity("User", "alice"),
                relation: String::new(),
                wildcard: false,
            },
            proto::Subject {
                entity: entity("Team", "eng"),
                relation: "member".to_owned(),
                wildcard: false,
            },
            proto::Subject {
                entity: entity("User", ""),
                relation: String::new(),
                wildcard: true,
            },
        ] {
            let original = tuple(subject);
            let text = tuple_from_proto(Some(&original), "t").unwrap().to_string();
            assert_eq!(tuple_to_proto(&text).unwrap(), original, "{text}");
        }
    }

    #[test]
    fn a_bad_tuple_field_is_named() {
        let cases = [
            (
                proto::RelationTuple {
                    object: entity("", "d"),
                    ..tuple(proto::Subject::default())
                },
                "updates[0].tuple.object.type: must not be empty",
            ),
            (
                proto::RelationTuple {
                    relation: "has space".to_owned(),
                    ..tuple(proto::Subject::default())
                },
                "updates[0].tuple.relation: `has space` is not a relation name",
            ),
            (
                tuple(proto::Subject::default()),
                "updates[0].tuple.subject.entity: missing",
            ),
            (
                tuple(proto::Subject {
                    entity: entity("User", "x"),
                    relation: String::new(),
                    wildcard: true,
                }),
                "updates[0].tuple.subject.entity.id: must be empty for a wildcard subject",
            ),
        ];
        for (tuple, expected) in cases {
            let error = tuple_from_proto(Some(&tuple), "updates[0].tuple").unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
        assert_eq!(
            tuple_from_proto(None, "updates[3].tuple").unwrap_err(),
            "updates[3].tuple: missing"
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for key in ["", "Doc::\"a\"#viewer@User::\"ü\""] {
            if key.is_empty() {
                continue;
            }
            assert_eq!(decode_cursor(&encode_cursor(key)).unwrap(), key);
        }
        assert_eq!(decode_cursor("").unwrap(), "");
        for bad in ["x", "c1_0", "c1_zz", "c1_ff"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
