//! Benchmark harness (not a timed test): LLM chat completions direct to
//! the reference provider vs through toolgate (the full pipeline: an API
//! key, the shipped policies and guardrails, the audit trail on SQLite) vs
//! through LiteLLM's proxy (one worker, a master key, no database), in one
//! run.
//!
//! Run: `cargo bench --bench llm -- [--rates 500,1000] [--latencies 0ms,60ms] ...`
//! (`--help` lists every flag). LiteLLM comes from the venv `tests/llm/run.sh`
//! installs (`~/.cache/toolgate/llm/venv`); without it that column is skipped.
//!
//! For each provider latency: open-loop runs at each offered rate (latency
//! from each request's *scheduled* send: coordinated-omission corrected),
//! a closed-loop saturation run, time to first token on streams (a closed
//! loop of a few connections), then toolgate's RSS idle and with
//! `--streams` concurrent streams open. `--pin` puts toolgate on CPU 1 and
//! everything else on CPU 0 (the "one pinned core" figure).
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::fs;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "llm-bench",
    about = "LLM chat completions: direct vs toolgate vs LiteLLM"
)]
struct Args {
    /// Offered rates (requests/s) for the open-loop runs.
    #[arg(long, value_delimiter = ',', default_value = "500,1000")]
    rates: Vec<f64>,
    /// The reference provider's latency before its first byte, one run each.
    #[arg(long, value_delimiter = ',', default_value = "0ms,60ms")]
    latencies: Vec<String>,
    /// Measured seconds per offered rate (after 2 s of warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of the closed-loop saturation run.
    #[arg(long, default_value_t = 5.0)]
    saturation_duration: f64,
    /// Connections per target (open and closed loops): enough for the
    /// highest rate at the highest latency (1,000/s × 60 ms is 60 in flight).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Concurrent streams for the RSS measurement.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// LiteLLM's proxy: `auto` (when its venv is installed) or `off`.
    #[arg(long, default_value = "auto")]
    litellm: String,
    /// toolgate on CPU 1, the provider, LiteLLM and the load on CPU 0.
    #[arg(long)]
    pin: bool,
    /// The toolgate binary (default: the one cargo built).
    #[arg(long)]
    toolgate: Option<PathBuf>,
}

const PROMPT: &str = "{\"model\":\"MODEL\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"Summarise the status of the deployment in one line\"}]}";
const STREAM_PROMPT: &str = "{\"model\":\"MODEL\",\"stream\":true,\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"Summarise the status of the deployment in one line\"}]}";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// One place requests go: an address, a model name, a credential.
#[derive(Clone)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    model: &'static str,
    key: Option<String>,
}

impl Target {
    fn body(&self, stream: bool) -> Bytes {
        let template = if stream { STREAM_PROMPT } else { PROMPT };
        Bytes::from(template.replace("MODEL", self.model))
    }

    fn request(&self, stream: bool) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        builder
            .body(Full::new(self.body(stream)))
            .expect("a valid request")
    }
}

/// One keep-alive connection, reopened after a failure.
struct Conn {
    target: Target,
    send: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn open(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// One request; the instant its answer ended (whole) or its first
    /// content chunk came (`stream`: time to first token).
    async fn call(&mut self, stream: bool) -> anyhow::Result<Instant> {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            self.send = Some(Self::open(&self.target).await?);
        }
        let send = self.send.as_mut().context("connected")?;
        send.ready().await?;
        let response = send.send_request(self.target.request(stream)).await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.send = None;
                return Err(e.into());
            }
        };
        ensure!(
            response.status() == StatusCode::OK,
            "HTTP {}",
            response.status()
        );
        let mut body = response.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if stream
                && first.is_none()
                && let Some(data) = frame.data_ref()
                && data.windows(9).any(|w| w == b"\"content\"")
            {
                first = Some(Instant::now());
            }
        }
        Ok(first.unwrap_or_else(Instant::now))
    }
}

#[derive(Default)]
struct Stats {
    latency: Option<Histogram<u64>>,
    ok: u64,
    errors: u64,
    last_error: Option<String>,
}

impl Stats {
    fn record(&mut self, took: Duration) {
        self.ok += 1;
        self.latency
            .get_or_insert_with(|| {
                Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds")
            })
            .saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.last_error = other.last_error.or(self.last_error.take());
        if let Some(h) = other.latency {
            match &mut self.latency {
                Some(mine) => mine.add(&h).expect("same bounds"),
                None => self.latency = Some(h),
            }
        }
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency
            .as_ref()
            .map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / 1e6)
    }
}

/// Open loop: `rate` requests/s for `duration`, each timed from its
/// scheduled send.
async fn open_loop(target: &Target, conns: usize, rate: f64, duration: Duration) -> Stats {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let deadline = start + duration + Duration::from_secs(5);
    let (slots, receiver) = mpsc::unbounded_channel::<Instant>();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    // A thread sleeps precisely; tokio's timer would add up to 1 ms.
    let dispatcher = tokio::task::spawn_blocking(move || {
        for i in 0..total {
            let slot = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if slot > now {
                std::thread::sleep(slot - now);
            }
            if slots.send(slot).is_err() {
                break;
            }
        }
    });
    let mut workers = Vec::new();
    for _ in 0..conns {
        let receiver = receiver.clone();
        let mut conn = Conn {
            target: target.clone(),
            send: None,
        };
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            loop {
                let Some(slot) = receiver.lock().await.recv().await else {
                    break;
                };
                if Instant::now() > deadline {
                    stats.errors += 1;
                    stats.last_error = Some("not sent in time".into());
                    continue;
                }
                timed(&mut conn, &mut stats, slot, false).await;
            }
            stats
        }));
    }
    let _ = dispatcher.await;
    let mut total = Stats::default();
    for w in workers {
        if let Ok(stats) = w.await {
            total.merge(stats);
        }
    }
    total
}

/// One call on `conn`, its latency from `since` recorded in `stats` (or
/// its error; a call that takes over 30 s drops the connection).
async fn timed(conn: &mut Conn, stats: &mut Stats, since: Instant, stream: bool) {
    match tokio::time::timeout(Duration::from_secs(30), conn.call(stream)).await {
        Ok(Ok(done)) => stats.record(done.saturating_duration_since(since)),
        Ok(Err(e)) => {
            stats.errors += 1;
            stats.last_error = Some(e.to_string());
        }
        Err(_) => {
            conn.send = None;
            stats.errors += 1;
            stats.last_error = Some("timeout".into());
        }
    }
}

/// Closed loop: each connection sends its next request when the last
/// returns; `stream` times the first content chunk instead of the end.
async fn closed_loop(
    target: &Target,
    conns: usize,
    duration: Duration,
    stream: bool,
) -> (Stats, f64) {
    let start = Instant::now();
    let end = start + duration;
    let mut workers = Vec::new();
    for _ in 0..conns {
        let mut conn = Conn {
            target: target.clone(),
            send: None,
        };
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < end {
                timed(&mut conn, &mut stats, Instant::now(), stream).await;
            }
            stats
        }));
    }
    let mut total = Stats::default();
    for w in workers {
        if let Ok(stats) = w.await {
            total.merge(stats);
        }
    }
    let rate = total.ok as f64 / start.elapsed().as_secs_f64();
    (total, rate)
}

/// The child processes of one run, killed when dropped.
struct Processes {
    dir: PathBuf,
    children: Vec<(&'static str, Child)>,
    pin: bool,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn spawn(
        &mut self,
        name: &'static str,
        cpu: &str,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<u32> {
        let log = fs::File::create(self.dir.join(format!("{name}.log")))?;
        let mut command = if self.pin {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        self.children.push((name, child));
        Ok(pid)
    }

    async fn wait_http(&mut self, name: &str, addr: SocketAddr, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            for (n, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    let log =
                        fs::read_to_string(self.dir.join(format!("{n}.log"))).unwrap_or_default();
                    bail!("{n} exited with {status}:\n{log}");
                }
            }
            if let Ok(stream) = TcpStream::connect(addr).await
                && let Ok((mut send, conn)) =
                    hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                        .await
            {
                tokio::spawn(conn);
                let request = Request::get(path)
                    .header(HOST, addr.to_string())
                    .body(Full::new(Bytes::new()))?;
                if let Ok(r) = send.send_request(request).await
                    && r.status().is_success()
                {
                    return Ok(());
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{name} not ready at {addr}{path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(StdTcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn litellm_binary(choice: &str) -> Option<PathBuf> {
    if choice == "off" {
        return None;
    }
    let home = std::env::var("TOOLGATE_CACHE")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache/toolgate")))
        .ok()?;
    let bin = home.join("llm/venv/bin/litellm");
    bin.exists().then_some(bin)
}

struct Started {
    /// Killed when this is dropped.
    _procs: Processes,
    targets: Vec<Target>,
    toolgate_pid: u32,
    _dir: tempfile::TempDir,
}

/// The provider, toolgate in front of it (and LiteLLM, when installed).
async fn start(args: &Args, latency: &str, pace: Option<&str>) -> anyhow::Result<Started> {
    let dir = tempfile::Builder::new()
        .prefix("toolgate-llm-bench-")
        .tempdir()?;
    let toolgate = args
        .toolgate
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_toolgate")));
    let mut procs = Processes {
        dir: dir.path().to_path_buf(),
        children: Vec::new(),
        pin: args.pin,
    };
    let provider = free_port()?;
    let mut provider_args = vec!["reference", "llm", "--http"];
    let provider_addr = provider.to_string();
    provider_args.push(&provider_addr);
    provider_args.extend(["--latency", latency]);
    if let Some(pace) = pace {
        provider_args.extend(["--pace", pace, "--words", "40"]);
    }
    procs.spawn("provider", "0", &toolgate, &provider_args, &[])?;
    procs.wait_http("provider", provider, "/v1/models").await?;

    // The full pipeline: the shipped policies and guardrails, a policy
    // that lets the bench's key chat, the audit trail on SQLite.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = dir.path().join("policies");
    fs::create_dir_all(policies.join("guardrails"))?;
    for entry in fs::read_dir(repo.join("policies"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), policies.join(entry.file_name()))?;
        }
    }
    for entry in fs::read_dir(repo.join("policies/guardrails"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(
                entry.path(),
                policies.join("guardrails").join(entry.file_name()),
            )?;
        }
    }
    fs::write(
        policies.join("90-bench.cedar"),
        "@id(\"bench-chats\")\npermit (principal in Group::\"bench\", action == Action::\"chat\", resource);\n",
    )?;
    fs::create_dir_all(dir.path().join("servers"))?;
    let gateway = free_port()?;
    let config = dir.path().join("toolgate.toml");
    fs::write(
        &config,
        format!(
            "listen = \"{gateway}\"\ndata_dir = \"data\"\n\
             [llm.providers.ref]\nkind = \"openai-compatible\"\nbase_url = \"http://{provider}/v1\"\n\
             [llm.models.bench]\ntargets = [{{ provider = \"ref\", model = \"ref-small\" }}]\n"
        ),
    )?;
    let config_arg = config.display().to_string();
    let key_out = Command::new(&toolgate)
        .args([
            "--config",
            &config_arg,
            "keys",
            "create",
            "--name",
            "bench",
            "--group",
            "bench",
        ])
        .output()?;
    let key = String::from_utf8_lossy(&key_out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("tgk_"))
        .map(str::to_string)
        .context("no API key from `toolgate keys create`")?;
    let toolgate_pid = procs.spawn(
        "toolgate",
        "1",
        &toolgate,
        &["serve", "--config", &config_arg],
        &[("RUST_LOG", "warn")],
    )?;
    procs.wait_http("toolgate", gateway, "/readyz").await?;
    let mut targets = vec![
        Target {
            name: "direct",
            addr: provider,
            model: "ref-small",
            key: None,
        },
        Target {
            name: "toolgate",
            addr: gateway,
            model: "bench",
            key: Some(key),
        },
    ];
    if let Some(litellm) = litellm_binary(&args.litellm) {
        let port = free_port()?;
        let yaml = dir.path().join("litellm.yaml");
        fs::write(
            &yaml,
            format!(
                "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/ref-small\n      api_base: http://{provider}/v1\n      api_key: unused\n\
                 general_settings:\n  master_key: sk-bench\nlitellm_settings:\n  telemetry: false\n  callbacks: []\n"
            ),
        )?;
        let (yaml_arg, port_arg) = (yaml.display().to_string(), port.port().to_string());
        procs.spawn(
            "litellm",
            "0",
            &litellm,
            &[
                "--config",
                &yaml_arg,
                "--host",
                "127.0.0.1",
                "--port",
                &port_arg,
                "--num_workers",
                "1",
            ],
            &[
                ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
                ("LITELLM_LOG", "ERROR"),
            ],
        )?;
        procs
            .wait_http("litellm", port, "/health/liveliness")
            .await?;
        targets.push(Target {
            name: "litellm",
            addr: port,
            model: "bench",
            key: Some("sk-bench".into()),
        });
    }
    Ok(Started {
        _procs: procs,
        targets,
        toolgate_pid,
        _dir: dir,
    })
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.2}")
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!("# LLM gateway benchmark\n");
    println!(
        "machine: {cpus} CPUs; reference provider (toolgate reference llm); toolgate with an API key, the shipped policies and guardrails, audit on SQLite; rates {:?}/s for {} s each; {} connections{}\n",
        args.rates,
        args.duration,
        args.connections,
        if args.pin {
            "; toolgate pinned to CPU 1, everything else to CPU 0"
        } else {
            ""
        }
    );
    for latency in &args.latencies {
        let started = start(&args, latency, None).await?;
        println!("## provider latency {latency}\n");
        println!("| target | offered /s | achieved /s | p50 ms | p99 ms | errors |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        let mut p = std::collections::BTreeMap::new();
        for rate in &args.rates {
            for target in &started.targets {
                let _ = open_loop(target, args.connections, *rate, Duration::from_secs(2)).await;
                let stats = open_loop(
                    target,
                    args.connections,
                    *rate,
                    Duration::from_secs_f64(args.duration),
                )
                .await;
                let achieved = stats.ok as f64 / args.duration;
                println!(
                    "| {} | {rate} | {achieved:.0} | {} | {} | {}{} |",
                    target.name,
                    fmt(stats.ms(0.5)),
                    fmt(stats.ms(0.99)),
                    stats.errors,
                    stats
                        .last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
                p.insert(
                    (target.name, rate.to_bits()),
                    (stats.ms(0.5), stats.ms(0.99)),
                );
            }
        }
        for rate in &args.rates {
            if let (Some(d), Some(t)) = (
                p.get(&("direct", rate.to_bits())),
                p.get(&("toolgate", rate.to_bits())),
            ) {
                println!(
                    "\nadded by toolgate at {rate}/s: p50 {} ms, p99 {} ms",
                    fmt(t.0 - d.0),
                    fmt(t.1 - d.1)
                );
            }
        }
        println!(
            "\n| target | saturation /s (closed loop, {} conns) | p50 ms | p99 ms | errors |",
            args.connections
        );
        println!("| --- | ---: | ---: | ---: | ---: |");
        let mut saturation = Vec::new();
        for target in &started.targets {
            let (stats, rate) = closed_loop(
                target,
                args.connections,
                Duration::from_secs_f64(args.saturation_duration),
                false,
            )
            .await;
            println!(
                "| {} | {rate:.0} | {} | {} | {} |",
                target.name,
                fmt(stats.ms(0.5)),
                fmt(stats.ms(0.99)),
                stats.errors
            );
            saturation.push((target.name, rate));
        }
        let of = |name: &str| saturation.iter().find(|(n, _)| *n == name).map(|(_, r)| *r);
        if let (Some(t), Some(l)) = (of("toolgate"), of("litellm")) {
            println!("\ntoolgate / LiteLLM saturation: {:.1}×", t / l);
        }
        println!("\n| target | time to first token p50 ms | p99 ms (streams, one at a time) |");
        println!("| --- | ---: | ---: |");
        let mut ttft = Vec::new();
        for target in &started.targets {
            // One stream at a time: the time toolgate adds, not queueing.
            let (stats, _) = closed_loop(target, 1, Duration::from_secs(5), true).await;
            println!(
                "| {} | {} | {} |",
                target.name,
                fmt(stats.ms(0.5)),
                fmt(stats.ms(0.99))
            );
            ttft.push((target.name, stats.ms(0.5), stats.ms(0.99)));
        }
        if let (Some(d), Some(t)) = (
            ttft.iter().find(|r| r.0 == "direct"),
            ttft.iter().find(|r| r.0 == "toolgate"),
        ) {
            println!(
                "\nadded time to first token: p50 {} ms, p99 {} ms\n",
                fmt(t.1 - d.1),
                fmt(t.2 - d.2)
            );
        }
        drop(started);
    }

    // RSS: idle, then with `--streams` streams open at once (a slow
    // provider keeps them open: 40 words at 100 ms each).
    let started = start(&args, "0ms", Some("100ms")).await?;
    let idle = rss_mib(started.toolgate_pid);
    let target = started
        .targets
        .iter()
        .find(|t| t.name == "toolgate")
        .context("toolgate")?
        .clone();
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..args.streams {
        let target = target.clone();
        let opened = opened.clone();
        streams.push(tokio::spawn(async move {
            let stream = TcpStream::connect(target.addr).await.ok()?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(conn);
            let response = send.send_request(target.request(true)).await.ok()?;
            let mut body = response.into_body();
            let _first = body.frame().await;
            opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while let Some(Ok(_)) = body.frame().await {}
            Some(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while opened.load(std::sync::atomic::Ordering::SeqCst) < args.streams
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = opened.load(std::sync::atomic::Ordering::SeqCst);
    let busy = rss_mib(started.toolgate_pid);
    println!("| toolgate RSS | MiB |\n| --- | ---: |");
    println!(
        "| idle | {} |",
        idle.map_or("—".into(), |v| format!("{v:.1}"))
    );
    println!(
        "| {open} concurrent streams open | {} |",
        busy.map_or("—".into(), |v| format!("{v:.1}"))
    );
    for s in streams {
        s.abort();
    }
    drop(started);
    println!(
        "\nreproduce: cargo bench --bench llm -- --rates {} --latencies {} --duration {} --connections {}{}",
        args.rates
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(","),
        args.latencies.join(","),
        args.duration,
        args.connections,
        if args.pin { " --pin" } else { "" }
    );
    Ok(())
}
