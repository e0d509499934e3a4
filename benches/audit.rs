//! Audit writer benchmark (a harness, not a timed test): how long a call
//! waits for its `decided` record to be durable when N calls write at once
//! (the writer commits them together), and the CPU per record.
//!
//! Run: `cargo bench --bench audit -- [--database-url postgres://…] [--commits 2000]`
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::time::Instant;

use hdrhistogram::Histogram;
use toolgate::audit::{Audit, AuditConfig, Kind, Record, SigningKey};
use toolgate::storage::Store;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let url = value("--database-url");
    let commits: usize = value("--commits")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(url.as_deref(), dir.path())
        .await
        .expect("store");
    println!(
        "## toolgate audit append benchmark ({})\n",
        if url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let key = SigningKey::from_text(&"ab".repeat(32)).expect("key");
    let audit = Audit::start(store, AuditConfig::defaults(dir.path()), key).expect("audit");
    println!("| calls writing at once | records | wait p50 | wait p99 | CPU per record |");
    println!("|---:|---:|---:|---:|---:|");
    for concurrent in [1usize, 2, 8, 64] {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        let cpu = cpu_seconds();
        let rounds = (commits / concurrent).max(50);
        for i in 0..rounds {
            let writes = (0..concurrent).map(|j| {
                let mut r = Record::new(Kind::Decided);
                r.target = Some(format!("tool-{i}-{j}"));
                r.decision = Some("allow");
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
    audit.close().await;
}
