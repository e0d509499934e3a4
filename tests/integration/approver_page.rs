//! The approver page, `/ui/approvals`: signed in through the real OIDC
//! provider (tests/idp), in Debian's headless chromium driven by
//! playwright-core (tests/browser/approvals.cjs), and its rules over plain
//! HTTP (sign-in redirect, forged forms, who sees what, live updates).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::header;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::approvals::{Setup, call_in_background, pending, setup};
use crate::audit::Backend;
use crate::common::idp::RealIdp;
use crate::common::*;
use crate::rbac::key;

/// `[auth]` for the IdP's Okta custom server, with browser sign-in.
fn sso_config(idp: &RealIdp) -> String {
    format!(
        "[[auth.issuers]]\nname = \"okta\"\nprovider = \"okta\"\n\
         issuer = \"{}/okta/oauth2/default\"\naudiences = [\"api://default\"]\n\
         [auth.sso]\nissuer = \"okta\"\nclient_id = \"toolgate-web\"\n\
         client_secret = \"web-secret\"\nsession_ttl = \"1h\"\n",
        idp.url
    )
}

/// A client that does not follow redirects (the test follows them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in whoever the IdP's login is set to: the session cookie
/// (`name=value`). Opening `/ui/approvals` starts it, as a browser would.
async fn sign_in(gw: &Gateway) -> String {
    let b = browser();
    let base = format!("http://{}", gw.addr);
    let r = b
        .get(format!("{base}/ui/approvals?state=denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to_login = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert_eq!(to_login, "/auth/login?next=/ui/approvals%3Fstate%3Ddenied");
    let r = b.get(format!("{base}{to_login}")).send().await.unwrap();
    let to_idp = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let login = cookie(&r, "toolgate-login");
    let r = b.get(&to_idp).send().await.unwrap();
    let back = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let r = b
        .get(&back)
        .header(header::COOKIE, login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/ui/approvals?state=denied");
    cookie(&r, "toolgate-session")
}

fn cookie(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_string()
}

/// GET `path` with the session: status, headers, body.
async fn get(gw: &Gateway, session: &str, path: &str) -> (u16, header::HeaderMap, String) {
    let r = browser()
        .get(format!("http://{}{path}", gw.addr))
        .header(header::COOKIE, session)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

/// The form token in a page (the decision forms' hidden field).
fn form_token(page: &str) -> String {
    let at = page
        .find("name=\"token\" value=\"")
        .expect("a decision form")
        + 20;
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn the_page_signs_in_refuses_forged_forms_and_shows_only_the_callers_groups() {
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, &sso_config(&idp)).await;
    let eng = key(&gw, "eng", &["eng"]);
    let security = key(&gw, "watcher", &["security"]);
    idp.set_login(json!({"sub": "alice", "name": "Alice", "groups": ["security"]}))
        .await;
    let alice = sign_in(&gw).await;
    idp.set_login(json!({"sub": "oscar", "groups": ["ops"]}))
        .await;
    let oscar = sign_in(&gw).await;

    let call = call_in_background(&gw, &eng, "prod <b>restart</b>");
    let id = pending(&gw, &security, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Alice (security) sees it, escaped, with a decision form; the page
    // may run no script but its own and may not be framed.
    let (status, headers, page) = get(&gw, &alice, "/ui/approvals").await;
    assert_eq!(status, 200, "{page}");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(page.contains(&format!("id=\"r-{id}\"")), "{page}");
    assert!(page.contains("prod &lt;b&gt;restart&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<b>restart"));
    let token = form_token(&page);
    // Oscar (ops) sees nothing waiting, and not this request.
    let (_, _, page) = get(&gw, &oscar, "/ui/approvals").await;
    assert!(
        page.contains("Nothing is waiting for your groups."),
        "{page}"
    );
    assert!(!page.contains(&id));
    let (status, _, page) = get(&gw, &oscar, &format!("/ui/approvals/{id}")).await;
    assert_eq!(status, 403, "{page}");

    // The live list: 304 while unchanged.
    let (status, headers, section) = get(&gw, &alice, "/ui/approvals/live").await;
    assert_eq!(status, 200);
    assert!(section.starts_with("<section id=\"pending\""), "{section}");
    let etag = headers[header::ETAG].clone();
    let r = browser()
        .get(format!("http://{}/ui/approvals/live", gw.addr))
        .header(header::COOKIE, &alice)
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Forged decisions: from another site, without the token, with
    // another session's token. None of them decides.
    let post = |cookie: String,
                form: Vec<(&'static str, String)>,
                extra: Option<(&'static str, &'static str)>| {
        let url = format!("http://{}/ui/approvals/{id}/decide", gw.addr);
        async move {
            let mut r = browser()
                .post(url)
                .header(header::COOKIE, cookie)
                .form(&form);
            if let Some((k, v)) = extra {
                r = r.header(k, v);
            }
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.headers().clone(),
                r.text().await.unwrap(),
            )
        }
    };
    let approve = |token: &str| {
        vec![
            ("verdict", "approve".to_string()),
            ("comment", "ok".to_string()),
            ("token", token.to_string()),
        ]
    };
    let (status, _, body) = post(
        alice.clone(),
        approve(&token),
        Some(("origin", "https://evil.example")),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("a form from `https://evil.example` cannot decide approvals here"));
    let (status, _, _) = post(
        alice.clone(),
        approve(&token),
        Some(("sec-fetch-site", "cross-site")),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, body) = post(alice.clone(), approve(""), None).await;
    assert_eq!(status, 403);
    assert!(body.contains("reload the page and decide again"), "{body}");
    // Oscar's own token is no good for a request outside his groups.
    let (status, _, body) = post(oscar.clone(), approve(&token), None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, page) = get(&gw, &alice, "/ui/approvals").await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("id=\"r-{id}\"")), "still pending");

    // Bad filters are explained, on the page.
    let (status, _, page) = get(&gw, &alice, "/ui/approvals?since=yesterday-ish").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("since: `yesterday-ish` is not an RFC 3339 time"),
        "{page}"
    );

    // The real thing: Alice approves from the same site.
    let (status, headers, body) = post(alice.clone(), approve(&token), None).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        headers[header::LOCATION],
        format!("/ui/approvals?done=approved&request={id}").as_str()
    );
    assert_eq!(call.await.unwrap(), Ok("prod <b>restart</b>".into()));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The history shows it, filtered by tool and state.
    let (_, _, page) = get(&gw, &alice, "/ui/approvals?state=used&tool=witness__note").await;
    assert!(
        page.contains(&format!("href=\"/ui/approvals/{id}\"")),
        "{page}"
    );
    ct.cancel();
}

/// Where playwright-core is installed (tests/browser/install.sh), or
/// `None` to skip; a failure instead when `TOOLGATE_REQUIRE_BROWSER=1`.
fn playwright() -> Option<PathBuf> {
    let dir = std::env::var_os("TOOLGATE_BROWSER_NODE_MODULES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("TOOLGATE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/toolgate")
                });
            cache.join("browser/node_modules")
        });
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    if dir.join("playwright-core").is_dir() && chromium {
        return Some(dir);
    }
    assert!(
        std::env::var("TOOLGATE_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "TOOLGATE_REQUIRE_BROWSER=1 but playwright-core ({}) or /usr/bin/chromium is missing: run `bash tests/browser/install.sh`",
        dir.display()
    );
    eprintln!("skipped: no playwright-core or chromium (bash tests/browser/install.sh)");
    None
}

#[tokio::test]
async fn an_approver_signs_in_and_decides_in_headless_chromium() {
    let Some(modules) = playwright() else {
        return;
    };
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, &sso_config(&idp)).await;
    let eng = key(&gw, "eng", &["eng"]);
    let security = key(&gw, "watcher", &["security"]);
    idp.set_login(json!({"sub": "alice", "name": "Alice Approver", "groups": ["security"]}))
        .await;

    // What an agent might send to fool an approver or the page.
    let hostile = "prod first-call <script>window.__pwned=2</script>\
                   <img src=x onerror=\"window.__pwned=1\"> **bold** [link](javascript:alert(1)) \
                   \u{1b}[31mred\u{1b}[0m";
    let first = call_in_background(&gw, &eng, hostile);
    pending(&gw, &security, 1).await;

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/approvals.cjs");
    let options = json!({
        "base": format!("http://{}", gw.addr),
        "first": "first-call",
        "second": "second-call",
        "approve": "fine, go ahead",
        "deny": "not during the freeze",
        "screenshots": shots,
    });
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(options.to_string())
        .env("NODE_PATH", &modules)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the browser answers within 60 s")
            .unwrap()
            .expect("the browser script ended early");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(
            event["event"],
            "error",
            "{}",
            event["message"].as_str().unwrap_or(&line)
        );
        event
    };

    // Signed in through the IdP, the pending call is there and inert.
    let loaded = next().await;
    assert_eq!(loaded["event"], "loaded");
    let visited: Vec<&str> = loaded["visited"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Through the IdP's authorize endpoint and toolgate's callback.
    assert!(
        visited
            .iter()
            .any(|u| u.starts_with(&format!("{}/okta/oauth2/default/", idp.url))),
        "{loaded}"
    );
    assert!(
        visited.iter().any(|u| u.contains("/auth/callback?")),
        "{loaded}"
    );
    assert!(
        loaded["url"].as_str().unwrap().ends_with("/ui/approvals"),
        "{loaded}"
    );
    assert!(
        loaded["who"].as_str().unwrap().contains("Alice Approver"),
        "{loaded}"
    );
    assert_eq!(loaded["lang"], "en");
    assert_eq!(loaded["unlabelled"], 0, "every field has a label");
    // axe-core's WCAG 2.1 A/AA rules: run, and nothing violated.
    let a11y = &loaded["accessibility"];
    assert!(a11y["rules_passed"].as_u64().unwrap() > 10, "{a11y}");
    assert_eq!(a11y["violations"], json!([]), "{a11y}");
    let args = loaded["args_text"].as_str().unwrap();
    for shown in [
        "<script>window.__pwned=2</script>",
        "<img src=x onerror=\\\"window.__pwned=1\\\">",
        "**bold**",
        "[link](javascript:alert(1))",
        "\\u001b[31mred\\u001b[0m",
    ] {
        assert!(args.contains(shown), "{shown} shown as text in {args}");
    }
    assert_eq!(
        loaded["args_children"], 0,
        "no element inside the arguments"
    );
    let injected = &loaded["injected"];
    assert_eq!(injected["pwned"], Value::Null, "{loaded}");
    assert_eq!(injected["img"], 0);
    assert_eq!(injected["iframe"], 0);
    assert_eq!(injected["markup_in_card"], 0);
    assert_eq!(injected["scripts"], json!(["/ui/assets/approvals.js"]));
    assert!(
        loaded["card_text"]
            .as_str()
            .unwrap()
            .contains("witness__note")
    );
    assert!(
        loaded["time_left"].as_str().unwrap().contains("min"),
        "{loaded}"
    );

    // A second call while the page is open shows up without a reload.
    let second = call_in_background(&gw, &eng, "prod second-call");
    let live = next().await;
    assert_eq!(live["event"], "live");
    assert_eq!(live["same_document"], true);
    assert_eq!(live["cards"], 2);

    // Approve the first, deny the second: the agent's calls end so.
    let decided = next().await;
    assert_eq!(decided["event"], "decided", "{decided}");
    assert!(
        decided["approved_flash"]
            .as_str()
            .unwrap()
            .contains("Approved request"),
        "{decided}"
    );
    assert!(
        decided["denied_flash"]
            .as_str()
            .unwrap()
            .contains("Denied request")
    );
    assert_eq!(decided["pending_left"], 0);
    assert_eq!(decided["dialogs"], json!([]));
    assert_eq!(decided["console_errors"], json!([]), "{decided}");
    let history = decided["history"].to_string();
    assert!(history.contains("not during the freeze"), "{history}");
    assert_eq!(next().await["event"], "done");
    assert!(child.wait().await.unwrap().success());

    assert_eq!(first.await.unwrap(), Ok(hostile.to_string()));
    let denied = second.await.unwrap().unwrap_err();
    assert!(denied.contains("not during the freeze"), "{denied}");
    assert_eq!(*seen.lock().unwrap(), vec![hostile.to_string()]);
    for shot in ["approvals-pending.png", "approvals-decided.png"] {
        let size = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    eprintln!("screenshots: {}", shots.display());
    ct.cancel();
}

/// Text the page fills in, as a browser shows it: control, bidirectional
/// and zero-width characters as `\u{…}` (see `toolgate::util::html::escape`).
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c != '\n'
                && c != '\t'
                && (c.is_control()
                    || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                        | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}'))
            {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The elements the page's templates write; anything else in a parsed
/// page came from a value.
const TEMPLATE_ELEMENTS: &[&str] = &[
    "html", "head", "meta", "title", "link", "script", "body", "a", "header", "p", "strong",
    "span", "form", "button", "main", "section", "h1", "h2", "h3", "h4", "article", "code", "dl",
    "div", "dt", "dd", "time", "pre", "input", "label", "textarea", "select", "option", "table",
    "thead", "tbody", "tr", "th", "td",
];

/// Every element of `page` (parsed by html5ever, as a browser parses it)
/// is one the templates write, with no event-handler attribute, and no
/// attribute value but a filter field's (which the test compares with what
/// it typed) holds markup.
fn only_template_markup(page: &str) -> scraper::Html {
    let doc = scraper::Html::parse_document(page);
    for el in doc
        .root_element()
        .descendants()
        .filter_map(scraper::ElementRef::wrap)
    {
        let e = el.value();
        assert!(
            TEMPLATE_ELEMENTS.contains(&e.name()),
            "<{}> came from a value: {page}",
            e.name()
        );
        for (name, value) in e.attrs() {
            assert!(
                !name.starts_with("on"),
                "{name}={value:?} came from a value: {page}"
            );
            if e.name() != "input" || e.attr("type").is_some() {
                assert!(!value.contains('<'), "markup in {name}={value:?}: {page}");
            }
        }
        if e.name() == "script" {
            assert_eq!(e.attr("src"), Some("/ui/assets/approvals.js"));
        }
        if e.name() == "span" && e.classes().any(|c| c == "ctl") {
            let inside = el
                .ancestors()
                .filter_map(scraper::ElementRef::wrap)
                .any(|a| matches!(a.value().name(), "title" | "textarea" | "option"));
            assert!(!inside, "a control shown inside {page}");
        }
    }
    doc
}

fn select<'a>(doc: &'a scraper::Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&scraper::Selector::parse(css).unwrap())
        .collect()
}

/// Markup injection through attribute context: the history filters and
/// every other value the page puts into an attribute or text (tool and
/// caller filters, the next-page link, request ids, comments, arguments,
/// error messages) carrying quotes, angle brackets, ampersands, control and
/// bidirectional characters stay the one value they were: an attribute
/// round-trips exactly through a real HTML parser, text shows controls as
/// `\u{…}`, and no element appears that the templates did not write.
#[tokio::test]
async fn markup_injection_through_attribute_context_stays_one_value() {
    let Setup { gw, ct, .. } = setup(&Backend::Sqlite, "").await;
    let eng = key(&gw, "eng", &["eng"]);
    let security = key(&gw, "watcher", &["security"]);
    let page = |query: Vec<(&'static str, String)>, path: String| {
        let (addr, security) = (gw.addr, security.clone());
        async move {
            let mut url = reqwest::Url::parse(&format!("http://{addr}{path}")).unwrap();
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(security)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Breaking out of double and single quotes and out of the tag, closing
    // RCDATA elements, entities, ANSI colour, C1 NEL, a bidirectional
    // override, a zero-width space, tab and newline. (NUL and CR cannot
    // round-trip as raw characters through any HTML parser: the parser
    // replaces NUL and turns CR into LF.)
    let hostile = [
        "\"><img src=x onerror=alert(1)>",
        "' autofocus onfocus='alert(2)",
        "<b>bold</b> & &amp; &lt; &#60;",
        "</textarea></title></option><script>alert(3)</script>",
        "\u{1b}[31mred\u{85}next\u{202e}cba\u{200b}x\ttab\nline",
        "<span class=\"ctl\">\\u{1b}</span>",
    ];

    // A decided request with a hostile comment and arguments, for the
    // history and the card, and one left pending.
    let call = call_in_background(&gw, &eng, &format!("prod {}", hostile.concat()));
    let id = pending(&gw, &security, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let comment = hostile.join(" | ");
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/v1/approvals/{id}/approve",
            gw.addr
        ))
        .bearer_auth(&security)
        .json(&json!({ "comment": comment }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    call.await.unwrap().unwrap();
    let waiting = call_in_background(&gw, &eng, &format!("prod again {}", hostile[0]));
    let waiting_id = pending(&gw, &security, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    for value in hostile
        .iter()
        .map(|v| v.to_string())
        .chain([hostile.concat()])
    {
        // The filters come back in their fields exactly as typed.
        let (status, body) = page(
            vec![
                ("tool", value.clone()),
                ("caller", value.clone()),
                ("state", "".into()),
            ],
            "/ui/approvals".into(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let doc = only_template_markup(&body);
        for field in ["tool", "caller"] {
            let inputs = select(&doc, &format!("form.filters input[name={field}]"));
            assert_eq!(inputs.len(), 1, "{body}");
            assert_eq!(
                inputs[0].value().attr("value"),
                Some(value.as_str()),
                "{body}"
            );
        }
        assert_eq!(select(&doc, "form.filters input").len(), 3, "{body}");
        assert_eq!(
            select(&doc, "form.filters select[name=state] option").len(),
            7
        );
        assert_eq!(
            select(&doc, "form.filters select option[selected]").len(),
            0
        );
        assert_eq!(
            select(&doc, "#history p.empty").len(),
            1,
            "nothing matches: {body}"
        );
        // The pending card, its form and its ids are intact.
        let forms = select(&doc, "#pending form.decide");
        assert_eq!(forms.len(), 1, "{body}");
        assert_eq!(
            forms[0].value().attr("action"),
            Some(format!("/ui/approvals/{waiting_id}/decide").as_str())
        );
        assert_eq!(
            select(&doc, &format!("#r-{waiting_id} textarea[name=comment]")).len(),
            1
        );
        let args = select(&doc, &format!("#r-{waiting_id} pre.args"));
        let args: String = args[0].text().collect();
        assert!(args.contains("<img src=x onerror=alert(1)>"), "{args}");

        // A bad filter is explained as text, and the form is not there.
        let (status, body) = page(vec![("since", value.clone())], "/ui/approvals".into()).await;
        assert_eq!(status, 400, "{body}");
        let doc = only_template_markup(&body);
        let flash: String = select(&doc, "p.flash.error")[0].text().collect();
        assert!(flash.contains(&shown(&value)), "{flash}");

        // An unknown request id, from the path, is text.
        let (status, body) = page(vec![], format!("/ui/approvals/{}", percent(&value))).await;
        assert_eq!(status, 404, "{body}");
        let doc = only_template_markup(&body);
        let flash: String = select(&doc, "p.flash.error")[0].text().collect();
        assert_eq!(flash, format!("No approval request `{}`.", shown(&value)));
    }

    // The history: the comment is text; the next-page link keeps the
    // filters and the cursor as one URL.
    let (status, body) = page(
        vec![
            ("state", "used".into()),
            ("tool", "witness__note".into()),
            ("limit", "1".into()),
        ],
        "/ui/approvals".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let doc = only_template_markup(&body);
    let comments = select(&doc, "#history td.comment");
    assert_eq!(comments.len(), 1, "{body}");
    assert_eq!(comments[0].text().collect::<String>(), shown(&comment));
    assert_eq!(
        select(&doc, "form.filters select option[selected]").len(),
        1
    );
    let older = select(&doc, "#history p a");
    let href = older[0].value().attr("href").unwrap();
    let url = reqwest::Url::parse(&format!("http://x{href}")).unwrap();
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        &q[..2],
        &[
            ("state".into(), "used".into()),
            ("tool".into(), "witness__note".into())
        ]
    );
    assert_eq!(q[2].0, "before");
    assert_eq!(url.fragment(), Some("history"));
    // The decided card shows the comment and the arguments as text.
    let (status, body) = page(vec![], format!("/ui/approvals/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let doc = only_template_markup(&body);
    let shown_comment: String = select(&doc, "span.comment")[0].text().collect();
    assert_eq!(shown_comment, shown(&comment));
    assert_eq!(select(&doc, &format!("article#r-{id}")).len(), 1);
    assert_eq!(select(&doc, "form.decide").len(), 0, "decided: no form");

    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/v1/approvals/{waiting_id}/deny",
            gw.addr
        ))
        .bearer_auth(&security)
        .json(&json!({ "comment": "no" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(waiting.await.unwrap().is_err());
    ct.cancel();
}

/// `text` as one URL path segment.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
