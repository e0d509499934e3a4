//! The route table: which handler serves which path, and the
//! authenticate layer in front of them all (deny by default). The handlers
//! live with what they serve (`/mcp` in [`crate::mcp::ingress`], the admin
//! API and the approver page in [`crate::admin`], sign-in in
//! [`crate::authenticate::sso`]); only `/healthz` and `/readyz` are here.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::authenticate::{self, Authenticator, sso};

/// The axum router: `/mcp`, `/healthz`, `/readyz` and the RFC 9728
/// metadata, behind the authenticate layer.
pub fn router(
    gw: Arc<Gateway>,
    auth: Arc<Authenticator>,
    sessions_ct: CancellationToken,
) -> axum::Router {
    axum::Router::new()
        .route(
            "/mcp",
            crate::mcp::ingress::endpoint(gw.mcp.clone(), sessions_ct),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/auth/me", get(sso::me))
        .with_state(gw.clone())
        .merge(crate::llm::api::router(gw.llm.clone()))
        .merge(
            axum::Router::new()
                .route(
                    "/.well-known/oauth-protected-resource",
                    get(authenticate::protected_resource_metadata),
                )
                .route(
                    "/.well-known/oauth-protected-resource/mcp",
                    get(authenticate::protected_resource_metadata),
                )
                .with_state(gw.config.clone()),
        )
        .merge(crate::admin::router(gw.admin()))
        .merge(crate::admin::approver_page::router(
            crate::admin::approver_page::Ui {
                admin: gw.admin(),
                sso: auth.sso.clone(),
            },
        ))
        .merge(
            axum::Router::new()
                .route("/auth/login", get(sso::login))
                .route("/auth/callback", get(sso::callback))
                .route("/auth/logout", get(sso::logout).post(sso::logout))
                .with_state(auth.sso.clone()),
        )
        // Deny by default: every route but the public ones needs a caller.
        .layer(axum::middleware::from_fn_with_state(
            auth,
            authenticate::layer,
        ))
}

/// `/readyz` is public (load balancers, orchestrators): states only. Error
/// texts and addresses say where internal services live and may echo what
/// an upstream sent, so they are for admins (`GET /admin/v1/status`).
async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let (ready, detail) = gw.readiness();
    let names = |list: &serde_json::Value| list.as_array().cloned().unwrap_or_default();
    let upstreams: Vec<_> = names(&detail["upstreams"])
        .iter()
        .map(|u| serde_json::json!({"name": u["name"], "health": {"state": u["health"]["state"]}}))
        .collect();
    let issuers: Vec<_> = names(&detail["issuers"])
        .iter()
        .map(|i| serde_json::json!({"name": i["name"], "state": i["state"]}))
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "upstreams": upstreams,
        "issuers": issuers,
        "llm_targets": detail["llm_targets"],
        "details": "GET /admin/v1/status (administer Admin::\"status\")",
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
