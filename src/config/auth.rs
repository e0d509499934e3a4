//! The `[auth]` section: API keys, trusted OIDC issuers (with the Okta and
//! Entra ID presets), claim mapping and browser SSO.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{MAX_SERVER_NAME, Report, Secret, duration_or, secret, valid_server_name};

const DEFAULT_API_KEY_CACHE_TTL: Duration = Duration::from_secs(10);
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long fetched keys are used while the IdP cannot be reached.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// Entra ID's public cloud; other clouds (and tests) set `authority`.
pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Where Entra's v1 tokens say they come from.
pub const ENTRA_STS: &str = "https://sts.windows.net";
pub const GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";

/// Who may call.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Every loopback caller without credentials is the local dev user
    /// (`serve --dev-insecure`). Only on a loopback listen address.
    pub dev_insecure: bool,
    /// How long a verified API key is trusted before the store is asked
    /// again (so a revocation elsewhere takes effect within this time).
    pub api_key_cache_ttl: Duration,
    /// OIDC issuers whose access tokens are accepted.
    pub issuers: Vec<IssuerConfig>,
    /// Browser sign-in, if configured.
    pub sso: Option<SsoConfig>,
}

/// One trusted OIDC issuer (`[[auth.issuers]]`).
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Short name: prefixes subjects (`{name}:{sub}`) and names it in logs.
    pub name: String,
    pub provider: Provider,
    /// Where discovery is: `{issuer}/.well-known/openid-configuration`.
    /// For Entra, the first tenant's v2 issuer.
    pub issuer: String,
    /// Accepted `aud` values (at least one must be in the token).
    pub audiences: Vec<String>,
    pub claims: ClaimMapping,
    /// Clock skew allowed on `exp` / `nbf` (at most 60 s).
    pub leeway: Duration,
    /// Scopes every token must carry (`scope` or `scp`); a token without
    /// them gets 403 `insufficient_scope`.
    pub required_scopes: Vec<String>,
    /// How long fetched keys keep working while the IdP cannot be reached.
    pub keys_max_stale: Duration,
}

impl IssuerConfig {
    /// Every `iss` value this issuer's tokens may carry.
    pub fn accepted_issuers(&self) -> Vec<String> {
        match &self.provider {
            Provider::Entra(entra) => entra
                .tenants
                .iter()
                .flat_map(|tid| [entra.v2_issuer(tid), entra.v1_issuer(tid)])
                .collect(),
            _ => vec![self.issuer.clone()],
        }
    }

    /// A generic issuer with default claim names (for tests and tools).
    pub fn generic(name: &str, issuer: &str, audiences: &[&str]) -> Self {
        IssuerConfig {
            name: name.into(),
            provider: Provider::Generic,
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            claims: ClaimMapping::defaults(&Provider::Generic),
            leeway: Duration::from_secs(60),
            required_scopes: Vec::new(),
            keys_max_stale: DEFAULT_MAX_STALE,
        }
    }
}

/// Which kind of identity provider, with its quirks.
#[derive(Debug, Clone)]
pub enum Provider {
    /// Any OIDC provider; claim names from `[auth.issuers.claims]`.
    Generic,
    /// An Okta custom authorization server (`https://{org}/oauth2/{id}`).
    Okta,
    /// Microsoft Entra ID (Azure AD), v1 and v2 tokens.
    Entra(EntraConfig),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Generic => "generic",
            Provider::Okta => "okta",
            Provider::Entra(_) => "entra",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// Tenant ids (`tid`) whose users may call; tokens of any other
    /// tenant are refused.
    pub tenants: Vec<String>,
    /// v2 issuers are `{authority}/{tid}/v2.0`.
    pub authority: String,
    /// v1 issuers are `{sts}/{tid}/`.
    pub sts: String,
    /// Resolves groups overage through Microsoft Graph; without it a
    /// token whose groups did not fit is refused.
    pub graph: Option<GraphConfig>,
}

impl EntraConfig {
    pub fn v2_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.authority)
    }
    pub fn v1_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/", self.sts)
    }
    /// The tenant an Entra-shaped `iss` names (allowed or not).
    pub fn tenant_of<'a>(&self, iss: &'a str) -> Option<&'a str> {
        let v2 = iss
            .strip_prefix(self.authority.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_suffix("/v2.0"));
        let v1 = || {
            iss.strip_prefix(self.sts.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .and_then(|r| r.strip_suffix('/'))
        };
        v2.or_else(v1).filter(|t| !t.is_empty() && !t.contains('/'))
    }
}

/// App credentials toolgate uses to ask Microsoft Graph for a caller's
/// groups when the token could not carry them all.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://graph.microsoft.com` unless set.
    pub endpoint: String,
    /// Token endpoint; `{tid}` is replaced by the caller's tenant.
    /// Default `{authority}/{tid}/oauth2/v2.0/token`.
    pub token_url: String,
}

/// Which claims carry what, and how group names are rewritten.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// Claims tried in order for the subject (Entra: `tid` + `oid`).
    pub subject: Vec<String>,
    /// Claim with the caller's groups (dotted for nested, e.g.
    /// `realm_access.roles`).
    pub groups: String,
    /// Claim with the caller's app roles.
    pub roles: String,
    /// Removed from the start of group and role names that have it
    /// (`toolgate-eng` → `eng`).
    pub strip_prefix: Option<String>,
    /// IdP group id → toolgate group name, applied before stripping.
    pub group_map: BTreeMap<String, String>,
}

impl ClaimMapping {
    pub fn defaults(provider: &Provider) -> Self {
        let subject = match provider {
            // Okta's `sub` is the login, which can change; `uid` is not
            // present on client-credentials tokens.
            Provider::Okta => vec!["uid".into(), "sub".into()],
            // Keyed by tid + oid (see `oidc`); `sub` is pairwise per app.
            Provider::Entra(_) => vec!["oid".into()],
            Provider::Generic => vec!["sub".into()],
        };
        ClaimMapping {
            subject,
            groups: "groups".into(),
            roles: "roles".into(),
            strip_prefix: None,
            group_map: BTreeMap::new(),
        }
    }
}

/// Browser sign-in (`[auth.sso]`): authorization code + PKCE against one
/// of the issuers, giving a signed session cookie.
#[derive(Debug, Clone)]
pub struct SsoConfig {
    /// Name of the `[[auth.issuers]]` entry users sign in with.
    pub issuer: String,
    pub client_id: String,
    /// Absent for a public client (PKCE only).
    pub client_secret: Option<Secret>,
    /// How the secret is sent to the token endpoint.
    pub client_auth: ClientAuth,
    /// Where the IdP sends the browser back; must be registered there.
    /// Default `{http.public_url}/auth/callback`, else
    /// `http://{the bound address}/auth/callback`.
    pub redirect_url: Option<String>,
    pub scopes: Vec<String>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// HMAC key for cookies; when absent one is generated into the data
    /// directory (`cookie.key`) on first use.
    pub cookie_key: Option<Secret>,
}

/// Client authentication at the token endpoint (OIDC
/// `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`, the OIDC default (Okta's default too).
    Basic,
    /// `client_secret_post`: the secret in the form body.
    Post,
}

impl SsoConfig {
    /// Cookies get `Secure` and the `__Host-` prefix when served over TLS.
    pub fn https(&self) -> bool {
        self.redirect_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| u.scheme() == "https")
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAuth {
    dev_insecure: Option<bool>,
    api_key_cache_ttl: Option<String>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
    sso: Option<RawSso>,
}

#[derive(Debug, Default, Deserialize)]
struct RawIssuer {
    name: Option<String>,
    provider: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    leeway: Option<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    keys_max_stale: Option<String>,
    #[serde(default)]
    tenants: Vec<String>,
    authority: Option<String>,
    sts: Option<String>,
    graph: Option<RawGraph>,
    #[serde(default)]
    claims: RawClaims,
    #[serde(default)]
    group_map: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawClaims {
    subject: Option<String>,
    groups: Option<String>,
    roles: Option<String>,
    strip_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawGraph {
    client_id: Option<String>,
    client_secret: Option<String>,
    endpoint: Option<String>,
    token_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSso {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_auth: Option<String>,
    redirect_url: Option<String>,
    scopes: Option<Vec<String>>,
    session_ttl: Option<String>,
    cookie_key: Option<String>,
}

/// `https://…`, or plain `http://` on loopback (tests, local IdPs); never
/// with user info (`http://localhost:1@evil.example/` is evil.example).
pub(super) fn secure_url(url: &str) -> bool {
    super::http_url(url).is_ok_and(|u| u.scheme() == "https" || super::is_loopback_url(&u))
}

/// A redirect URL whose path ends in `/auth/callback`, with no query or
/// fragment the IdP would have to keep.
fn is_callback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.path().ends_with("/auth/callback") && u.query().is_none() && u.fragment().is_none()
    })
}

fn resolve_secret(report: &mut Report<'_>, key: &str, raw: &str, base: &Path) -> Secret {
    Secret::new(secret::resolve(raw, base, &[]).unwrap_or_else(|e| {
        report.error(key, e.to_string());
        String::new()
    }))
}

pub(super) fn load(
    raw: RawAuth,
    listen: SocketAddr,
    public_url: Option<&str>,
    base: &Path,
    report: &mut Report<'_>,
) -> AuthConfig {
    let api_key_cache_ttl = duration_or(
        report,
        "auth.api_key_cache_ttl",
        raw.api_key_cache_ttl.as_deref(),
        DEFAULT_API_KEY_CACHE_TTL,
    );
    let dev_insecure = raw.dev_insecure.unwrap_or(false);
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for (i, raw) in raw.issuers.into_iter().enumerate() {
        let key = |k: &str| format!("auth.issuers[{i}].{k}");
        if let Some(issuer) = load_issuer(raw, base, report, &key) {
            if issuers.iter().any(|o| o.name == issuer.name) {
                report.error(
                    &key("name"),
                    format!("`{}` is used by two issuers", issuer.name),
                );
            }
            let accepted = issuer.accepted_issuers();
            if let Some(other) = issuers
                .iter()
                .find(|o| o.accepted_issuers().iter().any(|a| accepted.contains(a)))
            {
                report.error(
                    &key("issuer"),
                    format!(
                        "issuer `{}` also accepts tokens of `{}`: one entry per issuer",
                        other.name, issuer.issuer
                    ),
                );
            }
            issuers.push(issuer);
        }
    }
    let sso = raw
        .sso
        .map(|raw| load_sso(raw, &issuers, listen, public_url, base, report));
    let auth = AuthConfig {
        dev_insecure,
        api_key_cache_ttl,
        issuers,
        sso,
    };
    if !listen.ip().is_loopback() {
        for problem in auth.loopback_only() {
            let (key, message) = match problem {
                LoopbackOnly::DevInsecure => (
                    "auth.dev_insecure",
                    format!(
                        "listen is {listen}, beyond loopback: dev mode lets any local caller in without a credential, so it is only allowed on 127.0.0.1 / ::1"
                    ),
                ),
                LoopbackOnly::NoIdentity => (
                    "listen",
                    format!(
                        "{listen} is beyond loopback, and no identity provider is configured: add an [[auth.issuers]] entry (see examples/okta, examples/entra) or listen on 127.0.0.1"
                    ),
                ),
            };
            report.error(key, message);
        }
    }
    auth
}

/// Why a gateway may only listen on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackOnly {
    /// Dev mode lets local callers in without a credential.
    DevInsecure,
    /// No identity provider: only API keys, for local use.
    NoIdentity,
}

impl AuthConfig {
    /// What keeps this gateway on loopback (checked by `check` on the
    /// config, and by `serve` after its command-line overrides).
    pub fn loopback_only(&self) -> impl Iterator<Item = LoopbackOnly> {
        [
            self.dev_insecure.then_some(LoopbackOnly::DevInsecure),
            self.issuers.is_empty().then_some(LoopbackOnly::NoIdentity),
        ]
        .into_iter()
        .flatten()
    }
}

fn load_issuer(
    raw: RawIssuer,
    base: &Path,
    report: &mut Report<'_>,
    key: &dyn Fn(&str) -> String,
) -> Option<IssuerConfig> {
    let name = raw.name.unwrap_or_default();
    if !valid_server_name(&name) {
        report.error(
            &key("name"),
            format!("`{name}`: use 1-{MAX_SERVER_NAME} letters, digits, `-` or single `_`"),
        );
    }
    let provider = match raw.provider.as_deref().unwrap_or("generic") {
        "generic" => Provider::Generic,
        "okta" => Provider::Okta,
        "entra" => {
            let authority = raw
                .authority
                .clone()
                .unwrap_or_else(|| ENTRA_AUTHORITY.into())
                .trim_end_matches('/')
                .to_string();
            let sts = raw
                .sts
                .clone()
                .unwrap_or_else(|| ENTRA_STS.into())
                .trim_end_matches('/')
                .to_string();
            for (k, url) in [("authority", &authority), ("sts", &sts)] {
                if !secure_url(url) {
                    report.error(&key(k), format!("`{url}`: use an https:// URL"));
                }
            }
            if raw.tenants.is_empty() {
                report.error(
                    &key("tenants"),
                    "list the tenant ids (`tid`) whose users may call, e.g. [\"72f988bf-…\"]; toolgate never accepts every tenant",
                );
            }
            for tid in &raw.tenants {
                let ok = !tid.is_empty()
                    && tid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !ok || matches!(tid.as_str(), "common" | "organizations" | "consumers") {
                    report.error(
                        &key("tenants"),
                        format!("`{tid}` is not a tenant id: use the directory (tenant) id GUID, not common/organizations/consumers"),
                    );
                }
            }
            let graph = raw.graph.map(|g| {
                let gkey = |k: &str| key(&format!("graph.{k}"));
                let client_id = g.client_id.unwrap_or_default();
                if client_id.is_empty() {
                    report.error(&gkey("client_id"), "the client id of an app registration allowed to read group memberships (application permissions GroupMember.Read.All and User.Read.All, admin-consented; Application.Read.All for service principals)");
                }
                let client_secret = match g.client_secret {
                    Some(raw) => resolve_secret(report, &gkey("client_secret"), &raw, base),
                    None => {
                        report.error(&gkey("client_secret"), "set it, e.g. \"${env:GRAPH_CLIENT_SECRET}\"");
                        Secret::new("")
                    }
                };
                let endpoint = g
                    .endpoint
                    .unwrap_or_else(|| GRAPH_ENDPOINT.into())
                    .trim_end_matches('/')
                    .to_string();
                let token_url = g
                    .token_url
                    .unwrap_or_else(|| format!("{authority}/{{tid}}/oauth2/v2.0/token"));
                for (k, url) in [("endpoint", &endpoint), ("token_url", &token_url)] {
                    if !secure_url(url) {
                        report.error(&gkey(k), format!("`{url}`: use an https:// URL"));
                    }
                }
                GraphConfig {
                    client_id,
                    client_secret,
                    endpoint,
                    token_url,
                }
            });
            Provider::Entra(EntraConfig {
                tenants: raw.tenants.clone(),
                authority,
                sts,
                graph,
            })
        }
        other => {
            report.error(
                &key("provider"),
                format!("`{other}`: use \"okta\", \"entra\" or \"generic\""),
            );
            Provider::Generic
        }
    };
    if !matches!(provider, Provider::Entra(_)) {
        for (set, k) in [
            (!raw.tenants.is_empty(), "tenants"),
            (raw.authority.is_some(), "authority"),
            (raw.sts.is_some(), "sts"),
        ] {
            if set {
                report.error(&key(k), "only for provider = \"entra\"");
            }
        }
    }
    let issuer = match &provider {
        Provider::Entra(entra) => {
            if raw.issuer.is_some() {
                report.error(
                    &key("issuer"),
                    "for Entra, list `tenants` instead: the issuers are derived from them (v1 and v2)",
                );
            }
            entra
                .tenants
                .first()
                .map(|t| entra.v2_issuer(t))
                .unwrap_or_default()
        }
        _ => {
            let issuer = raw.issuer.unwrap_or_default();
            if !secure_url(&issuer) {
                report.error(
                    &key("issuer"),
                    format!("`{issuer}`: use the issuer's https:// URL (plain http only on loopback, for tests)"),
                );
            }
            if matches!(provider, Provider::Okta) && !issuer.contains("/oauth2/") {
                report.error(
                    &key("issuer"),
                    format!("`{issuer}` is an Okta org authorization server: its access tokens are for Okta's own APIs and cannot be validated by a resource server; use a custom authorization server, https://{{org}}/oauth2/{{id}} (e.g. …/oauth2/default)"),
                );
            }
            issuer
        }
    };
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        let example = match provider {
            Provider::Okta => "[\"api://default\"]",
            Provider::Entra(_) => "[\"api://toolgate\", \"<the API's client id>\"]",
            Provider::Generic => "[\"api://toolgate\"]",
        };
        report.error(
            &key("audiences"),
            format!("list the accepted `aud` values, e.g. {example}"),
        );
    }
    let leeway = duration_or(
        report,
        &key("leeway"),
        raw.leeway.as_deref(),
        Duration::from_secs(60),
    );
    if leeway > Duration::from_secs(60) {
        report.error(&key("leeway"), "at most 60s");
    }
    let keys_max_stale = duration_or(
        report,
        &key("keys_max_stale"),
        raw.keys_max_stale.as_deref(),
        DEFAULT_MAX_STALE,
    );
    if keys_max_stale.is_zero() || keys_max_stale > Duration::from_secs(7 * 86_400) {
        report.error(&key("keys_max_stale"), "between 1s and 7d");
    }
    let mut claims = ClaimMapping::defaults(&provider);
    if let Some(subject) = raw.claims.subject {
        if matches!(provider, Provider::Entra(_)) {
            report.error(
                &key("claims.subject"),
                "Entra callers are always keyed by tenant and object id (tid + oid)",
            );
        }
        claims.subject = vec![subject];
    }
    if let Some(groups) = raw.claims.groups {
        claims.groups = groups;
    }
    if let Some(roles) = raw.claims.roles {
        claims.roles = roles;
    }
    claims.strip_prefix = raw.claims.strip_prefix.filter(|p| !p.is_empty());
    for (from, to) in &raw.group_map {
        if from.is_empty() || to.is_empty() {
            report.error(
                &key("group_map"),
                "map an IdP group id to a toolgate group name, e.g. \"00g1abc\" = \"eng\"",
            );
        }
    }
    claims.group_map = raw.group_map;
    Some(IssuerConfig {
        name,
        provider,
        issuer,
        audiences: raw.audiences,
        claims,
        leeway,
        required_scopes: raw.required_scopes,
        keys_max_stale,
    })
}

fn load_sso(
    raw: RawSso,
    issuers: &[IssuerConfig],
    listen: SocketAddr,
    public_url: Option<&str>,
    base: &Path,
    report: &mut Report<'_>,
) -> SsoConfig {
    let issuer = raw.issuer.unwrap_or_default();
    if !issuers.iter().any(|i| i.name == issuer) {
        let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
        report.error(
            "auth.sso.issuer",
            format!(
                "`{issuer}`: name one of the [[auth.issuers]] ({})",
                if names.is_empty() {
                    "none configured".to_string()
                } else {
                    names.join(", ")
                }
            ),
        );
    }
    let client_id = raw.client_id.unwrap_or_default();
    if client_id.is_empty() {
        report.error(
            "auth.sso.client_id",
            "the client id of toolgate's web app registration at the IdP",
        );
    }
    let client_secret = raw
        .client_secret
        .map(|s| resolve_secret(report, "auth.sso.client_secret", &s, base));
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some(other) => {
            report.error(
                "auth.sso.client_auth",
                format!(
                    "`{other}`: use \"client_secret_basic\" (default) or \"client_secret_post\""
                ),
            );
            ClientAuth::Basic
        }
    };
    let redirect_url = raw
        .redirect_url
        .or_else(|| public_url.map(|u| format!("{u}/auth/callback")));
    match &redirect_url {
        Some(url) if !secure_url(url) || !is_callback(url) => report.error(
            "auth.sso.redirect_url",
            format!("`{url}`: use https://YOUR-HOST/auth/callback (plain http only on loopback)"),
        ),
        None if !listen.ip().is_loopback() => report.error(
            "auth.sso.redirect_url",
            "set http.public_url (or this) to the address browsers reach toolgate at: https://YOUR-HOST/auth/callback",
        ),
        _ => {}
    }
    let scopes = raw
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        report.error("auth.sso.scopes", "must include \"openid\"");
    }
    let session_ttl = duration_or(
        report,
        "auth.sso.session_ttl",
        raw.session_ttl.as_deref(),
        DEFAULT_SESSION_TTL,
    );
    if session_ttl < Duration::from_secs(60) || session_ttl > Duration::from_secs(7 * 86_400) {
        report.error("auth.sso.session_ttl", "between 1m and 7d");
    }
    let cookie_key = raw.cookie_key.map(|raw| {
        let key = resolve_secret(report, "auth.sso.cookie_key", &raw, base);
        if key.expose().len() < 32 {
            report.error(
                "auth.sso.cookie_key",
                "at least 32 characters (e.g. `openssl rand -hex 32`)",
            );
        }
        key
    });
    SsoConfig {
        issuer,
        client_id,
        client_secret,
        client_auth,
        redirect_url,
        scopes,
        session_ttl,
        cookie_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_a_loopback_host_never_by_prefix() {
        for ok in [
            "https://idp.example.com/oauth2/default",
            "HTTPS://IDP.example.com",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1/",
            "http://127.1.2.3:9/x",
            "http://localhost:1/",
            "http://LOCALHOST:1/",
            "http://[::1]:8080/",
            "http://[0:0:0:0:0:0:0:1]/",
        ] {
            assert!(secure_url(ok), "{ok}");
        }
        for bad in [
            // User info: the host is what follows `@`.
            "http://localhost:1@evil.example/",
            "http://127.0.0.1:80@evil.example/",
            "http://[::1]:1@evil.example/",
            "https://user:pass@idp.example.com/",
            "https://user@idp.example.com/",
            // Look-alike hosts.
            "http://localhost.evil.example/",
            "http://localhost./",
            "http://127.0.0.1.evil.example/",
            "http://evil.example/#http://127.0.0.1:1",
            "http://evil.example/?u=http://localhost:1",
            "http://[::ffff:8.8.8.8]/",
            "http://0.0.0.0:8080/",
            // Not http(s), or not a URL at all.
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "https://",
            "http//127.0.0.1:1/",
            "127.0.0.1:8080",
            "",
        ] {
            assert!(!secure_url(bad), "{bad}");
        }
    }

    #[test]
    fn callbacks_end_in_the_callback_path() {
        assert!(is_callback("https://toolgate.example.com/auth/callback"));
        assert!(is_callback("https://example.com/toolgate/auth/callback"));
        for bad in [
            "https://example.com/auth/callback?x=/auth/callback",
            "https://example.com/auth/callback#frag",
            "https://example.com/auth/callbackx",
            "https://example.com/other?next=/auth/callback",
            "not a url/auth/callback",
        ] {
            assert!(!is_callback(bad), "{bad}");
        }
    }
}
