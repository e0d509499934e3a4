//! `/admin/v1/tools/…`: tool definitions the gateway holds back, for
//! those who may administer `tools` (`Admin::"tools"` in the policies):
//! list them, compare one with its pin, approve or reject it. A decision
//! rebuilds this replica's catalog at once (others within
//! `mcp::state::PIN_POLL`), and clients whose lists change are told.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::{Admin, may_not_administer, refuse};
use crate::audit::Who;
use crate::call::Caller;
use crate::integrity::IntegrityError;
use crate::integrity::pins;

/// The routes (behind the authenticate layer).
pub fn routes(router: axum::Router<Admin>) -> axum::Router<Admin> {
    router
        .route("/admin/v1/tools", axum::routing::get(list))
        .route(
            "/admin/v1/tools/{server}/{tool}",
            axum::routing::get(review),
        )
        .route(
            "/admin/v1/tools/{server}/{tool}/{verdict}",
            axum::routing::post(decide),
        )
}

fn failed(e: IntegrityError) -> Response {
    let status = match &e {
        IntegrityError::NotFound { .. } => StatusCode::NOT_FOUND,
        IntegrityError::Ambiguous(_) => StatusCode::BAD_REQUEST,
        IntegrityError::AlreadyDecided(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    refuse(status, e.to_string())
}

/// `GET /admin/v1/tools?server=&all=true`: the definitions waiting for
/// review (with `all`, also rejected and pinned ones), newest first.
async fn list(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = may_not_administer(&admin, &caller, "tools") {
        return refusal;
    }
    const KNOWN: &[&str] = &["server", "all"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter `{unknown}`: use {}", KNOWN.join(", ")),
        );
    }
    let all = match params.get("all").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("all: `{other}`; use true or false"),
            );
        }
    };
    let server = params.get("server").filter(|s| !s.is_empty());
    match pins::list(
        admin.pipeline.audit.store().pool(),
        server.map(String::as_str),
        all,
    )
    .await
    {
        Ok(definitions) => Json(json!({ "definitions": definitions })).into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /admin/v1/tools/{server}/{tool}?hash=`: one definition (default:
/// the newest waiting) against the tool's pin, with a unified diff.
async fn review(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    Path((server, tool)): Path<(String, String)>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = may_not_administer(&admin, &caller, "tools") {
        return refusal;
    }
    let hash = params.get("hash").map(String::as_str);
    match pins::review(admin.pipeline.audit.store().pool(), &server, &tool, hash).await {
        Ok(review) => Json(review).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    /// The definition's hash or a prefix (default: the newest waiting).
    hash: Option<String>,
    comment: Option<String>,
}

/// `POST /admin/v1/tools/{server}/{tool}/approve|reject` with
/// `{"hash": "…", "comment": "…"}` (both optional).
async fn decide(
    State(admin): State<Admin>,
    Extension(caller): Extension<Caller>,
    Path((server, tool, verdict)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = may_not_administer(&admin, &caller, "tools") {
        return refusal;
    }
    let v: Verdict = if body.is_empty() || body.trim_ascii() == b"null" {
        Verdict::default()
    } else {
        // Strictly, as every request body toolgate acts on.
        let parsed = crate::util::json::parse(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()));
        match parsed {
            Ok(v) => v,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "body: {e}; send {{\"hash\": \"…\", \"comment\": \"…\"}} (both optional)"
                    ),
                );
            }
        }
    };
    let store = admin.pipeline.audit.store();
    let redactor = admin.pipeline.audit.redactor();
    let who = Who::of(&caller);
    let Some(ruling) = pins::Ruling::parse(&verdict) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("`{verdict}`: use /approve or /reject"),
        );
    };
    let on = pins::RulingOn {
        server: &server,
        tool: &tool,
        hash: v.hash.as_deref(),
        by: &who,
        comment: v.comment.as_deref(),
    };
    let decided = pins::rule(store, redactor, on, ruling).await;
    match decided {
        Ok(definition) => {
            admin.mcp.integrity.changed.notify_one();
            Json(json!({ "definition": definition })).into_response()
        }
        Err(e) => failed(e),
    }
}
