//! Browser sign-in against an identity provider that answers the code
//! exchange with what it should not: ID tokens forged, meant for another
//! client or another sign-in, or signed in ways toolgate does not accept;
//! token endpoints that redirect, or send more than toolgate reads. The
//! IdP is an in-process axum server (discovery, JWKS from a test issuer,
//! a token endpoint answering what the test sets); the gateway is the real
//! one, redeeming the code through `openidconnect` and its own verifier.
//! Well-behaved sign-ins against a real provider: `providers.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::authenticate::jwt::test_issuer::TestIssuer;
use toolgate::reference::echo::Echo;

use crate::common::*;

const CLIENT_ID: &str = "toolgate-web";
/// Characters RFC 6749 §2.3.1 says must be form-encoded before Basic.
const SECRET: &str = "s3cr:t+/ é%";

/// What the token endpoint answers next.
#[derive(Clone)]
enum Answer {
    /// 200 with a token response carrying this ID token.
    IdToken(String),
    /// Exactly this status, content type and body.
    Raw(StatusCode, &'static str, Vec<u8>),
    /// A redirect to this URL.
    Redirect(StatusCode, String),
    /// 200 with a body that never ends.
    Endless,
}

/// The token requests the IdP saw: form and `Authorization` header.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, Option<String>)>>>;

struct HostileIdp {
    url: String,
    keys: Arc<TestIssuer>,
    answer: Arc<Mutex<Option<Answer>>>,
    seen: Seen,
    stop: CancellationToken,
}

impl HostileIdp {
    async fn start() -> HostileIdp {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let keys = Arc::new(TestIssuer::new());
        let answer: Arc<Mutex<Option<Answer>>> = Arc::default();
        let seen: Seen = Arc::default();
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        });
        let jwks = keys.jwks();
        let (a, s) = (answer.clone(), seen.clone());
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route("/jwks", get(move || async move { jwks }))
            .route(
                "/token",
                post(move |headers: HeaderMap, body: String| {
                    let (a, s) = (a.clone(), s.clone());
                    async move {
                        let form = form_urlencoded::parse(body.as_bytes())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                        let auth = headers
                            .get(header::AUTHORIZATION)
                            .map(|v| v.to_str().unwrap().to_string());
                        s.lock().unwrap().push((form, auth));
                        let next = a.lock().unwrap().clone();
                        answer_with(next.expect("the test set an answer"))
                    }
                }),
            );
        let stop = CancellationToken::new();
        serve_until(listener, router, stop.clone());
        HostileIdp {
            url,
            keys,
            answer,
            seen,
            stop,
        }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = Some(answer);
    }

    fn token_requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// ID token claims for the sign-in that sent `nonce`, with `extra`
    /// merged (a `null` removes a claim).
    fn claims(&self, nonce: &str, extra: Value) -> Value {
        let now = now();
        let mut claims = json!({"iss": self.url, "aud": CLIENT_ID, "sub": "alice",
            "name": "Alice", "exp": now + 300, "iat": now, "nonce": nonce});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    /// An RS256 ID token signed with the issuer's key.
    fn rs256(&self, claims: Value) -> String {
        self.keys
            .sign(json!({"alg": "RS256", "kid": self.keys.rsa_kid}), claims)
    }
}

impl Drop for HostileIdp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn answer_with(answer: Answer) -> Response {
    match answer {
        Answer::IdToken(id_token) => axum::Json(json!({
            "access_token": "opaque-access", "token_type": "Bearer",
            "expires_in": 300, "id_token": id_token
        }))
        .into_response(),
        Answer::Raw(status, content_type, body) => {
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Answer::Redirect(status, to) => (status, [(header::LOCATION, to)]).into_response(),
        Answer::Endless => {
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with this header and claims and an HMAC-SHA256 tag under `key`.
fn hs256(header: Value, claims: &Value, key: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), signed.as_bytes());
    format!("{signed}.{}", b64(tag.as_ref()))
}

/// A gateway whose browser sign-in uses `idp`; returns once its keys are in.
async fn gateway(idp: &HostileIdp) -> (Gateway, CancellationToken) {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let gw = Gateway::start_with(
        &[("echo", http_server_toml("echo", &url, ""))],
        &format!(
            "[[auth.issuers]]\nname = \"hostile\"\nissuer = \"{}\"\naudiences = [\"api://toolgate\"]\n\
             [auth.sso]\nissuer = \"hostile\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{}\"\nsession_ttl = \"1h\"\n",
            idp.url,
            SECRET.replace('\\', "\\\\")
        ),
        false,
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    gw.wait_readyz().await;
    (gw, ct)
}

/// What one sign-in came to.
struct Outcome {
    status: StatusCode,
    page: String,
    session: bool,
}

/// One sign-in: `/auth/login`, then the callback with a code, the token
/// endpoint answering `answer(nonce)`.
async fn sign_in(gw: &Gateway, idp: &HostileIdp, answer: impl FnOnce(&str) -> Answer) -> Outcome {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://{}", gw.addr);
    let r = browser
        .get(format!("{base}/auth/login?next=/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to_idp = url::Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    let login = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("toolgate-login="))
        .expect("a login cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let param = |name: &str| {
        to_idp
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {to_idp}"))
    };
    idp.answer(answer(&param("nonce")));
    let callback = format!(
        "{base}/auth/callback?code=the-code&state={}",
        param("state")
    );
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        browser.get(callback).header(header::COOKIE, login).send(),
    )
    .await
    .expect("the callback answers in time")
    .unwrap();
    let status = r.status();
    let session = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("toolgate-session="));
    let page = r.text().await.unwrap();
    Outcome {
        status,
        page,
        session,
    }
}

/// Expects a refused sign-in whose page says `why`.
#[track_caller]
fn refused(outcome: &Outcome, status: u16, why: &str, case: &str) {
    eprintln!("{case}: {} {}", outcome.status, outcome.page);
    assert_eq!(outcome.status, status, "{case}: {}", outcome.page);
    assert!(!outcome.session, "{case}: a session was started");
    assert!(
        outcome.page.contains(why),
        "{case}: {why:?} not in {}",
        outcome.page
    );
}

#[tokio::test]
async fn sign_in_accepts_rs256_and_es256_id_tokens_for_this_sign_in() {
    let idp = HostileIdp::start().await;
    let (mut gw, ct) = gateway(&idp).await;
    let ok = sign_in(&gw, &idp, |nonce| {
        Answer::IdToken(idp.rs256(idp.claims(nonce, json!({}))))
    })
    .await;
    assert_eq!(ok.status, 303, "{}", ok.page);
    assert!(ok.session);
    // What the gateway sent: the PKCE verifier, and client_secret_basic
    // with id and secret form-encoded first (RFC 6749 §2.3.1).
    let (form, auth) = idp.seen.lock().unwrap().last().cloned().unwrap();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(field("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(field("code").as_deref(), Some("the-code"));
    let verifier = field("code_verifier").expect("a PKCE verifier");
    assert!((43..=128).contains(&verifier.len()), "{verifier}");
    assert_eq!(field("client_secret"), None, "the secret goes in Basic");
    let basic = auth.expect("client_secret_basic").replace("Basic ", "");
    let pair = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(basic)
            .unwrap(),
    )
    .unwrap();
    let encoded: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    assert_eq!(pair, format!("{CLIENT_ID}:{encoded}"));

    let es256 = sign_in(&gw, &idp, |nonce| {
        Answer::IdToken(idp.keys.sign(
            json!({"alg": "ES256", "kid": "ec-1"}),
            idp.claims(nonce, json!({})),
        ))
    })
    .await;
    assert_eq!(es256.status, 303, "{}", es256.page);
    // Expired within the configured clock skew (60 s): still fine.
    let skewed = sign_in(&gw, &idp, |nonce| {
        let exp = now() - 20;
        Answer::IdToken(idp.rs256(idp.claims(nonce, json!({"exp": exp}))))
    })
    .await;
    assert_eq!(skewed.status, 303, "{}", skewed.page);
    // `azp` naming this client is fine.
    let azp = sign_in(&gw, &idp, |nonce| {
        Answer::IdToken(idp.rs256(idp.claims(nonce, json!({"azp": CLIENT_ID}))))
    })
    .await;
    assert_eq!(azp.status, 303, "{}", azp.page);
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn sign_in_refuses_id_tokens_meant_for_another_client_or_sign_in() {
    let idp = HostileIdp::start().await;
    let (mut gw, ct) = gateway(&idp).await;
    let now = now();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "nonce of another sign-in",
            json!({"nonce": "n-0123456789abcdef"}),
            "nonce",
        ),
        ("no nonce", json!({"nonce": null}), "nonce"),
        (
            "another client's token",
            json!({"aud": "other-client"}),
            "audience",
        ),
        ("no audience", json!({"aud": null}), "aud"),
        (
            "this client and an untrusted other audience",
            json!({"aud": [CLIENT_ID, "other-client"]}),
            "not a trusted audience",
        ),
        (
            "authorized party is another client",
            json!({"azp": "other-client"}),
            "azp",
        ),
        (
            "another issuer",
            json!({"iss": "http://127.0.0.1:1/evil"}),
            "issuer",
        ),
        (
            "expired beyond the skew",
            json!({"exp": now - 120}),
            "expired",
        ),
        ("no expiry", json!({"exp": null}), "exp"),
        ("not valid yet", json!({"nbf": now + 600}), "not valid yet"),
        ("no issue time", json!({"iat": null}), "iat"),
        ("no subject", json!({"sub": null}), "sub"),
    ];
    for (case, extra, why) in cases {
        let before = idp.token_requests();
        let outcome = sign_in(&gw, &idp, |nonce| {
            Answer::IdToken(idp.rs256(idp.claims(nonce, extra.clone())))
        })
        .await;
        assert_eq!(idp.token_requests(), before + 1, "{case}: one exchange");
        refused(&outcome, 400, why, case);
    }
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn sign_in_refuses_forged_or_unacceptably_signed_id_tokens() {
    let idp = HostileIdp::start().await;
    let (mut gw, ct) = gateway(&idp).await;
    let impostor = TestIssuer::new();
    type Forge = Box<dyn Fn(&HostileIdp, Value) -> String>;
    let cases: Vec<(&str, Forge, &str)> = vec![
        (
            "alg none",
            Box::new(|_, claims| {
                format!(
                    "{}.{}.",
                    b64(br#"{"alg":"none"}"#),
                    b64(claims.to_string().as_bytes())
                )
            }),
            "none",
        ),
        (
            "HS256 keyed with the client secret",
            Box::new(|_, claims| hs256(json!({"alg": "HS256"}), &claims, SECRET.as_bytes())),
            "HS256",
        ),
        (
            "HS256 keyed with the issuer's public key",
            Box::new(|idp, claims| {
                hs256(
                    json!({"alg": "HS256", "kid": "rsa-1"}),
                    &claims,
                    &idp.keys.rsa_public_der(),
                )
            }),
            "HS256",
        ),
        (
            "RS512, not in the allowlist",
            Box::new(|idp, claims| {
                let token = idp.rs256(claims);
                let (_, rest) = token.split_once('.').unwrap();
                format!("{}.{rest}", b64(br#"{"alg":"RS512","kid":"rsa-1"}"#))
            }),
            "RS512",
        ),
        (
            "signed by another key under the issuer's kid",
            Box::new(move |_, claims| {
                impostor.sign(json!({"alg": "RS256", "kid": "rsa-1"}), claims)
            }),
            "signature",
        ),
        (
            "a kid the issuer does not have",
            Box::new(|idp, claims| {
                idp.keys
                    .sign(json!({"alg": "RS256", "kid": "rsa-unknown"}), claims)
            }),
            "rsa-unknown",
        ),
        (
            "a key URL to fetch (jku)",
            Box::new(|idp, claims| {
                idp.keys.sign(
                    json!({"alg": "RS256", "kid": "rsa-1", "jku": "http://127.0.0.1:1/keys"}),
                    claims,
                )
            }),
            "jku",
        ),
        (
            "an embedded key (jwk)",
            Box::new(|idp, claims| {
                idp.keys.sign(
                    json!({"alg": "RS256", "kid": "rsa-1", "jwk": {"kty": "RSA"}}),
                    claims,
                )
            }),
            "jwk",
        ),
        (
            "a critical extension",
            Box::new(|idp, claims| {
                idp.keys.sign(
                    json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp2"], "exp2": 1}),
                    claims,
                )
            }),
            "crit",
        ),
        (
            "a signature over another payload",
            Box::new(|idp, claims| {
                let token = idp.rs256(claims.clone());
                let mut other = claims;
                other["sub"] = json!("admin");
                let parts: Vec<&str> = token.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(other.to_string().as_bytes()),
                    parts[2]
                )
            }),
            "signature",
        ),
    ];
    for (case, forge, why) in cases {
        let outcome = sign_in(&gw, &idp, |nonce| {
            Answer::IdToken(forge(&idp, idp.claims(nonce, json!({}))))
        })
        .await;
        assert!(
            outcome.status == 400 || outcome.status == 502,
            "{case}: {} {}",
            outcome.status,
            outcome.page
        );
        refused(&outcome, outcome.status.as_u16(), why, case);
    }
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn sign_in_never_follows_a_token_endpoint_redirect() {
    let idp = HostileIdp::start().await;
    // Where the redirects point: an IdP that would hand out a valid token
    // (for its own issuer) and counts who came.
    let elsewhere = HostileIdp::start().await;
    let (mut gw, ct) = gateway(&idp).await;
    for status in [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        elsewhere.answer(Answer::IdToken("x".into()));
        let outcome = sign_in(&gw, &idp, |_| {
            Answer::Redirect(status, format!("{}/token", elsewhere.url))
        })
        .await;
        refused(&outcome, 502, "redirect", status.as_str());
        assert!(outcome.page.contains(&elsewhere.url), "{}", outcome.page);
        assert!(!outcome.page.contains(SECRET), "{}", outcome.page);
        assert_eq!(elsewhere.token_requests(), 0, "{status}: followed");
    }
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn sign_in_reads_no_more_of_the_token_endpoint_than_its_cap() {
    let idp = HostileIdp::start().await;
    let (mut gw, ct) = gateway(&idp).await;
    let cap = toolgate::authenticate::sso::MAX_TOKEN_RESPONSE;
    // A valid answer padded to just over the cap (declared length).
    let padded = |nonce: &str, pad: usize| {
        let id_token = idp.rs256(idp.claims(nonce, json!({})));
        let mut body = json!({"access_token": "a", "token_type": "Bearer", "id_token": id_token,
            "padding": ""});
        let base = body.to_string().len();
        body["padding"] = json!("x".repeat(pad.saturating_sub(base)));
        body.to_string().into_bytes()
    };
    let at_cap = sign_in(&gw, &idp, |nonce| {
        Answer::Raw(StatusCode::OK, "application/json", padded(nonce, cap))
    })
    .await;
    assert_eq!(
        at_cap.status, 303,
        "exactly the cap is fine: {}",
        at_cap.page
    );
    let over = sign_in(&gw, &idp, |nonce| {
        Answer::Raw(StatusCode::OK, "application/json", padded(nonce, cap + 1))
    })
    .await;
    refused(&over, 502, "over the limit", "one byte over");
    // An answer that never ends is cut at the cap, not read forever.
    let endless = sign_in(&gw, &idp, |_| Answer::Endless).await;
    refused(&endless, 502, "over the limit", "endless");
    // Other failures say what came back.
    let html = sign_in(&gw, &idp, |_| {
        Answer::Raw(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html",
            b"<h1>down</h1>".to_vec(),
        )
    })
    .await;
    refused(&html, 502, "HTTP 500", "an HTML error page");
    let refusal = sign_in(&gw, &idp, |_| {
        Answer::Raw(
            StatusCode::BAD_REQUEST,
            "application/json",
            br#"{"error":"invalid_grant","error_description":"code used"}"#.to_vec(),
        )
    })
    .await;
    refused(&refusal, 502, "invalid_grant code used", "an OAuth refusal");
    let no_id_token = sign_in(&gw, &idp, |_| {
        Answer::Raw(
            StatusCode::OK,
            "application/json",
            br#"{"access_token":"a","token_type":"Bearer"}"#.to_vec(),
        )
    })
    .await;
    refused(&no_id_token, 502, "no id_token", "no ID token");
    gw.shutdown().await;
    ct.cancel();
}
