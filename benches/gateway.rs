//! Benchmark harness (not a timed test): MCP `tools/call` latency and throughput,
//! direct to an echo upstream vs through toolgate (vs a plain nginx reverse
//! proxy, when nginx is installed, as the floor for any gateway), in one run.
//!
//! Run: `cargo bench --bench gateway -- [--rates 500,1000,2000] [--duration 10] ...`
//! (`--help` lists every flag).
//!
//! What it does, in order:
//! 1. starts `toolgate reference echo --http 127.0.0.1:P1` (the upstream) and
//!    `toolgate serve --config F` (the gateway, one server `echo` pointing at the
//!    upstream), and waits for the upstream's port and the gateway's `/readyz`;
//!    `--upstream-url` / `--gateway-url` measure already-running endpoints instead;
//! 2. opens a pool of HTTP/1.1 connections per target, each with its own MCP
//!    session (`initialize`, `notifications/initialized`, one checked `tools/call`),
//!    so the load looks like several agents;
//! 3. for each offered rate, direct, toolgate (and nginx): 2 s warm-up at that rate, then
//!    an open-loop run where a dispatcher thread releases calls on a fixed
//!    schedule and latency is measured from each call's *scheduled* send time
//!    (coordinated-omission corrected: a stall delays every call queued behind it);
//! 4. saturation: closed loop, every connection sends back to back;
//! 5. prints the machine, a markdown table, a summary line and the reproduce command.
//!
//! The load generator runs in this process on the same machine as the servers,
//! so it is kept lean: raw hyper `client::conn::http1` (one connection per worker,
//! `TCP_NODELAY`), a hand-rolled SSE scanner, per-worker HdrHistograms merged at the end.
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::{SocketAddr, TcpListener as StdTcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, StatusCode, Uri,
    body::Incoming,
    client::conn::http1::SendRequest,
    header::{ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, de::IgnoredAny};
use tokio::{net::TcpStream, sync::mpsc};

const PROTOCOL_VERSION: &str = "2025-11-25";
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// How long the open loop may run past its schedule to drain calls queued behind
/// a slow target; calls still queued then count as errors ("not sent").
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for a response stream to end after its JSON-RPC response
/// arrived; past that the connection is dropped (the stream was left open).
const STREAM_END_GRACE: Duration = Duration::from_secs(1);
/// Histogram range: 1 µs .. 10 min, 3 significant digits, in nanoseconds.
const HIST_LOW_NS: u64 = 1_000;
const HIST_HIGH_NS: u64 = 600_000_000_000;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "gateway-bench",
    about = "MCP tools/call latency and throughput: direct vs through toolgate"
)]
struct Args {
    /// Offered rates in calls/s for the open-loop (coordinated-omission corrected) runs.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000")]
    rates: Vec<f64>,
    /// Measured seconds per offered rate.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds before each measured run (same load, not recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connections (one MCP session each) the open-loop calls are spread over.
    #[arg(long, default_value_t = 32)]
    open_connections: usize,
    /// Concurrent connections (one MCP session each) for the closed-loop saturation run.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds of the saturation run; 0 skips it.
    #[arg(long, default_value_t = 10.0)]
    saturation_duration: f64,
    /// Length in bytes of the `message` each echo call carries.
    #[arg(long, default_value_t = 64)]
    message_bytes: usize,
    /// Tokio worker threads of the load generator (the dispatcher is one more thread).
    #[arg(long, default_value_t = 1)]
    generator_threads: usize,
    /// A call without a response after this many milliseconds counts as an error.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// The toolgate binary [default: the one cargo built for this bench].
    #[arg(long)]
    toolgate: Option<PathBuf>,
    /// Measure this running MCP endpoint as "direct" instead of spawning
    /// `toolgate reference echo` (the spawned gateway then points at it).
    #[arg(long)]
    upstream_url: Option<String>,
    /// Measure this running MCP endpoint as "toolgate" instead of spawning `toolgate serve`.
    #[arg(long)]
    gateway_url: Option<String>,
    /// The spawned gateway keeps its state (API keys, the audit trail) in
    /// this database (`postgres://…`) instead of SQLite in its data dir.
    #[arg(long)]
    database_url: Option<String>,
    /// Tool to call on the direct target.
    #[arg(long, default_value = "echo")]
    direct_tool: String,
    /// Tool to call through the gateway.
    #[arg(long, default_value = "echo__echo")]
    gateway_tool: String,
    /// Before each load, wait until the machine is at least this % idle
    /// (0 disables); others' load skews every number here.
    #[arg(long, default_value_t = 90.0)]
    wait_idle: f64,
    /// Longest wait for --wait-idle, in seconds, before measuring anyway.
    #[arg(long, default_value_t = 60.0)]
    wait_idle_max: f64,
    /// Measure a row again (up to this many times) when other processes took
    /// ≥ 10% of a core during it; the quietest attempt is reported.
    #[arg(long, default_value_t = 2)]
    noisy_retries: u32,
    /// A plain HTTP reverse proxy measured as a third target, in front of
    /// the same upstream: the floor for any gateway on this machine.
    /// `auto` uses `nginx` if it is installed; `off` skips it; or a path.
    #[arg(long, default_value = "auto")]
    peer_nginx: String,
    /// The spawned gateway runs the repository's guardrails
    /// (`policies/guardrails.toml`); `false` runs the same policies without
    /// that file, to see what the guardrails cost.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    guardrails: bool,
    /// The spawned gateway pins and lints its upstream's tools and runs the
    /// shipped toxic-flow policy (`policies/60-toxic-flows.cedar`);
    /// `false` turns pinning and the lint off and leaves that policy out,
    /// to see what tool integrity costs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    integrity: bool,
    /// Also measure the spawned gateway with an API key (`toolgate+key`)
    /// and with a JWT from an in-process test IdP (`toolgate+jwt`) on every
    /// request, to see what authentication costs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auth_rows: bool,
    /// PID of the --upstream-url server, to report its CPU.
    #[arg(long)]
    upstream_pid: Option<u32>,
    /// PID of the --gateway-url server, to report its CPU.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Passed by `cargo bench`. Without it (as under `cargo test --all-targets`,
    /// which runs bench targets too) only a seconds-long smoke check runs.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    /// A few seconds end to end: proves the harness and both targets work.
    fn smoke(mut self) -> Self {
        self.rates = vec![200.0];
        self.duration = 1.0;
        self.warmup = 0.2;
        self.open_connections = 4;
        self.connections = 4;
        self.saturation_duration = 1.0;
        self.wait_idle = 0.0;
        self.noisy_retries = 0;
        self
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if !args.bench {
        eprintln!(
            "no --bench flag (cargo test?): smoke check only; \
             `cargo bench --bench gateway` measures"
        );
        args = args.smoke();
    }
    // Before any thread exists, so every thread inherits it: the default 50 µs
    // timer slack would make the dispatcher release calls up to 50 µs late.
    let _ = fs::write("/proc/self/timerslack_ns", "1");
    ensure!(
        args.generator_threads > 0,
        "--generator-threads must be at least 1"
    );
    ensure!(
        args.open_connections > 0 && args.connections > 0,
        "--open-connections and --connections must be at least 1"
    );
    ensure!(
        args.rates.iter().all(|r| r.is_finite() && *r > 0.0),
        "--rates must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.generator_threads)
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = run(args) => result,
            _ = tokio::signal::ctrl_c() => {
                // Dropping `run` drops its `Processes`, which kills the children.
                eprintln!("interrupted");
                Ok(())
            }
        }
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    print_machine(&args);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut processes = Processes::new()?;

    let upstream_url = match &args.upstream_url {
        Some(url) => url.clone(),
        None => {
            processes
                .spawn_echo_upstream(&toolgate_binary(&args))
                .await?
        }
    };
    let idp = match (&args.gateway_url, args.auth_rows) {
        (None, true) => Some(TestIdp::start().await?),
        _ => None,
    };
    let gateway_url = match &args.gateway_url {
        Some(url) => url.clone(),
        None => {
            processes
                .spawn_gateway(
                    &toolgate_binary(&args),
                    &upstream_url,
                    idp.as_ref().map(|i| i.url.as_str()),
                    args.database_url.as_deref(),
                    args.guardrails,
                    args.integrity,
                )
                .await?
        }
    };
    let api_key = match &idp {
        Some(_) => Some(processes.create_api_key(&toolgate_binary(&args))?),
        None => None,
    };
    let jwt = idp.as_ref().map(TestIdp::token).transpose()?;
    let nginx_url = match nginx_binary(&args.peer_nginx) {
        Some(nginx) => Some(processes.spawn_nginx(&nginx, &upstream_url).await?),
        None => None,
    };
    eprintln!("direct:   {upstream_url} (tool {})", args.direct_tool);
    eprintln!("toolgate: {gateway_url} (tool {})", args.gateway_tool);
    if let Some(url) = &nginx_url {
        eprintln!(
            "nginx:    {url} (tool {}; a plain HTTP proxy)",
            args.direct_tool
        );
    }

    let message = message_of_len(args.message_bytes);
    let pool_size = args.open_connections.max(args.connections);
    let mut targets = Vec::new();
    let mut endpoints = vec![
        ("direct", &upstream_url, &args.direct_tool, None),
        ("toolgate", &gateway_url, &args.gateway_tool, None),
    ];
    if let Some(key) = &api_key {
        endpoints.push((
            "toolgate+key",
            &gateway_url,
            &args.gateway_tool,
            Some(key.as_str()),
        ));
    }
    if let Some(token) = &jwt {
        endpoints.push((
            "toolgate+jwt",
            &gateway_url,
            &args.gateway_tool,
            Some(token.as_str()),
        ));
    }
    if let Some(url) = &nginx_url {
        endpoints.push(("nginx", url, &args.direct_tool, None));
    }
    for (name, url, tool, bearer) in endpoints {
        // The gateway fetches the test IdP's keys just after it starts:
        // give a credentialed target a few tries.
        let mut attempt = 0;
        let target = loop {
            attempt += 1;
            match Target::open(name, url, tool, &message, bearer, pool_size, timeout).await {
                Ok(target) => break target,
                Err(_) if bearer.is_some() && attempt < 10 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("opening {pool_size} MCP sessions to {name} at {url}")
                    });
                }
            }
        };
        targets.push(target);
    }

    let mut watched = processes.watched();
    for (name, pid) in [
        ("upstream", args.upstream_pid),
        ("gateway", args.gateway_pid),
    ] {
        // The same process may serve as both (a direct-vs-direct baseline run).
        if let Some(pid) = pid
            && !watched.iter().any(|&(_, seen)| seen == pid)
        {
            watched.push((name, pid));
        }
    }
    let mut modes: Vec<Mode> = args.rates.iter().map(|&rate| Mode::Rate(rate)).collect();
    if args.saturation_duration > 0.0 {
        modes.push(Mode::Saturation(args.connections));
    }
    let mut rows = Vec::new();
    for mode in modes {
        // Each target in turn at each load, so slow drift hits all alike.
        for target in &mut targets {
            let mut row = measure(target, mode, &args, &watched, timeout).await?;
            let mut last_noise = row.others_percent();
            for attempt in 1..=args.noisy_retries {
                if last_noise < NOISY_OTHERS_PERCENT {
                    break;
                }
                eprintln!(
                    "other processes took {last_noise:.0}% of a core meanwhile; \
                     measuring again ({attempt}/{})",
                    args.noisy_retries
                );
                let again = measure(target, mode, &args, &watched, timeout).await?;
                last_noise = again.others_percent();
                if last_noise < row.others_percent() {
                    row = again;
                }
            }
            rows.push(row);
            // A crashed child shows up as errors; say so with its log instead.
            processes.check_alive()?;
        }
    }
    for target in &mut targets {
        target.close().await;
    }

    print_report(&args, &rows);
    drop(processes);
    if !args.bench {
        let errors: u64 = rows.iter().map(Row::errors).sum();
        ensure!(errors == 0, "smoke check: {errors} calls failed");
    }
    Ok(())
}

/// Warm-up, then one measured run of `target` under `mode`.
async fn measure(
    target: &mut Target,
    mode: Mode,
    args: &Args,
    watched: &[(&'static str, u32)],
    timeout: Duration,
) -> anyhow::Result<Row> {
    let (connections, duration) = match mode {
        Mode::Rate(_) => (args.open_connections, args.duration),
        Mode::Saturation(n) => (n, args.saturation_duration),
    };
    wait_for_quiet_machine(args).await;
    eprintln!(
        "{} {}: warm-up {} s, then measuring {duration} s",
        target.name,
        mode.label(),
        args.warmup
    );
    let conns = target.take(connections);
    let (conns, warmup) = run_load(conns, mode, secs(args.warmup), timeout).await?;
    warmup.ensure_answered(target.name, "warm-up")?;
    let cpu = CpuSample::take(watched);
    let (conns, result) = run_load(conns, mode, secs(duration), timeout).await?;
    let cpu = cpu.usage_since(result.stats.ok);
    result.ensure_answered(target.name, &mode.label())?;
    target.give_back(conns);
    Ok(Row {
        target: target.name,
        mode,
        result,
        cpu,
    })
}

async fn run_load(
    conns: Vec<Conn>,
    mode: Mode,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<(Vec<Conn>, PhaseResult)> {
    match mode {
        Mode::Rate(rate) => open_loop(conns, rate, duration, timeout).await,
        Mode::Saturation(_) => closed_loop(conns, duration, timeout).await,
    }
}

/// On a shared machine, wait (bounded) until others' load has passed; rows
/// measured under load anyway are flagged in the report.
async fn wait_for_quiet_machine(args: &Args) {
    if args.wait_idle <= 0.0 {
        return;
    }
    let deadline = Instant::now() + secs(args.wait_idle_max);
    let mut said = false;
    loop {
        let idle = tokio::task::spawn_blocking(|| idle_share(Duration::from_millis(500)))
            .await
            .ok()
            .flatten();
        let Some(idle) = idle else { return };
        if idle * 100.0 >= args.wait_idle {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "machine still only {:.0}% idle; measuring anyway",
                idle * 100.0
            );
            return;
        }
        if !said {
            eprintln!(
                "machine {:.0}% idle, waiting up to {} s for {}%",
                idle * 100.0,
                args.wait_idle_max,
                args.wait_idle
            );
            said = true;
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn toolgate_binary(args: &Args) -> PathBuf {
    args.toolgate
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_toolgate")))
}

fn message_of_len(len: usize) -> String {
    "toolgate-bench ".chars().cycle().take(len).collect()
}

// ---------------------------------------------------------------------------
// Child processes

/// The spawned upstream and gateway; dropping this kills them (also on panic
/// and Ctrl-C), gateway first.
struct Processes {
    dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
}

impl Processes {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("toolgate-bench-")
            .tempdir()
            .context("creating a temp dir")?;
        Ok(Self {
            dir,
            children: Vec::new(),
        })
    }

    fn spawn(&mut self, name: &'static str, binary: &Path, args: &[&str]) -> anyhow::Result<()> {
        let log_path = self.log_path(name);
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log file handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {}", binary.display(), args.join(" ")))?;
        eprintln!("started {name}: {} {}", binary.display(), args.join(" "));
        self.children.push((name, child));
        Ok(())
    }

    /// The processes whose CPU time each phase reports: this one and the children.
    fn watched(&self) -> Vec<(&'static str, u32)> {
        let mut watched = vec![("generator", std::process::id())];
        watched.extend(
            self.children
                .iter()
                .map(|(name, child)| (*name, child.id())),
        );
        watched
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Fails with its log if a child has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait().context("polling a child")? {
                let log = fs::read_to_string(self.dir.path().join(format!("{name}.log")));
                bail!(
                    "{name} exited with {status}; its output:\n{}",
                    log.unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Wait (up to 30 s) until `addr` accepts connections, failing early if
    /// a child died.
    async fn wait_listening(&mut self, name: &str, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_err() {
            self.check_alive()?;
            ensure!(
                Instant::now() < deadline,
                "{name} did not listen on {addr} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn spawn_echo_upstream(&mut self, binary: &Path) -> anyhow::Result<String> {
        let addr = free_port()?;
        self.spawn(
            "upstream",
            binary,
            &["reference", "echo", "--http", &addr.to_string()],
        )?;
        self.wait_listening("upstream", addr).await?;
        Ok(format!("http://{addr}/mcp"))
    }

    /// nginx as a plain reverse proxy (keep-alive to the upstream, no
    /// buffering), one worker, its files in the temp dir.
    async fn spawn_nginx(&mut self, binary: &Path, upstream_url: &str) -> anyhow::Result<String> {
        let addr = free_port()?;
        let upstream: hyper::Uri = upstream_url.parse().context("parsing the upstream URL")?;
        let upstream_host = upstream
            .authority()
            .context("the upstream URL has no host")?
            .to_string();
        let prefix = self.dir.path().join("nginx");
        fs::create_dir_all(&prefix).context("creating the nginx dir")?;
        let p = prefix.to_string_lossy();
        let conf = prefix.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
                 error_log {p}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
                 upstream up {{ server {upstream_host}; keepalive 64; }}\n\
                 server {{\n    listen {addr};\n    location / {{\n      proxy_pass http://up;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_set_header Host {upstream_host};\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
            ),
        )
        .context("writing nginx.conf")?;
        let conf = conf.to_string_lossy().into_owned();
        let error_log = format!("{p}/error.log");
        self.spawn("nginx", binary, &["-p", &p, "-e", &error_log, "-c", &conf])?;
        self.wait_listening("nginx", addr).await?;
        Ok(format!("http://{addr}{}", upstream.path()))
    }

    /// An API key for the spawned gateway (`toolgate keys create`).
    fn create_api_key(&self, binary: &Path) -> anyhow::Result<String> {
        let config = self.dir.path().join("toolgate.toml");
        let out = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(["keys", "create", "--name", "bench", "--group", "bench"])
            .output()
            .context("running toolgate keys create")?;
        ensure!(
            out.status.success(),
            "toolgate keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)
            .context("the key is not UTF-8")?
            .trim()
            .to_string())
    }

    async fn spawn_gateway(
        &mut self,
        binary: &Path,
        upstream_url: &str,
        issuer: Option<&str>,
        database_url: Option<&str>,
        guardrails: bool,
        integrity: bool,
    ) -> anyhow::Result<String> {
        let addr = free_port()?;
        // RBAC on: the repository's default policies; without guardrails
        // or integrity, a copy without `guardrails.toml` or the toxic-flow
        // policy.
        let mut policies_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
        let mut left_out: Vec<&str> = Vec::new();
        if !guardrails {
            left_out.push("guardrails.toml");
        }
        if !integrity {
            left_out.push("60-toxic-flows.cedar");
        }
        if !left_out.is_empty() {
            let copy = self.dir.path().join("policies");
            fs::create_dir_all(&copy).context("creating policies dir")?;
            for entry in fs::read_dir(&policies_dir).context("reading policies/")? {
                let path = entry?.path();
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if path.is_file() && !left_out.contains(&name.as_str()) {
                    fs::copy(&path, copy.join(path.file_name().unwrap_or_default()))
                        .with_context(|| format!("copying {}", path.display()))?;
                }
            }
            policies_dir = copy;
        }
        let servers_dir = self.dir.path().join("servers");
        fs::create_dir_all(&servers_dir).context("creating servers dir")?;
        fs::write(
            servers_dir.join("echo.toml"),
            format!(
                "name = \"echo\"\ntransport = \"http\"\nurl = {}\n[policy]\ntrusted = true\n{}",
                toml_string(upstream_url),
                if integrity {
                    ""
                } else {
                    "[integrity]\npin = \"off\"\nlint = \"off\"\n"
                }
            ),
        )
        .context("writing servers/echo.toml")?;
        let config = self.dir.path().join("toolgate.toml");
        fs::write(
            &config,
            format!(
                "listen = \"{addr}\"\nservers_dir = {}\npolicies_dir = {}\n{}{}",
                toml_string(&servers_dir.to_string_lossy()),
                toml_string(&policies_dir.to_string_lossy()),
                // The audit trail is always on; on PostgreSQL it needs a
                // configured checkpoint key.
                database_url.map_or(String::new(), |url| format!(
                    "database_url = {}\n[audit]\nsigning_key = \"{}\"\n",
                    toml_string(url),
                    "b".repeat(64)
                )),
                issuer.map_or(String::new(), |url| format!(
                    "[[auth.issuers]]\nname = \"bench\"\nissuer = {}\naudiences = [\"api://toolgate\"]\n",
                    toml_string(url)
                ))
            ),
        )
        .context("writing toolgate.toml")?;
        let config = config.to_string_lossy().into_owned();
        // Dev mode: the plain `toolgate` row calls without a credential.
        self.spawn(
            "gateway",
            binary,
            &["serve", "--dev-insecure", "--config", &config],
        )?;

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive()?;
            match http_get_status(addr, "/readyz").await {
                Ok(StatusCode::OK) => break,
                _ if Instant::now() > deadline => {
                    let log = fs::read_to_string(self.log_path("gateway")).unwrap_or_default();
                    bail!(
                        "gateway at {addr} not ready (GET /readyz) within 30 s; its output:\n{log}"
                    );
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(format!("http://{addr}/mcp"))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An OIDC provider in this process (discovery and JWKS of a test issuer)
/// for the `toolgate+jwt` row; it serves only the gateway's key fetches.
struct TestIdp {
    url: String,
    issuer: Arc<toolgate::authenticate::jwt::test_issuer::TestIssuer>,
}

impl TestIdp {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the test IdP")?;
        let url = format!("http://{}", listener.local_addr()?);
        let issuer = Arc::new(toolgate::authenticate::jwt::test_issuer::TestIssuer::new());
        let discovery = serde_json::json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let jwks = issuer.jwks();
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route("/jwks", axum::routing::get(move || async move { jwks }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { url, issuer })
    }

    /// An access token for the bench, valid for a day.
    fn token(&self) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        Ok(self.issuer.sign(
            serde_json::json!({"alg": "RS256", "kid": self.issuer.rsa_kid, "typ": "at+jwt"}),
            serde_json::json!({"iss": self.url, "aud": "api://toolgate", "sub": "bench",
                "groups": ["bench"], "iat": now, "exp": now + 86_400}),
        ))
    }
}

/// The nginx to measure as a reference proxy, if any (see `--peer-nginx`).
fn nginx_binary(choice: &str) -> Option<PathBuf> {
    match choice {
        "off" => None,
        "auto" => std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .chain(["/usr/sbin".into()])
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file()),
        path => Some(PathBuf::from(path)),
    }
}

/// A JSON string is a valid TOML basic string for the paths and URLs we write.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = StdTcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    listener.local_addr().context("reading the bound address")
}

async fn http_get_status(addr: SocketAddr, path: &str) -> anyhow::Result<StatusCode> {
    let mut sender = handshake(addr).await?;
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .context("building GET")?;
    let response = sender.send_request(request).await?;
    Ok(response.status())
}

async fn handshake(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

// ---------------------------------------------------------------------------
// MCP over streamable HTTP, one connection and one session per `Conn`

/// One MCP endpoint under test and its pool of sessions.
struct Target {
    name: &'static str,
    conns: Vec<Conn>,
}

impl Target {
    async fn open(
        name: &'static str,
        url: &str,
        tool: &str,
        message: &str,
        bearer: Option<&str>,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = Arc::new(Endpoint::parse(url, tool, message, bearer).await?);
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let mut conn = Conn::new(endpoint.clone());
            tokio::time::timeout(timeout * 4, conn.start_session())
                .await
                .context("timed out starting an MCP session")??;
            conns.push(conn);
        }
        Ok(Self { name, conns })
    }

    fn take(&mut self, n: usize) -> Vec<Conn> {
        self.conns.drain(..n.min(self.conns.len())).collect()
    }

    fn give_back(&mut self, mut conns: Vec<Conn>) {
        conns.append(&mut self.conns);
        self.conns = conns;
    }

    /// Ends the sessions (`DELETE`), so long runs don't leave them behind.
    async fn close(&mut self) {
        for conn in &mut self.conns {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.end_session()).await;
        }
    }
}

/// Where to send and what: parsed once per target.
struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    /// `Bearer …`, when the target is measured with a credential.
    authorization: Option<HeaderValue>,
    path: Uri,
    /// `tools/call` body around the id: `prefix + id + suffix`.
    call_prefix: Bytes,
    call_suffix: Bytes,
    tool: String,
    message: String,
}

impl Endpoint {
    async fn parse(
        url: &str,
        tool: &str,
        message: &str,
        bearer: Option<&str>,
    ) -> anyhow::Result<Self> {
        let authorization = bearer
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .context("the API key is not a valid header value")?;
        let uri: Uri = url.parse().with_context(|| format!("parsing URL {url}"))?;
        ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// URLs are supported: {url}"
        );
        let authority = uri.authority().context("URL without host")?.clone();
        let authority = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(authority.as_str())
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .context("parsing URL path")?;
        let host = HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str()))
            .context("host header")?;
        let call_prefix = Bytes::from(r#"{"jsonrpc":"2.0","id":"#);
        let call_suffix = Bytes::from(format!(
            r#","method":"tools/call","params":{{"name":{},"arguments":{{"message":{}}}}}}}"#,
            serde_json::Value::from(tool),
            serde_json::Value::from(message)
        ));
        Ok(Self {
            addr,
            host,
            authorization,
            path,
            call_prefix,
            call_suffix,
            tool: tool.to_owned(),
            message: message.to_owned(),
        })
    }
}

/// Why a call failed; the key in the error breakdown.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CallError {
    Connect,
    Transport,
    Status(u16),
    JsonRpcError,
    ToolIsError,
    NoResponse,
    Timeout,
    NotSent,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect => f.write_str("connect failed"),
            Self::Transport => f.write_str("connection error"),
            Self::Status(code) => write!(f, "HTTP {code}"),
            Self::JsonRpcError => f.write_str("JSON-RPC error"),
            Self::ToolIsError => f.write_str("isError: true"),
            Self::NoResponse => f.write_str("stream ended without the response"),
            Self::Timeout => f.write_str("timeout"),
            Self::NotSent => f.write_str("not sent (still queued at drain deadline)"),
        }
    }
}

/// What an exchange returns on success.
struct Exchange {
    /// When the JSON-RPC response was in hand (before draining the stream).
    done: Instant,
    session: Option<HeaderValue>,
}

/// The fields of a JSON-RPC message we look at.
#[derive(Deserialize)]
struct RpcMessage {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    method: Option<IgnoredAny>,
    #[serde(default)]
    result: Option<RpcResult>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RpcResult {
    #[serde(default, rename = "isError")]
    is_error: Option<bool>,
}

/// Is `data` the response to `id`, and did it succeed? `None`: not our response.
fn judge(data: &[u8], id: u64) -> Option<Result<(), CallError>> {
    let message: RpcMessage = serde_json::from_slice(data).ok()?;
    if message.method.is_some() || message.id.as_ref()?.as_u64() != Some(id) {
        return None;
    }
    Some(if message.error.is_some() {
        Err(CallError::JsonRpcError)
    } else if message.result.is_some_and(|r| r.is_error == Some(true)) {
        Err(CallError::ToolIsError)
    } else {
        Ok(())
    })
}

/// Incremental `text/event-stream` scanner: finds the event whose `data` is the
/// JSON-RPC response to one id. Buffers are reused across calls.
#[derive(Default)]
struct SseScanner {
    pending: Vec<u8>,
    data: Vec<u8>,
}

impl SseScanner {
    fn reset(&mut self) {
        self.pending.clear();
        self.data.clear();
    }

    /// Feeds a chunk; returns the verdict once the response event is complete.
    fn feed(
        &mut self,
        chunk: &[u8],
        id: u64,
        keep: &mut Option<Vec<u8>>,
    ) -> Option<Result<(), CallError>> {
        self.pending.extend_from_slice(chunk);
        let mut consumed = 0;
        let mut verdict = None;
        while let Some(newline) = self.pending[consumed..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[consumed..consumed + newline];
            consumed += newline + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                verdict = Self::dispatch(&mut self.data, id, keep);
                if verdict.is_some() {
                    break;
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if !self.data.is_empty() {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
            }
        }
        self.pending.drain(..consumed);
        verdict
    }

    /// At end of stream: a last line or event without its terminator still counts.
    fn finish(&mut self, id: u64, keep: &mut Option<Vec<u8>>) -> Option<Result<(), CallError>> {
        self.feed(b"\n\n", id, keep)
    }

    fn dispatch(
        data: &mut Vec<u8>,
        id: u64,
        keep: &mut Option<Vec<u8>>,
    ) -> Option<Result<(), CallError>> {
        if data.is_empty() {
            return None;
        }
        let verdict = judge(data, id);
        if verdict.is_some()
            && let Some(keep) = keep
        {
            keep.clone_from(data);
        }
        data.clear();
        verdict
    }
}

/// One HTTP/1.1 connection carrying one MCP session.
struct Conn {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
    session: Option<HeaderValue>,
    next_id: u64,
    sse: SseScanner,
    body: Vec<u8>,
    /// The last matched JSON-RPC response, kept only when an exchange asks (setup).
    last_payload: Vec<u8>,
}

impl Conn {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        Self {
            endpoint,
            sender: None,
            session: None,
            next_id: 0,
            sse: SseScanner::default(),
            body: Vec::new(),
            last_payload: Vec::new(),
        }
    }

    /// `initialize`, `notifications/initialized`, then one `tools/call` whose
    /// echo is checked, so a wrong tool name fails here, not as 100% errors.
    async fn start_session(&mut self) -> anyhow::Result<()> {
        let init = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"toolgate-bench","version":"0.1.0"}}}}}}"#
        ));
        self.next_id = 1;
        let exchange = self
            .exchange(Method::POST, init, Some(0), true)
            .await
            .map_err(|e| anyhow::anyhow!("initialize: {e}: {}", self.last_payload_text()))?;
        self.session = Some(
            exchange
                .session
                .context("initialize: no Mcp-Session-Id header")?,
        );
        let initialized =
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        self.exchange(Method::POST, initialized, None, false)
            .await
            .map_err(|e| anyhow::anyhow!("notifications/initialized: {e}"))?;

        let id = self.next_id;
        self.next_id += 1;
        self.exchange(Method::POST, self.call_body(id), Some(id), true)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "tools/call {}: {e}: {}",
                    self.endpoint.tool,
                    self.last_payload_text()
                )
            })?;
        let response: serde_json::Value = serde_json::from_slice(&self.last_payload)
            .context("tools/call: response is not JSON")?;
        let text = response
            .pointer("/result/content/0/text")
            .and_then(serde_json::Value::as_str);
        ensure!(
            text == Some(self.endpoint.message.as_str()),
            "tools/call {} did not echo the message: {response}",
            self.endpoint.tool
        );
        Ok(())
    }

    fn last_payload_text(&self) -> String {
        String::from_utf8_lossy(&self.last_payload).into_owned()
    }

    async fn end_session(&mut self) {
        if self.session.is_some() {
            let _ = self
                .exchange(Method::DELETE, Bytes::new(), None, false)
                .await;
            self.session = None;
        }
    }

    fn call_body(&self, id: u64) -> Bytes {
        let e = &self.endpoint;
        let id = id.to_string();
        let mut body = Vec::with_capacity(e.call_prefix.len() + id.len() + e.call_suffix.len());
        body.extend_from_slice(&e.call_prefix);
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&e.call_suffix);
        Bytes::from(body)
    }

    /// One `tools/call`; returns when its response was in hand.
    async fn call(&mut self) -> Result<Instant, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = self.call_body(id);
        self.exchange(Method::POST, body, Some(id), false)
            .await
            .map(|e| e.done)
    }

    /// Forget the connection (after a timeout it is in an unknown state).
    fn reset(&mut self) {
        self.sender = None;
    }

    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, CallError> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            self.sender = Some(
                handshake(self.endpoint.addr)
                    .await
                    .map_err(|_| CallError::Connect)?,
            );
        }
        self.sender.as_mut().ok_or(CallError::Connect)
    }

    async fn exchange(
        &mut self,
        method: Method,
        body: Bytes,
        expect_id: Option<u64>,
        keep_payload: bool,
    ) -> Result<Exchange, CallError> {
        let e = self.endpoint.clone();
        let mut request = Request::builder()
            .method(method)
            .uri(e.path.clone())
            .header(HOST, e.host.clone())
            .header(
                ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            )
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &e.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization.clone());
        }
        if let Some(session) = &self.session {
            request = request
                .header(SESSION_HEADER, session.clone())
                .header(VERSION_HEADER, HeaderValue::from_static(PROTOCOL_VERSION));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| CallError::Transport)?;

        let sender = self.ready_sender().await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => {
                self.sender = None;
                return Err(CallError::Transport);
            }
        };
        let status = response.status();
        let session = response.headers().get(SESSION_HEADER).cloned();
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut body = response.into_body();

        if !status.is_success() {
            if keep_payload {
                // Setup: keep the body so the error says why.
                if let Ok(Ok(collected)) =
                    tokio::time::timeout(STREAM_END_GRACE, body.collect()).await
                {
                    self.last_payload = collected.to_bytes().to_vec();
                }
                self.sender = None;
                return Err(CallError::Status(status.as_u16()));
            }
            self.drain(&mut body).await;
            return Err(CallError::Status(status.as_u16()));
        }
        let Some(id) = expect_id else {
            self.drain(&mut body).await;
            return Ok(Exchange {
                done: Instant::now(),
                session,
            });
        };
        let mut payload = keep_payload.then(Vec::new);
        self.last_payload.clear();
        let verdict = if is_sse {
            self.sse.reset();
            let mut verdict = None;
            while verdict.is_none() {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(chunk) = frame.data_ref() {
                            verdict = self.sse.feed(chunk, id, &mut payload);
                        }
                    }
                    Some(Err(_)) => {
                        self.sender = None;
                        return Err(CallError::Transport);
                    }
                    None => {
                        verdict = Some(
                            self.sse
                                .finish(id, &mut payload)
                                .unwrap_or(Err(CallError::NoResponse)),
                        );
                    }
                }
            }
            verdict.unwrap_or(Err(CallError::NoResponse))
        } else {
            self.body.clear();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(chunk) = frame.data_ref() {
                            self.body.extend_from_slice(chunk);
                        }
                    }
                    Err(_) => {
                        self.sender = None;
                        return Err(CallError::Transport);
                    }
                }
            }
            let verdict = judge(&self.body, id).unwrap_or(Err(CallError::NoResponse));
            if let Some(payload) = &mut payload {
                payload.clone_from(&self.body);
            }
            verdict
        };
        let done = Instant::now();
        if let Some(payload) = payload {
            self.last_payload = payload;
        }
        // The stream should end right after the response; reading to its end keeps
        // the connection reusable.
        self.drain(&mut body).await;
        verdict.map(|()| Exchange { done, session })
    }

    async fn drain(&mut self, body: &mut Incoming) {
        let drained = tokio::time::timeout(STREAM_END_GRACE, async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        if drained != Ok(true) {
            self.sender = None;
        }
    }
}

// ---------------------------------------------------------------------------
// Load phases

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one worker saw.
struct WorkerStats {
    /// Latency of successful calls: from scheduled send (open loop) or actual send (closed).
    latency: Histogram<u64>,
    /// From actual send to response (open loop only; equals `latency` when closed).
    service: Histogram<u64>,
    /// From scheduled time to the moment a worker picked the call up (open loop).
    queue_wait: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<CallError, u64>,
    last_done: Option<Instant>,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            queue_wait: new_histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            last_done: None,
        }
    }

    fn error(&mut self, error: CallError) {
        *self.errors.entry(error).or_default() += 1;
    }

    fn merge(&mut self, other: &Self) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.service
            .add(&other.service)
            .expect("same histogram bounds");
        self.queue_wait
            .add(&other.queue_wait)
            .expect("same histogram bounds");
        self.ok += other.ok;
        for (error, count) in &other.errors {
            *self.errors.entry(error.clone()).or_default() += count;
        }
        self.last_done = self.last_done.max(other.last_done);
    }
}

/// One measured run.
struct PhaseResult {
    stats: WorkerStats,
    /// Calls/s completed successfully, over start .. last response.
    achieved: f64,
    /// How late the dispatcher thread released calls (open loop only): the
    /// generator's own timing noise.
    dispatch_lag: Option<Histogram<u64>>,
}

impl PhaseResult {
    /// A target that answered nothing is down: stop rather than hammer it for minutes.
    fn ensure_answered(&self, target: &str, phase: &str) -> anyhow::Result<()> {
        let stats = &self.stats;
        if stats.ok == 0 && !stats.errors.is_empty() {
            let kinds: Vec<String> = stats
                .errors
                .iter()
                .map(|(e, n)| format!("{e}: {n}"))
                .collect();
            bail!(
                "{target} answered no call during {phase} ({})",
                kinds.join(", ")
            );
        }
        Ok(())
    }
}

/// Open loop at a fixed rate: a dispatcher thread releases call slots on an
/// absolute schedule; workers (one per connection) take the next slot and record
/// latency from the slot's scheduled time.
async fn open_loop(
    conns: Vec<Conn>,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<(Vec<Conn>, PhaseResult)> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let drain_deadline = start + duration + DRAIN_GRACE;
    let (slots, receiver) = mpsc::unbounded_channel::<Instant>();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));

    // A plain thread sleeps with ~50-100 µs precision; tokio's timer has 1 ms ticks,
    // which would add up to 1 ms of phantom latency to every call.
    let dispatcher = tokio::task::spawn_blocking(move || {
        let mut lag = new_histogram();
        for i in 0..total {
            let slot = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if slot > now {
                std::thread::sleep(slot - now);
            }
            lag.saturating_record(nanos(Instant::now().saturating_duration_since(slot)));
            if slots.send(slot).is_err() {
                break;
            }
        }
        lag
    });

    let mut workers = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let receiver = receiver.clone();
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats::new();
            loop {
                let slot = receiver.lock().await.recv().await;
                let Some(slot) = slot else { break };
                let picked = Instant::now();
                if picked > drain_deadline {
                    stats.error(CallError::NotSent);
                    continue;
                }
                stats
                    .queue_wait
                    .saturating_record(nanos(picked.saturating_duration_since(slot)));
                match tokio::time::timeout(timeout, conn.call()).await {
                    Ok(Ok(done)) => {
                        stats.ok += 1;
                        stats
                            .latency
                            .saturating_record(nanos(done.saturating_duration_since(slot)));
                        stats
                            .service
                            .saturating_record(nanos(done.saturating_duration_since(picked)));
                        stats.last_done = stats.last_done.max(Some(done));
                    }
                    Ok(Err(error)) => stats.error(error),
                    Err(_) => {
                        conn.reset();
                        stats.error(CallError::Timeout);
                    }
                }
            }
            (conn, stats)
        }));
    }

    let dispatch_lag = dispatcher.await.context("dispatcher thread panicked")?;
    let (conns, stats) = join_workers(workers).await?;
    let achieved = achieved_rate(&stats, start);
    Ok((
        conns,
        PhaseResult {
            stats,
            achieved,
            dispatch_lag: Some(dispatch_lag),
        },
    ))
}

/// Closed loop: every connection sends its next call as soon as the last returns.
async fn closed_loop(
    conns: Vec<Conn>,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<(Vec<Conn>, PhaseResult)> {
    let start = Instant::now();
    let end = start + duration;
    let mut workers = Vec::with_capacity(conns.len());
    for mut conn in conns {
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats::new();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                match tokio::time::timeout(timeout, conn.call()).await {
                    Ok(Ok(done)) => {
                        let took = nanos(done.saturating_duration_since(sent));
                        stats.ok += 1;
                        stats.latency.saturating_record(took);
                        stats.service.saturating_record(took);
                        stats.last_done = stats.last_done.max(Some(done));
                    }
                    Ok(Err(error)) => stats.error(error),
                    Err(_) => {
                        conn.reset();
                        stats.error(CallError::Timeout);
                    }
                }
            }
            (conn, stats)
        }));
    }
    let (conns, stats) = join_workers(workers).await?;
    let achieved = achieved_rate(&stats, start);
    Ok((
        conns,
        PhaseResult {
            stats,
            achieved,
            dispatch_lag: None,
        },
    ))
}

async fn join_workers(
    workers: Vec<tokio::task::JoinHandle<(Conn, WorkerStats)>>,
) -> anyhow::Result<(Vec<Conn>, WorkerStats)> {
    let mut conns = Vec::with_capacity(workers.len());
    let mut total = WorkerStats::new();
    for worker in workers {
        let (conn, stats) = worker.await.context("a load worker panicked")?;
        total.merge(&stats);
        conns.push(conn);
    }
    Ok((conns, total))
}

fn achieved_rate(stats: &WorkerStats, start: Instant) -> f64 {
    match stats.last_done {
        Some(last) if last > start => stats.ok as f64 / (last - start).as_secs_f64(),
        _ => 0.0,
    }
}

// ---------------------------------------------------------------------------
// CPU accounting: on 2 shared cores, CPU per call is the number that explains
// throughput (the generator, the upstream and the gateway compete for them).

/// Linux `USER_HZ`; /proc reports CPU time in these ticks.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU ticks of a process (all threads), from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

struct CpuSample {
    at: Instant,
    ticks: Vec<(&'static str, u32, Option<u64>)>,
    machine: Option<MachineTicks>,
}

struct CpuUsage {
    name: &'static str,
    /// Percent of one core.
    percent: f64,
    /// CPU microseconds per successful call.
    micros_per_call: f64,
}

impl CpuSample {
    fn take(watched: &[(&'static str, u32)]) -> Self {
        Self {
            at: Instant::now(),
            ticks: watched
                .iter()
                .map(|&(name, pid)| (name, pid, cpu_ticks(pid)))
                .collect(),
            machine: machine_ticks(),
        }
    }

    /// Each watched process's CPU since the sample, then "others" (every other
    /// process: noise in these numbers), "irq" (interrupts, mostly our own
    /// loopback traffic) and "steal" (the hypervisor's other guests).
    fn usage_since(self, calls: u64) -> Vec<CpuUsage> {
        let elapsed = self.at.elapsed().as_secs_f64();
        let usage = |name, ticks: u64| {
            let used = ticks as f64 / TICKS_PER_SEC;
            CpuUsage {
                name,
                percent: 100.0 * used / elapsed,
                micros_per_call: if calls > 0 {
                    1e6 * used / calls as f64
                } else {
                    f64::NAN
                },
            }
        };
        let mut watched_total = 0;
        let mut usages: Vec<CpuUsage> = self
            .ticks
            .into_iter()
            .filter_map(|(name, pid, before)| {
                let ticks = cpu_ticks(pid)?.checked_sub(before?)?;
                watched_total += ticks;
                Some(usage(name, ticks))
            })
            .collect();
        if let (Some(before), Some(after)) = (self.machine, machine_ticks()) {
            let others = after
                .processes
                .saturating_sub(before.processes)
                .saturating_sub(watched_total);
            usages.push(usage("others", others));
            usages.push(usage(
                "irq",
                after.interrupts.saturating_sub(before.interrupts),
            ));
            let steal = after.steal.saturating_sub(before.steal);
            if steal > 0 {
                usages.push(usage("steal", steal));
            }
        }
        usages
    }
}

/// CPU ticks summed over all cores, from the first line of /proc/stat.
#[derive(Clone, Copy)]
struct MachineTicks {
    idle: u64,
    /// user + nice + system: what processes ran.
    processes: u64,
    /// irq + softirq: not charged to any process; loopback TCP lands here.
    interrupts: u64,
    /// Time the hypervisor gave our vCPUs to someone else.
    steal: u64,
}

fn machine_ticks() -> Option<MachineTicks> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(MachineTicks {
        idle: at(3) + at(4),
        processes: at(0) + at(1) + at(2),
        interrupts: at(5) + at(6),
        steal: at(7),
    })
}

/// Share of all cores idle over `window`: others' load skews results.
fn idle_share(window: Duration) -> Option<f64> {
    let before = machine_ticks()?;
    std::thread::sleep(window);
    let after = machine_ticks()?;
    let idle = after.idle.saturating_sub(before.idle);
    let busy = (after.processes + after.interrupts + after.steal)
        .saturating_sub(before.processes + before.interrupts + before.steal);
    (idle + busy > 0).then(|| idle as f64 / (idle + busy) as f64)
}

// ---------------------------------------------------------------------------
// Report

#[derive(Clone, Copy)]
enum Mode {
    Rate(f64),
    Saturation(usize),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Self::Rate(rate) => format!("{}/s", fmt_rate(rate)),
            Self::Saturation(n) => format!("saturation ({n} conns)"),
        }
    }
}

struct Row {
    target: &'static str,
    mode: Mode,
    result: PhaseResult,
    cpu: Vec<CpuUsage>,
}

/// A row measured while other processes used this much of a core is flagged.
const NOISY_OTHERS_PERCENT: f64 = 10.0;

impl Row {
    fn errors(&self) -> u64 {
        self.result.stats.errors.values().sum()
    }

    /// CPU that others took during the row: other processes and hypervisor steal.
    fn others_percent(&self) -> f64 {
        self.cpu
            .iter()
            .filter(|u| u.name == "others" || u.name == "steal")
            .map(|u| u.percent)
            .sum()
    }

    fn noisy(&self) -> bool {
        self.others_percent() >= NOISY_OTHERS_PERCENT
    }
}

fn ms(h: &Histogram<u64>, quantile: f64) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.value_at_quantile(quantile) as f64 / 1e6
    }
}

fn fmt_ms(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else {
        format!("{value:.3} ms")
    }
}

fn fmt_rate(value: f64) -> String {
    let n = value.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_machine(args: &Args) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let commit = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    if args.bench {
        println!("## toolgate gateway benchmark\n");
    } else {
        println!("## toolgate gateway benchmark: smoke check (no --bench), not a measurement\n");
    }
    println!("- machine: {cores} cores (nproc), CPU: {cpu}");
    println!("- toolgate commit: {commit}");
    match idle_share(Duration::from_secs(1)) {
        Some(idle) if idle < 0.9 => println!(
            "- **warning:** the machine was only {:.0}% idle in the second before the run: \
             other processes skew these numbers",
            idle * 100.0
        ),
        Some(idle) => println!(
            "- machine {:.0}% idle in the second before the run",
            idle * 100.0
        ),
        None => {}
    }
    println!(
        "- load: open loop at {} calls/s over {} sessions, {} s each after {} s warm-up; \
         saturation: closed loop, {} sessions, {} s; {}-byte message; generator: {} tokio thread(s) + 1 dispatcher thread, same machine",
        args.rates
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(", "),
        args.open_connections,
        args.duration,
        args.warmup,
        args.connections,
        args.saturation_duration,
        args.message_bytes,
        args.generator_threads,
    );
    println!();
}

fn print_report(args: &Args, rows: &[Row]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| target | offered rate | achieved calls/s | p50 | p99 | p99.9 | errors |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let h = &row.result.stats.latency;
        let offered = row.mode.label();
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} | {} |",
            row.target,
            if row.noisy() { " ⚠" } else { "" },
            offered,
            fmt_rate(row.result.achieved),
            fmt_ms(ms(h, 0.5)),
            fmt_ms(ms(h, 0.99)),
            fmt_ms(ms(h, 0.999)),
            row.errors(),
        );
    }
    println!("{out}");
    let noisy: Vec<String> = rows
        .iter()
        .filter(|r| r.noisy())
        .map(|r| {
            format!(
                "{} {} ({:.0}%)",
                r.target,
                r.mode.label(),
                r.others_percent()
            )
        })
        .collect();
    if !noisy.is_empty() {
        println!(
            "⚠ other processes (or hypervisor steal) took ≥ {NOISY_OTHERS_PERCENT}% of a core during: {}. \
             Those rows are skewed; rerun on a quiet machine.\n",
            noisy.join(", ")
        );
    }

    // Summary: added p99 at the rate nearest 1000/s, and the saturation ratio.
    let mut summary = Vec::new();
    let nearest = args
        .rates
        .iter()
        .copied()
        .min_by(|a, b| (a - 1000.0).abs().total_cmp(&(b - 1000.0).abs()));
    let find = |target: &str, pick: &dyn Fn(&Mode) -> bool| {
        rows.iter().find(|r| r.target == target && pick(&r.mode))
    };
    if let Some(rate) = nearest {
        let at_rate = |m: &Mode| matches!(m, Mode::Rate(r) if *r == rate);
        if let (Some(direct), Some(gateway)) =
            (find("direct", &at_rate), find("toolgate", &at_rate))
        {
            let d = ms(&direct.result.stats.latency, 0.99);
            let g = ms(&gateway.result.stats.latency, 0.99);
            summary.push(format!(
                "added p99 at {}/s (toolgate − direct): {:+.3} ms ({} → {})",
                fmt_rate(rate),
                g - d,
                fmt_ms(d),
                fmt_ms(g)
            ));
        }
    }
    if let Some(rate) = nearest {
        let at_rate = |m: &Mode| matches!(m, Mode::Rate(r) if *r == rate);
        if let (Some(plain), Some(keyed)) =
            (find("toolgate", &at_rate), find("toolgate+key", &at_rate))
        {
            let p = ms(&plain.result.stats.latency, 0.5);
            let k = ms(&keyed.result.stats.latency, 0.5);
            summary.push(format!(
                "API key authentication at {}/s: {:+.0} µs at p50 ({} → {})",
                fmt_rate(rate),
                (k - p) * 1000.0,
                fmt_ms(p),
                fmt_ms(k)
            ));
        }
        if let (Some(plain), Some(jwt)) =
            (find("toolgate", &at_rate), find("toolgate+jwt", &at_rate))
        {
            let p = ms(&plain.result.stats.latency, 0.5);
            let j = ms(&jwt.result.stats.latency, 0.5);
            summary.push(format!(
                "JWT authentication at {}/s: {:+.0} µs at p50 ({} → {})",
                fmt_rate(rate),
                (j - p) * 1000.0,
                fmt_ms(p),
                fmt_ms(j)
            ));
        }
    }
    let saturated = |m: &Mode| matches!(m, Mode::Saturation(_));
    if let (Some(direct), Some(gateway)) =
        (find("direct", &saturated), find("toolgate", &saturated))
    {
        let (d, g) = (direct.result.achieved, gateway.result.achieved);
        summary.push(format!(
            "saturation throughput toolgate/direct: {:.2} ({} / {} calls/s)",
            if d > 0.0 { g / d } else { f64::NAN },
            fmt_rate(g),
            fmt_rate(d)
        ));
    }
    if let (Some(direct), Some(nginx)) = (find("direct", &saturated), find("nginx", &saturated)) {
        let (d, n) = (direct.result.achieved, nginx.result.achieved);
        summary.push(format!(
            "for reference, a plain HTTP proxy (nginx)/direct: {:.2} ({} calls/s)",
            if d > 0.0 { n / d } else { f64::NAN },
            fmt_rate(n)
        ));
    }
    println!("**Summary:** {}\n", summary.join("; "));
    println!(
        "Open-loop latency is measured from each call's scheduled send time \
         (coordinated-omission corrected); saturation latency from the actual send.\n"
    );

    // Diagnostics: is the generator itself the bottleneck?
    println!("<details><summary>diagnostics</summary>\n");
    println!(
        "| target | offered rate | service p50 | service p99 | queue wait p99 | dispatcher lag p99 | CPU (% of a core, µs/call) | error kinds |"
    );
    println!("|---|---|---:|---:|---:|---:|---|---|");
    for row in rows {
        let s = &row.result.stats;
        let offered = row.mode.label();
        let lag = row
            .result
            .dispatch_lag
            .as_ref()
            .map_or("–".into(), |h| fmt_ms(ms(h, 0.99)));
        let kinds = s
            .errors
            .iter()
            .map(|(e, n)| format!("{e}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let queue = if matches!(row.mode, Mode::Rate(_)) {
            fmt_ms(ms(&s.queue_wait, 0.99))
        } else {
            "–".into()
        };
        let cpu = row
            .cpu
            .iter()
            .map(|u| format!("{} {:.0}% {:.0} µs", u.name, u.percent, u.micros_per_call))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.target,
            offered,
            fmt_ms(ms(&s.service, 0.5)),
            fmt_ms(ms(&s.service, 0.99)),
            queue,
            lag,
            cpu,
            if kinds.is_empty() {
                "–".into()
            } else {
                kinds
            },
        );
    }
    println!(
        "\nservice = actual send → response; queue wait = scheduled → picked up by a free connection; dispatcher lag = how late the generator released the call.\n</details>\n"
    );

    println!("Reproduce: `{}`", reproduce_command(args));
}

fn reproduce_command(args: &Args) -> String {
    let rates = args
        .rates
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = format!(
        "cargo bench --bench gateway -- --rates {rates} --duration {} --warmup {} \
         --open-connections {} --connections {} --saturation-duration {} --message-bytes {} \
         --generator-threads {} --timeout-ms {} --wait-idle {} --wait-idle-max {} --noisy-retries {}",
        args.duration,
        args.warmup,
        args.open_connections,
        args.connections,
        args.saturation_duration,
        args.message_bytes,
        args.generator_threads,
        args.timeout_ms,
        args.wait_idle,
        args.wait_idle_max,
        args.noisy_retries,
    );
    for (flag, value) in [
        (
            "--toolgate",
            args.toolgate.as_ref().map(|p| p.display().to_string()),
        ),
        ("--upstream-url", args.upstream_url.clone()),
        ("--gateway-url", args.gateway_url.clone()),
        ("--upstream-pid", args.upstream_pid.map(|p| p.to_string())),
        ("--gateway-pid", args.gateway_pid.map(|p| p.to_string())),
    ] {
        if let Some(value) = value {
            let _ = write!(cmd, " {flag} {value}");
        }
    }
    if args.direct_tool != "echo" {
        let _ = write!(cmd, " --direct-tool {}", args.direct_tool);
    }
    if args.gateway_tool != "echo__echo" {
        let _ = write!(cmd, " --gateway-tool {}", args.gateway_tool);
    }
    if !args.auth_rows {
        let _ = write!(cmd, " --auth-rows false");
    }
    if !args.integrity {
        let _ = write!(cmd, " --integrity false");
    }
    if !args.guardrails {
        let _ = write!(cmd, " --guardrails false");
    }
    if args.peer_nginx != "auto" {
        let _ = write!(cmd, " --peer-nginx {}", args.peer_nginx);
    }
    cmd
}
