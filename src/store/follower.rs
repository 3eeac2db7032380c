//! The follower: keeps this replica's snapshot in step with the store.
//!
//! ```text
//! connect ─► LISTEN ─► (first time, or fell behind the log) load the whole store at revision R
//!                │
//!                ▼
//!        ┌─► catch up: whole revisions after the applied one, in order, a round at a time
//!        │      │ applied as one new snapshot per round (never half a revision)
//!        │      ▼
//!        └── wait: a NOTIFY, the poll interval, shutdown, or the connection lost
//!
//! any error ─► disconnected (checks keep the last applied revision) ─► back off ─► connect
//! ```
//!
//! LISTEN is issued before the first catch-up, so a change committed after it wakes the
//! follower and one committed before it is read by the catch-up: none is missed. A NOTIFY only
//! wakes; what to apply always comes from the change log, so a lost or duplicated notification
//! changes nothing. The whole-store load reads the head revision and every tuple in one
//! REPEATABLE READ transaction, so it is the state at exactly that revision, and following
//! resumes from it with no gap and no duplicate.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use verdict_core::store::StoreTuples;

use super::{
    CHANNEL, ChangeQueries, Changes, LOAD_PAGE, Store, StoreError, collect_garbage, to_u64,
};
use crate::serving::SnapshotHandle;
use crate::telemetry::metrics as telemetry_metrics;

/// The first wait after a failure; doubled after each failure in a row, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The longest one catch-up round or garbage collection may take before the connection is
/// treated as lost.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a whole-store load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Follows the store into `snapshots` until `cancel` fires. Never returns early: every error
/// is logged, counted and retried with backoff while the last applied revision keeps serving.
pub async fn follow(store: Arc<Store>, snapshots: Arc<SnapshotHandle>, cancel: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    let mut loaded = false;
    loop {
        let outcome = follow_connection(&store, &snapshots, &cancel, &mut loaded).await;
        // A connection that worked starts the next failure streak from the shortest wait.
        if store.health.is_connected() {
            backoff = MIN_BACKOFF;
        }
        store.health.set_disconnected();
        telemetry_metrics::set_store_connected(false);
        if cancel.is_cancelled() {
            return;
        }
        match outcome {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    %error,
                    applied_revision = snapshots.applied_revision().unwrap_or(0),
                    retry_in_ms = backoff.as_millis() as u64,
                    "relationship store unreachable; checks are answered from the last applied revision"
                );
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: connect, listen, load if needed, follow until an error or `cancel`
/// (then `Ok`).
async fn follow_connection(
    store: &Store,
    snapshots: &Arc<SnapshotHandle>,
    cancel: &CancellationToken,
    loaded: &mut bool,
) -> Result<(), StoreError> {
    let connect = store.config.connection.connect(NoTls);
    let (mut client, mut connection) = tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        connected = tokio::time::timeout(ROUND_TIMEOUT, connect) => connected
            .map_err(|_| StoreError::Unavailable("connecting timed out".to_owned()))??,
    };
    // The connection is driven here; notifications wake the follower, and its end (with the
    // reason) ends this connection's life.
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let (closed_tx, mut closed_rx) = oneshot::channel::<String>();
    let driver = tokio::spawn(async move {
        let reason = loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    let _ = wake_tx.try_send(());
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break verdict_core::error_chain(&error),
                None => break "the server closed the connection".to_owned(),
            }
        };
        let _ = closed_tx.send(reason);
    });
    let _driver = AbortOnDrop(driver);

    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let queries = ChangeQueries::prepare(&client).await?;
    store.health.set_connected(None);
    telemetry_metrics::set_store_connected(true);
    tracing::info!(target_store = %crate::config::StoreTarget(&store.config.connection), "following the relationship store");

    if !*loaded {
        load_whole_store(store, &mut client, snapshots).await?;
        *loaded = true;
    }
    let gc_every = (store.config.changelog_retention / 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut next_gc = tokio::time::Instant::now();
    loop {
        // Catch up, a bounded round at a time; each round is one new snapshot.
        loop {
            let round =
                tokio::time::timeout(ROUND_TIMEOUT, catch_up(store, &client, &queries, snapshots))
                    .await
                    .map_err(|_| StoreError::Unavailable("following timed out".to_owned()))??;
            match round {
                Round::UpToDate => break,
                Round::More => {}
                Round::Reload => load_whole_store(store, &mut client, snapshots).await?,
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= next_gc {
            next_gc = tokio::time::Instant::now() + gc_every;
            match tokio::time::timeout(
                ROUND_TIMEOUT,
                collect_garbage(&client, store.config.changelog_retention),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "change-log garbage collection failed"),
                Err(_) => tracing::warn!("change-log garbage collection timed out"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = wake_rx.recv() => {}
            () = tokio::time::sleep(store.config.poll_interval) => {}
            reason = &mut closed_rx => {
                return Err(StoreError::Unavailable(format!(
                    "connection lost: {}",
                    reason.unwrap_or_else(|_| "the connection task ended".to_owned())
                )));
            }
        }
    }
}

/// What a catch-up round found.
enum Round {
    /// Nothing more to apply.
    UpToDate,
    /// A round was applied and more revisions wait.
    More,
    /// The log no longer reaches back to the applied revision: load the whole store.
    Reload,
}

/// Applies the next round of whole revisions after the one served.
async fn catch_up(
    store: &Store,
    client: &tokio_postgres::Client,
    queries: &ChangeQueries,
    snapshots: &Arc<SnapshotHandle>,
) -> Result<Round, StoreError> {
    let applied = snapshots.applied_revision().unwrap_or(0);
    let revisions = match super::changes_after(client, queries, applied).await? {
        Changes::Revisions(revisions) => revisions,
        Changes::Compacted { compacted_through } => {
            tracing::warn!(
                applied,
                compacted_through,
                "the change log was garbage-collected past this replica's revision; reloading the whole store"
            );
            return Ok(Round::Reload);
        }
    };
    let Some(&(last, _)) = revisions.last() else {
        let head = queries.head(client).await?;
        store.health.set_connected(Some(head));
        telemetry_metrics::set_store_revisions(applied, head);
        if head < applied {
            tracing::warn!(
                applied,
                head,
                "the store's revision went back (restored from a backup?); reloading the whole store"
            );
            return Ok(Round::Reload);
        }
        return Ok(Round::UpToDate);
    };
    let count = revisions.len();
    let handle = Arc::clone(snapshots);
    let applied_now = tokio::task::spawn_blocking(move || handle.apply_store_revisions(revisions))
        .await
        .map_err(|error| StoreError::Internal(format!("applying changes failed: {error}")))?;
    match applied_now {
        Ok(Some(applied)) => {
            store.health.set_connected(Some(applied.revision));
            telemetry_metrics::set_store_revisions(applied.revision, store.health.head());
            telemetry_metrics::set_store_tuples(applied.tuples, applied.rejected);
            tracing::debug!(
                revision = applied.revision,
                revisions = count,
                tuples = applied.tuples,
                "store changes applied"
            );
            Ok(
                if count as i64 >= super::REVISIONS_PER_ROUND && applied.revision == last {
                    Round::More
                } else {
                    Round::UpToDate
                },
            )
        }
        Ok(None) => Ok(Round::Reload),
        Err(stale) => {
            tracing::warn!(%stale, "store revisions out of order; reloading the whole store");
            Ok(Round::Reload)
        }
    }
}

/// Loads every tuple of the store at one revision and serves it.
async fn load_whole_store(
    store: &Store,
    client: &mut tokio_postgres::Client,
    snapshots: &Arc<SnapshotHandle>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let (revision, tuples) = tokio::time::timeout(LOAD_TIMEOUT, read_whole_store(client))
        .await
        .map_err(|_| StoreError::Unavailable("loading the store timed out".to_owned()))??;
    let count = tuples.len();
    let shared = Arc::clone(snapshots);
    let applied = tokio::task::spawn_blocking(move || {
        shared.replace_store(StoreTuples::at(revision, tuples))
    })
    .await
    .map_err(|error| StoreError::Internal(format!("loading the store failed: {error}")))?;
    store.health.set_connected(Some(revision));
    telemetry_metrics::set_store_revisions(revision, store.health.head());
    if let Some(applied) = applied {
        telemetry_metrics::set_store_tuples(applied.tuples, applied.rejected);
    }
    tracing::info!(
        revision,
        tuples = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "relationship store loaded"
    );
    Ok(())
}

/// Reads the head revision and every tuple, a page at a time, in one consistent transaction.
async fn read_whole_store(
    client: &mut tokio_postgres::Client,
) -> Result<(u64, Vec<String>), StoreError> {
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
    let mut tuples: Vec<String> = Vec::new();
    let mut after = String::new();
    // Bounded: each page starts strictly after the last key of the one before, and the
    // transaction sees a fixed set of rows.
    loop {
        let rows = tx
            .query(
                "SELECT tuple FROM verdict_relationships WHERE tuple > $1 ORDER BY tuple LIMIT $2",
                &[&after, &LOAD_PAGE],
            )
            .await?;
        let full = rows.len() as i64 == LOAD_PAGE;
        tuples.extend(rows.iter().map(|row| row.get::<_, String>(0)));
        match tuples.last() {
            Some(last) if full => after.clone_from(last),
            _ => break,
        }
    }
    tx.commit().await?;
    Ok((revision, tuples))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
