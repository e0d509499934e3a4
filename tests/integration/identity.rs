//! Identity (first part): API keys through the gateway, deny by default,
//! RFC 9728 metadata and challenges, tokens never in URLs and never
//! forwarded upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::bad_input::{post, rpc};
use crate::common::*;

/// `toolgate keys …` against the gateway's config; stdout on success.
pub(crate) fn keys_cli(gw: &Gateway, args: &[&str]) -> String {
    keys_in(gw.dir.path(), args)
}

/// `toolgate keys …` against the config in `dir`; stdout (trimmed) on
/// success.
pub(crate) fn keys_in(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(dir.join("toolgate.toml"))
        .arg("keys")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub(crate) async fn initialize(url: &str, key: Option<&str>) -> reqwest::Response {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let mut request = post(url).json(&init);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// A session opened with `key`, then one echo call with it (on the fast
/// lane, or through rmcp when `via_rmcp`); the echoed text.
pub(crate) async fn echo_with(
    url: &str,
    key: &str,
    via_rmcp: bool,
) -> Result<String, reqwest::StatusCode> {
    let r = initialize(url, Some(key)).await;
    if r.status() != 200 {
        return Err(r.status());
    }
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let send = |body: Value| {
        let mut request = post(url)
            .bearer_auth(key)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25");
        if via_rmcp {
            request = request.header("origin", "http://localhost:1");
        }
        request.json(&body).send()
    };
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    let r = send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo__echo", "arguments": {"message": "hello"}}}))
    .await
    .unwrap();
    if r.status() != 200 {
        return Err(r.status());
    }
    let v = rpc(r).await;
    Ok(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn api_keys_gate_every_request_and_never_reach_the_upstream() {
    let ct = CancellationToken::new();
    let (url, seen) = http_upstream_recording(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start_with(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[auth]\napi_key_cache_ttl = \"200ms\"",
        false,
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let base = format!("http://{}", gw.addr);

    // A fresh store without an identity provider: the first start made an
    // admin key (shown once), and it works.
    let admin = gw.server.as_ref().unwrap().first_admin_key.clone();
    let admin = admin.expect("first start creates an admin key");
    assert_eq!(echo_with(&gw.url, &admin, false).await, Ok("hello".into()));

    // Deny by default, with a challenge pointing at the metadata.
    let r = initialize(&gw.url, None).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer resource_metadata=")
            && challenge.contains("/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("{base}/mcp"), "{metadata}");
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    // A key from the CLI works on both paths.
    let key = keys_cli(&gw, &["create", "--name", "ci-bot", "--group", "eng"])
        .trim()
        .to_string();
    assert!(key.starts_with("tgk_"), "{key}");
    assert_eq!(echo_with(&gw.url, &key, false).await, Ok("hello".into()));
    assert_eq!(echo_with(&gw.url, &key, true).await, Ok("hello".into()));
    assert!(gw.gateway().mcp.fast_lane.calls_taken() >= 1);

    // Wrong keys, other tokens and tokens in the URL are refused.
    let wrong = format!("{}0", &key[..key.len() - 1]);
    let wrong = if wrong == key {
        format!("{}1", &key[..key.len() - 1])
    } else {
        wrong
    };
    let r = initialize(&gw.url, Some(&wrong)).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        initialize(&gw.url, Some("eyJhbGciOiJub25lIn0.e30."))
            .await
            .status(),
        401
    );
    let r = post(&format!("{}?access_token={key}", gw.url))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The upstream never saw the caller's credential.
    for headers in seen.lock().unwrap().iter() {
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        assert!(!format!("{headers:?}").contains("tgk_"), "{headers:?}");
    }

    // Revoked: refused within the cache time.
    keys_cli(&gw, &["revoke", "ci-bot"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        echo_with(&gw.url, &key, false).await,
        Err(reqwest::StatusCode::UNAUTHORIZED)
    );

    // Expired: refused once the time is up.
    // (Expiry has whole-second precision: 3 s leaves room for the first call.)
    let short = keys_cli(&gw, &["create", "--name", "short", "--expires", "3s"])
        .trim()
        .to_string();
    assert_eq!(echo_with(&gw.url, &short, false).await, Ok("hello".into()));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        echo_with(&gw.url, &short, false).await,
        Err(reqwest::StatusCode::UNAUTHORIZED)
    );

    // Last use is written at shutdown at the latest.
    gw.shutdown().await;
    let listed: Value = serde_json::from_str(&keys_cli(&gw, &["list", "--json"])).unwrap();
    let bot = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci-bot")
        .unwrap();
    assert!(bot["last_used_at"].is_i64(), "{listed}");
    assert!(bot["revoked_at"].is_i64(), "{listed}");
    ct.cancel();
}

#[tokio::test]
async fn dev_mode_lets_loopback_callers_in_and_makes_no_key() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(&[("echo", http_server_toml("echo", &url, ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    assert!(gw.server.as_ref().unwrap().first_admin_key.is_none());
    assert_eq!(initialize(&gw.url, None).await.status(), 200);
    // A bad credential is still refused: presenting one means checking it.
    assert_eq!(initialize(&gw.url, Some("tgk_bogus")).await.status(), 401);
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn the_first_admin_key_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("toolgate.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nservers_dir = \"none\"\n").unwrap();
    std::fs::create_dir(dir.path().join("none")).unwrap();
    write_policies(dir.path(), &[ALLOW_ALL]);
    let start = || async {
        let config = toolgate::config::Config::load(Some(&cfg), TOOLGATE).unwrap();
        let server = toolgate::app::HttpServer::start(config).await.unwrap();
        let key = server.first_admin_key.clone();
        server.shutdown().await;
        key
    };
    assert!(start().await.is_some());
    assert!(start().await.is_none(), "a key exists now: none made again");
    // Revoking every key does not bring a new admin key back.
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(TOOLGATE)
            .args(["--config", cfg.to_str().unwrap(), "keys"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(keys(&["list"]).contains("admin"));
    keys(&["revoke", "admin"]);
    assert!(start().await.is_none());
}

#[test]
fn serving_beyond_loopback_needs_an_identity_provider() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("toolgate.toml");
    let run = |toml: &str, args: &[&str]| {
        std::fs::write(&cfg, toml).unwrap();
        let out = std::process::Command::new(TOOLGATE)
            .args(["--config", cfg.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("listen = \"0.0.0.0:0\"\n", &["check"]);
    assert!(err.contains("auth.issuers"), "{err}");
    let err = run(
        "listen = \"0.0.0.0:0\"\n[auth]\ndev_insecure = true\n",
        &["check"],
    );
    assert!(err.contains("auth.dev_insecure"), "{err}");
    let err = run("", &["serve", "--listen", "0.0.0.0:0", "--dev-insecure"]);
    assert!(err.contains("only listens on loopback"), "{err}");
}

#[tokio::test]
async fn a_session_belongs_to_the_caller_who_opened_it() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw =
        Gateway::start_with(&[("echo", http_server_toml("echo", &url, ""))], "", false).await;
    gw.wait_ready(&["echo"]).await;
    let alice = keys_cli(&gw, &["create", "--name", "alice"])
        .trim()
        .to_string();
    let mallory = keys_cli(&gw, &["create", "--name", "mallory"])
        .trim()
        .to_string();
    let r = initialize(&gw.url, Some(&alice)).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let call = |key: &str| {
        post(&gw.url)
            .bearer_auth(key)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo__echo", "arguments": {"message": "mine"}}}))
            .send()
    };
    // Someone else's valid key gets the unknown-session answer, on either path.
    assert_eq!(call(&mallory).await.unwrap().status(), 404);
    let v = rpc(call(&alice).await.unwrap()).await;
    assert_eq!(v["result"]["content"][0]["text"], "mine", "{v}");
    gw.shutdown().await;
    ct.cancel();
}

/// A flood of unique unknown API keys (more than the verification cache
/// holds) must not evict the key an agent keeps using. Observable: the key
/// is revoked by another process (the CLI), which this gateway learns only
/// when it next reads the store; while the key stays cached (TTL 60 s) it
/// keeps working. A cache that empties itself when full would read the
/// store again mid-flood and refuse it.
#[tokio::test]
async fn a_flood_of_unknown_api_keys_does_not_evict_a_hot_one() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start_with(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[auth]\napi_key_cache_ttl = \"60s\"",
        false,
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let base = format!("http://{}", gw.addr);
    let hot = keys_cli(&gw, &["create", "--name", "hot"])
        .trim()
        .to_string();
    assert_eq!(initialize(&gw.url, Some(&hot)).await.status(), 200);
    keys_cli(&gw, &["revoke", "hot"]);

    let client = reqwest::Client::new();
    let flood = toolgate::authenticate::api_keys::MAX_CACHED_KEYS + 2_000;
    let mut next = 0;
    while next < flood {
        // A batch of unknown keys at once, then the hot key, as an agent's
        // calls would interleave with an attacker's.
        let batch: Vec<_> = (next..(next + 100).min(flood))
            .map(|i| {
                client
                    .get(format!("{base}/not-a-route"))
                    .bearer_auth(format!("tgk_{i:016x}_{}", "0".repeat(64)))
                    .send()
            })
            .collect();
        for r in futures::future::join_all(batch).await {
            assert_eq!(r.unwrap().status(), 401);
        }
        next += 100;
        assert_eq!(
            initialize(&gw.url, Some(&hot)).await.status(),
            200,
            "the hot key was read from the store again after {next} unknown keys"
        );
    }
    gw.shutdown().await;
    ct.cancel();
}

/// A fake OIDC provider on 127.0.0.1: discovery and a JWKS from a test
/// issuer that can rotate its keys; counts JWKS fetches.
struct FakeIdp {
    url: String,
    keys: Arc<Mutex<toolgate::authenticate::jwt::test_issuer::TestIssuer>>,
    jwks_fetches: Arc<std::sync::atomic::AtomicUsize>,
    stop: CancellationToken,
}

impl FakeIdp {
    async fn start() -> FakeIdp {
        use axum::routing::get;
        use toolgate::authenticate::jwt::test_issuer::TestIssuer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(TestIssuer::new()));
        let jwks_fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let (k, n) = (keys.clone(), jwks_fetches.clone());
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = k.lock().unwrap().jwks();
                    async move { ([("cache-control", "max-age=3600")], body) }
                }),
            );
        let stop = CancellationToken::new();
        serve_until(listener, router, stop.clone());
        FakeIdp {
            url,
            keys,
            jwks_fetches,
            stop,
        }
    }

    fn token(&self, claims: Value) -> String {
        let keys = self.keys.lock().unwrap();
        let header = json!({"alg": "RS256", "kid": keys.rsa_kid, "typ": "at+jwt"});
        keys.sign(header, claims)
    }

    fn claims(&self, extra: Value) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({"iss": self.url, "aud": "api://toolgate", "sub": "alice",
            "groups": ["eng"], "exp": now + 300, "iat": now});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }
}

/// A gateway (echo upstream) that requires credentials and trusts `idp`,
/// with `extra` lines in its issuer entry.
async fn gateway_trusting(idp: &FakeIdp, extra: &str) -> (Gateway, CancellationToken) {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let gw = Gateway::start_with(
        &[("echo", http_server_toml("echo", &url, ""))],
        &format!(
            "[[auth.issuers]]\nname = \"idp\"\nissuer = \"{}\"\naudiences = [\"api://toolgate\"]\n{extra}",
            idp.url
        ),
        false,
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    (gw, ct)
}

#[tokio::test]
async fn access_tokens_from_a_configured_issuer() {
    let idp = FakeIdp::start().await;
    let (mut gw, ct) = gateway_trusting(&idp, "").await;
    let base = format!("http://{}", gw.addr);
    let issuer_ready = eventually(Duration::from_secs(10), || async {
        let (_, body) = gw.gateway().readiness();
        body["issuers"][0]["state"] == "ready"
    })
    .await;
    assert!(issuer_ready, "{}", gw.gateway().readiness().1);
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["authorization_servers"][0],
        idp.url.as_str(),
        "{metadata}"
    );

    // A valid token works on both paths.
    let token = idp.token(idp.claims(json!({})));
    assert_eq!(echo_with(&gw.url, &token, false).await, Ok("hello".into()));
    assert_eq!(echo_with(&gw.url, &token, true).await, Ok("hello".into()));

    // Wrong audience, an ID token, another issuer: 401 invalid_token.
    for (case, claims) in [
        ("wrong aud", idp.claims(json!({"aud": "api://other"}))),
        ("id token", idp.claims(json!({"nonce": "n"}))),
        (
            "other issuer",
            idp.claims(json!({"iss": "https://evil.test"})),
        ),
        ("no sub", idp.claims(json!({"sub": ""}))),
    ] {
        let r = initialize(&gw.url, Some(&idp.token(claims))).await;
        assert_eq!(r.status(), 401, "{case}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.contains("invalid_token"), "{case}: {challenge}");
    }

    // A flood of unknown kids costs the IdP at most one refresh.
    let before = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..20 {
        let forged = idp.keys.lock().unwrap().sign(
            json!({"alg": "RS256", "kid": format!("random-{i}")}),
            idp.claims(json!({})),
        );
        assert_eq!(initialize(&gw.url, Some(&forged)).await.status(), 401);
    }
    let after = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "{} JWKS fetches for 20 unknown kids",
        after - before
    );

    // The IdP goes down: the keys already fetched keep working.
    idp.stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(echo_with(&gw.url, &token, false).await, Ok("hello".into()));
    gw.shutdown().await;
    ct.cancel();
}

/// RFC 7515 §4.1.11: a token whose `crit` header names an extension the
/// gateway does not understand is invalid, even when the issuer's key
/// signed it; so is a malformed `crit`, and `b64`/`zip`/`x5c` headers.
#[tokio::test]
async fn tokens_with_critical_or_unsupported_headers_get_401() {
    let idp = FakeIdp::start().await;
    let (mut gw, ct) = gateway_trusting(&idp, "").await;
    let good = idp.token(idp.claims(json!({})));
    let ready = eventually(Duration::from_secs(10), || async {
        echo_with(&gw.url, &good, false).await == Ok("hello".into())
    })
    .await;
    assert!(ready, "a plain token from the IdP works");
    for extra in [
        json!({"crit": ["exp"], "exp": 1}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": ["urn:x:policy"], "urn:x:policy": "allow-all"}),
        json!({"crit": "exp", "exp": 1}),
        json!({"crit": []}),
        json!({"crit": [7]}),
        json!({"crit": ["alg"]}),
        json!({"crit": null}),
        json!({"b64": false}),
        json!({"zip": "DEF"}),
        json!({"x5c": ["MIIB"]}),
    ] {
        let token = {
            let keys = idp.keys.lock().unwrap();
            let mut header = json!({"alg": "RS256", "kid": keys.rsa_kid, "typ": "at+jwt"});
            for (k, v) in extra.as_object().unwrap() {
                header[k] = v.clone();
            }
            keys.sign(header, idp.claims(json!({})))
        };
        let r = initialize(&gw.url, Some(&token)).await;
        assert_eq!(r.status(), 401, "{extra}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.contains("invalid_token"), "{extra}: {challenge}");
    }
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn cached_keys_serve_a_bounded_time_then_fail_closed() {
    let idp = FakeIdp::start().await;
    let (mut gw, ct) = gateway_trusting(&idp, "keys_max_stale = \"1s\"").await;
    let token = idp.token(idp.claims(json!({})));
    assert_eq!(echo_with(&gw.url, &token, false).await, Ok("hello".into()));

    // The IdP goes away; a refresh (for an unknown kid) fails.
    idp.stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let unknown = idp.keys.lock().unwrap().sign(
        json!({"alg": "RS256", "kid": "rotated-away"}),
        idp.claims(json!({})),
    );
    assert_eq!(initialize(&gw.url, Some(&unknown)).await.status(), 401);
    // Within the bound the cached keys still verify new tokens...
    let bob = idp.token(idp.claims(json!({"sub": "bob"})));
    assert_eq!(echo_with(&gw.url, &bob, false).await, Ok("hello".into()));
    // ...past it, the issuer fails closed; /readyz says degraded, the
    // admin status why.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let carol = idp.token(idp.claims(json!({"sub": "carol"})));
    let r = initialize(&gw.url, Some(&carol)).await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("keys_max_stale"), "{body}");
    // (Still ready: API keys keep working while an IdP is away.)
    let ready: Value = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["issuers"][0]["state"], "degraded", "{ready}");
    let (_, detail) = gw.gateway().readiness();
    let reason = detail["issuers"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("failing closed"), "{detail}");
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refresh() {
    let idp = FakeIdp::start().await;
    let (mut gw, ct) = gateway_trusting(&idp, "").await;
    let first = idp.token(idp.claims(json!({})));
    assert!(
        eventually(Duration::from_secs(10), || async {
            initialize(&gw.url, Some(&first)).await.status() == 200
        })
        .await
    );
    let old = std::mem::replace(
        &mut *idp.keys.lock().unwrap(),
        toolgate::authenticate::jwt::test_issuer::TestIssuer::with_rsa_kid("rsa-2"),
    );
    let rotated = idp.token(idp.claims(json!({})));
    let before = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(initialize(&gw.url, Some(&rotated)).await.status(), 200);
    assert_eq!(
        idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst),
        before + 1
    );
    // The old key is gone from the IdP, so new tokens signed with it no
    // longer verify. (One already verified is remembered for at most 60 s.)
    let stale = old.sign(
        json!({"alg": "RS256", "kid": "rsa-1"}),
        idp.claims(json!({"sub": "bob"})),
    );
    assert_eq!(initialize(&gw.url, Some(&stale)).await.status(), 401);
    gw.shutdown().await;
    idp.stop.cancel();
    ct.cancel();
}

#[tokio::test]
async fn a_token_without_the_required_scope_gets_403() {
    let idp = FakeIdp::start().await;
    let (mut gw, ct) = gateway_trusting(&idp, "required_scopes = [\"mcp\"]\n").await;
    let scoped = idp.token(idp.claims(json!({"scope": "openid mcp"})));
    assert!(
        eventually(Duration::from_secs(10), || async {
            initialize(&gw.url, Some(&scoped)).await.status() == 200
        })
        .await
    );
    // Entra's `scp` counts too.
    let entra = idp.token(idp.claims(json!({"scp": "mcp"})));
    assert_eq!(initialize(&gw.url, Some(&entra)).await.status(), 200);
    for claims in [idp.claims(json!({"scp": "other"})), idp.claims(json!({}))] {
        let r = initialize(&gw.url, Some(&idp.token(claims))).await;
        assert_eq!(r.status(), 403);
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains("scope=\"mcp\""),
            "{challenge}"
        );
    }
    let metadata: Value = reqwest::get(format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        gw.addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(metadata["scopes_supported"], json!(["mcp"]), "{metadata}");
    gw.shutdown().await;
    idp.stop.cancel();
    ct.cancel();
}
