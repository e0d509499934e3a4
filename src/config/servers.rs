//! `servers/*.toml`: one upstream MCP server per file, validated into a
//! [`ServerConfig`] (its transport, which tools it exposes, its timeouts)
//! and the [`ServerFacts`] policies see. Names and prefixes are unique
//! across files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::raw::{Report, duration_or, parse_file};
use super::{ConfigError, Secret, UpstreamUrl, secret};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest server name / prefix, so `{prefix}__{tool}` leaves room in 64 chars.
pub const MAX_SERVER_NAME: usize = 32;

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
    pub facts: ServerFacts,
    /// How its tool definitions are pinned and linted, and its tools'
    /// flow labels (`[integrity]`).
    pub integrity: super::IntegrityConfig,
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

/// What a server contributes to decisions (from `servers/*.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerFacts {
    pub name: String,
    pub tags: Vec<String>,
    pub env: String,
    /// Its tool annotations are believed.
    pub trusted: bool,
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
    #[serde(default)]
    integrity: super::integrity::RawIntegrity,
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

pub(super) fn load_servers(
    dir: &Path,
    self_exe: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<ServerConfig> {
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
    let integrity = super::integrity::validate(raw.integrity, report);
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
        facts: ServerFacts {
            name: name.clone(),
            tags: raw.policy.tags,
            env: raw.policy.env.unwrap_or_default(),
            trusted: raw.policy.trusted,
        },
        integrity,
        file: file.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
