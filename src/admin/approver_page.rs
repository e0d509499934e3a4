//! The approver web page, `/ui/approvals`: what waits for the signed-in
//! approver's groups, approve / deny with a comment, and the history with
//! filters. Server-rendered HTML; a small script (no build step) keeps the
//! pending list live by polling `/ui/approvals/live`, and the page works
//! without it.
//!
//! - Who sees and decides what is exactly the REST API's rule
//!   ([`super::approvals_filter`], [`crate::approvals::decide`]).
//! - The HTML comes from askama templates (`templates/`), which escape
//!   every value. Everything a caller or an approver wrote (arguments,
//!   names, comments) is shown as text by [`crate::util::html::escape`], with
//!   control and bidirectional characters as `\u{…}`, so HTML, script, ANSI
//!   escapes and markdown stay inert; values in attributes (filters, ids,
//!   the form token) get askama's escaping alone, never markup.
//! - Forms carry a token derived from the session's secret cookie, and a
//!   POST from another site (`Origin`, `Sec-Fetch-Site`) is refused; the
//!   page forbids framing and any script but its own (CSP).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::authenticate::sso::Sso;
use crate::call::Caller;
use crate::util::html::filters;

/// What the page's handlers share.
#[derive(Clone)]
pub struct Ui {
    pub admin: super::Admin,
    pub sso: Option<Arc<Sso>>,
}

const CSS: &str = include_str!("approver_page.css");
const JS: &str = include_str!("approver_page.js");
const ICON: &str = include_str!("favicon.svg");
/// Pending requests shown at most (the oldest first past it are on the
/// next refresh, once these are decided).
const PENDING_SHOWN: i64 = 200;
/// History rows per page.
const HISTORY_PAGE: i64 = 50;

/// The routes, for the router (behind the authenticate layer).
pub fn router(ui: Ui) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/ui/approvals", get(index))
        .route("/ui/approvals/live", get(live))
        .route("/ui/approvals/{id}", get(one))
        .route("/ui/approvals/{id}/decide", post(decide))
        .route("/ui/tools/{server}/{tool}/decide", post(decide_tool))
        .route("/ui/assets/approvals.css", get(|| asset("text/css", CSS)))
        .route(
            "/ui/assets/approvals.js",
            get(|| asset("text/javascript", JS)),
        )
        .route("/ui/assets/icon.svg", get(|| asset("image/svg+xml", ICON)))
        .with_state(ui)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A URL query value.
fn query_value(s: &str) -> String {
    crate::util::html::percent_encode(s, crate::util::html::COMPONENT)
}

fn when(ms: i64) -> String {
    crate::util::dates::format_unix(ms.div_euclid(1000))
        .replace('T', " ")
        .replace('Z', "")
}

/// "14 min 3 s" and the like.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The page's response headers: never cached, never framed, no script
/// but ours.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on the
        // page's own form posts, which [`forged`] must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

// The page's HTML comes from askama templates in `templates/` beside this
// file, found through `src/askama.toml` (the repository's top level has no
// room for askama's default `askama.toml` and `templates/`). askama escapes
// every `{{ value }}` for HTML, so a value in an attribute stays one quoted
// value; text goes through the `visible` filter, which also shows control
// and bidirectional characters as `\u{…}` and is used between tags only.

/// A template's output inside another template: already HTML.
macro_rules! html_safe {
    ($($t:ident),*) => {
        $(impl askama::filters::HtmlSafe for $t<'_> {})*
    };
}
html_safe!(Flash, Card, PendingSection, HistorySection, ToolsSection);

/// The whole document around `main`.
#[derive(askama::Template)]
#[template(path = "approvals_document.html", config = "src/askama.toml")]
struct Document<'a> {
    title: &'a str,
    who: &'a str,
    subject: &'a str,
    groups: String,
    main: Vec<Part<'a>>,
}

/// What `main` holds, in order.
enum Part<'a> {
    Flash(Flash<'a>),
    Pending(PendingSection<'a>),
    History(HistorySection<'a>),
    /// The link back to the list.
    Back,
    Heading(&'a str),
    Card(Box<Card<'a>>),
    /// Tool definitions waiting for review (for admins of `tools`).
    Tools(ToolsSection<'a>),
}

/// Tool definitions waiting for review, each with its diff and, for a
/// session with a form token, the approve / reject form.
#[derive(askama::Template)]
#[template(path = "tools_review.html", config = "src/askama.toml")]
struct ToolsSection<'a> {
    rows: Vec<ToolRow>,
    form: Option<&'a str>,
}

struct ToolRow {
    server: String,
    tool: String,
    hash: String,
    short: String,
    pinned: String,
    reason: String,
    seen: String,
    lint: Vec<String>,
    diff: String,
    /// `server/tool`, each part percent-encoded, for the form's action.
    path: String,
    /// An id-safe name for anchors.
    anchor: String,
}

/// Most definitions the page shows at once.
const TOOLS_SHOWN: usize = 50;

/// The tool-review section, when `caller` administers `tools`.
async fn tools_section<'a>(
    ui: &Ui,
    caller: &Caller,
    form: Option<&'a str>,
) -> Option<Result<ToolsSection<'a>, String>> {
    if super::may_not_administer(&ui.admin, caller, "tools").is_some() {
        return None;
    }
    let pool = ui.admin.pipeline.audit.store().pool();
    let waiting = match crate::integrity::pins::list(pool, None, false).await {
        Ok(w) => w,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut rows = Vec::new();
    for d in waiting.into_iter().take(TOOLS_SHOWN) {
        let review =
            match crate::integrity::pins::review(pool, &d.server, &d.tool, Some(&d.hash)).await {
                Ok(r) => r,
                Err(e) => return Some(Err(e.to_string())),
            };
        let reason = crate::integrity::pins::Reason::parse_name(&d.reason)
            .map_or_else(|| d.reason.clone(), |r| r.explain().to_string());
        rows.push(ToolRow {
            path: format!("{}/{}", query_value(&d.server), query_value(&d.tool)),
            anchor: crate::util::digest::sha256_hex(
                format!("{}/{}/{}", d.server, d.tool, d.hash).as_bytes(),
            )[..12]
                .to_string(),
            short: crate::integrity::pins::short(&d.hash).to_string(),
            pinned: review.pinned.as_ref().map_or_else(
                || "none".to_string(),
                |p| crate::integrity::pins::short(&p.hash).to_string(),
            ),
            seen: when(d.first_seen_ms),
            lint: d
                .lint
                .iter()
                .map(|f| {
                    format!(
                        "{:?} {} at {}: {} — “{}”",
                        f.severity, f.rule, f.at, f.message, f.excerpt
                    )
                })
                .collect(),
            diff: review.diff,
            server: d.server,
            tool: d.tool,
            hash: d.hash,
            reason,
        });
    }
    Some(Ok(ToolsSection { rows, form }))
}

fn document<'a>(title: &'a str, caller: &'a Caller, main: Vec<Part<'a>>) -> Document<'a> {
    Document {
        title,
        who: caller.name.as_deref().unwrap_or(&caller.subject),
        subject: &caller.subject,
        groups: if caller.groups.is_empty() {
            "no groups".to_string()
        } else {
            caller.groups.join(", ")
        },
        main,
    }
}

/// Renders a page or part: its HTML, or a plain-text 500 if a template
/// fails (it cannot with these values; a failure is not shown half done).
fn render(status: StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "approver page: a template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the approver page could not be rendered; see the gateway's log",
            )
                .into_response()
        }
    }
}

/// Who may decide a pending request, as the card shows it.
enum Decision<'a> {
    /// Not pending: no form, no note.
    None,
    /// The viewer asked for the call.
    Own,
    /// The viewer is not in the approver group.
    NotMember,
    /// The viewer decides: the form with the session's form token.
    Form(&'a str),
}

/// One request as a card; with the decision form when `form` is the
/// session's form token and the viewer may decide it.
#[derive(askama::Template)]
#[template(path = "approvals_card.html", config = "src/askama.toml")]
struct Card<'a> {
    id: &'a str,
    /// `id` for a URL path.
    id_path: String,
    state: &'a str,
    pending: bool,
    tool: &'a str,
    requester: &'a str,
    requester_name: Option<&'a str>,
    server: Option<&'a str>,
    gate: &'a str,
    reason: Option<&'a str>,
    group: &'a str,
    needed: i64,
    given: i64,
    created: String,
    expires: i64,
    left: String,
    decided_by: Option<&'a str>,
    comment: Option<&'a str>,
    args: String,
    decision: Decision<'a>,
    max_comment: usize,
}

fn card<'a>(r: &'a Value, caller: &Caller, form: Option<&'a str>, now: i64) -> Card<'a> {
    let state = str_of(r, "state");
    let group = str_of(r, "approver_group");
    let requester = str_of(&r["caller"], "subject");
    let pending = state == "pending";
    let expires = r["expires_ms"].as_i64().unwrap_or(0);
    Card {
        id: str_of(r, "id"),
        id_path: crate::util::html::percent_encode(str_of(r, "id"), crate::util::html::COMPONENT),
        state,
        pending,
        tool: str_of(r, "tool"),
        requester,
        requester_name: r["caller"]["name"].as_str(),
        server: r["server"].as_str(),
        gate: str_of(r, "gate"),
        reason: r["reason"].as_str(),
        group,
        needed: r["approvers"].as_i64().unwrap_or(1),
        given: r["approvals"].as_i64().unwrap_or(0),
        created: when(r["created_ms"].as_i64().unwrap_or(0)),
        expires,
        left: duration(expires - now),
        decided_by: r["decided_by"].as_str(),
        comment: r["comment"].as_str(),
        args: serde_json::to_string_pretty(&r["args"]).unwrap_or_default(),
        decision: if !pending {
            Decision::None
        } else if requester == caller.subject {
            Decision::Own
        } else if !caller.groups.iter().any(|g| g == group) {
            Decision::NotMember
        } else {
            Decision::Form(form.unwrap_or_default())
        },
        max_comment: crate::approvals::MAX_COMMENT,
    }
}

/// The pending section.
#[derive(askama::Template)]
#[template(path = "approvals_pending.html", config = "src/askama.toml")]
struct PendingSection<'a> {
    /// Changes when a request comes, goes or gets an approval.
    version: String,
    /// Oldest first: the one closest to expiring on top.
    cards: Vec<Card<'a>>,
    /// More are waiting than shown.
    more: bool,
}

/// Pending requests the caller sees (the store's page, newest first).
/// The error stays a string: it is only flashed on the page for a person.
async fn pending_requests(ui: &Ui, caller: &Caller) -> Result<crate::approvals::Page, String> {
    let filter = crate::approvals::ListFilter {
        state: Some("pending".into()),
        groups: (!super::sees_every_approval(&ui.admin, caller)).then(|| caller.groups.clone()),
        limit: PENDING_SHOWN,
        ..Default::default()
    };
    crate::approvals::list(ui.admin.pipeline.audit.store().pool(), &filter)
        .await
        .map_err(|e| e.to_string())
}

fn pending_section<'a>(
    page: &'a crate::approvals::Page,
    caller: &Caller,
    form: Option<&'a str>,
) -> PendingSection<'a> {
    let mut seen = String::new();
    for r in &page.approvals {
        let _ = write!(seen, "{}/{};", str_of(r, "id"), r["approvals"]);
    }
    let now = crate::audit::now_ms();
    PendingSection {
        version: crate::util::digest::sha256_hex(seen.as_bytes())[..16].to_string(),
        cards: page
            .approvals
            .iter()
            .rev()
            .map(|r| card(r, caller, form, now))
            .collect(),
        more: page.next.is_some(),
    }
}

/// The history table with its filter form.
#[derive(askama::Template)]
#[template(path = "approvals_history.html", config = "src/askama.toml")]
struct HistorySection<'a> {
    states: &'static [&'static str],
    state: Option<&'a str>,
    tool: &'a str,
    caller: &'a str,
    since: &'a str,
    rows: Vec<HistoryRow<'a>>,
    /// The link to the next page.
    older: Option<String>,
}

struct HistoryRow<'a> {
    id_path: String,
    at: String,
    tool: &'a str,
    caller: &'a str,
    gate: &'a str,
    state: &'a str,
    decided_by: &'a str,
    comment: &'a str,
}

/// The history page for the filters in `params`. The error stays a
/// string: it is only flashed on the page for a person.
async fn history_requests(
    ui: &Ui,
    caller: &Caller,
    params: &HashMap<String, String>,
) -> Result<crate::approvals::Page, String> {
    let mut filter =
        super::approvals_filter(&ui.admin, caller, params).map_err(|e| e.to_string())?;
    if !params.contains_key("limit") {
        filter.limit = HISTORY_PAGE;
    }
    crate::approvals::list(ui.admin.pipeline.audit.store().pool(), &filter)
        .await
        .map_err(|e| e.to_string())
}

fn history_section<'a>(
    page: &'a crate::approvals::Page,
    params: &'a HashMap<String, String>,
) -> HistorySection<'a> {
    let value = |k: &str| params.get(k).map_or("", String::as_str);
    let older = page.next.as_ref().map(|next| {
        let mut link = String::from("/ui/approvals?");
        for key in ["state", "tool", "caller", "since"] {
            if let Some(v) = params.get(key).filter(|v| !v.is_empty()) {
                let _ = write!(link, "{key}={}&", query_value(v));
            }
        }
        let _ = write!(link, "before={}#history", query_value(next));
        link
    });
    HistorySection {
        states: crate::approvals::STATES,
        state: params.get("state").map(String::as_str),
        tool: value("tool"),
        caller: value("caller"),
        since: value("since"),
        rows: page
            .approvals
            .iter()
            .map(|r| HistoryRow {
                id_path: crate::util::html::percent_encode(
                    str_of(r, "id"),
                    crate::util::html::COMPONENT,
                ),
                at: when(r["created_ms"].as_i64().unwrap_or(0)),
                tool: str_of(r, "tool"),
                caller: str_of(&r["caller"], "subject"),
                gate: str_of(r, "gate"),
                state: str_of(r, "state"),
                decided_by: str_of(r, "decided_by"),
                comment: str_of(r, "comment"),
            })
            .collect(),
        older,
    }
}

/// A short notice at the top of the page.
#[derive(askama::Template)]
#[template(path = "approvals_flash.html", config = "src/askama.toml")]
struct Flash<'a> {
    ok: bool,
    message: std::borrow::Cow<'a, str>,
}

fn flash<'a>(ok: bool, message: impl Into<std::borrow::Cow<'a, str>>) -> Flash<'a> {
    Flash {
        ok,
        message: message.into(),
    }
}

/// The full page, with `notice` on top.
async fn full_page(
    ui: &Ui,
    caller: &Caller,
    headers: &HeaderMap,
    mut params: HashMap<String, String>,
    notice: Option<(bool, String)>,
    status: StatusCode,
) -> Response {
    let form = ui.sso.as_ref().and_then(|s| s.form_token(headers));
    let notice = notice.or_else(|| {
        let done = params.remove("done")?;
        let id = params.remove("request").unwrap_or_default();
        Some((
            true,
            match done.as_str() {
                "approved" => format!("Approved request {id}: the call goes ahead."),
                "denied" => format!("Denied request {id}: the caller is told, with your comment."),
                _ => format!("Your approval of request {id} is recorded; it needs more approvers."),
            },
        ))
    });
    let pending = pending_requests(ui, caller).await;
    let history = history_requests(ui, caller, &params).await;
    let mut main: Vec<Part> = notice
        .into_iter()
        .map(|(ok, m)| Part::Flash(flash(ok, m)))
        .collect();
    let mut status = status;
    let mut failed = |e: &String| {
        if status == StatusCode::OK {
            status = StatusCode::BAD_REQUEST;
        }
        Part::Flash(flash(false, e.clone()))
    };
    main.push(match &pending {
        Ok(page) => Part::Pending(pending_section(page, caller, form.as_deref())),
        Err(e) => failed(e),
    });
    main.push(match &history {
        Ok(page) => Part::History(history_section(page, &params)),
        Err(e) => failed(e),
    });
    match tools_section(ui, caller, form.as_deref()).await {
        Some(Ok(section)) => main.push(Part::Tools(section)),
        Some(Err(e)) => main.push(failed(&e)),
        None => {}
    }
    render(status, &document("Approvals", caller, main))
}

/// `GET /ui/approvals?state=&tool=&caller=&since=&before=`
async fn index(
    State(ui): State<Ui>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    full_page(&ui, &caller, &headers, params, None, StatusCode::OK).await
}

/// `GET /ui/approvals/live`: the pending section alone, for the page's
/// script; `304` while its version (the `ETag`) is unchanged.
async fn live(
    State(ui): State<Ui>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let form = ui.sso.as_ref().and_then(|s| s.form_token(&headers));
    match pending_requests(&ui, &caller).await {
        Ok(page) => {
            let section = pending_section(&page, &caller, form.as_deref());
            let etag = format!("\"{}\"", section.version);
            if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            let mut r = render(StatusCode::OK, &section);
            if let Ok(v) = HeaderValue::from_str(&etag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        Err(e) => render(StatusCode::SERVICE_UNAVAILABLE, &flash(false, e)),
    }
}

/// `GET /ui/approvals/{id}`: one request (webhook messages link here).
async fn one(
    State(ui): State<Ui>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let page = |status, main| render(status, &document("Approval request", &caller, main));
    let request = match crate::approvals::get(ui.admin.pipeline.audit.store().pool(), &id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                vec![
                    Part::Flash(flash(false, format!("No approval request `{id}`."))),
                    Part::Back,
                ],
            );
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                vec![Part::Flash(flash(false, e.to_string()))],
            );
        }
    };
    let group = str_of(&request, "approver_group");
    if !super::sees_every_approval(&ui.admin, &caller) && !caller.groups.iter().any(|g| g == group)
    {
        return page(
            StatusCode::FORBIDDEN,
            vec![
                Part::Flash(flash(
                    false,
                    format!("Only members of `{group}` see this request."),
                )),
                Part::Back,
            ],
        );
    }
    let form = ui.sso.as_ref().and_then(|s| s.form_token(&headers));
    page(
        StatusCode::OK,
        vec![
            Part::Back,
            Part::Heading("Approval request"),
            Part::Card(Box::new(card(
                &request,
                &caller,
                form.as_deref(),
                crate::audit::now_ms(),
            ))),
        ],
    )
}

/// Why a POST from a browser is refused before anything else: it comes
/// from another site, or lacks the session's form token.
fn forged(ui: &Ui, headers: &HeaderMap, token: &str) -> Option<String> {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Some("a form on another site cannot decide approvals".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let same = host.is_some_and(|h| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h))
        });
        if !same {
            return Some(format!(
                "a form from `{origin}` cannot decide approvals here"
            ));
        }
    }
    match ui.sso.as_ref().and_then(|s| s.form_token(headers)) {
        // A session cookie: the form must carry its token.
        Some(expected) => {
            let ok: bool =
                subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), token.as_bytes()).into();
            (!ok).then(|| {
                "this form is stale or from another session: reload the page and decide again"
                    .into()
            })
        }
        // No cookie: the credential was explicit (a bearer token).
        None => None,
    }
}

/// `POST /ui/approvals/{id}/decide` (form: `verdict` = approve | deny,
/// `comment`, `token`): decides as the REST API does, then back to the
/// list (303), or the page with the reason.
async fn decide(
    State(ui): State<Ui>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let refuse =
        |status: StatusCode, message: String| refusal(&ui, &caller, &headers, status, message);
    if let Some(why) = forged(&ui, &headers, field("token")) {
        return refuse(StatusCode::FORBIDDEN, why).await;
    }
    let approve = match field("verdict") {
        "approve" => true,
        "deny" => false,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("verdict `{other}`: use the Approve or Deny button"),
            )
            .await;
        }
    };
    let comment = field("comment").trim();
    let comment = (!comment.is_empty()).then_some(comment);
    match crate::approvals::decide(&ui.admin.pipeline.audit, &id, &caller, approve, comment).await {
        Ok(state) => {
            let to = format!(
                "/ui/approvals?done={}&request={}",
                query_value(&state),
                query_value(&id)
            );
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        Err(e) => refuse(e.status(), format!("Request {id} was not decided: {e}")).await,
    }
}

/// The page again, with why a form was refused.
async fn refusal(
    ui: &Ui,
    caller: &Caller,
    headers: &HeaderMap,
    status: StatusCode,
    message: String,
) -> Response {
    full_page(
        ui,
        caller,
        headers,
        HashMap::new(),
        Some((false, message)),
        status,
    )
    .await
}

/// `POST /ui/tools/{server}/{tool}/decide` (form: `verdict` = approve |
/// reject, `hash`, `comment`, `token`): as `/admin/v1/tools/…`, then back
/// to the page (303), or the page with the reason.
async fn decide_tool(
    State(ui): State<Ui>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((server, tool)): Path<(String, String)>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let refuse =
        |status: StatusCode, message: String| refusal(&ui, &caller, &headers, status, message);
    if let Some(why) = forged(&ui, &headers, field("token")) {
        return refuse(StatusCode::FORBIDDEN, why).await;
    }
    if super::may_not_administer(&ui.admin, &caller, "tools").is_some() {
        return refuse(
            StatusCode::FORBIDDEN,
            "reviewing tool definitions takes administering `tools`".into(),
        )
        .await;
    }
    let hash = Some(field("hash")).filter(|h| !h.is_empty());
    let comment = field("comment").trim();
    let comment = (!comment.is_empty()).then_some(comment);
    let audit = &ui.admin.pipeline.audit;
    let who = crate::audit::Who::of(&caller);
    let (store, redactor) = (audit.store(), audit.redactor());
    use crate::integrity::pins;
    let Some(ruling) = pins::Ruling::parse(field("verdict")) else {
        let other = field("verdict");
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("verdict `{other}`: use the Approve or Reject button"),
        )
        .await;
    };
    let on = pins::RulingOn {
        server: &server,
        tool: &tool,
        hash,
        by: &who,
        comment,
    };
    let decided = pins::rule(store, redactor, on, ruling).await;
    match decided {
        Ok(d) => {
            ui.admin.mcp.integrity.changed.notify_one();
            let message = format!(
                "{} {server}/{tool} ({}).",
                if d.state == "pinned" {
                    "Pinned"
                } else {
                    "Rejected"
                },
                crate::integrity::pins::short(&d.hash)
            );
            full_page(
                &ui,
                &caller,
                &headers,
                HashMap::new(),
                Some((true, message)),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            refuse(
                StatusCode::CONFLICT,
                format!("{server}/{tool} was not decided: {e}"),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(59_999), "59 s");
        assert_eq!(duration(843_000), "14 min 3 s");
        assert_eq!(duration(7_260_000), "2 h 1 min");
        assert_eq!(duration(3 * 86_400_000 + 3_600_000), "3 d 1 h");
    }
}
