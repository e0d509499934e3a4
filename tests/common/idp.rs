//! A real local OpenID Connect identity provider for tests:
//! `tests/idp/idp.cjs` (npm `oauth2-mock-server` 8.2.3 underneath) as a child
//! process on 127.0.0.1, one per [`RealIdp`]. One process serves several
//! issuers, by path prefix under [`RealIdp::url`] (details in
//! tests/idp/README.md):
//!
//! | prefix (for [`RealIdp::token`]) | issuer (`iss`)                 | shape |
//! |---------------------------------|--------------------------------|-------|
//! | `/okta/oauth2/default`          | `{url}/okta/oauth2/default`    | Okta custom authorization server |
//! | `/okta`                         | `{url}/okta`                   | Okta org authorization server (its own keys) |
//! | `/entra/{tid}/v2.0`             | `{url}/entra/{tid}/v2.0`       | Entra ID v2 tokens, any tenant id |
//! | `/sts/{tid}`                    | `{url}/sts/{tid}/`             | Entra ID v1 tokens (same keys as v2) |
//! | `/generic`                      | `{url}/generic`                | plain OIDC |
//!
//! Each issuer has its discovery document at
//! `{issuer}/.well-known/openid-configuration` (Entra v1: `{url}/entra/{tid}/.well-known/…`
//! or `{url}/sts/{tid}/.well-known/…`).
//!
//! The Node modules come from `TOOLGATE_IDP_NODE_MODULES` (tests/run.sh sets
//! it after `bash tests/idp/install.sh`), else from the install script's
//! default directory. Without either, [`RealIdp::start`] returns `None` so a
//! bare `cargo test` still passes — unless `TOOLGATE_REQUIRE_REAL_IDP=1`
//! (tests/run.sh sets that too), which makes it a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `client_id` of [`RealIdp::token`]'s requests (Okta `cid`, Entra `azp`/`appid`).
pub const CLIENT_ID: &str = "toolgate-test";
/// The `scope` of [`RealIdp::token`]'s requests (Okta `scp`, generic `scope`).
pub const SCOPE: &str = "mcp";

/// A running `tests/idp/idp.cjs`; killed when dropped.
pub struct RealIdp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    child: Child,
}

impl RealIdp {
    /// Starts `node tests/idp/idp.cjs --port 0` with `NODE_PATH` from env
    /// `TOOLGATE_IDP_NODE_MODULES`, or the default install dir
    /// `${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/idp/node_modules`. Returns
    /// `None` when neither is there, or panics then if
    /// `TOOLGATE_REQUIRE_REAL_IDP=1`. The IdP's stderr (one line per
    /// request) goes to the test's stderr.
    pub async fn start() -> Option<RealIdp> {
        let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let node_modules = match set("TOOLGATE_IDP_NODE_MODULES") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let dir = default_install_dir().join("node_modules");
                if !dir.join("oauth2-mock-server").is_dir() {
                    let required =
                        std::env::var("TOOLGATE_REQUIRE_REAL_IDP").is_ok_and(|v| v == "1");
                    assert!(
                        !required,
                        "TOOLGATE_REQUIRE_REAL_IDP=1 but the test IdP is not installed: \
                         run `bash tests/idp/install.sh` (or set TOOLGATE_IDP_NODE_MODULES \
                         to the node_modules path it prints)"
                    );
                    eprintln!(
                        "real IdP not installed ({} missing; run `bash tests/idp/install.sh`): skipping",
                        dir.display()
                    );
                    return None;
                }
                dir
            }
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp/idp.cjs");
        // --exit-with-stdin: should this test process die without dropping
        // the child, the pipe closes and the IdP exits by itself.
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--port", "0", "--exit-with-stdin"])
            .env("NODE_PATH", &node_modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting `node {}` (Node 20+ on PATH?): {e}",
                    script.display()
                )
            });
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
            }
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let first = tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).lines().next_line(),
        )
        .await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!(
                "the test IdP exited before it was ready (its stderr is above; NODE_PATH={}; \
                 run `bash tests/idp/install.sh`?)",
                node_modules.display()
            ),
            Ok(Err(e)) => panic!("reading the test IdP's stdout: {e}"),
            Err(_) => panic!("the test IdP did not report its URL within 20 s"),
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the test IdP's first line is not JSON ({e}): {line}"));
        let url = ready["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"url\" in the test IdP's first line: {line}"))
            .to_string();
        Some(RealIdp { url, child })
    }

    /// An access token from `{url}{prefix}/token` (client_credentials,
    /// [`CLIENT_ID`], secret `s`, [`SCOPE`]) with `claims` merged into its
    /// payload last: a key set to JSON `null` removes that claim, so
    /// `json!({"aud": null})` gives a token without `aud`; `iss`, `exp`, `nbf`
    /// can be overridden too. Panics with the body on a non-200 answer.
    pub async fn token(&self, prefix: &str, claims: Value) -> String {
        // application/x-www-form-urlencoded, by the URL crate's serializer.
        let mut form = reqwest::Url::parse("http://form.invalid/").expect("a valid static URL");
        form.query_pairs_mut()
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("client_secret", "s")
            .append_pair("scope", SCOPE)
            .append_pair("claims", &claims.to_string());
        let body = form.query().expect("pairs were just appended").to_string();
        let response = client()
            .post(format!("{}{prefix}/token", self.url))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .expect("POST to the test IdP's token endpoint");
        let status = response.status();
        let text = response.text().await.expect("the token response's body");
        assert!(status == 200, "token from {prefix}: {status} {text}");
        let json: Value = serde_json::from_str(&text).expect("the token response is JSON");
        json["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in the token response: {text}"))
            .to_string()
    }

    /// Sets who the next browser logins (`{prefix}/authorize`, any issuer)
    /// sign in: a JSON object of claims for the ID token (and the access
    /// token), e.g. `{"sub": "alice", "email": "alice@example.com",
    /// "groups": ["eng"]}`. The default is `{"sub": "dev-user"}`.
    pub async fn set_login(&self, claims: Value) {
        let response = client()
            .post(format!("{}/__control/login", self.url))
            .json(&claims)
            .send()
            .await
            .expect("POST to the test IdP's /__control/login");
        let status = response.status();
        assert!(
            status.is_success(),
            "set_login: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
}

impl Drop for RealIdp {
    fn drop(&mut self) {
        // kill_on_drop would too; this just doesn't wait for the Child's drop.
        let _ = self.child.start_kill();
    }
}

/// `${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/idp`, where tests/idp/install.sh installs.
fn default_install_dir() -> PathBuf {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let cache = match set("TOOLGATE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(set("HOME").unwrap_or_default()).join(".cache/toolgate"),
    };
    cache.join("idp")
}

/// A client that never goes through a proxy (the IdP is on 127.0.0.1).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client")
}
