//! The admin REST API (`/admin/v1/…`). Who may use it is itself a policy
//! decision: action `administer` on `Admin::"<area>"` (the default policies
//! give it to the `admin` group). The approver page ([`approver_page`])
//! is the same API for people, in a browser.

pub mod approver_page;
pub mod tools;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, json};

use crate::authenticate::oidc::Issuer;
use crate::authorize::cases::{AnnotationsSpec, Case};
use crate::authorize::{Query, Target};
use crate::call::Caller;
use crate::mcp::state::McpState;
use crate::pipeline::Pipeline;

/// What the admin API and the approver page read: the spine (policies,
/// audit trail), the MCP front end (catalog, upstreams) and the identity
/// providers (for status).
#[derive(Clone)]
pub struct Admin {
    pub pipeline: Arc<Pipeline>,
    pub mcp: Arc<McpState>,
    pub llm: Arc<crate::llm::LlmState>,
    pub issuers: Arc<[Arc<Issuer>]>,
}

/// The gateway's state in detail (`/readyz` in brief, `GET
/// /admin/v1/status` for admins): ready once every upstream has been tried
/// at least once. A down upstream does not make the gateway unready (its
/// tools are simply absent); the body says which upstreams are up and why
/// not, and where they are (URLs without credentials). LLM targets are
/// listed with their circuit breaker's state; an ejected one does not make
/// the gateway unready either.
pub fn readiness(
    mcp: &McpState,
    llm: &crate::llm::LlmState,
    issuers: &[Arc<Issuer>],
) -> (bool, serde_json::Value) {
    let (ready, upstreams) = mcp.upstream_health();
    let issuers: Vec<_> = issuers
        .iter()
        .map(|i| match i.health() {
            Ok(()) => json!({"name": i.config.name, "state": "ready"}),
            Err(why) => json!({"name": i.config.name, "state": "degraded", "reason": why}),
        })
        .collect();
    let catalog = mcp.catalog();
    let body = json!({
        "ready": ready,
        "upstreams": upstreams,
        "issuers": issuers,
        "llm_targets": llm.targets(),
        "tools": catalog.tools.len(),
        "problems": catalog.problems,
        "sessions": mcp.hub.session_count(),
    });
    (ready, body)
}

/// The routes, for the router (behind the authenticate layer).
pub fn router(admin: Admin) -> axum::Router {
    tools::routes(axum::Router::new())
        .route(
            "/admin/v1/policy/explain",
            axum::routing::post(policy_explain),
        )
        .route("/admin/v1/audit", axum::routing::get(audit_records))
        .route("/admin/v1/status", axum::routing::get(status))
        .route("/admin/v1/approvals", axum::routing::get(approvals_list))
        .route(
            "/admin/v1/approvals/{id}/{verdict}",
            axum::routing::post(approvals_decide),
        )
        .with_state(admin)
}

/// Why a request's filter parameters were refused (each a 400).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown parameter `{unknown}`: use {known}")]
    UnknownParameter { unknown: String, known: String },
    #[error("limit: a number from 1 to {0}")]
    Limit(i64),
    #[error("state `{0}`: use {1}")]
    State(String, String),
    #[error("since: {0}")]
    Since(#[source] crate::audit::AuditError),
    /// A `before` that is not a cursor this API gave.
    #[error(transparent)]
    Cursor(#[from] crate::approvals::ApprovalsError),
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why `caller` may not administer `area`, if they may not.
fn may_not_administer(admin: &Admin, caller: &Caller, area: &str) -> Option<Response> {
    let decision = admin.pipeline.policies.current().decide(&Query {
        caller,
        target: Target::Admin { name: area },
        args: Some(&Map::new()),
        request_id: "admin",
        findings: &[],
        touched: crate::config::Labels::NONE,
    });
    (!decision.allowed).then(|| {
        refuse(
            StatusCode::FORBIDDEN,
            format!("administering `{area}` is not allowed: {decision}"),
        )
    })
}

/// `GET /admin/v1/status`: what `/readyz` says in detail: each upstream's
/// health with the reason it is down and its URL (without credentials),
/// each identity provider's problem, catalog problems, session count, and
/// what each server exposes to which group (and why the rest is hidden).
async fn status(State(admin): State<Admin>, Extension(caller): Extension<Caller>) -> Response {
    if let Some(refusal) = may_not_administer(&admin, &caller, "status") {
        return refusal;
    }
    let (_, mut body) = readiness(&admin.mcp, &admin.llm, &admin.issuers);
    body["exposure"] = json!({
        "asked_for": crate::mcp::exposure::ASKED_FOR,
        "servers": admin.mcp.exposure(),
    });
    Json(body).into_response()
}

/// `POST /admin/v1/policy/explain`: the body is one policy test case
/// (`policies/tests/*.toml` shape, as JSON, `expect` optional); the answer
/// is what `toolgate policy explain --json` prints. A tool's annotations
/// and server default to what the live catalog says.
async fn policy_explain(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = may_not_administer(&admin, &caller, "policy") {
        return refusal;
    }
    let mut case: Case = match serde_json::from_slice(&body) {
        Ok(case) => case,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body must be a policy case as JSON: {e}"),
            );
        }
    };
    if let Some(tool) = &case.tool {
        let catalog = admin.mcp.catalog();
        if let Some(entry) = catalog.tool(tool) {
            case.server
                .get_or_insert_with(|| entry.route.server.to_string());
            if case.annotations.is_none() {
                let a = crate::mcp::catalog::annotations(&entry.upstream);
                case.annotations = Some(AnnotationsSpec {
                    read_only: Some(a.read_only),
                    destructive: Some(a.destructive),
                    idempotent: Some(a.idempotent),
                    open_world: Some(a.open_world),
                });
            }
        }
    }
    let policies = admin.pipeline.policies.current();
    match case.decide(&policies, &admin.mcp.config.servers) {
        Ok(decision) => {
            let mut explained = crate::authorize::cases::explanation(&decision, &policies);
            explained["policy_version"] = json!(policies.version);
            Json(explained).into_response()
        }
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

/// `GET /admin/v1/audit?subject=&tool=&decision=&kind=&since=&until=&after=&limit=`:
/// audit records in `seq` order, at most `limit` (≤ 1000, default 100)
/// after `after`; `next` is the `after` of the following page (absent at
/// the end). Times as for `toolgate audit export`.
async fn audit_records(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = may_not_administer(&admin, &caller, "audit") {
        return refusal;
    }
    const KNOWN: &[&str] = &[
        "subject", "tool", "target", "decision", "kind", "since", "until", "after", "limit",
    ];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter `{unknown}`: use {}", KNOWN.join(", ")),
        );
    }
    let now = crate::audit::now_ms();
    // Strings: every parameter error is the same 400, read by a person.
    let time = |key: &str| -> Result<Option<i64>, String> {
        params
            .get(key)
            .map(|t| crate::audit::query::parse_time(t, now))
            .transpose()
            .map_err(|e| format!("{key}: {e}"))
    };
    let number = |key: &str, default: i64| -> Result<i64, String> {
        params.get(key).map_or(Ok(default), |v| {
            v.parse::<i64>()
                .map_err(|_| format!("{key}: `{v}` is not a whole number"))
        })
    };
    let parsed = (|| {
        let filter = crate::audit::query::Filter {
            subject: params.get("subject").cloned(),
            target: params.get("tool").or(params.get("target")).cloned(),
            decision: params.get("decision").cloned(),
            kind: params.get("kind").cloned(),
            since_ms: time("since")?,
            until_ms: time("until")?,
            ..Default::default()
        };
        let limit = number("limit", 100)?;
        if !(1..=crate::audit::query::MAX_PAGE).contains(&limit) {
            return Err(format!(
                "limit: {limit}; use 1 to {}",
                crate::audit::query::MAX_PAGE
            ));
        }
        Ok((filter, number("after", 0)?, limit))
    })();
    let (filter, after, limit) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    match crate::audit::query::page(admin.pipeline.audit.store().pool(), &filter, after, limit)
        .await
    {
        Ok(records) => {
            let next = (records.len() as i64 == limit)
                .then(|| records.last().map(|r| r.seq))
                .flatten();
            Json(json!({ "records": records, "next": next })).into_response()
        }
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /admin/v1/approvals?state=&tool=&caller=&since=&before=&limit=`:
/// approval requests, newest first, at most `limit` (≤ 1000, default
/// 100); `next` is the `before` of the following page. Each caller sees
/// the requests their groups decide; those who may administer
/// `approvals` see all.
async fn approvals_list(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let filter = match approvals_filter(&admin, &caller, &params) {
        Ok(filter) => filter,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match crate::approvals::list(admin.pipeline.audit.store().pool(), &filter).await {
        Ok(page) => Json(json!({ "approvals": page.approvals, "next": page.next })).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Whether `caller` sees every approval request (administers
/// `approvals`), not only those of their own groups.
pub fn sees_every_approval(admin: &Admin, caller: &Caller) -> bool {
    may_not_administer(admin, caller, "approvals").is_none()
}

/// The approval requests `caller` asks for with `params` (`state`,
/// `tool`, `caller`, `since`, `before`, `limit`) and may see.
pub fn approvals_filter(
    admin: &Admin,
    caller: &Caller,
    params: &std::collections::HashMap<String, String>,
) -> Result<crate::approvals::ListFilter, AdminError> {
    use crate::approvals::{MAX_PAGE, STATES};
    const KNOWN: &[&str] = &["state", "tool", "caller", "since", "before", "limit"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(AdminError::UnknownParameter {
            unknown: unknown.clone(),
            known: KNOWN.join(", "),
        });
    }
    // An empty field (a form left blank) is no filter.
    let given = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let limit = match given("limit").map(|l| l.parse::<i64>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return Err(AdminError::Limit(MAX_PAGE)),
    };
    let state = given("state");
    if let Some(s) = &state
        && !STATES.contains(&s.as_str())
    {
        return Err(AdminError::State(s.clone(), STATES.join(", ")));
    }
    let since_ms = given("since")
        .map(|t| crate::audit::query::parse_time(&t, crate::audit::now_ms()))
        .transpose()
        .map_err(AdminError::Since)?;
    let all = sees_every_approval(admin, caller);
    Ok(crate::approvals::ListFilter {
        state,
        groups: (!all).then(|| caller.groups.clone()),
        tool: given("tool"),
        subject: given("caller"),
        since_ms,
        before: given("before")
            .map(|b| crate::approvals::cursor(&b))
            .transpose()?,
        limit,
    })
}

/// `POST /admin/v1/approvals/{id}/approve` or `…/deny`, with an optional
/// JSON body `{"comment": "…"}`: a member of the request's approver group
/// (never the caller who asked) decides it.
async fn approvals_decide(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path((id, verdict)): axum::extract::Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let approve = match verdict.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("`{other}`: POST …/approvals/{{id}}/approve or …/deny"),
            );
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        comment: Option<String>,
    }
    let body: Body = if body.is_empty() {
        Body { comment: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the body is {{\"comment\": \"…\"}} (optional): {e}"),
                );
            }
        }
    };
    match crate::approvals::decide(
        &admin.pipeline.audit,
        &id,
        &caller,
        approve,
        body.comment.as_deref(),
    )
    .await
    {
        Ok(state) => Json(json!({ "id": id, "state": state })).into_response(),
        Err(e) => refuse(e.status(), e.to_string()),
    }
}
