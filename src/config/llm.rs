//! `[llm]` in `toolgate.toml`: the LLM providers toolgate may call, the
//! model names callers use (aliases, each routed to weighted targets), and
//! how failures are retried and isolated. The gateway itself is
//! `crate::llm`'s.
//!
//! ```toml
//! [llm.providers.openai]
//! kind = "openai"                        # or "azure", "anthropic", "openai-compatible"
//! api_key = "${env:OPENAI_API_KEY}"      # by reference; never logged, never the caller's
//!
//! [llm.providers.local]
//! kind = "openai-compatible"             # vLLM, Ollama, LM Studio, llama.cpp, toolgate reference llm
//! base_url = "http://127.0.0.1:11434/v1"
//!
//! [llm.models.fast]                      # what callers name in "model"
//! targets = [
//!   { provider = "openai", model = "gpt-4o-mini", weight = 3 },
//!   { provider = "local", model = "llama3.1", timeout = "30s" },
//! ]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::egress::UpstreamUrl;
use super::raw::{Report, duration_or, positive_duration_or};
use super::secret::{self, Secret};

/// What `[llm]` configures.
#[derive(Debug, Clone, Default)]
pub struct LlmConfig {
    /// Providers by name.
    pub providers: BTreeMap<String, Arc<ProviderConfig>>,
    /// Routes by the model name callers use.
    pub models: BTreeMap<String, Arc<ModelRoute>>,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    /// Longest wait for the next chunk of a stream once it has begun.
    pub stream_idle_timeout: Duration,
    pub stream_window: StreamWindow,
}

/// How a streamed answer is inspected (`[llm.stream_window]`): chunks are
/// held until `bytes` of text (or a chunk count) have come, or the first
/// held chunk has waited `wait`; then the guardrails read the window's
/// text per channel (a choice's content, a tool call's arguments) joined,
/// with the last `overlap` bytes already sent before it, so text that
/// spans chunks and windows is read whole. A redaction is applied before
/// the window is sent; a block ends the stream with an error event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWindow {
    pub bytes: usize,
    pub wait: Duration,
    pub overlap: usize,
}

impl Default for StreamWindow {
    fn default() -> Self {
        Self {
            bytes: 256,
            wait: Duration::from_millis(50),
            overlap: 128,
        }
    }
}

/// Most bytes a window (or its overlap) may be set to hold.
pub const MAX_STREAM_WINDOW: usize = 64 * 1024;

/// The API a provider speaks, and so how toolgate talks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI's API (`Authorization: Bearer`).
    OpenAi,
    /// Azure OpenAI: deployments, `api-version`, the `api-key` header or
    /// an Entra ID token.
    Azure,
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`).
    Anthropic,
    /// Any server speaking OpenAI's API at a base URL (vLLM, Ollama, LM
    /// Studio, llama.cpp, hosted compatibles, `toolgate reference llm`).
    OpenAiCompatible,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            ProviderKind::OpenAi,
            ProviderKind::Azure,
            ProviderKind::Anthropic,
            ProviderKind::OpenAiCompatible,
        ]
        .into_iter()
        .find(|k| k.name() == text)
    }

    /// Where the provider lives unless `base_url` says otherwise.
    fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Azure | ProviderKind::OpenAiCompatible => None,
        }
    }

    /// Whether it speaks OpenAI's chat completions natively.
    pub fn speaks_openai(self) -> bool {
        !matches!(self, ProviderKind::Anthropic)
    }
}

/// How toolgate proves itself to a provider: its own credential, never
/// the caller's.
#[derive(Debug, Clone)]
pub enum ProviderAuth {
    /// Nothing (a local server).
    None,
    /// `Authorization: Bearer …` (OpenAI, compatibles; Azure with an
    /// Entra ID token).
    Bearer(Secret),
    /// Azure's `api-key` header.
    AzureKey(Secret),
    /// Anthropic's `x-api-key` header.
    AnthropicKey(Secret),
    /// Azure with Entra ID: toolgate's own app token (client
    /// credentials), fetched and renewed before it expires.
    Entra(EntraCredentials),
}

/// An app registration toolgate signs in as to call Azure OpenAI
/// (`[llm.providers.NAME.entra]`).
#[derive(Debug, Clone)]
pub struct EntraCredentials {
    /// `{ENTRA_AUTHORITY}/{tenant}/oauth2/v2.0/token` unless set.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://cognitiveservices.azure.com/.default` unless set.
    pub scope: String,
}

/// The scope of an Entra token for Azure OpenAI.
pub const AZURE_OPENAI_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// One provider (`[llm.providers.NAME]`).
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// The API's base (`…/v1`; for Azure the resource, `https://R.openai.azure.com`).
    pub base_url: UpstreamUrl,
    pub auth: ProviderAuth,
    /// Azure's `api-version` query parameter; Anthropic's
    /// `anthropic-version` header.
    pub api_version: Option<String>,
    /// Whether it serves OpenAI's Responses API (`/v1/responses`).
    pub responses: bool,
}

/// Where a model name leads (`[llm.models.NAME]`).
#[derive(Debug, Clone)]
pub struct ModelRoute {
    /// The name callers use (`Model::"<alias>"` to policies).
    pub alias: String,
    /// Tried by weight first, then the others in order, as fallbacks.
    pub targets: Vec<RouteTarget>,
}

/// One provider and its own name for the model.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub provider: Arc<ProviderConfig>,
    /// The model as the provider names it (an Azure deployment).
    pub model: String,
    /// Share of first attempts, relative to the other targets'.
    pub weight: u32,
    /// Longest wait for the answer (a stream: for its first chunk).
    pub timeout: Duration,
}

impl RouteTarget {
    /// `provider/model`, as logs, audit records and `/readyz` name it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider.name, self.model)
    }
}

/// How failed attempts are tried again (`[llm.retry]`).
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts after the first, across the route's targets.
    pub attempts: u32,
    /// Wait before an attempt on a target already tried, doubling each
    /// time up to `max_backoff` (with jitter).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retries allowed per request on average (0.2: at most ~20% extra
    /// load on providers), beyond a small reserve.
    pub budget: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            budget: 0.2,
        }
    }
}

/// When a target is taken out of rotation (`[llm.breaker]`).
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that eject a target.
    pub failures: u32,
    /// How long an ejected target rests before one probe may try it.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The default wait for an answer (a stream's first chunk).
pub const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(120);
/// The default wait for a stream's next chunk.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest model alias.
pub const MAX_ALIAS: usize = 128;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLlm {
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    breaker: RawBreaker,
    stream_idle_timeout: Option<String>,
    #[serde(default)]
    stream_window: RawStreamWindow,
}

#[derive(Debug, Default, Deserialize)]
struct RawStreamWindow {
    bytes: Option<usize>,
    wait: Option<String>,
    overlap: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProvider {
    kind: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    /// Azure with Entra ID: a bearer token instead of `api-key`.
    token: Option<String>,
    /// Azure with Entra ID: toolgate's app registration, to fetch tokens.
    entra: Option<RawEntra>,
    api_version: Option<String>,
    responses: Option<bool>,
    allow_link_local: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEntra {
    tenant: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token_url: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawModel {
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTarget {
    provider: Option<String>,
    model: Option<String>,
    weight: Option<u32>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRetry {
    attempts: Option<u32>,
    backoff: Option<String>,
    max_backoff: Option<String>,
    budget: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawBreaker {
    failures: Option<u32>,
    cool_down: Option<String>,
}

/// Whether `name` may be a provider's or a model alias's name: letters,
/// digits and `. _ - : /`, at most [`MAX_ALIAS`] characters.
pub fn valid_llm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ALIAS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
}

pub(super) fn load_llm(raw: RawLlm, base: &Path, report: &mut Report<'_>) -> LlmConfig {
    let mut providers = BTreeMap::new();
    // Providers with errors of their own: targets naming them say nothing more.
    let mut broken = std::collections::BTreeSet::new();
    for (name, raw) in raw.providers {
        match load_provider(&name, raw, base, report) {
            Some(provider) => {
                providers.insert(name, Arc::new(provider));
            }
            None => {
                broken.insert(name);
            }
        }
    }
    let mut models = BTreeMap::new();
    for (alias, raw) in raw.models {
        let key = format!("llm.models.{alias}");
        if !valid_llm_name(&alias) {
            report.error(
                &key,
                format!("a model name has 1 to {MAX_ALIAS} letters, digits and . _ - : /"),
            );
        }
        if raw.targets.is_empty() {
            report.error(
                &format!("{key}.targets"),
                "name at least one target, e.g. targets = [{ provider = \"openai\", model = \"gpt-4o-mini\" }]",
            );
        }
        let mut targets = Vec::new();
        for (i, t) in raw.targets.into_iter().enumerate() {
            let at = format!("{key}.targets[{i}]");
            let timeout = positive_duration_or(
                report,
                &format!("{at}.timeout"),
                t.timeout.as_deref(),
                DEFAULT_TARGET_TIMEOUT,
            );
            let weight = t.weight.unwrap_or(1);
            if weight == 0 {
                report.error(
                    &format!("{at}.weight"),
                    "must be at least 1 (leave a target out to stop using it)",
                );
            }
            let model = match t.model {
                Some(m) if !m.trim().is_empty() => m,
                _ => {
                    report.error(
                        &format!("{at}.model"),
                        "required: the provider's own name for the model (an Azure deployment)",
                    );
                    continue;
                }
            };
            let Some(name) = t.provider else {
                report.error(
                    &format!("{at}.provider"),
                    "required: a name under [llm.providers]",
                );
                continue;
            };
            let Some(provider) = providers.get(&name) else {
                if broken.contains(&name) {
                    continue;
                }
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                report.error(
                    &format!("{at}.provider"),
                    format!(
                        "`{name}` is not under [llm.providers] (known: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                continue;
            };
            targets.push(RouteTarget {
                provider: provider.clone(),
                model,
                weight: weight.max(1),
                timeout,
            });
        }
        models.insert(alias.clone(), Arc::new(ModelRoute { alias, targets }));
    }
    let defaults = RetryConfig::default();
    let retry = RetryConfig {
        attempts: raw.retry.attempts.unwrap_or(defaults.attempts),
        backoff: duration_or(
            report,
            "llm.retry.backoff",
            raw.retry.backoff.as_deref(),
            defaults.backoff,
        ),
        max_backoff: duration_or(
            report,
            "llm.retry.max_backoff",
            raw.retry.max_backoff.as_deref(),
            defaults.max_backoff,
        ),
        budget: raw.retry.budget.unwrap_or(defaults.budget),
    };
    if retry.attempts > 10 {
        report.error(
            "llm.retry.attempts",
            "at most 10 (each attempt is a provider request)",
        );
    }
    if !(0.0..=1.0).contains(&retry.budget) {
        report.error(
            "llm.retry.budget",
            "a share of requests from 0 to 1 (0.2: retries add at most ~20% load)",
        );
    }
    let breaker = BreakerConfig {
        failures: raw
            .breaker
            .failures
            .unwrap_or(BreakerConfig::default().failures),
        cool_down: positive_duration_or(
            report,
            "llm.breaker.cool_down",
            raw.breaker.cool_down.as_deref(),
            BreakerConfig::default().cool_down,
        ),
    };
    if breaker.failures == 0 {
        report.error("llm.breaker.failures", "must be at least 1");
    }
    let window = StreamWindow::default();
    let stream_window = StreamWindow {
        bytes: raw.stream_window.bytes.unwrap_or(window.bytes),
        wait: duration_or(
            report,
            "llm.stream_window.wait",
            raw.stream_window.wait.as_deref(),
            window.wait,
        ),
        overlap: raw.stream_window.overlap.unwrap_or(window.overlap),
    };
    if !(1..=MAX_STREAM_WINDOW).contains(&stream_window.bytes) {
        report.error(
            "llm.stream_window.bytes",
            format!("must be from 1 to {MAX_STREAM_WINDOW} (e.g. 256)"),
        );
    }
    if stream_window.overlap > MAX_STREAM_WINDOW {
        report.error(
            "llm.stream_window.overlap",
            format!("must be at most {MAX_STREAM_WINDOW} (e.g. 128; 0 reads windows apart)"),
        );
    }
    LlmConfig {
        providers,
        models,
        retry,
        breaker,
        stream_idle_timeout: positive_duration_or(
            report,
            "llm.stream_idle_timeout",
            raw.stream_idle_timeout.as_deref(),
            DEFAULT_STREAM_IDLE_TIMEOUT,
        ),
        stream_window,
    }
}

fn load_provider(
    name: &str,
    raw: RawProvider,
    base: &Path,
    report: &mut Report<'_>,
) -> Option<ProviderConfig> {
    let key = format!("llm.providers.{name}");
    let mut ok = true;
    if !valid_llm_name(name) {
        report.error(
            &key,
            format!("a provider name has 1 to {MAX_ALIAS} letters, digits and . _ - : /"),
        );
        ok = false;
    }
    let kinds = "\"openai\", \"azure\", \"anthropic\" or \"openai-compatible\"";
    let kind = match raw.kind.as_deref() {
        None => {
            report.error(&format!("{key}.kind"), format!("required: {kinds}"));
            return None;
        }
        Some(text) => match ProviderKind::parse(text) {
            Some(kind) => kind,
            None => {
                report.error(&format!("{key}.kind"), format!("`{text}`: use {kinds}"));
                return None;
            }
        },
    };
    let mut reveal = |field: &str, raw: Option<String>, values: &mut Vec<String>| {
        let raw = raw?;
        match secret::resolve_recording(&raw, base, &[], values) {
            Ok(v) => Some(v),
            Err(e) => {
                report.error(&format!("{key}.{field}"), e.to_string());
                ok = false;
                None
            }
        }
    };
    let mut from_refs = Vec::new();
    let base_url = reveal("base_url", raw.base_url, &mut from_refs);
    let api_key = reveal("api_key", raw.api_key, &mut Vec::new()).map(Secret::new);
    let token = reveal("token", raw.token, &mut Vec::new()).map(Secret::new);
    let entra = raw.entra.map(|mut entra| {
        let secret = reveal(
            "entra.client_secret",
            entra.client_secret.take(),
            &mut Vec::new(),
        );
        (entra, secret)
    });
    let base_url = match base_url.or_else(|| kind.default_base_url().map(str::to_string)) {
        Some(url) => url,
        None => {
            report.error(
                &format!("{key}.base_url"),
                match kind {
                    ProviderKind::Azure => {
                        "required: the resource, e.g. \"https://RESOURCE.openai.azure.com\""
                    }
                    _ => "required: where the API lives, e.g. \"http://127.0.0.1:8000/v1\"",
                },
            );
            return None;
        }
    };
    let base_url = match UpstreamUrl::parse(
        base_url.trim_end_matches('/'),
        &from_refs,
        raw.allow_link_local.unwrap_or(false),
    ) {
        Ok(url) => url,
        Err(e) => {
            report.error(&format!("{key}.base_url"), e.to_string());
            return None;
        }
    };
    let auth = match entra {
        Some((entra, client_secret)) => {
            if kind != ProviderKind::Azure {
                report.error(
                    &format!("{key}.entra"),
                    "only Azure OpenAI signs in with Entra ID",
                );
                return None;
            }
            if api_key.is_some() || token.is_some() {
                report.error(
                    &format!("{key}.entra"),
                    "set one of api_key, token or entra, not several",
                );
                return None;
            }
            ProviderAuth::Entra(entra_credentials(&key, entra, client_secret, report)?)
        }
        None => match (kind, api_key, token) {
            (_, Some(_), Some(_)) => {
                report.error(&format!("{key}.token"), "set api_key or token, not both");
                return None;
            }
            (ProviderKind::Azure, Some(key), None) => ProviderAuth::AzureKey(key),
            (ProviderKind::Azure, None, Some(token)) => ProviderAuth::Bearer(token),
            (ProviderKind::Azure, None, None) => {
                report.error(
                    &format!("{key}.api_key"),
                    "Azure OpenAI needs api_key (the `api-key` header) or token (an Entra ID access token), by reference",
                );
                return None;
            }
            (ProviderKind::Anthropic, Some(key), None) => ProviderAuth::AnthropicKey(key),
            (_, None, Some(_)) => {
                report.error(
                    &format!("{key}.token"),
                    "only Azure OpenAI takes a token; use api_key",
                );
                return None;
            }
            (ProviderKind::OpenAi | ProviderKind::Anthropic, None, None) => {
                report.error(
                    &format!("{key}.api_key"),
                    "required, by reference, e.g. \"${env:OPENAI_API_KEY}\"",
                );
                return None;
            }
            (_, Some(key), None) => ProviderAuth::Bearer(key),
            (ProviderKind::OpenAiCompatible, None, None) => ProviderAuth::None,
        },
    };
    let api_version = match (kind, raw.api_version) {
        (ProviderKind::Azure, None) => {
            report.error(
                &format!("{key}.api_version"),
                "required for Azure OpenAI, e.g. \"2024-10-21\"",
            );
            return None;
        }
        (ProviderKind::Anthropic, None) => Some("2023-06-01".to_string()),
        (ProviderKind::OpenAi | ProviderKind::OpenAiCompatible, Some(_)) => {
            report.error(
                &format!("{key}.api_version"),
                "only Azure OpenAI and Anthropic take an API version",
            );
            return None;
        }
        (_, version) => version,
    };
    let responses = raw
        .responses
        .unwrap_or(matches!(kind, ProviderKind::OpenAi | ProviderKind::Azure));
    ok.then(|| ProviderConfig {
        name: name.to_string(),
        kind,
        base_url,
        auth,
        api_version,
        responses,
    })
}

/// `[llm.providers.NAME.entra]`, checked: whom toolgate signs in as, and
/// where.
fn entra_credentials(
    key: &str,
    raw: RawEntra,
    client_secret: Option<String>,
    report: &mut Report<'_>,
) -> Option<EntraCredentials> {
    let key = format!("{key}.entra");
    let client_id = raw.client_id.filter(|id| !id.is_empty());
    if client_id.is_none() {
        report.error(
            &format!("{key}.client_id"),
            "required: the app registration's client id",
        );
    }
    if client_secret.as_deref().is_none_or(str::is_empty) {
        report.error(
            &format!("{key}.client_secret"),
            "required, by reference, e.g. \"${env:AZURE_CLIENT_SECRET}\"",
        );
    }
    let token_url = match (raw.token_url, raw.tenant) {
        (Some(url), _) => url,
        (None, Some(tenant)) if valid_tenant(&tenant) => {
            format!(
                "{}/{tenant}/oauth2/v2.0/token",
                super::auth::ENTRA_AUTHORITY
            )
        }
        (None, Some(tenant)) => {
            report.error(
                &format!("{key}.tenant"),
                format!("`{tenant}`: a tenant id or domain (letters, digits, . and -)"),
            );
            return None;
        }
        (None, None) => {
            report.error(&format!("{key}.tenant"), "required (or token_url)");
            return None;
        }
    };
    if !super::auth::secure_url(&token_url) {
        report.error(
            &format!("{key}.token_url"),
            format!("`{token_url}`: use an https:// URL"),
        );
        return None;
    }
    Some(EntraCredentials {
        token_url,
        client_id: client_id?,
        client_secret: Secret::new(client_secret.filter(|s| !s.is_empty())?),
        scope: raw.scope.unwrap_or_else(|| AZURE_OPENAI_SCOPE.to_string()),
    })
}

fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

impl fmt::Display for ModelRoute {
    /// `alias → provider/model (weight 3, 120s), …`: `toolgate check`'s line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} →", self.alias)?;
        for (i, t) in self.targets.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(
                f,
                "{sep}{} at {} (weight {}, timeout {}s)",
                t.label(),
                t.provider.base_url,
                t.weight,
                t.timeout.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("toolgate.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(Some(&path), "tg").map_err(|e| e.to_string())
    }

    #[test]
    fn routes_name_their_providers_and_defaults_fill_the_rest() {
        let cfg = load(
            r#"
[llm.providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1/"
[llm.providers.az]
kind = "azure"
base_url = "https://r.openai.azure.com"
api_key = "k"
api_version = "2024-10-21"
[llm.models.fast]
targets = [{ provider = "local", model = "m1", weight = 3 }, { provider = "az", model = "dep", timeout = "5s" }]
"#,
        )
        .expect("valid");
        let route = &cfg.llm.models["fast"];
        assert_eq!(route.targets.len(), 2);
        assert_eq!(
            route.targets[0].provider.base_url.expose(),
            "http://127.0.0.1:9/v1"
        );
        assert_eq!(route.targets[1].timeout.as_secs(), 5);
        assert_eq!(route.targets[0].timeout, super::DEFAULT_TARGET_TIMEOUT);
        assert_eq!(cfg.llm.retry.attempts, 2);
        assert!(cfg.llm.providers["az"].responses);
        assert!(!cfg.llm.providers["local"].responses);
        let shown = route.to_string();
        assert!(
            shown.starts_with("fast → local/m1 at http://127.0.0.1:9/v1 (weight 3"),
            "{shown}"
        );
    }

    #[test]
    fn azure_signs_in_with_entra_and_its_mistakes_are_named() {
        let cfg = load(
            r#"
[llm.providers.az]
kind = "azure"
base_url = "https://r.openai.azure.com"
api_version = "2024-10-21"
entra = { tenant = "contoso.onmicrosoft.com", client_id = "app", client_secret = "s3cret" }
"#,
        )
        .expect("valid");
        let super::ProviderAuth::Entra(entra) = &cfg.llm.providers["az"].auth else {
            panic!("{:?}", cfg.llm.providers["az"].auth)
        };
        assert_eq!(
            entra.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(entra.scope, super::AZURE_OPENAI_SCOPE);
        assert_eq!(entra.client_secret.expose(), "s3cret");
        assert!(
            !format!("{:?}", cfg.llm.providers["az"]).contains("s3cret"),
            "never shown"
        );

        let err = load(
            r#"
[llm.providers.a]
kind = "azure"
base_url = "https://r.openai.azure.com"
api_version = "2024-10-21"
entra = { tenant = "a/b" , client_id = "app", client_secret = "s" }
[llm.providers.b]
kind = "azure"
base_url = "https://r.openai.azure.com"
api_version = "2024-10-21"
entra = { tenant = "t", client_secret = "${env:TOOLGATE_SURELY_UNSET}" }
[llm.providers.c]
kind = "azure"
base_url = "https://r.openai.azure.com"
api_version = "2024-10-21"
api_key = "k"
entra = { tenant = "t", client_id = "app", client_secret = "s" }
[llm.providers.d]
kind = "openai"
api_key = "k"
entra = { tenant = "t", client_id = "app", client_secret = "s" }
[llm.providers.e]
kind = "azure"
base_url = "https://r.openai.azure.com"
api_version = "2024-10-21"
entra = { token_url = "http://idp.example/token", client_id = "app", client_secret = "s" }
"#,
        )
        .expect_err("invalid");
        for needle in [
            "`llm.providers.a.entra.tenant`: `a/b`",
            "`llm.providers.b.entra.client_id`: required",
            "`llm.providers.b.entra.client_secret`: environment variable `TOOLGATE_SURELY_UNSET`",
            "`llm.providers.c.entra`: set one of api_key, token or entra",
            "`llm.providers.d.entra`: only Azure OpenAI",
            "`llm.providers.e.entra.token_url`: `http://idp.example/token`: use an https:// URL",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn every_mistake_is_named_with_its_key() {
        let err = load(
            r#"
[llm.providers.a]
kind = "opnai"
[llm.providers.b]
kind = "azure"
base_url = "https://r.openai.azure.com"
[llm.providers.c]
kind = "openai"
[llm.providers.d]
kind = "openai-compatible"
base_url = "http://169.254.169.254/v1"
[llm.providers.e]
kind = "openai-compatible"
base_url = "http://127.0.0.1:1/v1"
api_key = "${env:TOOLGATE_SURELY_UNSET}"
colour = "red"
[llm.models.m]
targets = [{ provider = "nope", model = "x" }, { provider = "e", weight = 0 }]
[llm.models.empty]
[llm.models."bad name"]
targets = [{ provider = "e", model = "x" }]
[llm.retry]
budget = 2.0
[llm.breaker]
failures = 0
[llm.stream_window]
bytes = 0
wait = "soon"
overlap = 100000
"#,
        )
        .expect_err("invalid");
        for needle in [
            "`llm.providers.a.kind`: `opnai`: use \"openai\"",
            "`llm.providers.b.api_key`: Azure OpenAI needs api_key",
            "`llm.providers.c.api_key`: required",
            "`llm.providers.d.base_url`",
            "`llm.providers.e.api_key`: environment variable `TOOLGATE_SURELY_UNSET`",
            "`llm.providers.e.colour`: unknown key",
            "`llm.models.m.targets[0].provider`: `nope` is not under [llm.providers]",
            "`llm.models.m.targets[1].weight`: must be at least 1",
            "`llm.models.m.targets[1].model`: required",
            "`llm.models.empty.targets`: name at least one target",
            "`llm.models.bad name`: a model name",
            "`llm.retry.budget`",
            "`llm.breaker.failures`",
            "`llm.stream_window.bytes`: must be from 1 to 65536",
            "`llm.stream_window.wait`",
            "`llm.stream_window.overlap`: must be at most 65536",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }
}
