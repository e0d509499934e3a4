//! Identity against a real OpenID provider (tests/idp: npm
//! `oauth2-mock-server` on 127.0.0.1) issuing Okta- and Entra-shaped
//! tokens, through the gateway to an upstream; Entra groups overage against
//! an in-process Microsoft Graph stand-in; browser SSO round trips.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::common::idp::{CLIENT_ID, RealIdp};
use crate::common::*;
use crate::identity::{echo_with, initialize};

const T1: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const T2: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
const OID: &str = "11111111-1111-1111-1111-111111111111";

/// A gateway (recording echo upstream) requiring credentials, with
/// `auth` lines; returns once its issuers have keys.
async fn gateway(auth: &str) -> (Gateway, SeenHeaders, CancellationToken) {
    let ct = CancellationToken::new();
    let (url, seen) = http_upstream_recording(Echo::new, ct.clone()).await;
    let gw =
        Gateway::start_with(&[("echo", http_server_toml("echo", &url, ""))], auth, false).await;
    gw.wait_ready(&["echo"]).await;
    gw.wait_readyz().await;
    (gw, seen, ct)
}

/// `/auth/me` with a bearer token: status and body.
async fn me(gw: &Gateway, token: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/auth/me", gw.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn never_forwarded(seen: &SeenHeaders, token: &str) {
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the upstream was called");
    for headers in seen.iter() {
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        assert!(
            !format!("{headers:?}").contains(&token[..40]),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn okta_tokens_from_a_real_idp() {
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    let custom = "/okta/oauth2/default";
    let (gw, seen, ct) = gateway(&format!(
        "[[auth.issuers]]\nname = \"okta\"\nprovider = \"okta\"\nissuer = \"{}{custom}\"\n\
         audiences = [\"api://default\"]\nrequired_scopes = [\"mcp\"]\n\
         [auth.issuers.claims]\nstrip_prefix = \"toolgate-\"\n",
        idp.url
    ))
    .await;

    let token = idp
        .token(custom, json!({"groups": ["toolgate-eng", "Everyone"]}))
        .await;
    assert_eq!(echo_with(&gw.url, &token, false).await, Ok("hello".into()));
    assert_eq!(echo_with(&gw.url, &token, true).await, Ok("hello".into()));
    let (status, who) = me(&gw, &token).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["subject"], "okta:00u1abcd", "keyed by uid: {who}");
    assert_eq!(who["groups"], json!(["Everyone", "eng"]), "{who}");
    assert_eq!(who["client_id"], CLIENT_ID);
    assert_eq!(who["credential"], "access_token");
    assert_eq!(who["issuer"], format!("{}{custom}", idp.url));
    never_forwarded(&seen, &token);

    // The org authorization server's tokens are refused, saying why.
    let org = idp.token("/okta", json!({})).await;
    let r = initialize(&gw.url, Some(&org)).await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("org authorization server"), "{body}");

    // A token without the required scope: 403 insufficient_scope.
    let narrow = idp.token(custom, json!({"scp": ["openid"]})).await;
    let r = initialize(&gw.url, Some(&narrow)).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("scope=\"mcp\""));

    // Another audience, or none: refused.
    for aud in [json!("api://other"), Value::Null] {
        let t = idp.token(custom, json!({ "aud": aud })).await;
        assert_eq!(initialize(&gw.url, Some(&t)).await.status(), 401, "{aud}");
    }
    // Without SSO configured, browser sign-in says so.
    let r = reqwest::get(format!("http://{}/auth/login", gw.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    ct.cancel();
}

/// Microsoft Graph stand-in: a client-credentials token endpoint per
/// tenant and `getMemberGroups`, counting lookups.
struct FakeGraph {
    url: String,
    lookups: Arc<AtomicUsize>,
}

impl FakeGraph {
    async fn start(groups: Value) -> FakeGraph {
        use axum::routing::post;
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = lookups.clone();
        let app = axum::Router::new()
            .route(
                "/{tid}/token",
                post(|Path(tid): Path<String>, body: String| async move {
                    assert!(body.contains("client_secret=graph-secret"), "{body}");
                    assert!(body.contains("grant_type=client_credentials"), "{body}");
                    assert!(body.contains("client_id=graph-reader"), "{body}");
                    assert!(body.contains("scope=http%3A%2F%2F127.0.0.1%3A"), "{body}");
                    assert!(body.contains("%2F.default"), "{body}");
                    // RFC 6749 §5.1: `token_type` is required (Entra sends it).
                    axum::Json(json!({"access_token": format!("graph-{tid}"),
                        "token_type": "Bearer", "expires_in": 3600}))
                }),
            )
            .route(
                "/v1.0/users/{oid}/getMemberGroups",
                post(move |headers: HeaderMap, Path(oid): Path<String>| {
                    let counted = counted.clone();
                    let groups = groups.clone();
                    async move {
                        assert_eq!(oid, OID);
                        let auth = headers[header::AUTHORIZATION].to_str().unwrap();
                        assert_eq!(auth, format!("Bearer graph-{T1}"));
                        counted.fetch_add(1, Ordering::SeqCst);
                        axum::Json(json!({ "value": groups }))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGraph { url, lookups }
    }
}

fn entra_toml(idp: &RealIdp, graph: Option<&FakeGraph>) -> String {
    let mut toml = format!(
        "[[auth.issuers]]\nname = \"entra\"\nprovider = \"entra\"\ntenants = [\"{T1}\", \"{T2}\"]\n\
         authority = \"{url}/entra\"\nsts = \"{url}/sts\"\n\
         audiences = [\"api://toolgate\", \"toolgate-api\"]\nrequired_scopes = [\"mcp.call\"]\n\
         [auth.issuers.group_map]\n\"0f5a-eng\" = \"eng\"\n",
        url = idp.url
    );
    if let Some(graph) = graph {
        toml.push_str(&format!(
            "[auth.issuers.graph]\nclient_id = \"graph-reader\"\nclient_secret = \"graph-secret\"\n\
             endpoint = \"{g}\"\ntoken_url = \"{g}/{{tid}}/token\"\n",
            g = graph.url
        ));
    }
    toml
}

#[tokio::test]
async fn entra_tokens_from_a_real_idp() {
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    let graph = FakeGraph::start(json!(["0f5a-eng", "9c1d-ops"])).await;
    let (gw, seen, ct) = gateway(&entra_toml(&idp, Some(&graph))).await;
    let v2 = |tid: &str| format!("/entra/{tid}/v2.0");

    // v2 token of an allowed tenant: through to the upstream.
    let token = idp
        .token(
            &v2(T1),
            json!({"oid": OID, "groups": ["0f5a-eng"], "roles": ["Tools.Write"]}),
        )
        .await;
    assert_eq!(echo_with(&gw.url, &token, false).await, Ok("hello".into()));
    let (status, who) = me(&gw, &token).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["subject"], format!("entra:{T1}:{OID}"), "tid + oid");
    assert_eq!(who["tenant"], T1);
    assert_eq!(who["groups"], json!(["eng"]), "mapped by group_map");
    assert_eq!(who["roles"], json!(["Tools.Write"]));
    assert_eq!(who["scopes"], json!(["mcp.call"]));
    never_forwarded(&seen, &token);

    // v1 token (sts issuer, App ID URI audience) of the other tenant.
    let v1 = idp.token(&format!("/sts/{T2}"), json!({"oid": OID})).await;
    assert_eq!(echo_with(&gw.url, &v1, false).await, Ok("hello".into()));
    assert_eq!(me(&gw, &v1).await.1["subject"], format!("entra:{T2}:{OID}"));

    // A tenant outside the allowlist, and an iss/tid mismatch: refused.
    let other = idp
        .token(&v2("99999999-0000-0000-0000-000000000000"), json!({}))
        .await;
    let r = initialize(&gw.url, Some(&other)).await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("allowlist"), "{body}");
    let mismatch = idp.token(&v2(T1), json!({ "tid": T2 })).await;
    let r = initialize(&gw.url, Some(&mismatch)).await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("`tid`"), "{body}");

    // Groups overage: looked up in Graph once, then remembered.
    let overage = json!({
        "oid": OID, "groups": null,
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}}
    });
    let big = idp.token(&v2(T1), overage.clone()).await;
    let (status, who) = me(&gw, &big).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["groups"], json!(["9c1d-ops", "eng"]), "{who}");
    let again = idp.token(&v2(T1), overage.clone()).await;
    assert_eq!(me(&gw, &again).await.0, 200);
    assert_eq!(graph.lookups.load(Ordering::SeqCst), 1);
    drop(gw);

    // Without Graph configured, an overage token fails closed, saying why.
    let (gw, _, ct2) = gateway(&entra_toml(&idp, None)).await;
    let big = idp.token(&v2(T1), overage).await;
    let r = initialize(&gw.url, Some(&big)).await;
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("[auth.issuers.graph]"), "{body}");
    ct.cancel();
    ct2.cancel();
}

#[tokio::test]
async fn graph_token_endpoint_redirects_and_oversized_answers_fail_closed() {
    use axum::routing::post;
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    // Where the redirect points: it would hand out a token; counts visits.
    let visits = Arc::new(AtomicUsize::new(0));
    let counted = visits.clone();
    let elsewhere = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { axum::Json(json!({"access_token": "stolen", "token_type": "Bearer"})) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, elsewhere).await.unwrap() });
    // Tenant T1's token endpoint redirects; T2's answers past the 4 MiB cap.
    let to = elsewhere_url.clone();
    let hostile = axum::Router::new().route(
        "/{tid}/token",
        post(move |Path(tid): Path<String>| {
            let to = to.clone();
            async move {
                if tid == T1 {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, format!("{to}/{tid}/token"))],
                    )
                        .into_response()
                } else {
                    let pad = "x".repeat(4 * 1024 * 1024 + 1);
                    axum::Json(json!({"access_token": "a", "token_type": "Bearer", "pad": pad}))
                        .into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hostile).await.unwrap() });
    let graph = FakeGraph {
        url,
        lookups: Arc::default(),
    };
    let (gw, _, ct) = gateway(&entra_toml(&idp, Some(&graph))).await;
    let overage = json!({
        "oid": OID, "groups": null, "_claim_names": {"groups": "src1"}
    });
    for (tid, why) in [(T1, "redirect"), (T2, "over the limit")] {
        let big = idp
            .token(&format!("/entra/{tid}/v2.0"), overage.clone())
            .await;
        let (status, body) = me(&gw, &big).await;
        assert_eq!(status, 503, "{tid}: {body}");
        let body = body.to_string();
        assert!(
            body.contains(why) && body.contains("Graph"),
            "{tid}: {body}"
        );
    }
    assert_eq!(
        visits.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    ct.cancel();
}

/// The `name=value` of a `Set-Cookie` named `name`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn first_part(cookie: &str) -> String {
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn browser_sign_in_round_trip() {
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    let custom = "/okta/oauth2/default";
    let (gw, _, ct) = gateway(&format!(
        "[[auth.issuers]]\nname = \"okta\"\nprovider = \"okta\"\nissuer = \"{}{custom}\"\n\
         audiences = [\"api://default\"]\n[auth.issuers.claims]\nstrip_prefix = \"toolgate-\"\n\
         [auth.sso]\nissuer = \"okta\"\nclient_id = \"toolgate-web\"\nclient_secret = \"web-secret\"\n\
         session_ttl = \"1h\"\n",
        idp.url
    ))
    .await;
    idp.set_login(json!({
        "sub": "alice@example.com", "uid": "00u-alice", "name": "Alice",
        "email": "alice@example.com", "groups": ["toolgate-approvers"]
    }))
    .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://{}", gw.addr);

    // 1. toolgate sends the browser to the IdP with state, nonce and PKCE.
    let r = browser
        .get(format!("{base}/auth/login?next=/auth/me%3Fx%3D1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to_idp = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(
        to_idp.starts_with(&format!("{}{custom}/", idp.url)),
        "{to_idp}"
    );
    for part in [
        "code_challenge_method=S256",
        "nonce=",
        "state=",
        "client_id=toolgate-web",
    ] {
        assert!(to_idp.contains(part), "{part} in {to_idp}");
    }
    let login = set_cookie(&r, "toolgate-login").expect("a login cookie");
    assert!(
        login.contains("HttpOnly") && login.contains("SameSite=Lax"),
        "{login}"
    );
    let login = first_part(&login);

    // 2. The IdP signs Alice in and sends the browser back with a code.
    let r = browser.get(&to_idp).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let back = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(
        back.starts_with(&format!("{base}/auth/callback?")),
        "{back}"
    );

    // A callback without the login cookie (another browser) is refused.
    let r = browser.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // 3. The callback redeems the code: a session cookie, back to `next`.
    // (The refused attempt above never reached the IdP: the code is fresh.)
    let r = browser
        .get(&back)
        .header(header::COOKIE, &login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()[header::LOCATION], "/auth/me?x=1");
    let session = set_cookie(&r, "toolgate-session").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain http: no Secure, no __Host-"
    );
    let session = first_part(&session);

    // The same code again (a replay) gets nothing.
    let r = browser
        .get(&back)
        .header(header::COOKIE, &login)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_server_error());
    assert!(set_cookie(&r, "toolgate-session").is_none());

    // 4. The session says who signed in, on browser routes only.
    let with_cookie = |path: &str, cookie: &str| {
        browser
            .get(format!("{base}{path}"))
            .header(header::COOKIE, cookie.to_string())
            .send()
    };
    let r = with_cookie("/auth/me", &session).await.unwrap();
    assert_eq!(r.status(), 200);
    let who: Value = r.json().await.unwrap();
    assert_eq!(who["subject"], "okta:00u-alice", "{who}");
    assert_eq!(who["name"], "Alice");
    assert_eq!(who["groups"], json!(["approvers"]));
    assert_eq!(who["credential"], "session");
    let r = browser
        .post(&gw.url)
        .header(header::COOKIE, &session)
        .header(header::ACCEPT, "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a browser session is no credential for /mcp"
    );

    // A tampered cookie is refused.
    let mut forged = session.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        with_cookie("/auth/me", &forged).await.unwrap().status(),
        401
    );

    // 5. Sign out: the session is gone (server-side, not just the cookie).
    let r = browser
        .post(format!("{base}/auth/logout"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        set_cookie(&r, "toolgate-session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        with_cookie("/auth/me", &session).await.unwrap().status(),
        401
    );

    // A wrong state is refused, even with a valid login cookie.
    let r = browser
        .get(format!("{base}/auth/login"))
        .send()
        .await
        .unwrap();
    let login = first_part(&set_cookie(&r, "toolgate-login").unwrap());
    let r = browser
        .get(format!("{base}/auth/callback?code=x&state=not-the-state"))
        .header(header::COOKIE, &login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // An IdP error comes back as a readable page.
    let r = browser
        .get(format!(
            "{base}/auth/callback?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("access_denied") && page.contains("&lt;b&gt;no"),
        "{page}"
    );
    // The sign-in and the sign-out are in the audit trail.
    let store = toolgate::storage::Store::open(None, &gw.dir.path().join("data"))
        .await
        .unwrap();
    let kinds: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT kind, subject FROM audit_records WHERE kind IN ('login', 'logout') ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let subject = kinds.first().and_then(|(_, s)| s.clone());
    assert!(subject.is_some(), "{kinds:?}");
    assert_eq!(
        kinds,
        [
            ("login".to_string(), subject.clone()),
            ("logout".to_string(), subject)
        ],
    );
    ct.cancel();
}
