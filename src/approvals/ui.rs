//! The approver web page, `/ui/approvals`: what waits for the signed-in
//! approver's groups, approve / deny with a comment, and the history with
//! filters. Server-rendered HTML; a small script (no build step) keeps the
//! pending list live by polling `/ui/approvals/live`, and the page works
//! without it.
//!
//! - Who sees and decides what is exactly the REST API's rule
//!   ([`crate::admin::approvals_filter`], [`super::decide`]).
//! - Everything a caller or an approver wrote (arguments, names, comments)
//!   is escaped ([`crate::html::escape`]), with control and bidirectional
//!   characters shown as `\u{…}`, so HTML, script, ANSI escapes and
//!   markdown stay inert text.
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

use crate::app::Gateway;
use crate::authenticate::sso::Sso;
use crate::html::escape;
use crate::pipeline::Caller;

/// What the page's handlers share.
#[derive(Clone)]
pub struct Ui {
    pub gw: Arc<Gateway>,
    pub sso: Option<Arc<Sso>>,
}

const CSS: &str = include_str!("ui.css");
const JS: &str = include_str!("ui.js");
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
    crate::html::percent_encode(s, crate::html::COMPONENT)
}

fn when(ms: i64) -> String {
    crate::dates::format_unix(ms.div_euclid(1000))
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

/// The whole document around `main`.
fn document(title: &str, caller: &Caller, main: &str) -> String {
    let who = caller.name.as_deref().unwrap_or(&caller.subject);
    let groups = if caller.groups.is_empty() {
        "no groups".to_string()
    } else {
        caller.groups.join(", ")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · toolgate</title>\
         <link rel=\"icon\" href=\"/ui/assets/icon.svg\">\
         <link rel=\"stylesheet\" href=\"/ui/assets/approvals.css\">\
         <script src=\"/ui/assets/approvals.js\" defer></script></head>\n<body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><a class=\"brand\" href=\"/ui/approvals\">toolgate approvals</a>\
         <p class=\"who\">Signed in as <strong>{who}</strong> <span class=\"muted\">({subject}; {groups})</span></p>\
         <form method=\"post\" action=\"/auth/logout\"><button type=\"submit\" class=\"link\">Sign out</button></form>\
         </header>\n<main id=\"main\">{main}</main></body></html>\n",
        title = escape(title),
        who = escape(who),
        subject = escape(&caller.subject),
        groups = escape(&groups),
    )
}

/// One request as a card; with the decision form when `form` is the
/// session's form token and the viewer may decide it.
fn card(r: &Value, caller: &Caller, form: Option<&str>, now: i64) -> String {
    let id = str_of(r, "id");
    let state = str_of(r, "state");
    let group = str_of(r, "approver_group");
    let who = &r["caller"];
    let requester = str_of(who, "subject");
    let mut requester_line = escape(requester);
    if let Some(name) = who["name"].as_str() {
        requester_line = format!(
            "{} <span class=\"muted\">({requester_line})</span>",
            escape(name)
        );
    }
    let args = serde_json::to_string_pretty(&r["args"]).unwrap_or_default();
    let needed = r["approvers"].as_i64().unwrap_or(1);
    let given = r["approvals"].as_i64().unwrap_or(0);
    let expires = r["expires_ms"].as_i64().unwrap_or(0);
    let mut out = format!(
        "<article class=\"request {state}\" id=\"r-{id}\" aria-labelledby=\"r-{id}-h\">\
         <h3 id=\"r-{id}-h\"><code>{tool}</code> <span class=\"muted\">requested by</span> {requester_line}</h3>\
         <dl>",
        id = escape(id),
        state = escape(state),
        tool = escape(str_of(r, "tool")),
    );
    let mut row = |term: &str, value: String| {
        let _ = write!(out, "<div><dt>{term}</dt><dd>{value}</dd></div>");
    };
    if let Some(server) = r["server"].as_str() {
        row("Server", escape(server));
    }
    let mut gate = format!("<code>{}</code>", escape(str_of(r, "gate")));
    if let Some(reason) = r["reason"].as_str() {
        let _ = write!(gate, ": {}", escape(reason));
    }
    row("Gate", gate);
    row(
        "Approvers",
        format!(
            "members of <code>{}</code>{}",
            escape(group),
            if needed > 1 {
                format!(" ({given} of {needed} approvals given)")
            } else {
                String::new()
            }
        ),
    );
    let created = r["created_ms"].as_i64().unwrap_or(0);
    row("Requested", format!("<time>{}</time> UTC", when(created)));
    if state == "pending" {
        row(
            "Time left",
            format!(
                "<time class=\"left\" data-expires=\"{expires}\">{}</time>",
                duration(expires - now)
            ),
        );
    } else {
        row(
            "State",
            format!("<span class=\"state {s}\">{s}</span>", s = escape(state)),
        );
        if let Some(by) = r["decided_by"].as_str() {
            row("Decided by", escape(by));
        }
        if let Some(comment) = r["comment"].as_str() {
            row(
                "Comment",
                format!("<span class=\"comment\">{}</span>", escape(comment)),
            );
        }
    }
    row(
        "Request",
        format!("<a href=\"/ui/approvals/{0}\">{0}</a>", escape(id)),
    );
    let _ = write!(
        out,
        "</dl><h4>Arguments <span class=\"muted\">(redacted as the audit trail keeps them)</span></h4>\
         <pre class=\"args\" tabindex=\"0\">{}</pre>",
        escape(&args)
    );
    if state == "pending" {
        if requester == caller.subject {
            let _ = write!(
                out,
                "<p class=\"note\">You asked for this call: another member of <code>{}</code> must decide it.</p>",
                escape(group)
            );
        } else if !caller.groups.iter().any(|g| g == group) {
            let _ = write!(
                out,
                "<p class=\"note\">Only members of <code>{}</code> decide this request.</p>",
                escape(group)
            );
        } else {
            let _ = write!(
                out,
                "<form class=\"decide\" method=\"post\" action=\"/ui/approvals/{id}/decide\">\
                 <input type=\"hidden\" name=\"token\" value=\"{token}\">\
                 <label for=\"c-{id}\">Comment <span class=\"muted\">(optional; the caller sees it)</span></label>\
                 <textarea id=\"c-{id}\" name=\"comment\" rows=\"2\" maxlength=\"{max}\"></textarea>\
                 <div class=\"buttons\">\
                 <button type=\"submit\" name=\"verdict\" value=\"approve\" class=\"approve\">Approve</button>\
                 <button type=\"submit\" name=\"verdict\" value=\"deny\" class=\"deny\">Deny</button>\
                 </div></form>",
                id = escape(id),
                token = escape(form.unwrap_or_default()),
                max = super::MAX_COMMENT,
            );
        }
    }
    out.push_str("</article>");
    out
}

/// The pending section, and its version (changes when a request comes,
/// goes or gets an approval).
async fn pending_section(
    ui: &Ui,
    caller: &Caller,
    form: Option<&str>,
) -> Result<(String, String), String> {
    let filter = super::ListFilter {
        state: Some("pending".into()),
        groups: (!crate::admin::sees_every_approval(&ui.gw, caller)).then(|| caller.groups.clone()),
        limit: PENDING_SHOWN,
        ..Default::default()
    };
    let page = super::list(ui.gw.audit.store().pool(), &filter).await?;
    let mut seen = String::new();
    for r in &page.approvals {
        let _ = write!(seen, "{}/{};", str_of(r, "id"), r["approvals"]);
    }
    let version = crate::audit::sha256_hex(seen.as_bytes())[..16].to_string();
    let now = crate::audit::now_ms();
    let n = page.approvals.len();
    let mut out = format!(
        "<section id=\"pending\" aria-labelledby=\"pending-h\" data-version=\"{version}\">\
         <h1 id=\"pending-h\">Waiting for a decision <span class=\"count\">({n}{more})</span></h1>\
         <p class=\"live muted\" role=\"status\" aria-live=\"polite\"></p>",
        more = if page.next.is_some() { "+" } else { "" },
    );
    if n == 0 {
        out.push_str("<p class=\"empty\">Nothing is waiting for your groups.</p>");
    }
    // Oldest first: the one closest to expiring on top.
    for r in page.approvals.iter().rev() {
        out.push_str(&card(r, caller, form, now));
    }
    out.push_str("</section>");
    Ok((out, version))
}

/// The history table with its filter form.
async fn history_section(
    ui: &Ui,
    caller: &Caller,
    params: &HashMap<String, String>,
) -> Result<String, String> {
    let mut filter = crate::admin::approvals_filter(&ui.gw, caller, params)?;
    if !params.contains_key("limit") {
        filter.limit = HISTORY_PAGE;
    }
    let page = super::list(ui.gw.audit.store().pool(), &filter).await?;
    let value = |k: &str| escape(params.get(k).map_or("", String::as_str));
    let mut states = String::from("<option value=\"\">any</option>");
    for s in super::STATES {
        let selected = if params.get("state").is_some_and(|v| v == s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(states, "<option{selected}>{s}</option>");
    }
    let mut out = format!(
        "<section id=\"history\" aria-labelledby=\"history-h\"><h2 id=\"history-h\">History</h2>\
         <form class=\"filters\" method=\"get\" action=\"/ui/approvals#history\" role=\"search\">\
         <label>State <select name=\"state\">{states}</select></label>\
         <label>Tool <input name=\"tool\" value=\"{tool}\" size=\"18\"></label>\
         <label>Caller <input name=\"caller\" value=\"{who}\" size=\"18\" placeholder=\"subject\"></label>\
         <label>Since <input name=\"since\" value=\"{since}\" size=\"16\" placeholder=\"24h or 2026-11-01\"></label>\
         <button type=\"submit\">Filter</button> <a href=\"/ui/approvals#history\">Clear</a></form>",
        tool = value("tool"),
        who = value("caller"),
        since = value("since"),
    );
    if page.approvals.is_empty() {
        out.push_str("<p class=\"empty\">No requests match.</p></section>");
        return Ok(out);
    }
    out.push_str(
        "<div class=\"table\"><table><thead><tr><th scope=\"col\">Requested (UTC)</th>\
         <th scope=\"col\">Tool</th><th scope=\"col\">Caller</th><th scope=\"col\">Gate</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Decided by</th><th scope=\"col\">Comment</th>\
         </tr></thead><tbody>",
    );
    for r in &page.approvals {
        let _ = write!(
            out,
            "<tr><td><a href=\"/ui/approvals/{id}\">{at}</a></td><td><code>{tool}</code></td>\
             <td>{who}</td><td><code>{gate}</code></td><td><span class=\"state {state}\">{state}</span></td>\
             <td>{by}</td><td class=\"comment\">{comment}</td></tr>",
            id = escape(str_of(r, "id")),
            at = when(r["created_ms"].as_i64().unwrap_or(0)),
            tool = escape(str_of(r, "tool")),
            who = escape(str_of(&r["caller"], "subject")),
            gate = escape(str_of(r, "gate")),
            state = escape(str_of(r, "state")),
            by = escape(str_of(r, "decided_by")),
            comment = escape(str_of(r, "comment")),
        );
    }
    out.push_str("</tbody></table></div>");
    if let Some(next) = page.next {
        let mut link = String::from("/ui/approvals?");
        for key in ["state", "tool", "caller", "since"] {
            if let Some(v) = params.get(key).filter(|v| !v.is_empty()) {
                let _ = write!(link, "{key}={}&", query_value(v));
            }
        }
        let _ = write!(
            out,
            "<p><a href=\"{}before={}#history\">Older requests</a></p>",
            escape(&link),
            query_value(&next)
        );
    }
    out.push_str("</section>");
    Ok(out)
}

/// A short notice at the top of the page.
fn flash(ok: bool, message: &str) -> String {
    format!(
        "<p class=\"flash {}\" role=\"{}\">{}</p>",
        if ok { "ok" } else { "error" },
        if ok { "status" } else { "alert" },
        escape(message)
    )
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
    let pending = pending_section(ui, caller, form.as_deref()).await;
    let history = history_section(ui, caller, &params).await;
    let mut main = notice.map(|(ok, m)| flash(ok, &m)).unwrap_or_default();
    let mut status = status;
    for part in [pending.map(|(html, _)| html), history] {
        match part {
            Ok(html) => main.push_str(&html),
            Err(e) => {
                main.push_str(&flash(false, &e));
                if status == StatusCode::OK {
                    status = StatusCode::BAD_REQUEST;
                }
            }
        }
    }
    html(status, document("Approvals", caller, &main))
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
    match pending_section(&ui, &caller, form.as_deref()).await {
        Ok((section, version)) => {
            let etag = format!("\"{version}\"");
            if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            let mut r = html(StatusCode::OK, section);
            if let Ok(v) = HeaderValue::from_str(&etag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        Err(e) => html(StatusCode::SERVICE_UNAVAILABLE, flash(false, &e)),
    }
}

/// `GET /ui/approvals/{id}`: one request (webhook messages link here).
async fn one(
    State(ui): State<Ui>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let back = "<p><a href=\"/ui/approvals\">← All requests</a></p>";
    let page = |status, main: String| html(status, document("Approval request", &caller, &main));
    let request = match super::get(ui.gw.audit.store().pool(), &id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                format!(
                    "{}{back}",
                    flash(false, &format!("No approval request `{id}`."))
                ),
            );
        }
        Err(e) => return page(StatusCode::SERVICE_UNAVAILABLE, flash(false, &e)),
    };
    let group = str_of(&request, "approver_group");
    if !crate::admin::sees_every_approval(&ui.gw, &caller)
        && !caller.groups.iter().any(|g| g == group)
    {
        return page(
            StatusCode::FORBIDDEN,
            format!(
                "{}{back}",
                flash(
                    false,
                    &format!("Only members of `{group}` see this request.")
                )
            ),
        );
    }
    let form = ui.sso.as_ref().and_then(|s| s.form_token(&headers));
    let main = format!(
        "{back}<h1>Approval request</h1>{}",
        card(&request, &caller, form.as_deref(), crate::audit::now_ms())
    );
    page(StatusCode::OK, main)
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
    let refuse = |status: StatusCode, message: String| {
        let ui = ui.clone();
        let caller = caller.clone();
        let headers = headers.clone();
        async move {
            full_page(
                &ui,
                &caller,
                &headers,
                HashMap::new(),
                Some((false, message)),
                status,
            )
            .await
        }
    };
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
    match super::decide(&ui.gw.audit, &id, &caller, approve, comment).await {
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
