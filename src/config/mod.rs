//! Configuration: `toolgate.toml` plus one `servers/*.toml` per upstream.
//!
//! Two layers. `Raw*` structs mirror the files (serde); [`Config::load`] turns
//! them into validated types where invalid states can't be represented. Every
//! problem in every file is collected into one [`ConfigErrors`] (file and key
//! each), so `toolgate check` shows them all at once. Secret references are
//! resolved after parsing (see [`secret`]).

pub mod auth;
pub mod egress;
pub mod secret;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use auth::{AuthConfig, IssuerConfig, Provider};
pub use egress::{HostResolver, UpstreamUrl};
pub use secret::Secret;

/// Default address: loopback only, so a fresh `toolgate serve` is not reachable
/// from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8088";
/// Default cap on one HTTP request body (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default cap on calls forwarded at once.
pub const DEFAULT_MAX_IN_FLIGHT_CALLS: usize = 4096;
/// Default cap on concurrent MCP sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Default cap on open client connections: two per session (its event
/// stream and its calls); lowered to what the open-files limit allows.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2 * DEFAULT_MAX_SESSIONS;
/// Largest `http.max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// Default time a request's head gets to arrive complete.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive connection stays open. Longer than
/// most clients' own idle timeouts, so a client rarely reuses a connection
/// the gateway is just closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Longest server name / prefix, so `{prefix}__{tool}` leaves room in 64 chars.
pub const MAX_SERVER_NAME: usize = 32;

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub http: HttpConfig,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// Most calls forwarded at once; beyond it a call is refused at once
    /// with a clear error (nothing queues without bound).
    pub max_in_flight_calls: usize,
    /// Upstreams, sorted by name: the order decides nothing but is stable.
    pub servers: Vec<ServerConfig>,
    /// The `toolgate.toml` this came from, if any.
    pub source: Option<PathBuf>,
    pub servers_dir: PathBuf,
    /// The Cedar schema and policies (`policies/`).
    pub policies_dir: PathBuf,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub audit: crate::audit::AuditConfig,
    pub approvals: ApprovalsConfig,
    /// How upstream host names are resolved (not a file setting: the
    /// system resolver, or a fixed table set by tests and embedders).
    /// Every answer is checked against link-local and metadata addresses.
    pub host_resolver: HostResolver,
}

/// How calls that approval gates hold behave (`[approvals]`).
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// The call stays open until its request is decided (true), or returns
    /// at once saying a request is pending, and the identical call made
    /// again goes through once it is approved (false).
    pub wait: bool,
    /// New requests and decisions are POSTed here (`[approvals.webhook]`).
    pub webhook: Option<ApprovalsWebhook>,
}

/// `[approvals.webhook]`: where and in which shape requests and decisions
/// are announced.
#[derive(Debug, Clone)]
pub struct ApprovalsWebhook {
    pub forward: crate::audit::forward::ForwardConfig,
    /// Slack's incoming-webhook shape (`{"text": …}`) instead of the
    /// generic `{"events": […]}`.
    pub slack: bool,
    /// The gateway's address as approvers reach it, for links to
    /// `/ui/approvals/{id}`.
    pub ui_url: Option<String>,
}

/// Where toolgate keeps state (API keys; later audit records, approvals).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// SQLite `toolgate.db` goes here unless `database_url` is set.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; may carry a password, so it is a secret.
    pub database_url: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `Host` header values accepted on `/mcp` (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// How clients reach toolgate (`https://toolgate.example.com`): the base
    /// of the URLs it hands out (protected-resource metadata, challenges,
    /// the SSO redirect). Unset: `http://` + the request's `Host` when it
    /// is an allowed host, else the listen address.
    pub public_url: Option<String>,
    /// Browser `Origin`s accepted; a request with any other `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Most concurrent MCP sessions; beyond it `initialize` is refused.
    pub max_sessions: usize,
    /// Plain `tools/call` requests to HTTP upstreams take the fast lane
    /// (`src/mcp/lane/`); `false` sends everything through rmcp.
    pub fast_lane: bool,
    /// A request's head must arrive complete within this, counted from
    /// the connection's opening (its first request) or from the request's
    /// first byte (later ones); else the connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and nothing arriving is
    /// closed after this long.
    pub idle_timeout: Duration,
    /// Most open client connections; `None`: as many as the open-files
    /// limit allows, at most [`DEFAULT_MAX_CONNECTIONS`] (see `listen`).
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Unique; `[A-Za-z0-9-]` and single `_`, never `__`, at most 32 chars.
    pub name: String,
    /// Namespace for tool and prompt names (`{prefix}__{name}`) and resource
    /// URIs (`{prefix}+{uri}`); empty keeps upstream names as they are.
    pub prefix: String,
    pub description: Option<String>,
    pub transport: Transport,
    pub tools: ToolFilter,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// What policies know of it (`Server` attributes: tags, env, trusted).
    pub facts: crate::authorize::ServerFacts,
    /// The file this server was declared in (for messages).
    pub file: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, Secret)>,
        cwd: Option<PathBuf>,
    },
    Http {
        /// Checked at load (no link-local or metadata address unless the
        /// server allows it); prints without credentials.
        url: UpstreamUrl,
        headers: Vec<(String, Secret)>,
    },
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }
}

/// Which upstream tools are exposed: `allow` first (default everything), then
/// `deny`. Patterns are exact names or `*` globs.
#[derive(Debug, Clone, Default)]
pub struct ToolFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ToolFilter {
    pub fn permits(&self, name: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|p| glob_match(p, name));
        allowed && !self.deny.iter().any(|p| glob_match(p, name))
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, or empty for a whole-file problem.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: `{}`: {}",
                self.file.display(),
                self.key,
                self.message
            )
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------- raw layer

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    listen: Option<String>,
    servers_dir: Option<PathBuf>,
    policies_dir: Option<PathBuf>,
    shutdown_grace: Option<String>,
    log_format: Option<String>,
    max_in_flight_calls: Option<usize>,
    #[serde(default)]
    http: RawHttp,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    #[serde(default)]
    auth: auth::RawAuth,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    approvals: RawApprovals,
}

#[derive(Debug, Default, Deserialize)]
struct RawApprovals {
    wait: Option<bool>,
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWebhook {
    url: Option<String>,
    authorization: Option<String>,
    batch: Option<usize>,
    interval: Option<String>,
    max_backoff: Option<String>,
    format: Option<String>,
    ui_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAudit {
    fail_open: Option<bool>,
    queue: Option<usize>,
    wait: Option<String>,
    checkpoint_interval: Option<String>,
    checkpoint_file: Option<PathBuf>,
    signing_key: Option<String>,
    #[serde(default)]
    secret_fields: Vec<String>,
    forward: Option<RawForward>,
    retain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawForward {
    url: Option<String>,
    authorization: Option<String>,
    batch: Option<usize>,
    interval: Option<String>,
    max_backoff: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawHttp {
    allowed_hosts: Option<Vec<String>>,
    public_url: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    max_body_bytes: Option<usize>,
    max_sessions: Option<usize>,
    fast_lane: Option<bool>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct RawServer {
    name: Option<String>,
    prefix: Option<String>,
    description: Option<String>,
    #[serde(default = "default_true")]
    enabled: bool,
    transport: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    /// Let this server's URL (and what its name resolves to) be a
    /// link-local or cloud-metadata address.
    #[serde(default)]
    allow_link_local: bool,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tools: RawToolFilter,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    policy: RawServerPolicy,
}

/// `[policy]` in a server file: what policies know of the server.
#[derive(Debug, Default, Deserialize)]
struct RawServerPolicy {
    #[serde(default)]
    tags: Vec<String>,
    env: Option<String>,
    #[serde(default)]
    trusted: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
struct RawToolFilter {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTimeouts {
    connect: Option<String>,
    call: Option<String>,
}

/// Collects errors for one file.
struct Report<'a> {
    file: &'a Path,
    errors: &'a mut Vec<ConfigError>,
}

impl Report<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// Parse a TOML file into `T`, reporting syntax errors (with line and column)
/// and *every* unknown key instead of stopping at the first.
fn parse_file<T: DeserializeOwned + Default>(text: &str, report: &mut Report<'_>) -> T {
    let mut unknown = Vec::new();
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            report.error("", format!("invalid TOML: {}", one_line(&e.to_string())));
            return T::default();
        }
    };
    let parsed: Result<T, _> =
        serde_ignored::deserialize(de, |path| unknown.push(path.to_string()));
    for key in unknown {
        report.error(
            &key,
            "unknown key (check the spelling; see README \"Configuration\")",
        );
    }
    match parsed {
        Ok(v) => v,
        Err(e) => {
            report.error("", one_line(&e.to_string()));
            T::default()
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Longest duration any setting may name (100 years): beyond it a value is
/// a typo, and adding it to a clock or counting it in milliseconds as `i64`
/// could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// `"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"7d"`; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let too_long = || format!("`{s}` is too long: at most 36500d (100 years)");
    let n: u64 = match num.parse() {
        Ok(n) => n,
        // All digits yet no u64: too many of them.
        Err(_) if !num.is_empty() => return Err(too_long()),
        Err(_) => {
            return Err(format!(
                "`{s}` is not a duration like \"500ms\", \"10s\", \"2m\""
            ));
        }
    };
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{s}`: unit must be ms, s, m, h or d (e.g. \"10s\")"
            ));
        }
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(too_long)
}

/// `text` as an absolute `http://` or `https://` URL with a host and no
/// user info (`https://a@b/` is a way to make `b` look like `a`), or why
/// not. Parsed by the `url` crate (WHATWG rules, as browsers and reqwest
/// read it), never by prefix.
pub fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}`: use an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(format!("`{text}` names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` carries user info before `@`: write the host alone (secrets go in their own keys)"
        ));
    }
    Ok(url)
}

/// Whether `url` is on this machine: an IP loopback address (127.0.0.0/8,
/// ::1) or exactly `localhost`.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// Server names become name prefixes: letters, digits, `-`, single `_`.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.contains("__")
        && !name.starts_with('_')
        && !name.ends_with('_')
}

impl Config {
    /// Find the config file: explicit path, else `./toolgate.toml` if present,
    /// else none (embedded defaults).
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit.map(Path::to_path_buf).or_else(|| {
            let default = PathBuf::from("toolgate.toml");
            default.is_file().then_some(default)
        })
    }

    /// Load and validate everything. `self_exe` is what `${self}` expands to in
    /// a server's command and args (the running toolgate binary).
    pub fn load(path: Option<&Path>, self_exe: &str) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let (raw, base) = match path {
            Some(path) => {
                let mut report = Report {
                    file: path,
                    errors: &mut errors,
                };
                let raw = match std::fs::read_to_string(path) {
                    Ok(text) => parse_file::<RawConfig>(&text, &mut report),
                    Err(e) => {
                        report.error("", format!("cannot read: {e}"));
                        RawConfig::default()
                    }
                };
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (raw, base)
            }
            None => (RawConfig::default(), PathBuf::new()),
        };
        let file = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<defaults>"));
        let mut report = Report {
            file: &file,
            errors: &mut errors,
        };

        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse::<SocketAddr>().unwrap_or_else(|_| {
            report.error(
                "listen",
                format!("`{listen}` is not an address like \"127.0.0.1:8088\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 8088))
        });
        let shutdown_grace = duration_or(
            &mut report,
            "shutdown_grace",
            raw.shutdown_grace.as_deref(),
            DEFAULT_SHUTDOWN_GRACE,
        );
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                report.error("log_format", format!("`{other}`: use \"text\" or \"json\""));
                LogFormat::Text
            }
        };
        let max_body_bytes = raw.http.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            report.error("http.max_body_bytes", "must be at least 1024");
        }
        let max_in_flight_calls = raw
            .max_in_flight_calls
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT_CALLS);
        if max_in_flight_calls == 0 {
            report.error("max_in_flight_calls", "must be at least 1");
        }
        let max_sessions = raw.http.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            report.error("http.max_sessions", "must be at least 1");
        }
        let header_read_timeout = positive_duration_or(
            &mut report,
            "http.header_read_timeout",
            raw.http.header_read_timeout.as_deref(),
            DEFAULT_HEADER_READ_TIMEOUT,
        );
        let idle_timeout = positive_duration_or(
            &mut report,
            "http.idle_timeout",
            raw.http.idle_timeout.as_deref(),
            DEFAULT_IDLE_TIMEOUT,
        );
        let max_connections = raw.http.max_connections;
        if max_connections.is_some_and(|n| n == 0 || n > MAX_MAX_CONNECTIONS) {
            report.error(
                "http.max_connections",
                format!(
                    "must be 1 to {MAX_MAX_CONNECTIONS}; leave it out to fit the open-files limit"
                ),
            );
        }
        let allowed_hosts = raw.http.allowed_hosts.unwrap_or_else(|| {
            vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "[::1]".into(),
                "::1".into(),
            ]
        });
        for (i, origin) in raw.http.allowed_origins.iter().enumerate() {
            if origin != "null" && !origin.contains("://") {
                report.error(
                    &format!("http.allowed_origins[{i}]"),
                    format!("`{origin}` needs a scheme, e.g. \"https://app.example.com\""),
                );
            }
        }
        let public_url = raw
            .http
            .public_url
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &public_url {
            let only_origin = http_url(url).and_then(|u| {
                if u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && !url.ends_with('#')
                    && !url.ends_with('?')
                {
                    Ok(())
                } else {
                    Err(format!("`{url}` has a path, query or fragment"))
                }
            });
            if let Err(why) = only_origin {
                report.error(
                    "http.public_url",
                    format!("{why}: scheme and host only, e.g. \"https://toolgate.example.com\""),
                );
            }
        }
        let data_dir = base.join(raw.data_dir.unwrap_or_else(|| PathBuf::from("data")));
        let database_url = raw.database_url.map(|url| {
            let url = secret::resolve(&url, &base, &[]).unwrap_or_else(|e| {
                report.error("database_url", e.to_string());
                String::new()
            });
            if !url.is_empty()
                && !url.starts_with("postgres://")
                && !url.starts_with("postgresql://")
                && !url.starts_with("sqlite:")
            {
                report.error("database_url", "use postgres://… or sqlite://…");
            }
            Secret::new(url)
        });
        let auth = auth::load(raw.auth, listen, public_url.as_deref(), &base, &mut report);
        let shared_db = database_url
            .as_ref()
            .is_some_and(|u| u.expose().starts_with("postgres"));
        if shared_db && auth.sso.as_ref().is_some_and(|s| s.cookie_key.is_none()) {
            report.error(
                "auth.sso.cookie_key",
                "with a shared database (several replicas) every replica must sign cookies alike: set cookie_key, e.g. \"${env:TOOLGATE_COOKIE_KEY}\"",
            );
        }
        let audit = load_audit(raw.audit, &data_dir, &base, listen, shared_db, &mut report);
        let approvals = load_approvals(raw.approvals, &base, &mut report);
        let servers_dir = base.join(raw.servers_dir.unwrap_or_else(|| PathBuf::from("servers")));
        let servers = load_servers(&servers_dir, self_exe, &mut errors);
        let policies_dir = base.join(
            raw.policies_dir
                .unwrap_or_else(|| PathBuf::from("policies")),
        );

        if errors.is_empty() {
            Ok(Config {
                listen,
                http: HttpConfig {
                    allowed_hosts,
                    public_url,
                    allowed_origins: raw.http.allowed_origins,
                    max_body_bytes,
                    max_sessions,
                    fast_lane: raw.http.fast_lane.unwrap_or(true),
                    header_read_timeout,
                    idle_timeout,
                    max_connections,
                },
                shutdown_grace,
                log_format,
                max_in_flight_calls,
                servers,
                source: path.map(Path::to_path_buf),
                servers_dir,
                policies_dir,
                storage: StorageConfig {
                    data_dir,
                    database_url,
                },
                auth,
                audit,
                approvals,
                host_resolver: HostResolver::default(),
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Most records the audit queue may hold.
const MAX_AUDIT_QUEUE: usize = 1_000_000;

fn load_audit(
    raw: RawAudit,
    data_dir: &Path,
    base: &Path,
    listen: SocketAddr,
    shared_db: bool,
    report: &mut Report<'_>,
) -> crate::audit::AuditConfig {
    let defaults = crate::audit::AuditConfig::defaults(data_dir);
    let fail_open = raw.fail_open.unwrap_or(false);
    if fail_open && !listen.ip().is_loopback() {
        report.error(
            "audit.fail_open",
            format!("listen is {listen}, beyond loopback: failing open (calls forwarded without an audit record) is for local development only"),
        );
    }
    let queue = raw.queue.unwrap_or(defaults.queue);
    if !(1..=MAX_AUDIT_QUEUE).contains(&queue) {
        report.error(
            "audit.queue",
            format!("{queue}: use 1 to {MAX_AUDIT_QUEUE} records"),
        );
    }
    let wait = duration_or(report, "audit.wait", raw.wait.as_deref(), defaults.wait);
    if wait.is_zero() {
        report.error("audit.wait", "must be more than 0s");
    }
    let checkpoint_interval = duration_or(
        report,
        "audit.checkpoint_interval",
        raw.checkpoint_interval.as_deref(),
        defaults.checkpoint_interval,
    );
    if checkpoint_interval < Duration::from_secs(1) {
        report.error("audit.checkpoint_interval", "must be at least 1s");
    }
    let retain = raw.retain.as_deref().map(|text| match parse_duration(text) {
        Ok(retain) if retain < Duration::from_secs(1) => {
            report.error(
                "audit.retain",
                format!("`{text}`: keep records at least 1s (e.g. \"90d\"), or leave `retain` out to keep them all"),
            );
            retain
        }
        Ok(retain) => retain,
        Err(e) => {
            report.error("audit.retain", e);
            Duration::ZERO
        }
    });
    let signing_key = raw.signing_key.map(|text| {
        let key = secret::resolve(&text, base, &[]).unwrap_or_else(|e| {
            report.error("audit.signing_key", e.to_string());
            String::new()
        });
        if !key.is_empty()
            && let Err(e) = crate::audit::SigningKey::from_text(&key)
        {
            report.error("audit.signing_key", e);
        }
        Secret::new(key)
    });
    if shared_db && signing_key.is_none() {
        report.error(
            "audit.signing_key",
            "with a shared database (several replicas) every replica must sign checkpoints with the same key: set signing_key, e.g. \"${env:TOOLGATE_AUDIT_KEY}\" (32 random bytes as hex: `openssl rand -hex 32`)",
        );
    }
    let forward = raw
        .forward
        .map(|f| load_forward(f, "audit.forward", base, report));
    crate::audit::AuditConfig {
        forward,
        fail_open,
        queue,
        wait,
        checkpoint_interval,
        checkpoint_file: raw
            .checkpoint_file
            .map(|f| base.join(f))
            .unwrap_or(defaults.checkpoint_file),
        signing_key,
        secret_fields: raw.secret_fields,
        retain,
    }
}

fn load_approvals(raw: RawApprovals, base: &Path, report: &mut Report<'_>) -> ApprovalsConfig {
    let webhook = raw.webhook.map(|w| {
        let slack = match w.format.as_deref() {
            None | Some("json") => false,
            Some("slack") => true,
            Some(other) => {
                report.error(
                    "approvals.webhook.format",
                    format!("`{other}`: use \"json\" (the generic payload) or \"slack\" (an incoming webhook)"),
                );
                false
            }
        };
        if let Some(ui) = &w.ui_url
            && let Err(why) = http_url(ui)
        {
            report.error(
                "approvals.webhook.ui_url",
                format!("{why}: the gateway's address as approvers open it, e.g. \"https://toolgate.example.com\""),
            );
        }
        let forward = RawForward {
            url: w.url,
            authorization: w.authorization,
            batch: w.batch,
            interval: w.interval,
            max_backoff: w.max_backoff,
        };
        ApprovalsWebhook {
            forward: load_forward(forward, "approvals.webhook", base, report),
            slack,
            ui_url: w.ui_url.map(|u| u.trim_end_matches('/').to_string()),
        }
    });
    ApprovalsConfig {
        wait: raw.wait.unwrap_or(true),
        webhook,
    }
}

/// A `[….forward]`-shaped table (`[audit.forward]`, `[approvals.webhook]`)
/// at `key`.
fn load_forward(
    f: RawForward,
    key: &str,
    base: &Path,
    report: &mut Report<'_>,
) -> crate::audit::forward::ForwardConfig {
    let url = f.url.unwrap_or_default();
    if let Err(why) = http_url(&url) {
        report.error(
            &format!("{key}.url"),
            format!(
                "{why}: the receiver's http(s):// URL, e.g. \"https://siem.example.com/ingest\""
            ),
        );
    }
    let batch = f.batch.unwrap_or(100);
    if !(1..=crate::audit::forward::MAX_BATCH).contains(&batch) {
        report.error(
            &format!("{key}.batch"),
            format!(
                "{batch}: use 1 to {} records per request",
                crate::audit::forward::MAX_BATCH
            ),
        );
    }
    let interval = duration_or(
        report,
        &format!("{key}.interval"),
        f.interval.as_deref(),
        Duration::from_secs(1),
    );
    if interval < Duration::from_millis(100) {
        report.error(&format!("{key}.interval"), "must be at least 100ms");
    }
    let max_backoff = duration_or(
        report,
        &format!("{key}.max_backoff"),
        f.max_backoff.as_deref(),
        Duration::from_secs(60),
    );
    let authorization = f.authorization.map(|text| {
        Secret::new(secret::resolve(&text, base, &[]).unwrap_or_else(|e| {
            report.error(&format!("{key}.authorization"), e.to_string());
            String::new()
        }))
    });
    crate::audit::forward::ForwardConfig {
        url,
        authorization,
        batch,
        interval,
        max_backoff,
    }
}

fn duration_or(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<&str>,
    default: Duration,
) -> Duration {
    match raw.map(parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            report.error(key, e);
            default
        }
    }
}

/// [`duration_or`] for a timeout, which cannot be zero.
fn positive_duration_or(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<&str>,
    default: Duration,
) -> Duration {
    let d = duration_or(report, key, raw, default);
    if d.is_zero() {
        report.error(key, "must be more than 0 (e.g. \"10s\")");
        return default;
    }
    d
}

fn load_servers(dir: &Path, self_exe: &str, errors: &mut Vec<ConfigError>) -> Vec<ServerConfig> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(ConfigError {
                file: dir.to_path_buf(),
                key: String::new(),
                message: format!("cannot list servers: {e}"),
            });
            return Vec::new();
        }
    };
    files.sort();
    let mut servers: Vec<ServerConfig> = Vec::new();
    let mut by_name: HashMap<String, PathBuf> = HashMap::new();
    let mut by_prefix: HashMap<String, String> = HashMap::new();
    for file in files {
        let mut report = Report {
            file: &file,
            errors,
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                report.error("", format!("cannot read: {e}"));
                continue;
            }
        };
        let raw: RawServer = parse_file(&text, &mut report);
        if !raw.enabled {
            continue;
        }
        let Some(server) = validate_server(raw, &file, self_exe, &mut report) else {
            continue;
        };
        if let Some(other) = by_name.insert(server.name.clone(), file.clone()) {
            report.error(
                "name",
                format!(
                    "server `{}` is also declared in {}; names must be unique",
                    server.name,
                    other.display()
                ),
            );
            continue;
        }
        if !server.prefix.is_empty()
            && let Some(other) = by_prefix.insert(server.prefix.clone(), server.name.clone())
        {
            report.error(
                "prefix",
                format!(
                    "prefix `{}` is also used by server `{other}`; tool names would collide",
                    server.prefix
                ),
            );
            continue;
        }
        servers.push(server);
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    servers
}

fn validate_server(
    raw: RawServer,
    file: &Path,
    self_exe: &str,
    report: &mut Report<'_>,
) -> Option<ServerConfig> {
    let before = report.errors.len();
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = raw.name.unwrap_or(stem);
    if !valid_server_name(&name) {
        report.error("name", format!("`{name}`: use 1-{MAX_SERVER_NAME} letters, digits, `-` or single `_` (no `__`, which separates prefix and tool)"));
    }
    let prefix = raw.prefix.unwrap_or_else(|| name.clone());
    if !prefix.is_empty() && !valid_server_name(&prefix) {
        report.error(
            "prefix",
            format!(
                "`{prefix}`: use \"\" or 1-{MAX_SERVER_NAME} letters, digits, `-` or single `_`"
            ),
        );
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let extra = [("self", self_exe)];
    let resolve = |key: &str, value: &str, report: &mut Report<'_>| -> String {
        secret::resolve(value, base, &extra).unwrap_or_else(|e| {
            report.error(key, e.to_string());
            String::new()
        })
    };
    let transport = match raw.transport.as_deref() {
        Some("stdio") => {
            for (key, present) in [
                ("url", raw.url.is_some()),
                ("allow_link_local", raw.allow_link_local),
                ("headers", !raw.headers.is_empty()),
            ] {
                if present {
                    report.error(key, "only for transport = \"http\"");
                }
            }
            let command = match raw.command.as_deref() {
                Some(c) if !c.trim().is_empty() => resolve("command", c, report),
                _ => {
                    report.error(
                        "command",
                        "required for transport = \"stdio\" (the program to run, e.g. \"npx\")",
                    );
                    String::new()
                }
            };
            let args = raw
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| resolve(&format!("args[{i}]"), a, report))
                .collect();
            let env = raw
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Secret::new(resolve(&format!("env.{k}"), v, report)),
                    )
                })
                .collect();
            let cwd = raw.cwd.map(|c| base.join(c));
            Some(Transport::Stdio {
                command,
                args,
                env,
                cwd,
            })
        }
        Some("http") => {
            for (key, present) in [
                ("command", raw.command.is_some()),
                ("args", !raw.args.is_empty()),
                ("env", !raw.env.is_empty()),
                ("cwd", raw.cwd.is_some()),
            ] {
                if present {
                    report.error(key, "only for transport = \"stdio\"");
                }
            }
            let url = match raw.url.as_deref() {
                Some(u) => {
                    let mut from_refs = Vec::new();
                    match secret::resolve_recording(u, base, &extra, &mut from_refs) {
                        Ok(text) => UpstreamUrl::parse(&text, &from_refs, raw.allow_link_local)
                            .map_err(|e| report.error("url", e.to_string()))
                            .ok(),
                        Err(e) => {
                            report.error("url", e.to_string());
                            None
                        }
                    }
                }
                None => {
                    report.error(
                        "url",
                        "required for transport = \"http\" (e.g. \"http://127.0.0.1:3001/mcp\")",
                    );
                    None
                }
            };
            let headers: Vec<(String, Secret)> = raw
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Secret::new(resolve(&format!("headers.{k}"), v, report)),
                    )
                })
                .collect();
            url.map(|mut url| {
                url.mask_also(headers.iter().map(|(_, v)| v.expose()));
                Transport::Http { url, headers }
            })
        }
        Some(other) => {
            report.error("transport", format!("`{other}`: use \"stdio\" or \"http\""));
            return None;
        }
        None => {
            report.error("transport", "required: \"stdio\" or \"http\"");
            return None;
        }
    };
    for (list, key) in [
        (&raw.tools.allow, "tools.allow"),
        (&raw.tools.deny, "tools.deny"),
    ] {
        for (i, p) in list.iter().enumerate() {
            if p.is_empty() {
                report.error(&format!("{key}[{i}]"), "empty pattern");
            }
        }
    }
    let connect_timeout = duration_or(
        report,
        "timeouts.connect",
        raw.timeouts.connect.as_deref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let call_timeout = duration_or(
        report,
        "timeouts.call",
        raw.timeouts.call.as_deref(),
        DEFAULT_CALL_TIMEOUT,
    );
    if report.errors.len() > before {
        return None;
    }
    let transport = transport?;
    Some(ServerConfig {
        name: name.clone(),
        prefix,
        description: raw.description,
        transport,
        tools: ToolFilter {
            allow: raw.tools.allow,
            deny: raw.tools.deny,
        },
        connect_timeout,
        call_timeout,
        facts: crate::authorize::ServerFacts {
            name: name.clone(),
            tags: raw.policy.tags,
            env: raw.policy.env.unwrap_or_default(),
            trusted: raw.policy.trusted,
        },
        file: file.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "x"));
        assert!(glob_match("get_*", "get_time"));
        assert!(!glob_match("get_*", "set_time"));
        assert!(glob_match("*_note*", "delete_notes"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXcYb"));
        let f = ToolFilter {
            allow: vec!["*".into()],
            deny: vec!["delete_*".into()],
        };
        assert!(f.permits("add") && !f.permits("delete_x"));
    }

    #[test]
    fn names() {
        assert!(valid_server_name("notes"));
        assert!(valid_server_name("my_srv-2"));
        assert!(!valid_server_name("a__b"));
        assert!(!valid_server_name("_a"));
        assert!(!valid_server_name("a.b"));
        assert!(!valid_server_name(&"x".repeat(33)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn durations_at_and_past_the_bound_and_overflow() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("876000h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("52560000m"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("3153600000s"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("3153600000000ms"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for too_long in [
            "36501d",
            "876001h",
            "52560001m",
            "3153600001s",
            "3153600000001ms",
            // These overflowed `n * 60` / `n * 3600` (a panic in debug
            // builds, a wrapped short duration in release ones).
            "307445734561825861m",
            "5124095576030432h",
            "18446744073709551615m",
            "18446744073709551615h",
            "18446744073709551615d",
            "18446744073709551615s",
            // More digits than a u64 holds.
            "99999999999999999999999s",
        ] {
            let err = parse_duration(too_long).expect_err(too_long);
            assert!(err.contains("too long"), "{too_long}: {err}");
        }
        for bad in ["-1s", "1.5h", "1 h", "h1", "1H", "1w", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_without_any_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("toolgate.toml");
        write(dir.path(), "toolgate.toml", "");
        let cfg = Config::load(Some(&cfg_path), "/bin/toolgate").expect("valid");
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert!(cfg.servers.is_empty());
        assert_eq!(cfg.http.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(cfg.http.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(cfg.http.max_connections, None);
    }

    #[test]
    fn connection_limits_must_be_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (line, needle) in [
            (
                "header_read_timeout = \"0s\"",
                "`http.header_read_timeout`: must be more than 0",
            ),
            (
                "idle_timeout = \"0ms\"",
                "`http.idle_timeout`: must be more than 0",
            ),
            ("idle_timeout = \"soon\"", "`http.idle_timeout`: `soon`"),
            (
                "max_connections = 0",
                "`http.max_connections`: must be 1 to 1000000",
            ),
            (
                "max_connections = 1000001",
                "`http.max_connections`: must be 1 to 1000000",
            ),
        ] {
            write(dir.path(), "toolgate.toml", &format!("[http]\n{line}\n"));
            let err = Config::load(Some(&dir.path().join("toolgate.toml")), "tg")
                .expect_err(line)
                .to_string();
            assert!(err.contains(needle), "{line}: {err}");
        }
        write(
            dir.path(),
            "toolgate.toml",
            "[http]\nheader_read_timeout = \"2s\"\nidle_timeout = \"5m\"\nmax_connections = 50\n",
        );
        let cfg = Config::load(Some(&dir.path().join("toolgate.toml")), "tg").expect("valid");
        assert_eq!(cfg.http.header_read_timeout, Duration::from_secs(2));
        assert_eq!(cfg.http.idle_timeout, Duration::from_secs(300));
        assert_eq!(cfg.http.max_connections, Some(50));
    }

    #[test]
    fn audit_retention_is_a_duration_of_at_least_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("toolgate.toml");
        for (line, needle) in [
            (
                "retain = \"0s\"",
                "`audit.retain`: `0s`: keep records at least 1s",
            ),
            (
                "retain = \"500ms\"",
                "`audit.retain`: `500ms`: keep records at least 1s",
            ),
            ("retain = \"forever\"", "`audit.retain`: `forever`"),
        ] {
            write(dir.path(), "toolgate.toml", &format!("[audit]\n{line}\n"));
            let err = Config::load(Some(&path), "tg").expect_err(line).to_string();
            assert!(err.contains(needle), "{line}: {err}");
            assert!(err.contains("1 configuration error"), "{line}: {err}");
        }
        write(dir.path(), "toolgate.toml", "[audit]\nretain = \"90d\"\n");
        let cfg = Config::load(Some(&path), "tg").expect("valid");
        assert_eq!(cfg.audit.retain, Some(Duration::from_secs(90 * 86_400)));
        write(dir.path(), "toolgate.toml", "");
        let cfg = Config::load(Some(&path), "tg").expect("valid");
        assert_eq!(cfg.audit.retain, None);
    }

    #[test]
    fn every_error_at_once_with_file_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let servers = dir.path().join("servers");
        std::fs::create_dir(&servers).expect("mkdir");
        write(
            dir.path(),
            "toolgate.toml",
            "listen = \"nope\"\nbogus = 1\n",
        );
        write(
            &servers,
            "a.toml",
            "transport = \"stdio\"\ncomand = \"x\"\n[timeouts]\ncall = \"forever\"\n",
        );
        write(
            &servers,
            "b.toml",
            "name = \"a\"\ntransport = \"http\"\nurl = \"ftp://x\"\n",
        );
        write(
            &servers,
            "c.toml",
            "transport = \"http\"\nurl = \"${env:TOOLGATE_SURELY_UNSET}\"\n",
        );
        let err = Config::load(Some(&dir.path().join("toolgate.toml")), "tg").expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "`bogus`: unknown key",
            "`listen`",
            "a.toml: `comand`: unknown key",
            "a.toml: `command`: required",
            "`timeouts.call`",
            "b.toml: `url`: `ftp://x/` must start with http:// or https://",
            "c.toml: `url`: environment variable `TOOLGATE_SURELY_UNSET`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn duplicate_names_and_prefixes_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "toolgate.toml", "");
        let servers = dir.path().join("servers");
        std::fs::create_dir(&servers).expect("mkdir");
        write(
            &servers,
            "one.toml",
            "transport = \"http\"\nurl = \"http://x/mcp\"\nprefix = \"p\"\n",
        );
        write(
            &servers,
            "two.toml",
            "transport = \"http\"\nurl = \"http://y/mcp\"\nprefix = \"p\"\n",
        );
        let err = Config::load(Some(&dir.path().join("toolgate.toml")), "tg").expect_err("dup");
        assert!(
            err.to_string()
                .contains("prefix `p` is also used by server `one`"),
            "{err}"
        );
    }

    #[test]
    fn self_reference_and_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "toolgate.toml", "");
        let servers = dir.path().join("servers");
        std::fs::create_dir(&servers).expect("mkdir");
        write(&servers, "tok", "abc\n");
        write(
            &servers,
            "s.toml",
            "transport = \"stdio\"\ncommand = \"${self}\"\nargs = [\"reference\", \"notes\"]\nenv = { TOKEN = \"${file:tok}\" }\n",
        );
        let cfg = Config::load(Some(&dir.path().join("toolgate.toml")), "/opt/tg").expect("valid");
        let Transport::Stdio { command, env, .. } = &cfg.servers[0].transport else {
            panic!("stdio")
        };
        assert_eq!(command, "/opt/tg");
        assert_eq!(env[0].1.expose(), "abc");
        assert!(!format!("{:?}", cfg.servers[0]).contains("abc"));
    }
}
