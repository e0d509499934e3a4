//! `/mcp`, MCP's streamable HTTP transport: each request's body is read
//! with a bound and parsed strictly (see [`super`]), its session checked
//! against its caller, then the fast lane ([`FastLane`]) or rmcp serves
//! it. It reads the MCP front end's state ([`McpState`]) only; the route
//! table in `crate::app` mounts it behind the authenticate layer, which
//! has put the request's [`Caller`] in its extensions.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::lane::FastLane;
use super::server::VirtualServer;
use crate::authenticate::sessions::Ownership;
use crate::call::Caller;
use crate::mcp::state::McpState;

/// The `/mcp` route: rmcp's streamable HTTP service, with its sessions
/// closed when `sessions_ct` is cancelled, behind `mcp_endpoint` (below).
pub fn endpoint<S>(
    mcp: Arc<McpState>,
    sessions_ct: CancellationToken,
) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let http = &mcp.config.http;
    let mut origins = http.allowed_origins.clone();
    if origins.is_empty() {
        // A browser page on this machine may talk to a local gateway; any
        // other site may not (cross-site requests get 403).
        origins = vec![
            "http://localhost:*".into(),
            "http://127.0.0.1:*".into(),
            "http://[::1]:*".into(),
        ];
    }
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(http.allowed_hosts.clone())
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(http.max_body_bytes)
        .with_cancellation_token(sessions_ct);
    let factory_mcp = mcp.clone();
    let rmcp = StreamableHttpService::new(
        // Each request's caller comes from the authenticate layer; a
        // request without one runs as nobody and is refused.
        move || Ok(VirtualServer::new(factory_mcp.clone(), Caller::nobody())),
        mcp.fast_lane.sessions(),
        mcp_config,
    );
    axum::routing::any(move |request: axum::extract::Request| {
        mcp_endpoint(mcp.clone(), rmcp.clone(), request)
    })
}

/// `/mcp`: the fast lane takes the `tools/call` requests it can
/// (see [`FastLane`]); rmcp serves everything else.
async fn mcp_endpoint<S, B>(
    mcp: Arc<McpState>,
    mut rmcp: S,
    request: axum::extract::Request,
) -> axum::response::Response
where
    S: tower::Service<
            axum::http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        >,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = request.into_parts();
    let limit = mcp.config.http.max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {limit} bytes (http.max_body_bytes)"),
        )
            .into_response();
    };
    let subject = parts
        .extensions
        .get::<Caller>()
        .map_or("", |c| c.subject.as_str());
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    if let Some(session) = session
        && mcp.session_owners.check(session, subject) == Ownership::Foreign
    {
        tracing::warn!(caller = %subject, "request names another caller's MCP session; answered as unknown");
        return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
    }
    // Parsed once, strictly, before anything acts on it (the fast lane,
    // rmcp, the stages behind them): see `mcp::ingress`.
    let message = match strict_message(&parts, &body) {
        Ok(Some(message)) if let Some(answer) = super::misshapen(&message) => {
            return (
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/json")],
                answer,
            )
                .into_response();
        }
        Ok(message) => message,
        Err(refused) => {
            tracing::info!(caller = %subject, error = %refused, "refused an MCP message that does not parse strictly");
            return (
                StatusCode::BAD_REQUEST,
                [(http::header::CONTENT_TYPE, "application/json")],
                super::parse_error(&refused),
            )
                .into_response();
        }
    };
    // Who opens a session, if this request may (it names none), and
    // whether its client can be asked questions (kept for the fast lane).
    let opener = session.is_none().then(|| subject.to_string());
    let elicits = opener.is_some()
        && message
            .as_ref()
            .is_some_and(initialize_declares_elicitation);
    if let Some(message) = message
        && let Some(response) = FastLane::intercept(&mcp, &parts, &body, message).await
    {
        return response;
    }
    let request = axum::http::Request::from_parts(parts, http_body_util::Full::new(body));
    let response = match rmcp.call(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    };
    if let Some(opener) = opener
        && let Some(opened) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        mcp.remember_session_owner(opened, &opener, elicits).await;
    }
    response
}

/// The JSON-RPC message a POST carries, parsed strictly; `None` when
/// there is nothing to parse (another method, an empty body, a content
/// type rmcp will refuse with 415).
fn strict_message(
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Option<serde_json::Value>, crate::util::json::Refused> {
    if parts.method != http::Method::POST || !is_json(&parts.headers) {
        return Ok(None);
    }
    crate::util::json::parse(body).map(Some)
}

/// Whether the body is declared JSON (`Content-Type: application/json`,
/// parameters allowed): the one test both the strict parse and the fast
/// lane apply.
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether an `initialize` request's client capabilities take form
/// elicitation.
fn initialize_declares_elicitation(message: &serde_json::Value) -> bool {
    use serde::Deserialize as _;
    #[derive(serde::Deserialize)]
    struct Initialize {
        params: Params,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        capabilities: rmcp::model::ClientCapabilities,
    }
    Initialize::deserialize(message)
        .is_ok_and(|i| crate::mcp::ingress::confirm::can_elicit(&i.params.capabilities))
}
