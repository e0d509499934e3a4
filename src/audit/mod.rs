//! Stages 6 and 9, the audit trail: every decision recorded, hash-chained
//! and verifiable.
//!
//! - A governed call gets a `decided` record before it is forwarded (the
//!   call waits until it is durable; if it cannot be recorded the call is
//!   refused, not forwarded) and a `completed` record after. Refused calls
//!   get both too. Reloads, API keys and sign-ins get records of their own.
//! - Records form one chain in the store: `seq` is gapless from 1 and
//!   `record_hash = SHA-256(prev_hash ‖ body)` over the record's canonical
//!   JSON ([`canonical`]), which includes its `seq`. Appends are serialised
//!   through one head row, so several replicas on one PostgreSQL (and the
//!   command line) extend the same chain; a batch takes the lock once.
//! - Signed checkpoints ([`checkpoint`]) are written to the store and to a
//!   file outside it; [`verify`] checks all of it.
//! - The [`writer`](Audit) commits records in batches off the hot path
//!   (group commit): a call's wait is one batch's commit, shared by every
//!   call that arrived meanwhile. The queue is bounded.
//! - Arguments are stored as a keyed hash ([`args_hash`]) and a redacted,
//!   size-bounded copy ([`redact`]): secret-shaped values and secret-named
//!   fields never reach the store, and the hash cannot be used to test
//!   guesses of them without the audit key.

pub mod checkpoint;
pub mod forward;
pub mod query;
pub mod redact;
pub mod retention;
pub mod verify;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::call::{Caller, Credential};
use crate::storage::Store;
use crate::util::sync::LockExt;

pub use checkpoint::SigningKey;
pub use writer::{append_in, append_now};

/// What a record is about (its `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A call was decided; for an allowed call, written before forwarding.
    Decided,
    /// A call finished (or was refused), with its outcome.
    Completed,
    PolicyReload,
    KeyCreated,
    KeyRevoked,
    Login,
    Logout,
    /// Records up to a checkpoint were deleted (retention).
    Pruned,
    /// An approval gate held a call: a request for approval.
    ApprovalRequested,
    /// An approver approved or denied a request.
    ApprovalDecided,
    /// A tool's definition was pinned when first seen (`pin = "first-use"`).
    ToolPinned,
    /// A tool was held back: its definition changed, is new to a reviewing
    /// server, or the poisoning lint flagged it.
    ToolQuarantined,
    /// A reviewer approved a tool's definition: it is the tool's pin.
    ToolReleased,
    /// A reviewer rejected a tool's definition.
    ToolRejected,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Decided => "decided",
            Kind::Completed => "completed",
            Kind::PolicyReload => "policy_reload",
            Kind::KeyCreated => "key_created",
            Kind::KeyRevoked => "key_revoked",
            Kind::Login => "login",
            Kind::Logout => "logout",
            Kind::Pruned => "pruned",
            Kind::ApprovalRequested => "approval_requested",
            Kind::ApprovalDecided => "approval_decided",
            Kind::ToolPinned => "tool_pinned",
            Kind::ToolQuarantined => "tool_quarantined",
            Kind::ToolReleased => "tool_released",
            Kind::ToolRejected => "tool_rejected",
        }
    }
}

/// Who acted, as recorded (never a credential).
#[derive(Debug, Clone, Serialize)]
pub struct Who {
    pub subject: String,
    pub credential: Credential,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Who {
    pub fn of(caller: &Caller) -> Who {
        Who {
            subject: caller.subject.clone(),
            credential: caller.credential,
            name: caller.name.clone(),
            groups: caller.groups.clone(),
            roles: caller.roles.clone(),
            tenant: caller.tenant.clone(),
            issuer: caller.issuer.clone(),
            client_id: caller.client_id.clone(),
            address: caller.address.map(|a| a.to_canonical().to_string()),
        }
    }

    /// An operator at the command line (`toolgate keys …`).
    pub fn operator() -> Who {
        Who {
            subject: format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            ),
            credential: Credential::LocalProcess,
            name: None,
            groups: Vec::new(),
            roles: Vec::new(),
            tenant: None,
            issuer: None,
            client_id: None,
            address: None,
        }
    }
}

/// One audit record. Absent fields are left out of its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub kind: Kind,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Links a call's `decided` and `completed` records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<Who>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The tool, resource or prompt as the caller named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// SHA-256 of the tool's definition as its upstream declared it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition_hash: Option<String>,
    /// Keyed hash of the canonical JSON of the arguments as sent
    /// ([`args_hash`]; a bare SHA-256 in records written before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_hash: Option<String>,
    /// The arguments, redacted and bounded ([`redact`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// `allow`, `deny`, `hidden` (not even visible), `gated` (allowed, held
    /// by an approval gate), `refused` (by an inspector, a guardrail) or
    /// `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// The determining policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ok`, `error` or `refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// Whose fault an error was, and its kind (`upstream/timeout`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// The error as told to the caller (redacted, bounded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
    /// The `seq` of the call's `decided` record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_seq: Option<u64>,
    /// What the guardrails found (detector, type, where, how many, what
    /// was done), never the matched text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Value>,
    /// Anything else the kind carries (a reloaded policy set's digest, a
    /// key's name and groups, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl Record {
    /// A record of `kind` now, every other field empty.
    pub fn new(kind: Kind) -> Record {
        Record {
            kind,
            at_ms: now_ms(),
            call: None,
            caller: None,
            session: None,
            trace: None,
            method: None,
            server: None,
            target: None,
            definition_hash: None,
            args_hash: None,
            args: None,
            decision: None,
            policies: Vec::new(),
            reason: None,
            outcome: None,
            error_class: None,
            error: None,
            latency_us: None,
            result_bytes: None,
            decided_seq: None,
            findings: None,
            detail: None,
        }
    }

    /// The stored body at `seq`: canonical JSON with `seq` in it (so a
    /// record moved to another place in the chain no longer hashes).
    pub fn body(&self, seq: i64) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("seq".into(), Value::from(seq));
        }
        canonical(&value)
    }

    /// The caller's subject, if any (a query column).
    fn subject(&self) -> Option<&str> {
        self.caller.as_ref().map(|w| w.subject.as_str())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// JSON with object keys sorted at every level and no insignificant
/// whitespace: the same value always gives the same bytes, whatever order
/// its keys arrived in.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// What a keyed `args_hash` starts with. Records written before hashes
/// were keyed carry a bare SHA-256 (64 hex digits): they keep it, and
/// still verify, since a record's hash covers its body as written.
pub const ARGS_HASH_PREFIX: &str = "hmac-sha256:";

/// `hmac-sha256:` and the HMAC-SHA256 (hex) of a call's arguments as
/// canonical JSON, keyed by `key` ([`SigningKey::args_mac_hex`]): what
/// audit records carry and what an approval is bound to. Keyed, because a
/// plain hash of arguments whose copy is masked lets anyone who reads the
/// audit test guesses of the masked values.
pub fn args_hash(key: &SigningKey, args: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    write_object(args, &mut out);
    format!("{ARGS_HASH_PREFIX}{}", key.args_mac_hex(out.as_bytes()))
}

fn write_object(map: &serde_json::Map<String, Value>, out: &mut String) {
    let sorted: BTreeMap<&String, &Value> = map.iter().collect();
    out.push('{');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        write_canonical(v, out);
    }
    out.push('}');
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `SHA-256(prev ‖ body)` as hex, `prev` being the previous record's hash
/// (hex; 64 zeros before the first record).
pub fn chain_hash(prev_hex: &str, body: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(prev_hex.as_bytes());
    hash.update(body.as_bytes());
    crate::util::digest::hex(&hash.finalize())
}

/// What `prev_hash` is for the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub use crate::config::AuditConfig;

/// Why a record could not be written, or the audit trail's keys,
/// checkpoints and forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A batch failed; its one message goes to every record in it.
    #[error("the audit store cannot record it: {0}")]
    Store(String),
    #[error("the audit queue is full ({0} records waiting)")]
    Full(usize),
    #[error("no answer from the audit writer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the audit trail is closed (shutting down)")]
    Closed,
    /// The signing key's text is not a 32-byte seed (hex or base64).
    #[error("{0}")]
    KeySeed(&'static str),
    /// The seed was refused as an Ed25519 key.
    #[error(transparent)]
    KeyRejected(#[from] aws_lc_rs::error::KeyRejected),
    #[error("could not derive the argument hash key from the audit signing key")]
    ArgsKey,
    /// The key file in the data directory, or the checkpoint file.
    #[error(transparent)]
    File(#[from] crate::storage::StoreError),
    /// A query of the audit tables.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("reading record {seq}: {source}")]
    ReadRecord {
        seq: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("writing {}: {source}", path.display())]
    WriteFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    ReadFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not a checkpoint: {source}", path.display())]
    NotACheckpoint {
        path: std::path::PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("the HTTP client for audit forwarding could not be built: {0}")]
    ForwardClient(#[source] reqwest::Error),
    #[error("reading the forwarding cursor: {0}")]
    ReadCursor(#[source] sqlx::Error),
    #[error("reading the chain's head: {0}")]
    ReadHead(#[source] sqlx::Error),
    /// The receiver could not be reached. A string: reqwest's chain,
    /// flattened without the URL (its query may hold tokens).
    #[error("{0}")]
    Send(String),
    #[error(
        "the receiver answered {0} (a redirect); audit forwarding does not follow redirects: set the final URL"
    )]
    Redirect(reqwest::StatusCode),
    #[error("the receiver answered {0}")]
    Refused(reqwest::StatusCode),
    #[error("advancing the forwarding cursor: {0}")]
    AdvanceCursor(#[source] sqlx::Error),
    #[error("reading the audit trail: {0}")]
    ReadTrail(#[source] sqlx::Error),
    #[error("reading the audit records: {0}")]
    ReadRecords(#[source] sqlx::Error),
    #[error("reading the audit head: {0}")]
    ReadAuditHead(#[source] sqlx::Error),
    #[error("deleting audit records through {end}: {source}")]
    DeleteRecords {
        end: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("deleting checkpoints before {end}: {source}")]
    DeleteCheckpoints {
        end: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("writing: {0}")]
    WriteOut(#[source] std::io::Error),
    /// A time (`--since`, `?since=`) that does not parse; why, for a person.
    #[error(
        "{0}: use RFC 3339 (2026-11-24T08:00:00Z or 2026-11-24), Unix seconds, or a duration ago (24h, 7d)"
    )]
    BadTime(String),
}

enum Msg {
    Record(Box<Job>),
    /// Write everything queued, a final checkpoint, then stop.
    Close(oneshot::Sender<()>),
}

struct Job {
    record: Record,
    /// Told the record's `seq` once it is durable (or why not).
    done: Option<oneshot::Sender<Result<u64, AuditError>>>,
}

/// Counters, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub written: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Records that could not be kept for a retry (the bound was reached).
    pub lost: AtomicU64,
    pub checkpoints: AtomicU64,
}

/// The audit trail's handle: cheap to share; one writer task behind it.
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    store: Store,
    config: Arc<AuditConfig>,
    redactor: redact::Redactor,
    /// Also seals state the gateway hands callers to bring back
    /// (see [`Audit::key`]).
    key: Arc<SigningKey>,
    pub counters: Arc<Counters>,
    /// Delivery to `[audit.forward]` (zero when not configured).
    pub forwarded: Arc<forward::ForwardStats>,
    stop_forwarding: tokio_util::sync::CancellationToken,
    /// The cursors of the feeds started: retention keeps what they have
    /// not delivered.
    feeds: Arc<std::sync::Mutex<Vec<&'static str>>>,
    /// For forwarding feeds (built once, at start).
    http: reqwest::Client,
}

impl Audit {
    /// Start the writer over `store`, signing checkpoints with `key`;
    /// fails only when the forwarder's HTTP client cannot be built.
    pub fn start(store: Store, config: AuditConfig, key: SigningKey) -> Result<Audit, AuditError> {
        let client = forward::client()?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let key = Arc::new(key);
        writer::spawn(
            store.clone(),
            rx,
            config.clone(),
            key.clone(),
            counters.clone(),
        );
        let forwarded = Arc::new(forward::ForwardStats::default());
        let stop_forwarding = tokio_util::sync::CancellationToken::new();
        let feeds = Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(retain) = config.retain {
            tokio::spawn(retention::schedule(
                retention::Schedule {
                    store: store.clone(),
                    key: key.clone(),
                    checkpoint_file: config.checkpoint_file.clone(),
                    retain,
                    hold: feeds.clone(),
                },
                stop_forwarding.clone(),
            ));
        }
        if let Some(f) = &config.forward {
            feeds.locked().push(forward::Feed::all_records().cursor);
            tokio::spawn(forward::run(
                store.clone(),
                client.clone(),
                f.clone(),
                forward::Feed::all_records(),
                forwarded.clone(),
                stop_forwarding.clone(),
            ));
        }
        Ok(Audit {
            tx,
            store,
            key,
            forwarded,
            stop_forwarding,
            feeds,
            http: client,
            redactor: redact::Redactor::new(&config.secret_fields),
            config,
            counters,
        })
    }

    /// Also deliver `feed` to `config`'s receiver, until the trail closes.
    pub fn forward(
        &self,
        config: forward::ForwardConfig,
        feed: forward::Feed,
    ) -> Arc<forward::ForwardStats> {
        let stats = Arc::new(forward::ForwardStats::default());
        self.feeds.locked().push(feed.cursor);
        tokio::spawn(forward::run(
            self.store.clone(),
            self.http.clone(),
            config,
            feed,
            stats.clone(),
            self.stop_forwarding.clone(),
        ));
        stats
    }

    /// The store the trail is in (for queries).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    pub fn redactor(&self) -> &redact::Redactor {
        &self.redactor
    }

    /// Mask credential formats with `detectors` too, in every copy and
    /// text the trail keeps from now on (see [`redact`]): the gateway
    /// hands over its guardrails, or the secret rules alone, before the
    /// first call.
    pub fn set_mask(&mut self, detectors: Arc<dyn redact::Mask>) {
        self.redactor.set_mask(detectors);
    }

    /// The keyed hash of `args` ([`args_hash`] under this trail's key).
    pub fn args_hash(&self, args: &serde_json::Map<String, Value>) -> String {
        args_hash(&self.key, args)
    }

    /// The signing key: every replica of a gateway has the same one, so
    /// state sealed by one is opened by another.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Write `record` and wait until it is durable; its `seq`.
    pub async fn write(&self, record: Record) -> Result<u64, AuditError> {
        let (done, answer) = oneshot::channel();
        let job = Msg::Record(Box::new(Job {
            record,
            done: Some(done),
        }));
        let wait = self.config.wait;
        match tokio::time::timeout(wait, self.tx.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(AuditError::Closed),
            Err(_) => return Err(AuditError::Full(self.config.queue)),
        }
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AuditError::Closed),
            Err(_) => Err(AuditError::Timeout(wait)),
        }
    }

    /// Queue `record` without waiting for it to be written. When the queue
    /// is full this waits for room (at most the configured wait); past
    /// that the record is counted as lost and logged.
    pub async fn submit(&self, record: Record) {
        let job = Msg::Record(Box::new(Job { record, done: None }));
        let sent = match self.tx.try_send(job) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(job)) => matches!(
                tokio::time::timeout(self.config.wait, self.tx.send(job)).await,
                Ok(Ok(()))
            ),
        };
        if !sent {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!("an audit record was lost: the audit queue stayed full or closed");
        }
    }

    /// Write everything queued and a final checkpoint; later records are
    /// refused.
    pub async fn close(&self) {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            let _ = answer.await;
        }
        // What was not delivered yet goes when a gateway next runs.
        self.stop_forwarding.cancel();
    }
}

/// Process-unique call ids that stay unique across restarts and replicas:
/// a random prefix per process and a counter.
pub fn call_id(n: u64) -> String {
    static PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        crate::util::digest::random_hex(6).unwrap_or_else(|_| format!("{:x}", now_ms()))
    });
    format!("{}-{n:x}", *PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": "x"}], "x": null}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"c":"x","d":2}]},"b":1}"#)
            .expect("json");
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            canonical(&a),
            r#"{"a":{"x":null,"y":[1,{"c":"x","d":2}]},"b":1}"#
        );
        // Strings are escaped as JSON.
        assert_eq!(canonical(&json!({"k\"": "a\nb"})), r#"{"k\"":"a\nb"}"#);
    }

    #[test]
    fn args_hashes_are_keyed_marked_and_ignore_key_order() {
        let one = SigningKey::from_text(&"11".repeat(32)).expect("key");
        let two = SigningKey::from_text(&"22".repeat(32)).expect("key");
        let args = json!({"b": 1, "password": "hunter2"});
        let args = args.as_object().expect("object");
        let reordered: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"password":"hunter2","b":1}"#).expect("json");
        let hash = args_hash(&one, args);
        assert!(hash.starts_with(ARGS_HASH_PREFIX), "{hash}");
        assert_eq!(hash.len(), ARGS_HASH_PREFIX.len() + 64);
        assert_eq!(hash, args_hash(&one, &reordered));
        // Not the bare hash a reader of the audit could recompute, nor
        // another key's.
        let bare =
            crate::util::digest::sha256_hex(canonical(&Value::Object(args.clone())).as_bytes());
        assert!(!hash.contains(&bare));
        assert_ne!(hash, args_hash(&two, args));
        // Another password, another hash.
        let other = json!({"b": 1, "password": "hunter3"});
        assert_ne!(hash, args_hash(&one, other.as_object().expect("object")));
    }

    #[test]
    fn a_body_carries_its_place_in_the_chain() {
        let record = Record::new(Kind::Decided);
        assert!(record.body(7).contains(r#""seq":7"#));
        assert_ne!(
            chain_hash(GENESIS, &record.body(1)),
            chain_hash(GENESIS, &record.body(2))
        );
    }
}
