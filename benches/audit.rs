//! Audit writer benchmark (a harness, not a timed test), in two tables:
//!
//! 1. *Group commit*: how long a call waits for its `decided` record to be
//!    durable when N calls write at once (the writer commits them
//!    together), and the CPU per record, on an empty store.
//! 2. *Store growth*: append throughput (64 writers at once, as fast as the
//!    store takes them) and the wait of one call at a steady rate, with the
//!    store holding 0, 1 M, 10 M, … records of realistic size (filled by
//!    SQL in bulk between rows), and the store's size on disk per record.
//!
//! Run: `cargo bench --bench audit -- [--database-url postgres://…]
//! [--commits 2000] [--sizes 0,1000000,10000000] [--seconds 5] [--rate 1000]
//! [--call-index] [--prune 1000000]`
//!
//! `--prune N` then deletes the oldest N records as `[audit] retain`
//! does, while writing at the steady rate, and reports both.
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use toolgate::audit::{Audit, AuditConfig, Kind, Record, SigningKey, Who};
use toolgate::call::Credential;
use toolgate::storage::Store;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Distinct callers in the filled store and in the measured writes.
const SUBJECTS: u64 = 1000;
/// The time of the first filled record (a month ago); record `x` of the
/// fill is `x` milliseconds later.
static FILL_BASE_MS: std::sync::LazyLock<i64> =
    std::sync::LazyLock::new(|| toolgate::audit::now_ms() - 30 * 86_400_000);

/// Rows per bulk-fill statement.
const FILL_CHUNK: u64 = 500_000;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc/self/stat (clock ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `decided` record as a governed `tools/call` writes it (caller with
/// groups and issuer, session, definition and arguments hashes, a small
/// masked argument copy, the deciding policy): about 900 bytes stored.
fn decided(n: u64) -> Record {
    let mut r = Record::new(Kind::Decided);
    // As old as the fill (so `--prune` may take the oldest of both).
    r.at_ms = *FILL_BASE_MS;
    r.call = Some(format!("5f1c2a9e04b7-{n:x}"));
    r.caller = Some(Who {
        subject: format!("okta:00u{:017}", n % SUBJECTS),
        credential: Credential::AccessToken,
        name: Some(format!("user{}@example.com", n % SUBJECTS)),
        groups: vec!["engineering".into(), "oncall".into()],
        roles: Vec::new(),
        tenant: None,
        issuer: Some("https://example.okta.com/oauth2/default".into()),
        client_id: Some("0oa1b2c3d4e5f6g7h8i9".into()),
        address: Some("10.0.12.34".into()),
    });
    r.session = Some(format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    r.method = Some("tools/call");
    r.server = Some("github".into());
    r.target = Some("github__search_issues".into());
    r.definition_hash = Some("9f2b".repeat(16));
    r.args_hash = Some(format!("hmac-sha256:{}", "4ac1".repeat(16)));
    r.args = Some(json!({
        "owner": "acme",
        "repo": "payments-service",
        "query": format!("is:open label:bug flaky test {n}"),
        "per_page": 30,
    }));
    r.decision = Some("allow");
    r.policies = vec!["engineers-read-github".into()];
    r
}

/// Fill the store with plain SQL from `from` to `to` records (bodies of a
/// real record's shape; the chain is not valid, which the writer does not
/// read), then point the chain's head at the last one.
async fn fill(store: &Store, postgres: bool, from: u64, to: u64) -> Result<(), sqlx::Error> {
    let template = decided(0).body(0);
    let pool = store.pool();
    let mut start = from;
    while start < to {
        let end = (start + FILL_CHUNK).min(to);
        // The series of seq values, and hex as a call id carries it.
        let (series, hex) = if postgres {
            (
                "SELECT generate_series($1::BIGINT, $2::BIGINT) AS x",
                "to_hex(x)",
            )
        } else {
            (
                "WITH RECURSIVE s(x) AS (SELECT $1 UNION ALL SELECT x + 1 FROM s WHERE x < $2) SELECT x FROM s",
                "printf('%x', x)",
            )
        };
        let sql = format!(
            "INSERT INTO audit_records \
             (seq, at_ms, kind, call_id, subject, target, decision, body, prev_hash, record_hash) \
             SELECT x, $3 + x, 'decided', '5f1c2a9e04b7-' || {hex}, \
             'okta:00u' || (x % {SUBJECTS}), 'github__search_issues', 'allow', \
             replace($4, '\"seq\":0', '\"seq\":' || x), $5, $5 FROM ({series}) AS series"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind((start + 1) as i64)
            .bind(end as i64)
            .bind(*FILL_BASE_MS)
            .bind(template.clone())
            .bind("ab".repeat(32))
            .execute(pool)
            .await?;
        start = end;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, record_hash = $2 WHERE chain = 'main'")
        .bind(to as i64)
        .bind("ab".repeat(32))
        .execute(pool)
        .await?;
    Ok(())
}

/// The store's size on disk (bytes), and how many records it holds.
async fn size(store: &Store, postgres: bool) -> Result<(u64, u64), sqlx::Error> {
    let (records,): (i64,) = sqlx::query_as("SELECT MAX(seq) FROM audit_head")
        .fetch_one(store.pool())
        .await?;
    let bytes = if postgres {
        let (b,): (i64,) = sqlx::query_as("SELECT pg_total_relation_size('audit_records')")
            .fetch_one(store.pool())
            .await?;
        b as u64
    } else {
        let file = store.sqlite_file().map(std::path::Path::to_path_buf);
        let len = |suffix: &str| {
            file.as_ref()
                .and_then(|f| std::fs::metadata(format!("{}{suffix}", f.display())).ok())
                .map_or(0, |m| m.len())
        };
        len("") + len("-wal")
    };
    Ok((bytes, records as u64))
}

/// Records per second that 64 writers at once get into the store.
async fn throughput(audit: &Arc<Audit>, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let writers: Vec<_> = (0..64u64)
        .map(|w| {
            let (audit, stop, written) = (audit.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut n = w << 40;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    audit.write(decided(n)).await.expect("written");
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    written.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The wait of each write (µs) at a steady `rate` per second.
async fn paced(audit: &Arc<Audit>, rate: u64, seconds: u64) -> Histogram<u64> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..rate * seconds {
        tick.tick().await;
        let (audit, tx) = (audit.clone(), tx.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            audit.write(decided(n)).await.expect("written");
            let _ = tx.send(t.elapsed().as_micros() as u64);
        });
    }
    drop(tx);
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    while let Some(waited) = rx.recv().await {
        h.record(waited).expect("record");
    }
    h
}

fn start(store: &Store, dir: &std::path::Path) -> Arc<Audit> {
    let key = SigningKey::from_text(&"ab".repeat(32)).expect("key");
    Arc::new(Audit::start(store.clone(), AuditConfig::defaults(dir), key).expect("audit"))
}

async fn close(audit: Arc<Audit>) {
    match Arc::try_unwrap(audit) {
        Ok(audit) => audit.close().await,
        Err(_) => panic!("the audit trail is still shared"),
    }
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let number = |flag: &str, default: u64| {
        value(flag)
            .map(|v| v.replace('_', "").parse().expect("a number"))
            .unwrap_or(default)
    };
    let url = value("--database-url");
    let postgres = url.is_some();
    let commits = number("--commits", 2000) as usize;
    let seconds = number("--seconds", 5);
    let rate = number("--rate", 1000);
    let sizes: Vec<u64> = value("--sizes")
        .unwrap_or_else(|| "0,1000000".into())
        .split(',')
        .map(|s| s.replace('_', "").parse().expect("sizes: numbers"))
        .collect();
    let dir = tempfile::tempdir_in(std::env::var_os("TOOLGATE_BENCH_DIR").unwrap_or(".".into()))
        .expect("tempdir");
    let store = Store::open(url.as_deref(), dir.path())
        .await
        .expect("store");
    if postgres {
        // A shared cluster may hold an earlier run's records.
        sqlx::query("TRUNCATE audit_records, audit_checkpoints")
            .execute(store.pool())
            .await
            .expect("truncate");
        sqlx::query("UPDATE audit_head SET seq = 0, record_hash = $1")
            .bind("0".repeat(64))
            .execute(store.pool())
            .await
            .expect("reset head");
    }
    if argv.iter().any(|a| a == "--call-index") {
        // The index on call ids the store had before migration 0006, to
        // measure what it cost.
        sqlx::query("CREATE INDEX IF NOT EXISTS audit_records_call ON audit_records (call_id)")
            .execute(store.pool())
            .await
            .expect("call index");
        println!("(with the index on call ids that migration 0006 dropped)\n");
    }
    let backend = if postgres { "PostgreSQL" } else { "SQLite" };
    println!("## toolgate audit append benchmark ({backend})\n");

    let audit = start(&store, dir.path());
    println!("| calls writing at once | records | wait p50 | wait p99 | CPU per record |");
    println!("|---:|---:|---:|---:|---:|");
    for concurrent in [1usize, 2, 8, 64] {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        let cpu = cpu_seconds();
        let rounds = (commits / concurrent).max(50);
        for i in 0..rounds {
            let writes = (0..concurrent).map(|j| {
                let r = decided((i * concurrent + j) as u64);
                let audit = &audit;
                async move {
                    let t = Instant::now();
                    audit.write(r).await.expect("written");
                    t.elapsed()
                }
            });
            for waited in futures::future::join_all(writes).await {
                h.record(waited.as_micros() as u64).expect("record");
            }
        }
        let records = rounds * concurrent;
        let cpu = (cpu_seconds() - cpu) / records as f64 * 1e6;
        println!(
            "| {concurrent} | {records} | {} µs | {} µs | {cpu:.0} µs |",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        );
    }
    close(audit).await;

    println!(
        "\n### Store growth ({backend}; {seconds} s each: 64 writers at once; one record at a time at {rate}/s)\n"
    );
    println!(
        "| records in store | on disk | bytes per record | appends/s (64 writers) | wait p50 at {rate}/s | wait p99 at {rate}/s | fill time |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for target in sizes {
        let (_, held) = size(&store, postgres).await.expect("size");
        let filling = Instant::now();
        if target > held {
            fill(&store, postgres, held, target).await.expect("fill");
        }
        let fill_time = filling.elapsed();
        // Measure the store, not the OS writing the fill back to disk, nor
        // PostgreSQL vacuuming it and checkpointing it for the first time
        // (what a store that grew over months has long done).
        if postgres && target > held {
            for sql in ["VACUUM ANALYZE audit_records", "CHECKPOINT"] {
                sqlx::query(sql).execute(store.pool()).await.expect(sql);
            }
        }
        let synced = std::process::Command::new("sync").status();
        assert!(synced.is_ok_and(|s| s.success()), "sync failed");
        let (bytes, records) = size(&store, postgres).await.expect("size");
        let audit = start(&store, dir.path());
        let appends = throughput(&audit, seconds).await;
        let h = paced(&audit, rate, seconds).await;
        close(audit).await;
        println!(
            "| {records} | {:.1} MB | {} | {appends:.0} | {} µs | {} µs | {:.0} s |",
            bytes as f64 / 1e6,
            bytes.checked_div(records).unwrap_or(0),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            fill_time.as_secs_f64()
        );
    }
    if let Some(n) = value("--prune") {
        let n: i64 = n.replace('_', "").parse().expect("--prune: a number");
        prune_while_writing(&store, dir.path(), n, rate).await;
    }
}

/// `[audit] retain` at work: prune the oldest `n` records while one record
/// at a time is written at `rate`/s; how long the writes waited meanwhile.
async fn prune_while_writing(store: &Store, dir: &std::path::Path, n: i64, rate: u64) {
    let audit = start(store, dir);
    let key = SigningKey::from_text(&"ab".repeat(32)).expect("key");
    let file = dir.join("prune-checkpoints.jsonl");
    let pruning = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let by = Who {
                subject: "bench".into(),
                ..Who::operator()
            };
            let pruned =
                toolgate::audit::retention::prune(&store, &key, &file, *FILL_BASE_MS + n, &[], by)
                    .await
                    .expect("pruned");
            (pruned, started.elapsed())
        })
    };
    let mut waits = Histogram::<u64>::new(3).expect("histogram");
    while !pruning.is_finished() {
        waits.add(paced(&audit, rate, 1).await).expect("merge");
    }
    let (pruned, took) = pruning.await.expect("prune task");
    close(audit).await;
    let records = pruned.map_or(0, |p| p.records);
    println!(
        "\n### Pruning {records} records while writing {rate}/s: {:.1} s ({:.0} records/s); writes waited p50 {} µs, p99 {} µs, max {} µs\n",
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64(),
        waits.value_at_quantile(0.5),
        waits.value_at_quantile(0.99),
        waits.max()
    );
}
