//! Shared test scaffolding: a real gateway on 127.0.0.1:0, real rmcp
//! upstreams (in-process over HTTP, or the toolgate binary's reference
//! servers over stdio), and a real rmcp client that records what it hears.

#![expect(
    deprecated,
    reason = "sampling is deprecated by SEP-2577 but still tested"
)]
#![allow(dead_code, reason = "each test uses a subset")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation, ProgressNotificationParam, ProtocolVersion, SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use tokio_util::sync::CancellationToken;
use toolgate::app::HttpServer;
use toolgate::config::Config;

pub mod idp;
pub mod postgres;

pub const TOOLGATE: &str = env!("CARGO_BIN_EXE_toolgate");

/// `dir/policies` with the repository's schema and `files` (name, text);
/// the default `policies_dir` of a toolgate.toml in `dir`.
pub fn write_policies(dir: &std::path::Path, files: &[(&str, &str)]) {
    let policy_dir = dir.join("policies");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
        policy_dir.join("schema.cedarschema"),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(policy_dir.join(format!("{name}.cedar")), text).unwrap();
    }
}

/// A policy file that allows everything (tests of other stages).
pub const ALLOW_ALL: (&str, &str) = (
    "allow-all",
    "@id(\"test-allow-all\")\npermit (principal, action, resource);\n",
);

/// Serve an rmcp handler over streamable HTTP on 127.0.0.1:0; returns its
/// `/mcp` URL. Stops when `ct` is cancelled.
pub async fn http_upstream<S, F>(make: F, ct: CancellationToken) -> String
where
    S: rmcp::ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    http_upstream_at("127.0.0.1:0", make, ct).await
}

/// [`http_upstream`] on a given address (to restart one where it was).
pub async fn http_upstream_at<S, F>(addr: &str, make: F, ct: CancellationToken) -> String
where
    S: rmcp::ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    serve_upstream(addr, make, ct, None).await
}

/// Request headers an upstream saw, in order.
pub type SeenHeaders = Arc<std::sync::Mutex<Vec<axum::http::HeaderMap>>>;

/// [`http_upstream`] that keeps every request's headers.
pub async fn http_upstream_recording<S, F>(make: F, ct: CancellationToken) -> (String, SeenHeaders)
where
    S: rmcp::ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let seen = SeenHeaders::default();
    let url = serve_upstream("127.0.0.1:0", make, ct, Some(seen.clone())).await;
    (url, seen)
}

async fn serve_upstream<S, F>(
    addr: &str,
    make: F,
    ct: CancellationToken,
    record: Option<SeenHeaders>,
) -> String
where
    S: rmcp::ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let service = StreamableHttpService::new(
        move || Ok(make()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(ct.child_token()),
    );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(seen) = record {
        router = router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                seen.lock().unwrap().push(request.headers().clone());
                next.run(request)
            },
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_until(listener, router, ct);
    format!("http://{addr}/mcp")
}

/// Serve `router` on `listener` until `ct` is cancelled.
pub fn serve_until(listener: tokio::net::TcpListener, router: axum::Router, ct: CancellationToken) {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { ct.cancelled().await })
            .await
            .unwrap();
    });
}

/// A gateway under test, with its config directory.
pub struct Gateway {
    pub server: Option<HttpServer>,
    pub addr: SocketAddr,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Start a gateway with `servers` as (file name, TOML) and extra
    /// toolgate.toml lines, in dev mode (loopback callers need no
    /// credential).
    pub async fn start(servers: &[(&str, String)], extra: &str) -> Gateway {
        Self::start_with(servers, extra, true).await
    }

    /// [`Gateway::start`], choosing dev mode; every call is allowed by
    /// policy (see [`Gateway::start_governed`]).
    pub async fn start_with(
        servers: &[(&str, String)],
        extra: &str,
        dev_insecure: bool,
    ) -> Gateway {
        Self::start_governed(servers, extra, dev_insecure, &[ALLOW_ALL]).await
    }

    /// [`Gateway::start_with`] under the repository's Cedar schema and
    /// these policy files (name, text) instead of allow-all.
    pub async fn start_governed(
        servers: &[(&str, String)],
        extra: &str,
        dev_insecure: bool,
        policies: &[(&str, &str)],
    ) -> Gateway {
        Self::start_configured(servers, extra, dev_insecure, policies, |_| {}).await
    }

    /// [`Gateway::start_governed`], with `tweak` applied to the loaded
    /// config (what files cannot set, e.g. a fixed host resolver).
    pub async fn start_configured(
        servers: &[(&str, String)],
        extra: &str,
        dev_insecure: bool,
        policies: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        Self::start_inspected(servers, extra, dev_insecure, policies, tweak, Vec::new()).await
    }

    /// [`Gateway::start_configured`], with `inspectors` in the pipeline's
    /// inspect stages.
    pub async fn start_inspected(
        servers: &[(&str, String)],
        extra: &str,
        dev_insecure: bool,
        policies: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
        inspectors: Vec<Arc<dyn toolgate::call::Inspect>>,
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        write_policies(dir.path(), policies);
        std::fs::create_dir(dir.path().join("servers")).unwrap();
        for (name, text) in servers {
            std::fs::write(
                dir.path().join("servers").join(format!("{name}.toml")),
                text,
            )
            .unwrap();
        }
        let cfg = dir.path().join("toolgate.toml");
        std::fs::write(
            &cfg,
            format!("listen = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{extra}\n"),
        )
        .unwrap();
        let mut config = Config::load(Some(&cfg), TOOLGATE).unwrap_or_else(|e| panic!("{e}"));
        config.auth.dev_insecure |= dev_insecure;
        tweak(&mut config);
        let server = HttpServer::start_inspected(config, inspectors)
            .await
            .unwrap();
        let addr = server.addr;
        Gateway {
            server: Some(server),
            addr,
            url: format!("http://{addr}/mcp"),
            dir,
        }
    }

    pub fn gateway(&self) -> &Arc<toolgate::app::Gateway> {
        &self.server.as_ref().unwrap().gateway
    }

    /// Wait until `/readyz` lists every upstream as ready (or `names` are).
    pub async fn wait_ready(&self, names: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self.gateway().readiness();
            let up = body["upstreams"].as_array().unwrap();
            let ready = names.iter().all(|n| {
                up.iter()
                    .any(|u| u["name"] == *n && u["health"]["state"] == "ready")
            });
            if ready && body["tools"].as_u64().unwrap_or(0) > 0 {
                // Give the catalog task a moment after the last listing.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "upstreams never became ready: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Until `/readyz` answers 200 (every upstream tried, every identity
    /// provider's keys in).
    pub async fn wait_readyz(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = reqwest::get(format!("http://{}/readyz", self.addr))
                .await
                .unwrap();
            if r.status() == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}",
                r.text().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Policy files as [`Gateway::start_governed`] takes them.
    pub fn policy_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
        files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect()
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

pub fn http_server_toml(name: &str, url: &str, extra: &str) -> String {
    format!("name = \"{name}\"\ntransport = \"http\"\nurl = \"{url}\"\n{extra}\n")
}

/// A stdio upstream running `toolgate reference KIND`.
pub fn stdio_reference_toml(name: &str, kind: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ntransport = \"stdio\"\ncommand = \"${{self}}\"\nargs = [\"reference\", \"{kind}\"]\n{extra}\n"
    )
}

/// What the test client heard.
#[derive(Default)]
pub struct Heard {
    pub progress: Mutex<Vec<ProgressNotificationParam>>,
    pub tools_changed: AtomicUsize,
    pub sampling_requests: AtomicUsize,
    pub elicitations: AtomicUsize,
    /// The messages of the elicitations received.
    pub elicited: Mutex<Vec<String>>,
    /// Sampling requests the server cancelled while we were answering.
    pub sampling_cancelled: AtomicUsize,
    /// URIs of `notifications/resources/updated` received.
    pub resource_updates: Mutex<Vec<String>>,
}

/// A client that answers sampling with "42" and accepts elicitations
/// (with `allow: true`), but declines those whose message says DECLINE.
#[derive(Clone, Default)]
pub struct TestClient {
    pub heard: Arc<Heard>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(caps, Implementation::new("toolgate-test", "1"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.heard.sampling_requests.fetch_add(1, Ordering::SeqCst);
        if params
            .messages
            .iter()
            .any(|m| format!("{m:?}").contains("take your time"))
        {
            // Answer only when told to stop: the server must cancel.
            ctx.ct.cancelled().await;
            self.heard.sampling_cancelled.fetch_add(1, Ordering::SeqCst);
            return Err(ErrorData::internal_error("cancelled", None));
        }
        // Report progress on the server's request: it must reach the upstream.
        if let Some(token) = ctx.meta.get_progress_token() {
            let _ = ctx
                .peer
                .notify_progress(ProgressNotificationParam::new(token, 0.5))
                .await;
        }
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text("42"),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.heard.elicitations.fetch_add(1, Ordering::SeqCst);
        let message = serde_json::to_value(&params).unwrap()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let decline = message.contains("DECLINE");
        self.heard.elicited.lock().unwrap().push(message);
        if decline {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        }
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(serde_json::json!({"answer": "yes", "allow": true})))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.heard.progress.lock().unwrap().push(params);
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.heard.resource_updates.lock().unwrap().push(params.uri);
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.heard.tools_changed.fetch_add(1, Ordering::SeqCst);
    }
}

pub type Client = RunningService<RoleClient, TestClient>;

pub async fn connect(url: &str) -> (Client, Arc<Heard>) {
    let handler = TestClient::default();
    let heard = handler.heard.clone();
    let client = handler
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .unwrap();
    (client, heard)
}

/// [`connect`] with an API key (or any bearer token).
pub async fn connect_with_key(url: &str, key: &str) -> (Client, Arc<Heard>) {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let handler = TestClient::default();
    let heard = handler.heard.clone();
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(key);
    let client = handler
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    (client, heard)
}

pub fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(name.to_string());
    p.arguments = args.as_object().cloned();
    p
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

pub async fn tool_names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// Poll `f` until it returns true (every 25 ms, up to `limit`).
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Pids of live processes whose environment carries `marker`.
pub fn processes_with_env(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let environ: PathBuf = e.path().join("environ");
        if let Ok(bytes) = std::fs::read(environ)
            && bytes.split(|b| *b == 0).any(|kv| kv == marker.as_bytes())
        {
            // Skip zombies: they are gone, only unreaped.
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if !stat.contains(") Z ") {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Two tests of `$body`: on SQLite, and on a fresh PostgreSQL database
/// `$db` (skipped without PostgreSQL, unless it is required). The caller
/// has the integration tests' `Backend` in scope.
macro_rules! on_both_stores {
    ($body:ident, $sqlite:ident, $postgres:ident, $db:literal) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(Backend::Sqlite).await;
        }

        #[tokio::test]
        async fn $postgres() {
            if let Some(backend) = Backend::postgres($db).await {
                $body(backend).await;
            }
        }
    };
}

/// `toolgate stdio` with the config in `dir`, spoken to line by line (raw
/// JSON-RPC, so what it writes is seen as written).
pub struct RawStdio {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl RawStdio {
    pub fn start(dir: &std::path::Path) -> RawStdio {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(TOOLGATE)
            .arg("--config")
            .arg(dir.join("toolgate.toml"))
            .arg("stdio")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        RawStdio {
            child,
            stdin,
            stdout,
        }
    }

    /// Write one line (a message, or raw text).
    pub async fn send(&mut self, line: impl std::fmt::Display) {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next message, whatever it is.
    pub async fn next(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("a message in time")
            .unwrap()
            .expect("stdout open");
        serde_json::from_str(&line).unwrap()
    }

    /// The next answer (a message with an id), notifications skipped.
    pub async fn next_answer(&mut self) -> serde_json::Value {
        loop {
            let message = self.next().await;
            if message.get("id").is_some() {
                return message;
            }
        }
    }

    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// `GET /admin/v1/status` with `key`: status code and body.
pub async fn admin_status(addr: SocketAddr, key: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/admin/v1/status"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
