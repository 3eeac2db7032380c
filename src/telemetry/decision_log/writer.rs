//! The decision log's writer: a bounded queue of records, drained by one background thread
//! that formats them and writes them out in batches.
//!
//! ```text
//!  request threads                          writer thread
//!  ───────────────                          ─────────────
//!  sample → copy the record ──try_send──▶ [ queue, N slots ] ──▶ redact, format (JSON or
//!           (a few small allocations)        full: drop it,        text), write a batch,
//!                                            count it              flush
//! ```
//!
//! A request never waits on the log: `try_send` either queues the record or, when the queue
//! is full (the writer cannot keep up, or its output is blocked: a stalled log collector, a
//! pipe nobody reads), drops it and counts it in `verdict_decision_log_dropped_total`.
//! Redaction and formatting, most of a record's cost, happen on the writer thread, which is
//! why the record crosses the queue as data rather than as a formatted line (the reason this is
//! not `tracing-appender`'s non-blocking writer, which takes bytes already formatted on the
//! caller's thread). Records whose write fails are counted as dropped too.
//!
//! Closing ([`DecisionLogWriter::close`]) writes what is queued and flushes, waiting at most a
//! given time: a blocked output cannot hold the process at shutdown.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cedar_policy::EntityUid;
#[cfg(test)]
use serde::Serialize;

use super::{DecisionRecord, TARGET, redact, redacted_uid};
use crate::telemetry::LogFormat;
use crate::telemetry::metrics as telemetry_metrics;

/// Bytes of formatted records written in one `write` (and flush) at most.
const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer sleeps after a write before it looks at the queue again (see
/// [`drain`]): the most a record waits beyond its formatting. At [`super::DEFAULT_QUEUE`]
/// records per linger the queue holds 1.6 million records/s, far above what the request
/// threads produce.
const LINGER: Duration = Duration::from_millis(5);

/// A decision record copied out of the request, to be formatted on the writer thread.
#[derive(Debug)]
struct QueuedRecord {
    at: SystemTime,
    request_id: String,
    caller: Option<String>,
    front_end: &'static str,
    route: Option<String>,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    decision: &'static str,
    determining_policies: Vec<String>,
    errored_policies: Vec<String>,
    properties: Vec<(String, &'static str)>,
    snapshot_version: String,
    latency: Duration,
    relation_depth_exceeded: bool,
    trace_id: Option<String>,
}

impl QueuedRecord {
    fn of(record: &DecisionRecord<'_>) -> Self {
        // Exhaustive: a new field of `DecisionRecord` is a compile error here until it is
        // carried over (and written in `Fields`).
        let DecisionRecord {
            request_id,
            caller,
            front_end,
            route,
            principal,
            action,
            resource,
            decision,
            determining_policies,
            errored_policies,
            properties,
            snapshot_version,
            latency,
            relation_depth_exceeded,
            trace_id,
        } = *record;
        Self {
            at: SystemTime::now(),
            request_id: request_id.to_owned(),
            caller: caller.map(str::to_owned),
            front_end,
            route: route.map(str::to_owned),
            principal: principal.clone(),
            action: action.clone(),
            resource: resource.clone(),
            decision,
            determining_policies: determining_policies.to_vec(),
            errored_policies: errored_policies.iter().map(|&p| p.to_owned()).collect(),
            properties: properties
                .iter()
                .map(|&(name, outcome)| (name.to_owned(), outcome))
                .collect(),
            snapshot_version: snapshot_version.to_owned(),
            latency,
            relation_depth_exceeded,
            trace_id: trace_id.map(str::to_owned),
        }
    }
}

/// What crosses the queue.
#[derive(Debug)]
enum Message {
    Record(Box<QueuedRecord>),
    /// Wakes the writer so that it sees the closing flag.
    Wake,
}

/// Counters shared by the request side and the writer thread.
#[derive(Debug, Default)]
struct Shared {
    closing: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
}

impl Shared {
    fn drop_records(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
        telemetry_metrics::record_decision_log_dropped(count);
    }
}

/// How closing went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Every queued record was written and the output flushed.
    Flushed,
    /// The writer did not finish within the time given (its output is blocked).
    TimedOut,
}

/// The queue and its writer thread.
#[derive(Debug)]
pub struct DecisionLogWriter {
    queue_tx: SyncSender<Message>,
    shared: Arc<Shared>,
    /// Receives once the writer thread has written everything and ended.
    done_rx: Mutex<Receiver<()>>,
}

impl DecisionLogWriter {
    /// Starts the writer thread, writing `format` lines to `output`, with room for `queue`
    /// records waiting.
    pub fn spawn(
        output: Box<dyn Write + Send>,
        format: LogFormat,
        queue: usize,
    ) -> std::io::Result<Self> {
        let (queue_tx, queue_rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::default());
        let writer_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("decision-log".to_owned())
            .spawn(move || {
                drain(queue_rx, output, format, &writer_shared);
                let _ = done_tx.send(());
            })?;
        Ok(Self {
            queue_tx,
            shared,
            done_rx: Mutex::new(done_rx),
        })
    }

    /// Queues `record`, or drops and counts it when the queue is full or closed. Never blocks.
    pub fn submit(&self, record: &DecisionRecord<'_>) {
        if self.shared.closing.load(Ordering::Relaxed) {
            self.shared.drop_records(1);
            return;
        }
        let message = Message::Record(Box::new(QueuedRecord::of(record)));
        match self.queue_tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.drop_records(1);
            }
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Stops taking records, writes those queued and flushes, waiting at most `timeout`.
    pub fn close(&self, timeout: Duration) -> CloseOutcome {
        self.shared.closing.store(true, Ordering::Release);
        // A full queue needs no wake-up: the writer is busy and checks the flag after its
        // batch. An empty one gets this message.
        let _ = self.queue_tx.try_send(Message::Wake);
        let Ok(done_rx) = self.done_rx.lock() else {
            return CloseOutcome::TimedOut;
        };
        match done_rx.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => CloseOutcome::Flushed,
            Err(RecvTimeoutError::Timeout) => CloseOutcome::TimedOut,
        }
    }
}

/// The writer thread: takes what is queued (up to [`BATCH_BYTES`] of lines), writes it in one
/// go, and repeats; ends when closing and the queue is empty.
///
/// After a write that emptied the queue it sleeps for [`LINGER`] before it looks at the queue
/// again, and only when the queue is then empty does it wait on it. A thread waiting on the
/// queue is woken by the next record (a futex wake on the request's thread, a context switch
/// and a `write` per record when requests come faster than the writer sleeps); a sleeping one
/// is not, so under load the writer wakes at most once per [`LINGER`] and writes everything
/// that came in meanwhile in one `write`. Under a light load it still writes each record as it
/// comes.
fn drain(
    queue_rx: Receiver<Message>,
    mut output: Box<dyn Write + Send>,
    format: LogFormat,
    shared: &Shared,
) {
    let mut batch = Vec::with_capacity(BATCH_BYTES + 1024);
    let mut waited = queue_rx.recv().ok();
    while let Some(first) = waited {
        let mut records = 0;
        let mut next = Some(first);
        let mut full = false;
        while let Some(message) = next {
            if let Message::Record(record) = message {
                format_line(&mut batch, &record, format);
                records += 1;
            }
            full = batch.len() >= BATCH_BYTES;
            next = if full { None } else { queue_rx.try_recv().ok() };
        }
        write_batch(&mut output, &mut batch, records, shared);
        if shared.closing.load(Ordering::Acquire) {
            let mut records = 0;
            while let Ok(message) = queue_rx.try_recv() {
                if let Message::Record(record) = message {
                    format_line(&mut batch, &record, format);
                    records += 1;
                }
            }
            write_batch(&mut output, &mut batch, records, shared);
            break;
        }
        // A full batch leaves records queued: write them at once. (Sleeping after every
        // batch capped the writer at one 64 KiB batch per linger, about 26,000 records/s.)
        if records > 0 && !full {
            std::thread::sleep(LINGER);
        }
        waited = match queue_rx.try_recv() {
            Ok(message) => Some(message),
            Err(TryRecvError::Empty) => queue_rx.recv().ok(),
            Err(TryRecvError::Disconnected) => None,
        };
    }
}

fn write_batch(output: &mut dyn Write, batch: &mut Vec<u8>, records: u64, shared: &Shared) {
    if records == 0 {
        return;
    }
    match output.write_all(batch).and_then(|()| output.flush()) {
        Ok(()) => {
            shared.written.fetch_add(records, Ordering::Relaxed);
        }
        Err(_) => shared.drop_records(records),
    }
    batch.clear();
}

/// A record's fields, named as they were when records went through `tracing`. In JSON the
/// lists are JSON arrays (the text format joins them with commas), and the line is laid out as
/// `tracing-subscriber`'s flattened JSON formatter writes the operational logs under
/// `--log-format json`: the record's fields between `timestamp` and `level` and `target`.
/// [`Fields::write_json`] writes the line; the `Serialize` derive is only the tests' oracle
/// for it (serde's serializer cost a record 6,900 instructions).
#[cfg_attr(test, derive(Serialize))]
struct Fields<'a> {
    timestamp: &'a str,
    level: &'static str,
    message: &'static str,
    request_id: &'a str,
    caller: &'a str,
    front_end: &'static str,
    route: &'a str,
    principal: String,
    action: String,
    resource: String,
    decision: &'static str,
    determining_policies: &'a [String],
    errored_policies: &'a [String],
    /// Each property decided, in the request's order.
    properties: Vec<PropertyField>,
    snapshot_version: &'a str,
    latency_us: u64,
    relation_depth_exceeded: bool,
    /// The OpenTelemetry trace id, only when traces are exported.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    trace_id: Option<&'a str>,
    target: &'static str,
}

impl Fields<'_> {
    /// Appends the fields as one JSON object, byte for byte what `serde_json` writes for them
    /// (a unit test compares the two), without going through serde's serializer: that was
    /// 6,900 of a record's 14,800 instructions on the writer thread.
    fn write_json(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            json_string(out, value);
        };
        let strings = |out: &mut Vec<u8>, name: &str, values: &[String]| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":[");
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(out, value);
            }
            out.push(b']');
        };
        out.extend_from_slice(b"{\"timestamp\":");
        json_string(out, self.timestamp);
        string(out, "level", self.level);
        string(out, "message", self.message);
        string(out, "request_id", self.request_id);
        string(out, "caller", self.caller);
        string(out, "front_end", self.front_end);
        string(out, "route", self.route);
        string(out, "principal", &self.principal);
        string(out, "action", &self.action);
        string(out, "resource", &self.resource);
        string(out, "decision", self.decision);
        strings(out, "determining_policies", self.determining_policies);
        strings(out, "errored_policies", self.errored_policies);
        out.extend_from_slice(b",\"properties\":[");
        for (i, property) in self.properties.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            json_string(out, &property.name);
            string(out, "decision", property.decision);
            out.push(b'}');
        }
        out.push(b']');
        string(out, "snapshot_version", self.snapshot_version);
        let _ = write!(out, ",\"latency_us\":{}", self.latency_us);
        let _ = write!(
            out,
            ",\"relation_depth_exceeded\":{}",
            self.relation_depth_exceeded
        );
        if let Some(trace_id) = self.trace_id {
            string(out, "trace_id", trace_id);
        }
        string(out, "target", self.target);
        out.push(b'}');
    }
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it: `"`, `\\` and the
/// control characters below U+0020 (the short forms where JSON has them, else `\u00xx`).
fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// The bytes JSON escapes, by value: one table lookup per byte of text.
    const ESCAPED: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 0x20 {
            table[byte] = true;
            byte += 1;
        }
        table[b'"' as usize] = true;
        table[b'\\' as usize] = true;
        table
    };
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if !ESCAPED[usize::from(byte)] {
            continue;
        }
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// One property's decision in a record.
#[cfg_attr(test, derive(Serialize))]
struct PropertyField {
    name: String,
    decision: &'static str,
}

/// Appends `record` as one line: redacted, in `format`.
fn format_line(out: &mut Vec<u8>, record: &QueuedRecord, format: LogFormat) {
    let properties = record
        .properties
        .iter()
        .map(|(name, decision)| PropertyField {
            name: redact(name).into_owned(),
            decision,
        })
        .collect();
    let timestamp = timestamp(record.at);
    let fields = Fields {
        timestamp: &timestamp,
        level: "INFO",
        message: "decision",
        request_id: &redact(&record.request_id),
        caller: record.caller.as_deref().unwrap_or("anonymous"),
        front_end: record.front_end,
        route: record.route.as_deref().unwrap_or(""),
        principal: redacted_uid(&record.principal),
        action: redacted_uid(&record.action),
        resource: redacted_uid(&record.resource),
        decision: record.decision,
        determining_policies: &record.determining_policies,
        errored_policies: &record.errored_policies,
        properties,
        snapshot_version: &record.snapshot_version,
        latency_us: u64::try_from(record.latency.as_micros()).unwrap_or(u64::MAX),
        relation_depth_exceeded: record.relation_depth_exceeded,
        trace_id: record.trace_id.as_deref(),
        target: TARGET,
    };
    match format {
        LogFormat::Json => fields.write_json(out),
        LogFormat::Text => {
            let _ = write!(
                out,
                "{timestamp}  INFO {TARGET}: decision request_id={} caller={:?} front_end={:?} \
                 route={:?} principal={} \
                 action={} resource={} decision={:?} determining_policies={} \
                 errored_policies={} properties={} snapshot_version={:?} latency_us={} \
                 relation_depth_exceeded={}",
                fields.request_id,
                fields.caller,
                fields.front_end,
                fields.route,
                fields.principal,
                fields.action,
                fields.resource,
                fields.decision,
                fields.determining_policies.join(","),
                fields.errored_policies.join(","),
                fields
                    .properties
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.decision))
                    .collect::<Vec<_>>()
                    .join(","),
                fields.snapshot_version,
                fields.latency_us,
                fields.relation_depth_exceeded,
            );
            if let Some(trace_id) = fields.trace_id {
                let _ = write!(out, " trace_id={trace_id}");
            }
        }
    }
    out.push(b'\n');
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` prints its timestamps.
fn timestamp(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let micros = at
        .replace_nanosecond(at.microsecond() * 1_000)
        .unwrap_or(at);
    micros
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests"
    )]

    use std::sync::mpsc;

    use serde_json::json;

    use super::*;

    /// An output whose writes land in a shared buffer.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An output whose first write blocks until the test lets it go (a pipe nobody reads).
    struct Blocked {
        release_rx: mpsc::Receiver<()>,
        inner: Memory,
    }

    impl Write for Blocked {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.release_rx.recv();
            self.inner.write(bytes)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn uid(text: &str) -> EntityUid {
        text.parse().unwrap()
    }

    fn log_denies(writer: &DecisionLogWriter, count: usize) {
        let (principal, action, resource) = (
            uid(r#"User::"alice""#),
            uid(r#"Action::"read""#),
            uid(r#"Doc::"d""#),
        );
        let policies = vec!["deny-all".to_owned()];
        for i in 0..count {
            writer.submit(&DecisionRecord {
                request_id: &format!("r-{i}"),
                caller: None,
                front_end: "grpc",
                route: None,
                principal: &principal,
                action: &action,
                resource: &resource,
                decision: "deny",
                determining_policies: &policies,
                errored_policies: &[],
                properties: &[("title", "deny")],
                snapshot_version: "0123456789abcdef",
                latency: Duration::from_micros(7),
                relation_depth_exceeded: false,
                trace_id: None,
            });
        }
    }

    #[test]
    fn closing_writes_every_queued_record() {
        let memory = Memory::default();
        let writer =
            DecisionLogWriter::spawn(Box::new(memory.clone()), LogFormat::Json, 1_000).unwrap();
        log_denies(&writer, 500);
        assert_eq!(writer.close(Duration::from_secs(30)), CloseOutcome::Flushed);
        let text = String::from_utf8(memory.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 500);
        assert_eq!(writer.written(), 500);
        assert_eq!(writer.dropped(), 0);
        assert_eq!(lines[499]["request_id"], "r-499");
        assert_eq!(lines[0]["target"], TARGET);
        assert_eq!(lines[0]["determining_policies"], json!(["deny-all"]));
        assert_eq!(lines[0]["snapshot_version"], "0123456789abcdef");
        assert_eq!(
            lines[0]["properties"],
            json!([{"name": "title", "decision": "deny"}])
        );
        // A record after closing is dropped and counted, not queued for nobody.
        log_denies(&writer, 1);
        assert_eq!(writer.dropped(), 1);
    }

    #[test]
    fn a_blocked_output_drops_records_instead_of_blocking() {
        let (release_tx, release_rx) = mpsc::channel();
        let memory = Memory::default();
        let output = Blocked {
            release_rx,
            inner: memory.clone(),
        };
        let writer = DecisionLogWriter::spawn(Box::new(output), LogFormat::Text, 16).unwrap();
        // The writer takes at most one batch before its write blocks; 16 more fill the queue.
        log_denies(&writer, 1_000);
        assert!(
            writer.dropped() >= 1_000 - 16 - 1_000 / 2,
            "{}",
            writer.dropped()
        );
        assert!(writer.dropped() > 0);
        // Still blocked: closing gives up after the time given.
        assert_eq!(
            writer.close(Duration::from_millis(50)),
            CloseOutcome::TimedOut
        );
        // Unblocked, it writes what it holds and ends.
        drop(release_tx);
        assert_eq!(writer.close(Duration::from_secs(30)), CloseOutcome::Flushed);
        assert_eq!(writer.written() + writer.dropped(), 1_000);
        let text = String::from_utf8(memory.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count() as u64, writer.written());
        assert!(
            text.lines().all(|line| line
                .contains("INFO verdict::decision: decision request_id=r-")
                && line.contains("principal=User::\"alice\"")),
            "{text}"
        );
    }

    #[test]
    fn json_lines_are_what_serde_json_writes() {
        let policies = vec!["p1".to_owned(), "we\"ird\\\n\u{1}\u{7f}é❤".to_owned()];
        let none: Vec<String> = Vec::new();
        for (trace_id, properties, errored) in [
            (None, vec![], &none),
            (
                Some("0af7651916cd43dd8448eb211c80319c"),
                vec![
                    PropertyField {
                        name: "title".to_owned(),
                        decision: "allow",
                    },
                    PropertyField {
                        name: "x\"y\u{8}\u{c}\r".to_owned(),
                        decision: "deny",
                    },
                ],
                &policies,
            ),
        ] {
            let fields = Fields {
                timestamp: "2026-12-04T03:00:00.000001Z",
                level: "INFO",
                message: "decision",
                request_id: "01J\u{0}\t",
                caller: "anonymous",
                front_end: "grpc",
                route: "",
                principal: "User::\"a\\\"b\"".to_owned(),
                action: "Action::\"read\"".to_owned(),
                resource: "[redacted]".to_owned(),
                decision: "deny",
                determining_policies: &policies,
                errored_policies: errored,
                properties,
                snapshot_version: "sha256:abc@r12",
                latency_us: 123,
                relation_depth_exceeded: trace_id.is_some(),
                trace_id,
                target: TARGET,
            };
            let mut ours = Vec::new();
            fields.write_json(&mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&fields).unwrap()
            );
        }
        let every_ascii: String = (0_u8..0x80).map(char::from).collect();
        let mut ours = Vec::new();
        json_string(&mut ours, &every_ascii);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&every_ascii).unwrap()
        );
    }

    #[test]
    fn records_are_redacted_on_the_writer_thread() {
        let memory = Memory::default();
        let writer =
            DecisionLogWriter::spawn(Box::new(memory.clone()), LogFormat::Json, 10).unwrap();
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sgn-abcdefgh";
        let principal = uid(&format!(r#"User::"{token}""#));
        let (action, resource) = (uid(r#"Action::"read""#), uid(r#"Doc::"d""#));
        writer.submit(&DecisionRecord {
            request_id: "r",
            caller: Some("gateway"),
            front_end: "ext_authz",
            route: Some("read a document"),
            principal: &principal,
            action: &action,
            resource: &resource,
            decision: "allow",
            determining_policies: &[],
            errored_policies: &["broken"],
            properties: &[],
            snapshot_version: "v",
            latency: Duration::ZERO,
            relation_depth_exceeded: true,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        });
        assert_eq!(writer.close(Duration::from_secs(30)), CloseOutcome::Flushed);
        let text = String::from_utf8(memory.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("eyJhbGci"), "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["principal"], "User::\"[redacted]\"");
        assert_eq!(line["caller"], "gateway");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["errored_policies"], json!(["broken"]));
        assert_eq!(line["relation_depth_exceeded"], true);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
