//! The store's schema, as numbered migrations applied once each, in order.
//!
//! `verdict migrate` (or `serve --migrate`) applies the missing ones in one transaction that
//! first takes a transaction-scoped advisory lock: replicas that start together queue on the
//! lock, and each one after the first finds nothing left to do. A migration, once released, is
//! never edited: a change is a new migration.

use tokio_postgres::NoTls;

use super::StoreError;

/// The advisory lock key of migrations (`verdict` in ASCII): any value works as long as
/// nothing else in the database uses it.
const MIGRATION_LOCK: i64 = 0x0076_6572_6469_6374;

/// One migration: a version (1, 2, …), a name for logs, and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations apply in this order.
    pub version: i32,
    /// What it does.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "relationships, revisions and the change log",
    sql: r#"
CREATE TABLE verdict_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision bigint NOT NULL,
    compacted_through bigint NOT NULL
);
INSERT INTO verdict_head (revision, compacted_through) VALUES (0, 0);

CREATE TABLE verdict_relationships (
    tuple text COLLATE "C" PRIMARY KEY,
    object_type text NOT NULL,
    object_id text NOT NULL,
    relation text NOT NULL,
    subject_type text NOT NULL,
    subject_id text NOT NULL,
    subject_relation text NOT NULL,
    subject_wildcard boolean NOT NULL,
    written_at bigint NOT NULL
);
CREATE INDEX verdict_relationships_object
    ON verdict_relationships (object_type, object_id, relation);
CREATE INDEX verdict_relationships_subject
    ON verdict_relationships (subject_type, subject_id, subject_relation);

CREATE TABLE verdict_revisions (
    revision bigint PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verdict_revisions_committed_at ON verdict_revisions (committed_at);

CREATE TABLE verdict_changes (
    revision bigint NOT NULL REFERENCES verdict_revisions ON DELETE CASCADE,
    seq integer NOT NULL,
    operation smallint NOT NULL CHECK (operation IN (1, 2)),
    tuple text COLLATE "C" NOT NULL,
    PRIMARY KEY (revision, seq)
);
"#,
}];

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions applied by this run, in order (empty: the schema was up to date).
    pub applied: Vec<i32>,
    /// The schema's version afterwards.
    pub version: i32,
}

/// Applies every missing migration to the database of `config`, under the advisory lock.
/// Refuses a database whose schema is newer than this Verdict knows.
pub async fn migrate(config: &tokio_postgres::Config) -> Result<MigrationReport, StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        // Ends when the client is dropped; its error is the client's too.
        let _ = connection.await;
    });
    let result = async {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS verdict_schema_migrations (\
             version integer PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let done: Vec<i32> = tx
            .query("SELECT version FROM verdict_schema_migrations", &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if let Some(newer) = done.iter().copied().filter(|&v| v > known).max() {
            return Err(StoreError::Schema(format!(
                "the database's schema is at version {newer}, newer than this Verdict knows \
                 ({known}); upgrade Verdict"
            )));
        }
        let mut applied = Vec::new();
        for migration in MIGRATIONS {
            if done.contains(&migration.version) {
                continue;
            }
            tx.batch_execute(migration.sql).await?;
            tx.execute(
                "INSERT INTO verdict_schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await?;
            applied.push(migration.version);
        }
        tx.commit().await?;
        Ok(MigrationReport {
            applied,
            version: known,
        })
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}
