//! Policy evaluation benchmark (a harness, not a timed test): one `decide`
//! and one caller's `tools/list` view, with the repository's default
//! policies plus N generated ones.
//!
//! Run: `cargo bench --bench policy -- [--policies 1000] [--tools 1000] [--servers 20] [--iterations 20000]`
//!
//! - decide: a `tools/call` decision (arguments checked) for a caller in
//!   three groups, evaluated every time and then remembered (the decision
//!   cache), against the default set + N team policies
//!   (`permit (principal in Group::"team-K", action == Action::"call_tool",
//!   resource in Server::"s-J") when { … }`, a third of them `forbid`s on
//!   arguments), p50/p99/p99.9 over many iterations;
//! - list: what `tools/list` does for one caller (src/mcp/views.rs): a
//!   listing decision per tool over `--tools` tools spread across
//!   `--servers` servers, cloning each visible tool, uncached and cached.
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::json;
use toolgate::authorize::{Annotations, Policies, Query, ServerFacts, Target};
use toolgate::call::{Caller, Credential};
use toolgate::mcp::views::ListCache;

// The same allocator as the `toolgate` binary, so the numbers are the
// gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    policies: usize,
    tools: usize,
    servers: usize,
    iterations: usize,
}

fn args() -> Args {
    let mut a = Args {
        policies: 1000,
        tools: 1000,
        servers: 20,
        iterations: 20_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", argv[i]))
        };
        match argv[i].as_str() {
            "--policies" => a.policies = value(),
            "--tools" => a.tools = value(),
            "--servers" => a.servers = value(),
            "--iterations" => a.iterations = value(),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

fn policy_dir(n: usize, servers: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&repo).expect("policies/").flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(entry.file_name())).expect("copy");
        }
    }
    let mut generated = String::new();
    for k in 0..n {
        let server = k % servers;
        if k % 3 == 2 {
            generated.push_str(&format!(
                "@id(\"gen-{k}\")\nforbid (principal, action == Action::\"call_tool\", resource in Server::\"s-{server}\")\n\
                 when {{ context.args has repository && context.args.repository like \"blocked-{k}/*\" }};\n\n"
            ));
        } else {
            generated.push_str(&format!(
                "@id(\"gen-{k}\")\npermit (principal in Group::\"team-{k}\", action == Action::\"call_tool\", resource in Server::\"s-{server}\")\n\
                 when {{ !context.annotations.destructive }};\n\n"
            ));
        }
    }
    std::fs::write(dir.path().join("generated.cedar"), generated).expect("write");
    dir
}

fn report(name: &str, h: &Histogram<u64>) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {name} | {} | {:.1} µs | {:.1} µs | {:.1} µs |",
        h.len(),
        us(0.5),
        us(0.99),
        us(0.999)
    );
}

fn main() {
    let a = args();
    let dir = policy_dir(a.policies, a.servers);
    let policies = Arc::new(Policies::load(dir.path(), 1).unwrap_or_else(|e| panic!("{e}")));
    println!("## toolgate policy benchmark\n");
    println!(
        "- {} policies in force ({} generated + the default set); {} tools over {} servers; {} iterations\n",
        policies.len(),
        a.policies,
        a.tools,
        a.servers,
        a.iterations
    );
    let caller = Caller {
        groups: vec!["eng".into(), "team-7".into(), "approvers".into()],
        roles: vec!["Tools.Write".into()],
        ..Caller::new("okta:00u-bench".into(), Credential::AccessToken)
    };
    let facts: Vec<ServerFacts> = (0..a.servers)
        .map(|s| ServerFacts {
            name: format!("s-{s}"),
            tags: vec!["scm".into()],
            env: if s % 5 == 0 {
                "prod".into()
            } else {
                String::new()
            },
            trusted: true,
        })
        .collect();
    let args_map = json!({"repository": "acme/tools", "title": "t"})
        .as_object()
        .cloned()
        .expect("object");
    let writes = Annotations {
        read_only: false,
        destructive: false,
        idempotent: true,
        open_world: false,
    };

    println!("| measurement | samples | p50 | p99 | p99.9 |");
    println!("|---|---:|---:|---:|---:|");

    // One `tools/call` decision per iteration (20 tools in turn) for the
    // caller `who(i)`, evaluated or through the decision cache.
    let measure = |label: &str, who: &dyn Fn(usize) -> Caller, remembered: bool| {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..a.iterations {
            let who = who(i);
            let name = format!("s-{}__tool", i % a.servers);
            let query = Query {
                caller: &who,
                target: Target::Tool {
                    name: &name,
                    server: &facts[i % a.servers],
                    annotations: writes,
                    labels: toolgate::config::Labels::NONE,
                },
                args: Some(&args_map),
                request_id: "bench",
                findings: &[],
                touched: toolgate::config::Labels::NONE,
            };
            let t = Instant::now();
            let d = if remembered {
                policies.decide(&query)
            } else {
                policies.decide_uncached(&query)
            };
            h.record(t.elapsed().as_nanos() as u64).expect("record");
            std::hint::black_box(d);
        }
        report(label, &h);
    };
    // A caller and tool never seen: everything built.
    let stranger = |i: usize| Caller {
        subject: format!("okta:00u-{i}"),
        ..caller.clone()
    };
    measure("decide, evaluated: a new caller and tool", &stranger, false);
    // New arguments for a caller and tool seen before: context and evaluation.
    let known = |_: usize| caller.clone();
    measure(
        "decide, evaluated: new arguments, known caller and tool",
        &known,
        false,
    );
    measure(
        "decide, remembered (the same 20 calls repeated)",
        &known,
        true,
    );

    // One caller's tools/list view.
    let tools: Vec<(rmcp::model::Tool, usize, Annotations)> = (0..a.tools)
        .map(|i| {
            let server = i % a.servers;
            let schema = json!({"type": "object", "properties": {"repository": {"type": "string"}, "title": {"type": "string"}}});
            let tool = rmcp::model::Tool::new(
                format!("s-{server}__tool_{i}"),
                "A generated tool with a short description.",
                Arc::new(schema.as_object().cloned().expect("object")),
            );
            let annotations = if i % 4 == 0 { Annotations::WORST } else { writes };
            (tool, server, annotations)
        })
        .collect();
    // What src/mcp/views.rs does: one listing decision per tool (sharing
    // one entity store), then the visible tools cloned.
    let list = |policies: &Policies| -> Vec<rmcp::model::Tool> {
        let targets: Vec<Target<'_>> = tools
            .iter()
            .map(|(tool, server, annotations)| Target::Tool {
                name: &tool.name,
                server: &facts[*server],
                annotations: *annotations,
                labels: toolgate::config::Labels::NONE,
            })
            .collect();
        let visible = policies.visible(&caller, &targets);
        tools
            .iter()
            .zip(visible)
            .filter(|(_, v)| *v)
            .map(|((tool, ..), _)| tool.clone())
            .collect()
    };
    let rounds = (a.iterations / a.tools).clamp(20, 200);
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut visible = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let view = list(&policies);
        h.record(t.elapsed().as_nanos() as u64).expect("record");
        visible = view.len();
    }
    report(
        &format!(
            "tools/list view, uncached ({} of {} visible)",
            visible, a.tools
        ),
        &h,
    );

    let cache = ListCache::default();
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..a.iterations {
        let t = Instant::now();
        let view = cache.get_or_build(&caller, policies.version, 1, || list(&policies));
        h.record(t.elapsed().as_nanos() as u64).expect("record");
        std::hint::black_box(view);
    }
    report("tools/list view, cached", &h);
    println!(
        "\nReproduce: `cargo bench --bench policy -- --policies {} --tools {} --servers {} --iterations {}`",
        a.policies, a.tools, a.servers, a.iterations
    );
}
