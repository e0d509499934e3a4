//! Tool-integrity benchmark (a harness, not a timed test): what vetting
//! tools at catalog build and tracking flows per call cost, in one run.
//!
//! Run: `cargo bench --bench integrity`.
//!
//! - Catalog build with 1,000 tools on 10 servers (100 each, realistic
//!   descriptions and schemas): the lint of every definition; the pin
//!   check on SQLite when every definition is new (first use: 1,000 pins
//!   and audit records written), when nothing changed (the steady state,
//!   every rebuild), and when one definition changed.
//! - Per call: the toxic-flow work each call does (its flow key, what the
//!   flow touched, touching its labels), among 10,000 live flows; p50 and
//!   p99 of single calls.
//!
//! The gateway with integrity on vs off end to end:
//! `cargo bench --bench gateway -- --integrity false` against the default.
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::time::Instant;

use serde_json::{Value, json};
use toolgate::audit::{Audit, AuditConfig, SigningKey};
use toolgate::config::{IntegrityConfig, Labels, LintMode, PinMode, ServerConfig};
use toolgate::guardrails::injection::{Injection, Model};
use toolgate::integrity::flows::{Flows, flow_key};
use toolgate::integrity::{Integrity, Linter, Neighbours, ToolDefinition};
use toolgate::storage::Store;

// The same allocator as the `toolgate` binary, so the numbers are the
// gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVERS: usize = 10;
const PER_SERVER: usize = 100;
const ROUNDS: usize = 5;

/// Tool `i` of server `s`: a description of a few sentences, three
/// parameters with their own descriptions, annotations.
fn tool(s: usize, i: usize, version: usize) -> Value {
    let verbs = [
        "List", "Read", "Create", "Update", "Search", "Delete", "Archive", "Export",
    ];
    let things = [
        "issues",
        "pull requests",
        "files",
        "messages",
        "tickets",
        "invoices",
        "users",
        "pages",
    ];
    let verb = verbs[i % verbs.len()];
    let thing = things[(i / verbs.len()) % things.len()];
    json!({
        "name": format!("{}_{}_{i}", verb.to_lowercase(), thing.replace(' ', "_")),
        "description": format!(
            "{verb} {thing} in the workspace of server {s}. Results are paginated: pass the cursor from the previous page to continue, at most 100 per page. Filters combine with AND. Returns each item's id, title, owner and the time it last changed (version {version})."
        ),
        "inputSchema": {"type": "object", "properties": {
            "query": {"type": "string", "description": "Words to match against titles and bodies."},
            "cursor": {"type": "string", "description": "Where the previous page ended."},
            "limit": {"type": "integer", "description": "How many items to return, 1 to 100.", "default": 20}
        }, "required": ["query"]},
        "annotations": {"readOnlyHint": verb == "List" || verb == "Read" || verb == "Search", "openWorldHint": false}
    })
}

fn server(s: usize) -> ServerConfig {
    let file = format!("servers/s{s}.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("servers")).expect("mkdir");
    std::fs::write(dir.path().join("toolgate.toml"), "").expect("write");
    std::fs::write(
        dir.path().join(&file),
        "transport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .expect("write");
    let config = toolgate::config::Config::load(Some(&dir.path().join("toolgate.toml")), "tg")
        .expect("config");
    let mut server = config.servers[0].clone();
    server.name = format!("s{s}");
    server.integrity = IntegrityConfig {
        pin: PinMode::FirstUse,
        lint: LintMode::Quarantine,
        labels: Vec::new(),
    };
    server
}

struct Built {
    values: Vec<Value>,
    canonical: Vec<String>,
    hashes: Vec<String>,
}

fn built(s: usize, version: impl Fn(usize) -> usize) -> Built {
    let values: Vec<Value> = (0..PER_SERVER).map(|i| tool(s, i, version(i))).collect();
    let canonical: Vec<String> = values.iter().map(toolgate::audit::canonical).collect();
    let hashes = canonical
        .iter()
        .map(|c| toolgate::util::digest::sha256_hex(c.as_bytes()))
        .collect();
    Built {
        values,
        canonical,
        hashes,
    }
}

fn definitions(b: &Built) -> Vec<ToolDefinition<'_>> {
    (0..b.values.len())
        .map(|i| ToolDefinition {
            name: b.values[i]["name"].as_str().unwrap_or_default(),
            definition: &b.values[i],
            canonical: &b.canonical[i],
            hash: &b.hashes[i],
        })
        .collect()
}

fn ms(f: std::time::Duration) -> f64 {
    f.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let linter = Linter::new(Some(Injection::new(Model::shipped().expect("model"))));
    let servers: Vec<ServerConfig> = (0..SERVERS).map(server).collect();
    let all: Vec<(String, String, String)> = (0..SERVERS)
        .flat_map(|s| {
            (0..PER_SERVER).map(move |i| {
                let name = tool(s, i, 0)["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (format!("s{s}"), format!("s{s}__{name}"), name)
            })
        })
        .collect();
    let neighbours: Vec<Neighbours> = (0..SERVERS)
        .map(|s| {
            Neighbours::of(
                &format!("s{s}"),
                all.iter()
                    .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())),
            )
        })
        .collect();
    let v0: Vec<Built> = (0..SERVERS).map(|s| built(s, |_| 0)).collect();

    // The lint alone, over every definition.
    let mut lint_ms = Vec::new();
    let mut quarantined = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for (s, b) in v0.iter().enumerate() {
            for v in &b.values {
                let found = linter.lint(v, &neighbours[s]);
                quarantined += usize::from(
                    found
                        .iter()
                        .any(|f| f.severity == toolgate::integrity::Severity::Quarantine),
                );
            }
        }
        lint_ms.push(ms(t.elapsed()));
    }

    // Vetting (lint + pin check) through the store, as the catalog does.
    let mut first = Vec::new();
    let mut steady = Vec::new();
    let mut one_changed = Vec::new();
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("store");
        let key = SigningKey::from_text(&"ab".repeat(32)).expect("key");
        let audit = Audit::start(store, AuditConfig::defaults(dir.path()), key).expect("audit");
        let integrity = Integrity::new(Linter::new(Some(Injection::new(
            Model::shipped().expect("model"),
        ))));
        let vet_all = async |builds: &[Built]| {
            let defs: Vec<Vec<ToolDefinition<'_>>> = builds.iter().map(definitions).collect();
            let t = Instant::now();
            for (s, d) in defs.iter().enumerate() {
                let (vetted, error) = integrity.vet(&audit, &servers[s], d, &neighbours[s]).await;
                assert!(error.is_none(), "{error:?}");
                assert_eq!(vetted.len(), PER_SERVER);
            }
            ms(t.elapsed())
        };
        first.push(vet_all(&v0).await);
        steady.push(vet_all(&v0).await);
        // One tool of one server changes (a rug pull): one row and one
        // audit record written.
        let changed: Vec<Built> = (0..SERVERS)
            .map(|s| built(s, |i| usize::from(s == 3 && i == 7) * (round + 1)))
            .collect();
        let t = vet_all(&changed).await;
        if round > 0 {
            one_changed.push(t);
        }
        audit.close().await;
    }

    // Flow tracking per call, among 10,000 live flows.
    let flows = Flows::default();
    for n in 0..10_000 {
        flows.touch(
            &format!("session:{n:08x}"),
            Labels::PRIVATE_DATA,
            "s0__read_files_1",
        );
    }
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let labels = [
        Labels::PRIVATE_DATA,
        Labels::UNTRUSTED_CONTENT,
        Labels::PUBLIC_SINK,
        Labels::NONE,
    ];
    for n in 0..200_000u64 {
        let session = format!("{:08x}", (n * 7919) % 12_000);
        let t = Instant::now();
        let key = flow_key(Some(&session), None, "apikey:bench");
        let touched = flows.touched(&key);
        std::hint::black_box(touched.labels);
        flows.touch(&key, labels[(n % 4) as usize], "s1__search_pages_4");
        h.record(t.elapsed().as_nanos() as u64).expect("record");
    }

    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "## Tool integrity ({} tools on {SERVERS} servers, median of {ROUNDS})",
        SERVERS * PER_SERVER
    );
    println!();
    println!("| step | ms | per tool (µs) |");
    println!("|---|---|---|");
    let n = (SERVERS * PER_SERVER) as f64;
    for (name, v) in [
        ("lint only (every definition)", &mut lint_ms),
        (
            "vet, first use (lint + 1,000 pins and audit records on SQLite)",
            &mut first,
        ),
        (
            "vet, nothing changed (lint + pin check; every rebuild)",
            &mut steady,
        ),
        ("vet, one definition changed (a rug pull)", &mut one_changed),
    ] {
        let m = median(v);
        println!("| {name} | {m:.1} | {:.1} |", m * 1e3 / n);
    }
    println!();
    println!(
        "quarantined by the lint (of {} synthetic benign tools): {}",
        SERVERS * PER_SERVER,
        quarantined / ROUNDS
    );
    println!();
    println!("## Flow tracking per call (10,000 live flows, 200,000 calls)");
    println!();
    println!("| p50 (µs) | p99 (µs) | max (µs) |");
    println!("|---|---|---|");
    println!(
        "| {:.2} | {:.2} | {:.1} |",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3
    );
}
