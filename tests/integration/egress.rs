//! Egress through the real gateway: upstream links never follow a
//! redirect (the server's headers would go with it), never connect to a
//! link-local or metadata address however it is spelled or resolved, and
//! never show an upstream's credentials on `/readyz`; details are for
//! admins on `/admin/v1/status`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::config::{Config, HostResolver};
use toolgate::reference::echo::Echo;
use toolgate::reference::notes::Notes;

use crate::common::*;
use crate::rbac::{Session, default_policies, key};

/// Headers toolgate sends this upstream: they must reach nobody else.
const UPSTREAM_HEADERS: &str = "[headers]\nAuthorization = \"Bearer upstream-credential-7f3a\"\nX-Api-Key = \"api-key-value-91c2\"\n";

/// Serve something on 127.0.0.1:0 that answers every request with
/// `status` and `Location: location`; returns its `/mcp` URL.
async fn redirector(status: u16, location: String, ct: CancellationToken) -> String {
    let router = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            axum::response::Response::builder()
                .status(status)
                .header("location", location)
                .body(axum::body::Body::empty())
                .unwrap()
        }
    });
    serve(router, ct).await
}

/// The detailed entry of upstream `name` (what admins see), once it is
/// down with a reason.
async fn down_reason(gw: &Gateway, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, detail) = gw.gateway().readiness();
        let entry = detail["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap();
        if entry["health"]["state"] == "down" {
            return entry["health"]["reason"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn redirecting_upstream_never_forwards_headers_or_serves_foreign_tools() {
    let ct = CancellationToken::new();
    // Where the redirects point: a real MCP server with other tools, which
    // records every request that reaches it.
    let (target, seen) = http_upstream_recording(Notes::new, ct.clone()).await;
    let echo = http_upstream(Echo::new, ct.clone()).await;
    let mut servers = vec![("echo", http_server_toml("echo", &echo, ""))];
    let statuses = [301u16, 302, 303, 307, 308];
    let names: Vec<String> = statuses.iter().map(|s| format!("redir{s}")).collect();
    for (status, name) in statuses.iter().zip(&names) {
        // Absolute and relative locations alike.
        let location = if *status == 303 {
            "/elsewhere".to_string()
        } else {
            target.clone()
        };
        let url = redirector(*status, location, ct.clone()).await;
        servers.push((
            name.as_str(),
            http_server_toml(
                name,
                &url,
                &format!("{UPSTREAM_HEADERS}[timeouts]\nconnect = \"3s\""),
            ),
        ));
    }
    let mut gw = Gateway::start(&servers, "").await;
    gw.wait_ready(&["echo"]).await;
    for (status, name) in statuses.iter().zip(&names) {
        let reason = down_reason(&gw, name).await;
        assert!(
            reason.contains(&format!("HTTP {status}"))
                && reason.contains("does not follow redirects")
                && reason.contains(&format!("servers/{name}.toml")),
            "{name}: {reason}"
        );
        assert!(!reason.contains("upstream-credential"), "{reason}");
    }
    let (client, _) = connect(&gw.url).await;
    let tools = tool_names(&client).await;
    assert!(
        tools
            .iter()
            .all(|t| !t.starts_with("redir") && !t.contains("note")),
        "the redirect target's tools must not appear: {tools:?}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request reached the redirect target"
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

/// An echo upstream that accepts requests for `host` (besides loopback
/// names); returns the router to serve.
fn echo_router(host: &str, ct: &CancellationToken) -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let service = StreamableHttpService::new(
        || Ok(Echo::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(["127.0.0.1", "localhost", host])
            .with_cancellation_token(ct.child_token()),
    );
    axum::Router::new().nest_service("/mcp", service)
}

/// Serve `router` on 127.0.0.1:0 until `ct`; returns its `/mcp` URL.
async fn serve(router: axum::Router, ct: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_until(listener, router, ct);
    format!("http://{addr}/mcp")
}

/// An upstream that answers `tools/call` with a 307 to `target` once
/// `redirect` is set (everything else as usual).
async fn turncoat(redirect: Arc<AtomicBool>, target: String, ct: CancellationToken) -> String {
    let router = echo_router("127.0.0.1", &ct).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (redirect, target) = (redirect.clone(), target.clone());
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let is_call = String::from_utf8_lossy(&bytes).contains("tools/call");
                if is_call && redirect.load(Ordering::SeqCst) {
                    return axum::response::Response::builder()
                        .status(307)
                        .header("location", target)
                        .body(axum::body::Body::empty())
                        .unwrap();
                }
                let request =
                    axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                next.run(request).await
            }
        },
    ));
    serve(router, ct).await
}

#[tokio::test]
async fn connected_upstream_that_starts_redirecting_calls_is_refused_on_both_paths() {
    let ct = CancellationToken::new();
    let (target, seen) = http_upstream_recording(Echo::new, ct.clone()).await;
    let redirect = Arc::new(AtomicBool::new(false));
    let url = turncoat(redirect.clone(), target, ct.clone()).await;
    let servers = [(
        "turncoat",
        http_server_toml("turncoat", &url, UPSTREAM_HEADERS),
    )];
    let mut gw = Gateway::start_governed(&servers, "", false, &[ALLOW_ALL]).await;
    gw.wait_ready(&["turncoat"]).await;
    let caller = key(&gw, "agent", &[]);
    for via_rmcp in [false, true] {
        let session = Session::open(&gw.url, &caller, via_rmcp).await;
        redirect.store(false, Ordering::SeqCst);
        let before = session
            .call("turncoat__echo", json!({"message": "hi"}))
            .await;
        assert_eq!(before, Ok("hi".to_string()), "via_rmcp={via_rmcp}");
        redirect.store(true, Ordering::SeqCst);
        let after = session
            .call("turncoat__echo", json!({"message": "follow me"}))
            .await;
        let error = after.expect_err("a redirected call must fail");
        assert!(!error.contains("follow me"), "via_rmcp={via_rmcp}: {error}");
        // The caller is told why, on either path.
        assert!(
            error.contains("HTTP 307") && error.contains("does not follow redirects"),
            "via_rmcp={via_rmcp}: {error}"
        );
        assert!(!error.contains("upstream-credential"), "{error}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request reached the redirect target"
    );
    gw.shutdown().await;
    ct.cancel();
}

/// The load error for a server at `url` (with `extra` lines), or `None`
/// when it loads.
fn load_error(url: &str, extra: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("servers/meta.toml"),
        http_server_toml("meta", url, extra),
    )
    .unwrap();
    let cfg = dir.path().join("toolgate.toml");
    std::fs::write(&cfg, "").unwrap();
    Config::load(Some(&cfg), TOOLGATE)
        .err()
        .map(|e| e.to_string())
}

#[test]
fn metadata_and_link_local_upstream_urls_are_refused_at_load_unless_allowed() {
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:80/mcp",
        "http://2852039166/mcp",
        "http://0xA9FEA9FE/mcp",
        "http://0251.0376.0251.0376/mcp",
        "http://0xa9.254.0251.0xfe/mcp",
        "http://169.254.43518/mcp",
        "http://169.254.10.10:3001/mcp",
        "http://[::ffff:169.254.169.254]/mcp",
        "http://[::ffff:a9fe:a9fe]/mcp",
        "http://[64:ff9b::a9fe:a9fe]/mcp",
        "http://[fe80::1]:3001/mcp",
        "http://[fe80::1%25eth0]/mcp",
        "http://[fd00:ec2::254]/mcp",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://Metadata.Google.Internal./mcp",
        "http://metadata.goog/mcp",
        "http://metadata/mcp",
        "http://instance-data.ec2.internal/mcp",
        "https://token:secret-in-userinfo@169.254.169.254/mcp",
    ] {
        let error = load_error(url, "").unwrap_or_else(|| panic!("{url} was accepted"));
        // An unparsable spelling is refused too, just with another message.
        let refused_as_metadata = error.contains("allow_link_local = true");
        assert!(
            refused_as_metadata || error.contains("not a valid URL"),
            "{url}: {error}"
        );
        assert!(
            error.contains("meta.toml") && error.contains("`url`"),
            "{url}: {error}"
        );
        assert!(!error.contains("secret-in-userinfo"), "{error}");
        if refused_as_metadata {
            assert_eq!(
                load_error(url, "allow_link_local = true"),
                None,
                "{url} allowed"
            );
        }
    }
    // Loopback and private ranges are where upstreams live.
    for url in [
        "http://127.0.0.1:3001/mcp",
        "http://localhost:3001/mcp",
        "http://10.1.2.3/mcp",
        "http://192.168.0.10/mcp",
        "http://[::1]:3001/mcp",
        "http://[fd12:3456::1]/mcp",
        "http://169.255.169.254/mcp",
    ] {
        assert_eq!(load_error(url, ""), None, "{url}");
    }
}

#[test]
fn toolgate_check_refuses_a_metadata_upstream_and_shows_urls_without_credentials() {
    let check = |url: &str| {
        let dir = tempfile::tempdir().unwrap();
        write_policies(dir.path(), &[ALLOW_ALL]);
        std::fs::write(dir.path().join("toolgate.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("servers")).unwrap();
        std::fs::write(
            dir.path().join("servers/up.toml"),
            http_server_toml("up", url, ""),
        )
        .unwrap();
        let out = std::process::Command::new(TOOLGATE)
            .arg("--config")
            .arg(dir.path().join("toolgate.toml"))
            .arg("check")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text) = check("http://0xA9FEA9FE/mcp");
    assert!(!ok && text.contains("cloud instance metadata"), "{text}");
    let (ok, text) = check("http://svc:pw-7d1e@127.0.0.1:9/mcp?key=qk-55aa");
    assert!(ok, "{text}");
    assert!(
        text.contains("http://***@127.0.0.1:9/mcp?key=***"),
        "{text}"
    );
    assert!(
        !text.contains("pw-7d1e") && !text.contains("qk-55aa"),
        "{text}"
    );
}

#[tokio::test]
async fn names_resolving_to_link_local_addresses_are_refused_at_connect() {
    let ct = CancellationToken::new();
    let echo = serve(echo_router("good.test", &ct), ct.clone()).await;
    let port = echo
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .to_string();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let table: HashMap<String, Vec<IpAddr>> = HashMap::from([
        // A control: the name resolves through the table to the real upstream.
        ("good.test".into(), vec![ip("127.0.0.1")]),
        ("meta.test".into(), vec![ip("169.254.169.254")]),
        ("linklocal.test".into(), vec![ip("169.254.3.4")]),
        ("mapped.test".into(), vec![ip("::ffff:169.254.169.254")]),
        ("v6.test".into(), vec![ip("fe80::1")]),
        // One bad answer among good ones refuses the name.
        (
            "mixed.test".into(),
            vec![ip("127.0.0.1"), ip("169.254.169.254")],
        ),
    ]);
    let bad = ["meta", "linklocal", "mapped", "v6", "mixed"];
    let mut servers = vec![(
        "good",
        http_server_toml("good", &format!("http://good.test:{port}/mcp"), ""),
    )];
    for name in bad {
        servers.push((
            name,
            http_server_toml(
                name,
                &format!("http://{name}.test:{port}/mcp"),
                "[timeouts]\nconnect = \"3s\"",
            ),
        ));
    }
    let resolver = HostResolver::Fixed(Arc::new(table));
    let mut gw = Gateway::start_configured(&servers, "", true, &[ALLOW_ALL], |config| {
        config.host_resolver = resolver;
    })
    .await;
    gw.wait_ready(&["good"]).await;
    for name in bad {
        let reason = down_reason(&gw, name).await;
        assert!(
            reason.contains(&format!("`{name}.test` resolves to"))
                && reason.contains("allow_link_local = true"),
            "{name}: {reason}"
        );
    }
    let (client, _) = connect(&gw.url).await;
    let tools = tool_names(&client).await;
    assert!(tools.contains(&"good__echo".to_string()), "{tools:?}");
    assert!(
        bad.iter()
            .all(|b| tools.iter().all(|t| !t.starts_with(&format!("{b}__")))),
        "{tools:?}"
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn readyz_never_shows_upstream_credentials_and_details_are_for_admins() {
    // Set by cargo for the test process: a value only an `${env:…}`
    // reference puts into the URL.
    let from_env = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("path-token");
    std::fs::write(&token_file, "file-secret-c0ffee\n").unwrap();
    let token_file = token_file.display().to_string();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!(
        "http://svc-user:pa55word-e1f0@{dead}/mcp/${{file:{token_file}}}?key=${{env:CARGO_MANIFEST_DIR}}&api_key=literal-query-key-3b9d"
    );
    let server = http_server_toml(
        "secretive",
        &url,
        &format!("[headers]\nX-Api-Key = \"${{file:{token_file}}}\"\n[timeouts]\nconnect = \"2s\""),
    );
    let files = default_policies(&[]);
    let files = Gateway::policy_refs(&files);
    let mut gw = Gateway::start_governed(&[("secretive", server)], "", false, &files).await;
    let reason = down_reason(&gw, "secretive").await;
    let never = [
        "svc-user",
        "pa55word-e1f0",
        "file-secret-c0ffee",
        from_env.as_str(),
        "literal-query-key-3b9d",
    ];
    let leaks =
        |text: &str| -> Vec<&str> { never.iter().copied().filter(|s| text.contains(s)).collect() };
    assert!(leaks(&reason).is_empty(), "{reason}");

    // Public: states only, no addresses, no error texts.
    let readyz = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(leaks(&readyz).is_empty(), "{readyz}");
    let readyz: Value = serde_json::from_str(&readyz).unwrap();
    assert_eq!(readyz["upstreams"][0]["name"], "secretive", "{readyz}");
    assert_eq!(
        readyz["upstreams"][0]["health"]["state"], "down",
        "{readyz}"
    );
    let text = readyz.to_string();
    assert!(
        !text.contains(&dead.to_string()) && !text.contains("reason") && !text.contains("url"),
        "{readyz}"
    );

    // Admins see why and where (still without credentials); others do not.
    let status = |key: String| admin_status(gw.addr, key);
    let (code, body) = status(key(&gw, "ops", &["admin"])).await;
    assert_eq!(code, 200, "{body}");
    assert!(leaks(&body).is_empty(), "{body}");
    let detail: Value = serde_json::from_str(&body).unwrap();
    let entry = &detail["upstreams"][0];
    assert_eq!(
        entry["url"],
        format!("http://***@{dead}/mcp/***?key=***&api_key=***"),
        "{detail}"
    );
    assert!(
        entry["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{detail}"
    );
    let (code, body) = status(key(&gw, "dev", &["eng"])).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        leaks(&body).is_empty() && !body.contains("cannot connect"),
        "{body}"
    );
    let unauthenticated = reqwest::get(format!("http://{}/admin/v1/status", gw.addr))
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    gw.shutdown().await;
}

#[tokio::test]
async fn audit_forwarding_never_follows_a_redirect() {
    use std::sync::atomic::AtomicUsize;
    let ct = CancellationToken::new();
    // Where the redirect points: counts what reaches it.
    let reached = Arc::new(AtomicUsize::new(0));
    let target = {
        let reached = reached.clone();
        let router = axum::Router::new().fallback(move || {
            reached.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        });
        serve(router, ct.clone()).await
    };
    let receiver = redirector(307, target, ct.clone()).await;
    let echo = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[("echo", http_server_toml("echo", &echo, ""))],
        &format!(
            "[audit.forward]\nurl = \"{receiver}?token=siem-query-token\"\nauthorization = \"Bearer siem-token\"\ninterval = \"100ms\"\nmax_backoff = \"200ms\"\n"
        ),
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let (client, _) = connect(&gw.url).await;
    client
        .call_tool(call("echo__echo", json!({"message": "audited"})))
        .await
        .unwrap();
    let stats = gw.gateway().pipeline.audit.forwarded.clone();
    let failed = eventually(Duration::from_secs(10), || {
        let stats = stats.clone();
        async move { stats.failures.load(Ordering::SeqCst) >= 2 }
    })
    .await;
    assert!(failed, "the redirect should count as a failed delivery");
    assert_eq!(stats.delivered.load(Ordering::SeqCst), 0);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "a delivery followed the redirect"
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}
