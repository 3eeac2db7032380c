//! The relationship store (issue #19): relationship tuples written through the API, held in
//! PostgreSQL, with a change log every replica follows.
//!
//! Owns: the SQL (bound parameters only, so nothing a client sends is ever SQL), the schema
//! and its migrations (`migrations.rs`), the connection pool for writes and reads, and the
//! follower that keeps a replica's snapshot in step with the database (`follower.rs`).
//! Does not own: validating tuples (the snapshot does, as for a tuple file: `api` asks it),
//! joining the store's tuples with the bundle's (`verdict_core::Snapshot::with_store` and
//! `with_store_changes`, through `serving`), or the gRPC shapes (`api`).
//!
//! The tables (migration 1):
//!
//! ```text
//! verdict_head            one row: revision (the last committed), compacted_through
//! verdict_relationships   tuple (canonical text, the key), its parts for filters, written_at
//! verdict_revisions       revision, committed_at: one row per committed write batch
//! verdict_changes         revision, seq, operation, tuple: the change log
//! ```
//!
//! Revisions: a write transaction first increments `verdict_head.revision`, which locks that
//! row until it commits or rolls back. So writers are serialized on it, revisions are
//! contiguous (a rolled-back write gives its number back), and they commit in revision order:
//! once `verdict_head` says N, every revision up to N is committed and visible. A follower that
//! reads the head and then the revisions up to it never misses one that commits later with a
//! smaller number, the classic gap of sequence-numbered change logs.
//!
//! Garbage collection deletes revisions older than the retention (their changes go with them)
//! and raises `compacted_through`; a replica that has applied less than that reloads the whole
//! store instead of following the log.

mod follower;
mod migrations;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use verdict_core::relations::{SubjectText, TupleText};
use verdict_core::store::{ChangeKind, StoreChange};

use crate::config::{StoreConfig, StoreTarget};

pub use follower::follow;
pub use migrations::{MIGRATIONS, MigrationReport, migrate};

/// The channel writes NOTIFY on commit and followers LISTEN to.
const CHANNEL: &str = "verdict_relationships";

/// Connections in the pool for writes, reads and watches.
const POOL_SIZE: usize = 8;

/// The longest a request waits for a pooled connection, or for one to be opened.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// Tuples read per query when a replica loads the whole store.
const LOAD_PAGE: i64 = 10_000;

/// Revisions read per query when following the change log or serving a watch.
const REVISIONS_PER_ROUND: i64 = 100;

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, or the connection was lost: retry later.
    #[error("the relationship store is unavailable: {0}")]
    Unavailable(String),
    /// The database is reachable but its schema is missing or newer than this Verdict.
    #[error("the relationship store's schema is not usable: {0}")]
    Schema(String),
    /// Anything else the database refused; the detail is for the log.
    #[error("the relationship store failed: {0}")]
    Internal(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        classify(&error)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => classify(&error),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Sorts a driver error by what the caller should do: an error without a server answer is a
/// lost or refused connection; `undefined_table` means no migrations ran.
fn classify(error: &tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match error.as_db_error() {
        None => StoreError::Unavailable(verdict_core::error_chain(error)),
        Some(db) if *db.code() == SqlState::UNDEFINED_TABLE => StoreError::Schema(format!(
            "{}; run `verdict migrate` or start with --migrate",
            db.message()
        )),
        Some(db)
            if matches!(
                *db.code(),
                SqlState::ADMIN_SHUTDOWN
                    | SqlState::CRASH_SHUTDOWN
                    | SqlState::CANNOT_CONNECT_NOW
                    | SqlState::TOO_MANY_CONNECTIONS
                    | SqlState::READ_ONLY_SQL_TRANSACTION
            ) =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        Some(db) => StoreError::Internal(format!("{} ({})", db.message(), db.code().code())),
    }
}

/// One tuple as the store keeps it: its canonical text and the parts filters match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleRow {
    /// The canonical text (`Doc::"d"#viewer@User::"u"`), the row's key.
    pub text: String,
    object_type: String,
    object_id: String,
    relation: String,
    subject_type: String,
    subject_id: String,
    subject_relation: String,
    subject_wildcard: bool,
}

impl TupleRow {
    /// Returns the row of `tuple`.
    pub fn of(tuple: &TupleText<'_>) -> Self {
        let (subject_type, subject_id, subject_relation, subject_wildcard) = match &tuple.subject {
            SubjectText::Entity(uid) => (uid.entity_type, uid.id.as_ref(), "", false),
            SubjectText::Userset { object, relation } => {
                (object.entity_type, object.id.as_ref(), *relation, false)
            }
            SubjectText::Wildcard { entity_type } => (*entity_type, "", "", true),
        };
        Self {
            text: tuple.to_string(),
            object_type: tuple.object.entity_type.to_owned(),
            object_id: tuple.object.id.as_ref().to_owned(),
            relation: tuple.relation.to_owned(),
            subject_type: subject_type.to_owned(),
            subject_id: subject_id.to_owned(),
            subject_relation: subject_relation.to_owned(),
            subject_wildcard,
        }
    }
}

/// A precondition on the store's tuples, checked inside the write's transaction.
#[derive(Debug, Clone)]
pub struct Precondition {
    /// Its position in the request, for the error.
    pub index: usize,
    /// Whether the tuple must exist (else: must not).
    pub must_exist: bool,
    /// The tuple's canonical text.
    pub tuple: String,
}

/// A validated batch of updates, applied all or nothing.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// The updates, in request order; no tuple appears twice.
    pub updates: Vec<(ChangeKind, TupleRow)>,
    /// The preconditions.
    pub preconditions: Vec<Precondition>,
    /// Writing a tuple that exists is not an error.
    pub ignore_existing: bool,
    /// Deleting a tuple that does not exist is not an error.
    pub ignore_missing: bool,
}

/// Why a write batch changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// `updates[index]` writes a tuple that already exists.
    #[error("updates[{index}]: the tuple already exists (set ignore_existing to accept that)")]
    AlreadyExists {
        /// The update's position.
        index: usize,
    },
    /// `updates[index]` deletes a tuple that does not exist.
    #[error("updates[{index}]: the tuple does not exist (set ignore_missing to accept that)")]
    NotFound {
        /// The update's position.
        index: usize,
    },
    /// `preconditions[index]` does not hold.
    #[error("preconditions[{index}]: the tuple {}", if *.must_exist { "does not exist" } else { "exists" })]
    Precondition {
        /// The precondition's position.
        index: usize,
        /// What it required.
        must_exist: bool,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for WriteError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Store(error.into())
    }
}

/// What `ReadRelationships` filters on; an empty field matches anything.
#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    /// The object's type.
    pub object_type: String,
    /// The object's id.
    pub object_id: String,
    /// The relation.
    pub relation: String,
    /// The subject's type.
    pub subject_type: String,
    /// The subject's id; `*` for wildcard subjects.
    pub subject_id: String,
    /// The subject's relation (usersets).
    pub subject_relation: String,
}

/// One page of a read.
#[derive(Debug, Clone)]
pub struct ReadPage {
    /// The tuples' canonical texts, in key order.
    pub tuples: Vec<String>,
    /// Whether more may follow (the page is full).
    pub more: bool,
    /// The store's revision the page was read at.
    pub revision: u64,
}

/// Changes after a revision, whole revisions in order.
#[derive(Debug, Clone)]
pub enum Changes {
    /// The revisions (possibly none: nothing after it yet).
    Revisions(Vec<(u64, Vec<StoreChange>)>),
    /// Revisions after the one asked for were garbage-collected: the log cannot say what
    /// changed since then.
    Compacted {
        /// The last revision collected.
        compacted_through: u64,
    },
}

/// How the store connection fares, for `/readyz`, metrics and logs.
#[derive(Debug, Default)]
pub struct StoreHealth {
    connected: AtomicBool,
    /// The store's last revision this replica has seen (its head), for the lag.
    head: AtomicU64,
    disconnected_since: std::sync::Mutex<Option<Instant>>,
}

impl StoreHealth {
    fn set_connected(&self, head: Option<u64>) {
        self.connected.store(true, Ordering::Relaxed);
        if let Some(head) = head {
            self.head.fetch_max(head, Ordering::Relaxed);
        }
        *self
            .disconnected_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn set_disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
        let mut since = self
            .disconnected_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        since.get_or_insert_with(Instant::now);
    }

    /// Returns whether the follower's connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Returns the store's last revision this replica has seen.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Returns how long the store has been unreachable, if it is (since start, when it never
    /// was reachable).
    pub fn disconnected_for(&self) -> Option<Duration> {
        if self.is_connected() {
            return None;
        }
        let since = *self
            .disconnected_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(since.map_or(Duration::MAX, |since| since.elapsed()))
    }
}

/// The relationship store: a connection pool and the settings.
pub struct Store {
    pool: Pool,
    config: StoreConfig,
    health: StoreHealth,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("target", &StoreTarget(&self.config.connection))
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Returns a store over `config`'s database. Connects lazily: a store that is down now is
    /// no error here (requests get UNAVAILABLE, and the follower retries).
    pub fn new(config: StoreConfig) -> Result<Arc<Self>, StoreError> {
        let manager = Manager::from_config(
            config.connection.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(Arc::new(Self {
            pool,
            config,
            health: StoreHealth::default(),
        }))
    }

    /// Returns the settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Returns how the store connection fares.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Applies `batch` in one transaction and returns the revision it committed as; on any
    /// error nothing is written and no revision is used.
    ///
    /// Every statement is prepared once per pooled connection (`prepare_cached`): a statement
    /// sent as text is parsed, planned and described on every call, an extra round trip each,
    /// and a write runs seven of them.
    pub async fn write(&self, batch: &WriteBatch) -> Result<u64, WriteError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // INVARIANT: this row lock serializes writers until commit, so revisions commit in
        // order (see the module header).
        let revision: i64 = tx
            .query_one(
                &tx.prepare_cached(
                    "UPDATE verdict_head SET revision = revision + 1 RETURNING revision",
                )
                .await?,
                &[],
            )
            .await?
            .get(0);

        if !batch.preconditions.is_empty() {
            let texts: Vec<&str> = batch
                .preconditions
                .iter()
                .map(|p| p.tuple.as_str())
                .collect();
            let existing = text_set(
                tx.query(
                    &tx.prepare_cached(
                        "SELECT tuple FROM verdict_relationships WHERE tuple = ANY($1)",
                    )
                    .await?,
                    &[&texts],
                )
                .await?,
            );
            if let Some(failed) = batch
                .preconditions
                .iter()
                .find(|p| existing.contains(&p.tuple) != p.must_exist)
            {
                return Err(WriteError::Precondition {
                    index: failed.index,
                    must_exist: failed.must_exist,
                });
            }
        }

        let (writes, deletes): (Vec<_>, Vec<_>) = batch
            .updates
            .iter()
            .enumerate()
            .partition(|(_, (kind, _))| *kind == ChangeKind::Write);
        let inserted = if writes.is_empty() {
            HashSet::new()
        } else {
            let column = |f: fn(&TupleRow) -> &str| -> Vec<&str> {
                writes.iter().map(|(_, (_, row))| f(row)).collect()
            };
            let wildcards: Vec<bool> = writes
                .iter()
                .map(|(_, (_, row))| row.subject_wildcard)
                .collect();
            text_set(
                tx.query(
                    &tx.prepare_cached(
                        "INSERT INTO verdict_relationships (tuple, object_type, object_id, \
                         relation, subject_type, subject_id, subject_relation, subject_wildcard, \
                         written_at) SELECT t.*, $9::bigint FROM UNNEST($1::text[], $2::text[], \
                         $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                         $8::bool[]) AS t ON CONFLICT (tuple) DO NOTHING RETURNING tuple",
                    )
                    .await?,
                    &[
                        &column(|r| &r.text),
                        &column(|r| &r.object_type),
                        &column(|r| &r.object_id),
                        &column(|r| &r.relation),
                        &column(|r| &r.subject_type),
                        &column(|r| &r.subject_id),
                        &column(|r| &r.subject_relation),
                        &wildcards,
                        &revision,
                    ],
                )
                .await?,
            )
        };
        let deleted = if deletes.is_empty() {
            HashSet::new()
        } else {
            let texts: Vec<&str> = deletes
                .iter()
                .map(|(_, (_, row))| row.text.as_str())
                .collect();
            text_set(
                tx.query(
                    &tx.prepare_cached(
                        "DELETE FROM verdict_relationships WHERE tuple = ANY($1) RETURNING tuple",
                    )
                    .await?,
                    &[&texts],
                )
                .await?,
            )
        };

        // The change log: what changed, in request order.
        let mut seqs: Vec<i32> = Vec::new();
        let mut operations: Vec<i16> = Vec::new();
        let mut tuples: Vec<&str> = Vec::new();
        for (index, (kind, row)) in batch.updates.iter().enumerate() {
            let changed = match kind {
                ChangeKind::Write => inserted.contains(&row.text),
                ChangeKind::Delete => deleted.contains(&row.text),
            };
            match (kind, changed) {
                (_, true) => {
                    seqs.push(i32::try_from(index).unwrap_or(i32::MAX));
                    operations.push(operation_code(*kind));
                    tuples.push(&row.text);
                }
                (ChangeKind::Write, false) if !batch.ignore_existing => {
                    return Err(WriteError::AlreadyExists { index });
                }
                (ChangeKind::Delete, false) if !batch.ignore_missing => {
                    return Err(WriteError::NotFound { index });
                }
                _ => {}
            }
        }
        tx.execute(
            &tx.prepare_cached("INSERT INTO verdict_revisions (revision) VALUES ($1)")
                .await?,
            &[&revision],
        )
        .await?;
        if !seqs.is_empty() {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO verdict_changes (revision, seq, operation, tuple) \
                 SELECT $1, t.* FROM UNNEST($2::int[], $3::smallint[], $4::text[]) AS t",
                )
                .await?,
                &[&revision, &seqs, &operations, &tuples],
            )
            .await?;
        }
        // Delivered to listeners when (and only if) the transaction commits.
        tx.execute(
            &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
            &[&CHANNEL, &revision.to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok(to_u64(revision))
    }

    /// Writes `rows` (valid and distinct; see `verdict relationships import`) in one
    /// transaction and one revision, through `COPY … FROM STDIN` in PostgreSQL's binary
    /// format into a temporary table, then into the store: tuples already held are left as
    /// they are, and only the new ones enter the change log. Returns the revision and how many
    /// tuples were new. Binary COPY sends typed values, never SQL text.
    pub async fn import(&self, rows: &[TupleRow]) -> Result<(u64, u64), StoreError> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // INVARIANT: the same row lock as `write`: revisions commit in order.
        let revision: i64 = tx
            .query_one(
                &tx.prepare_cached(
                    "UPDATE verdict_head SET revision = revision + 1 RETURNING revision",
                )
                .await?,
                &[],
            )
            .await?
            .get(0);
        tx.batch_execute(
            "CREATE TEMPORARY TABLE verdict_import (tuple text COLLATE \"C\", \
             object_type text, object_id text, relation text, subject_type text, \
             subject_id text, subject_relation text, subject_wildcard boolean) ON COMMIT DROP",
        )
        .await?;
        let sink = tx
            .copy_in(
                "COPY verdict_import (tuple, object_type, object_id, relation, subject_type, \
                 subject_id, subject_relation, subject_wildcard) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BOOL,
        ];
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for row in rows {
            writer
                .as_mut()
                .write(&[
                    &row.text,
                    &row.object_type,
                    &row.object_id,
                    &row.relation,
                    &row.subject_type,
                    &row.subject_id,
                    &row.subject_relation,
                    &row.subject_wildcard,
                ])
                .await?;
        }
        writer.as_mut().finish().await?;
        tx.execute(
            "INSERT INTO verdict_revisions (revision) VALUES ($1)",
            &[&revision],
        )
        .await?;
        let inserted = tx
            .execute(
                "WITH inserted AS (INSERT INTO verdict_relationships (tuple, object_type, \
                 object_id, relation, subject_type, subject_id, subject_relation, \
                 subject_wildcard, written_at) SELECT i.*, $1::bigint FROM verdict_import i \
                 ON CONFLICT (tuple) DO NOTHING RETURNING tuple) \
                 INSERT INTO verdict_changes (revision, seq, operation, tuple) \
                 SELECT $1, (row_number() OVER (ORDER BY tuple))::int - 1, $2, tuple FROM inserted",
                &[&revision, &operation_code(ChangeKind::Write)],
            )
            .await?;
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &revision.to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok((to_u64(revision), inserted))
    }

    /// Returns the store's last committed revision.
    pub async fn head(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one("SELECT revision FROM verdict_head", &[])
            .await?;
        let head = to_u64(row.get(0));
        self.health.head.fetch_max(head, Ordering::Relaxed);
        Ok(head)
    }

    /// Reads up to `limit` tuples matching `filter` after the key `after` (a previous page's
    /// last tuple), in key order, at one revision.
    pub async fn read(
        &self,
        filter: &ReadFilter,
        after: &str,
        limit: usize,
    ) -> Result<ReadPage, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let revision = to_u64(
            tx.query_one("SELECT revision FROM verdict_head", &[])
                .await?
                .get(0),
        );
        let wildcard = filter.subject_id == "*";
        let subject_id = if wildcard {
            ""
        } else {
            filter.subject_id.as_str()
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "SELECT tuple FROM verdict_relationships \
                 WHERE ($1 = '' OR object_type = $1) AND ($2 = '' OR object_id = $2) \
                 AND ($3 = '' OR relation = $3) AND ($4 = '' OR subject_type = $4) \
                 AND ($5 = '' OR (subject_id = $5 AND NOT subject_wildcard)) \
                 AND (NOT $6 OR subject_wildcard) \
                 AND ($7 = '' OR subject_relation = $7) \
                 AND tuple > $8 ORDER BY tuple LIMIT $9",
                &[
                    &filter.object_type,
                    &filter.object_id,
                    &filter.relation,
                    &filter.subject_type,
                    &subject_id,
                    &wildcard,
                    &filter.subject_relation,
                    &after,
                    &limit,
                ],
            )
            .await?;
        tx.commit().await?;
        let tuples: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        Ok(ReadPage {
            more: i64::try_from(tuples.len()).unwrap_or(i64::MAX) == limit,
            tuples,
            revision,
        })
    }

    /// Returns the whole revisions after `after`, up to `REVISIONS_PER_ROUND` (100) of them.
    pub async fn changes_after(&self, after: u64) -> Result<Changes, StoreError> {
        let client = self.pool.get().await?;
        let queries = ChangeQueries {
            head: client.prepare_cached(HEAD_QUERY).await?,
            changes: client.prepare_cached(CHANGES_QUERY).await?,
        };
        changes_after(&client, &queries, after).await
    }

    /// Deletes change-log revisions older than `older_than` (never the newest) and returns
    /// the last revision collected so far.
    pub async fn collect_garbage(&self, older_than: Duration) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        collect_garbage(&client, older_than).await
    }
}

/// The statements a round of following the change log runs, prepared once per connection.
pub(crate) struct ChangeQueries {
    /// The head revision and how far the log was garbage-collected.
    head: tokio_postgres::Statement,
    /// Whole revisions in a range, with their changes in order.
    changes: tokio_postgres::Statement,
}

const HEAD_QUERY: &str = "SELECT revision, compacted_through FROM verdict_head";
// The range is repeated on the change log so that PostgreSQL reads it through its key: joined
// on the revision alone, it scanned the whole log each round.
const CHANGES_QUERY: &str = "SELECT r.revision, c.operation, c.tuple FROM verdict_revisions r \
     LEFT JOIN verdict_changes c ON c.revision = r.revision \
     AND c.revision > $1 AND c.revision <= $2 \
     WHERE r.revision > $1 AND r.revision <= $2 ORDER BY r.revision, c.seq";

impl ChangeQueries {
    /// Prepares the statements on `client`'s connection.
    pub(crate) async fn prepare(client: &tokio_postgres::Client) -> Result<Self, StoreError> {
        Ok(Self {
            head: client.prepare(HEAD_QUERY).await?,
            changes: client.prepare(CHANGES_QUERY).await?,
        })
    }

    /// The head revision, through `client` (the connection the statements were prepared on).
    pub(crate) async fn head(&self, client: &tokio_postgres::Client) -> Result<u64, StoreError> {
        Ok(to_u64(client.query_one(&self.head, &[]).await?.get(0)))
    }
}

/// The changes after `after` through `client` (see [`Store::changes_after`]), with `queries`
/// prepared on its connection.
async fn changes_after(
    client: &tokio_postgres::Client,
    queries: &ChangeQueries,
    after: u64,
) -> Result<Changes, StoreError> {
    let head = client.query_one(&queries.head, &[]).await?;
    let (head, compacted_through) = (to_u64(head.get(0)), to_u64(head.get(1)));
    if after < compacted_through {
        return Ok(Changes::Compacted { compacted_through });
    }
    if head <= after {
        return Ok(Changes::Revisions(Vec::new()));
    }
    let from = to_i64(after);
    let through = to_i64(head).min(from.saturating_add(REVISIONS_PER_ROUND));
    let rows = client.query(&queries.changes, &[&from, &through]).await?;
    let mut revisions: Vec<(u64, Vec<StoreChange>)> = Vec::new();
    for row in rows {
        let revision = to_u64(row.get(0));
        if revisions.last().map(|(r, _)| *r) != Some(revision) {
            revisions.push((revision, Vec::new()));
        }
        let operation: Option<i16> = row.get(1);
        let tuple: Option<String> = row.get(2);
        if let (Some(operation), Some(tuple), Some((_, changes))) =
            (operation, tuple, revisions.last_mut())
        {
            let kind = match operation {
                1 => ChangeKind::Write,
                2 => ChangeKind::Delete,
                other => {
                    return Err(StoreError::Internal(format!(
                        "revision {revision} has a change with the unknown operation {other}"
                    )));
                }
            };
            changes.push(StoreChange { kind, tuple });
        }
    }
    // INVARIANT: revisions are contiguous; a hole means garbage collection ran between the
    // two queries above, and the caller must start over from the whole store.
    let expected = (after + 1..=to_u64(through)).collect::<Vec<_>>();
    if revisions
        .iter()
        .map(|(r, _)| *r)
        .ne(expected.iter().copied())
    {
        let compacted_through = client
            .query_one("SELECT compacted_through FROM verdict_head", &[])
            .await?;
        return Ok(Changes::Compacted {
            compacted_through: to_u64(compacted_through.get(0)),
        });
    }
    Ok(Changes::Revisions(revisions))
}

/// Garbage-collects through `client` (see [`Store::collect_garbage`]).
async fn collect_garbage(
    client: &tokio_postgres::Client,
    older_than: Duration,
) -> Result<u64, StoreError> {
    let row = client
        .query_one(
            "WITH doomed AS (DELETE FROM verdict_revisions \
             WHERE committed_at < now() - make_interval(secs => $1) \
             AND revision < (SELECT revision FROM verdict_head) RETURNING revision) \
             UPDATE verdict_head SET compacted_through = \
             GREATEST(compacted_through, COALESCE((SELECT max(revision) FROM doomed), 0)) \
             RETURNING compacted_through",
            &[&older_than.as_secs_f64()],
        )
        .await?;
    Ok(to_u64(row.get(0)))
}

fn text_set(rows: Vec<tokio_postgres::Row>) -> HashSet<String> {
    rows.iter().map(|row| row.get::<_, String>(0)).collect()
}

fn operation_code(kind: ChangeKind) -> i16 {
    match kind {
        ChangeKind::Write => 1,
        ChangeKind::Delete => 2,
    }
}

/// Revisions are `bigint` in the database and never negative (they start at 0 and grow).
fn to_u64(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn to_i64(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}
