//! Configuration: `toolgate.toml` plus one `servers/*.toml` per upstream.
//!
//! Two layers. `Raw*` structs mirror the files (serde); [`Config::load`] turns
//! them into validated types where invalid states can't be represented. Every
//! problem in every file is collected into one [`ConfigErrors`] (file and key
//! each), so `toolgate check` shows them all at once. Secret references are
//! resolved after parsing (see [`secret`]).
//!
//! The ground floor above `util`: config imports nothing else of toolgate,
//! so every other module may read it. One file per concern, each with the
//! `Raw*` types and the validation of its section:
//! - here: [`Config`], [`Config::load`] (the top level, `[http]`, storage),
//!   the errors and the defaults;
//! - `raw.rs`: `toolgate.toml` as read, and what every section's validation
//!   shares (the error report, TOML parsing, durations with defaults);
//! - `values.rs`: durations and URLs, also parsed outside config;
//! - `servers.rs`: `servers/*.toml` (upstreams, their tool filters, what
//!   policies know of them);
//! - `audit.rs`, `forward.rs`, `approvals.rs`: `[audit]`, the
//!   `[….forward]` shape, `[approvals]`;
//! - [`llm`]: `[llm]` (providers, model routes, retries, the breaker);
//! - [`auth`], [`egress`] (upstream URLs and where they may point), [`secret`].

mod approvals;
mod audit;
pub mod auth;
pub mod egress;
mod forward;
pub mod integrity;
pub mod llm;
mod raw;
pub mod secret;
mod servers;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use approvals::{ApprovalsConfig, ApprovalsWebhook};
pub use audit::AuditConfig;
pub use auth::{AuthConfig, IssuerConfig, Provider};
pub use egress::{HostResolver, UpstreamUrl};
pub use forward::{ForwardConfig, MAX_FORWARD_BATCH};
pub use integrity::{IntegrityConfig, Labels, LintMode, PinMode};
pub use llm::{
    EntraCredentials, LlmConfig, ModelRoute, ProviderAuth, ProviderConfig, ProviderKind,
    RouteTarget, StreamWindow,
};
pub use secret::Secret;
pub use servers::{
    MAX_SERVER_NAME, ServerConfig, ServerFacts, ToolFilter, Transport, glob_match,
    valid_server_name,
};
pub use values::{MAX_DURATION, http_url, is_loopback_url, parse_duration};

use approvals::load_approvals;
use audit::load_audit;
use raw::{RawConfig, Report, duration_or, parse_file, positive_duration_or};
use servers::load_servers;

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
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    pub audit: AuditConfig,
    pub approvals: ApprovalsConfig,
    /// LLM providers and model routes (`[llm]`).
    pub llm: LlmConfig,
    /// How upstream host names are resolved (not a file setting: the
    /// system resolver, or a fixed table set by tests and embedders).
    /// Every answer is checked against link-local and metadata addresses.
    pub host_resolver: HostResolver,
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
    /// (`src/mcp/ingress/lane.rs`); `false` sends everything through rmcp.
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
        let llm = llm::load_llm(raw.llm, &base, &mut report);
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
                llm,
                host_resolver: HostResolver::default(),
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
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
}
