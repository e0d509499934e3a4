//! The HTTP side of the LLM front end: OpenAI's API at `/v1`. Handlers
//! read the body (bounded, strictly parsed, checked), run the call through
//! the pipeline in its own task (a caller who hangs up cancels it, and it
//! is still recorded), and write the answer: JSON, or server-sent events
//! ending in `data: [DONE]`. Every refusal is OpenAI's error envelope with
//! the status its SDKs expect ([`error_response`]), so their retry logic
//! behaves: 4xx are final, 429 and 5xx are retried.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::LlmState;
use super::anthropic;
use super::calls::{Chat, Embeddings, LlmInput, Messages, Responses};
use super::openai::{self, BadRequest};
use super::responses;
use crate::call::{
    CallContext, CallError, CallKind, Caller, ModelRequest, NotAdmitted, Query, Reply, Target,
};
use crate::config::Labels;
use crate::pipeline::Watched;

/// The `/v1` routes.
pub fn router(llm: Arc<LlmState>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/messages", post(messages))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/v1/models/{*model}", get(model))
        .with_state(llm)
}

async fn chat_completions(
    State(llm): State<Arc<LlmState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let input = match read(&llm, body, openai::chat_request, Dialect::OpenAi).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    match run::<Chat>(llm, caller, &headers, input).await {
        Ok(Reply::Done(completion)) => json(&completion),
        Ok(Reply::Stream(stream)) => events(stream, Dialect::OpenAi),
        Err(e) => error_response(&e, Dialect::OpenAi),
    }
}

/// `POST /v1/messages`: Anthropic's Messages API.
async fn messages(
    State(llm): State<Arc<LlmState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let input = match read(&llm, body, anthropic::messages_request, Dialect::Anthropic).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    match run::<Messages>(llm, caller, &headers, input).await {
        Ok(Reply::Done(message)) => json(&message),
        Ok(Reply::Stream(stream)) => events(stream, Dialect::Anthropic),
        Err(e) => error_response(&e, Dialect::Anthropic),
    }
}

/// `POST /v1/responses`: OpenAI's Responses API, passed through.
async fn responses(
    State(llm): State<Arc<LlmState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let input = match read(&llm, body, responses::responses_request, Dialect::Responses).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    match run::<Responses>(llm, caller, &headers, input).await {
        Ok(Reply::Done(response)) => json(&response),
        Ok(Reply::Stream(stream)) => events(stream, Dialect::Responses),
        Err(e) => error_response(&e, Dialect::Responses),
    }
}

/// Which API's error envelope and event format a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    /// OpenAI's Responses API: OpenAI's error envelope, events named by
    /// their type and no `[DONE]`.
    Responses,
}

async fn embeddings(
    State(llm): State<Arc<LlmState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let input = match read(&llm, body, openai::embeddings_request, Dialect::OpenAi).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    match run::<Embeddings>(llm, caller, &headers, input).await {
        Ok(reply) => json(&reply.done()),
        Err(e) => error_response(&e, Dialect::OpenAi),
    }
}

/// `GET /v1/models`: the model names this caller may use, by policy.
async fn models(State(llm): State<Arc<LlmState>>, caller: Option<Extension<Caller>>) -> Response {
    let Some(Extension(caller)) = caller else {
        return error_response(&CallError::Unauthenticated, Dialect::OpenAi);
    };
    let data: Vec<Value> = llm
        .config
        .models
        .keys()
        .filter(|alias| visible(&llm, &caller, alias))
        .map(|alias| model_entry(alias))
        .collect();
    json(&serde_json::json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`: one of them; a model the caller may not use
/// is as unknown as one that does not exist.
async fn model(
    State(llm): State<Arc<LlmState>>,
    caller: Option<Extension<Caller>>,
    Path(alias): Path<String>,
) -> Response {
    let Some(Extension(caller)) = caller else {
        return error_response(&CallError::Unauthenticated, Dialect::OpenAi);
    };
    if llm.config.models.contains_key(&alias) && visible(&llm, &caller, &alias) {
        json(&model_entry(&alias))
    } else {
        error_response(
            &CallError::NotFound {
                kind: "model",
                name: alias,
            },
            Dialect::OpenAi,
        )
    }
}

fn model_entry(alias: &str) -> Value {
    serde_json::json!({"id": alias, "object": "model", "created": 0, "owned_by": "toolgate"})
}

/// Whether policies let `caller` see model `alias` (a listing decision).
fn visible(llm: &LlmState, caller: &Caller, alias: &str) -> bool {
    let query = Query {
        caller,
        target: Target::Model {
            name: alias,
            request: None,
        },
        args: None,
        request_id: "",
        findings: &[],
        touched: Labels::NONE,
    };
    llm.pipeline.policies.current().decide(&query).allowed
}

/// The request body, at most `http.max_body_bytes`, strictly parsed and
/// checked by `check`: the call's input, or the 400 (413) to answer.
async fn read(
    llm: &LlmState,
    body: Body,
    check: fn(&Map<String, Value>) -> Result<ModelRequest, BadRequest>,
    dialect: Dialect,
) -> Result<LlmInput, Response> {
    let limit = llm.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        envelope(
            dialect,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is over the limit of {limit} bytes (http.max_body_bytes)"),
            None,
            "request_too_large",
        )
    })?;
    let bad = |e: BadRequest| {
        envelope(
            dialect,
            StatusCode::BAD_REQUEST,
            &e.message,
            e.param.as_deref(),
            "invalid_request",
        )
    };
    let body = openai::object(&bytes).map_err(bad)?;
    let model = openai::model(&body).map_err(bad)?;
    let request = check(&body).map_err(bad)?;
    Ok(LlmInput::new(model, body, request))
}

/// Run one call through the pipeline in its own task: a caller who hangs
/// up cancels it (the guard), and the call still ends and is recorded.
async fn run<K: CallKind<Input = LlmInput, Env = LlmState>>(
    llm: Arc<LlmState>,
    caller: Option<Extension<Caller>>,
    headers: &HeaderMap,
    input: LlmInput,
) -> Result<Reply<K::Output, Watched<K>>, CallError> {
    let caller = caller.map_or_else(Caller::nobody, |Extension(c)| c);
    let cancel = CancellationToken::new();
    let mut ctx = CallContext::<K>::new(caller, input, cancel.clone());
    ctx.trace = crate::util::trace::trace_id(headers);
    let guard = cancel.drop_guard();
    let task = tokio::spawn(async move { llm.pipeline.run::<K>(&llm, ctx).await });
    let result = task.await.unwrap_or_else(|e| {
        Err(CallError::UpstreamFailed {
            server: "toolgate".into(),
            reason: format!("the call's task failed: {e}"),
        })
    });
    drop(guard.disarm());
    result
}

fn json(value: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

/// A streamed completion as server-sent events: each chunk as it passes
/// the pipeline, then `data: [DONE]`; a failure mid-way is an event with
/// OpenAI's error envelope, and the stream ends there. A slow reader slows
/// the provider's read: nothing is read ahead of what was sent.
fn events<K: CallKind<Chunk = Value>>(stream: Watched<K>, dialect: Dialect) -> Response
where
    Watched<K>: futures::Stream<Item = Result<Value, CallError>>,
{
    let body = futures::stream::unfold((Some(stream), false), move |(stream, sent)| async move {
        let mut stream = stream?;
        if sent {
            // Let the server write what was sent before reading on: with
            // chunks already buffered (a provider that sent several at
            // once) it would otherwise hold them all and write them
            // together, and the caller's first token would wait for the
            // last.
            tokio::task::yield_now().await;
        }
        let event = match (stream.next().await, dialect) {
            (Some(Ok(chunk)), _) => {
                let event = sse(&chunk, dialect);
                return Some((Ok::<_, Infallible>(event), (Some(stream), true)));
            }
            (Some(Err(e)), _) => sse(&error_json(&e, dialect).1, dialect),
            (None, Dialect::OpenAi) => Bytes::from_static(b"data: [DONE]\n\n"),
            // These end with their own last event.
            (None, Dialect::Anthropic | Dialect::Responses) => return None,
        };
        Some((Ok(event), (None, true)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// One event: `data: …` (OpenAI), or `event: TYPE` and `data: …`
/// (Anthropic, whose events name their type).
fn sse(value: &Value, dialect: Dialect) -> Bytes {
    let mut out = Vec::with_capacity(256);
    if dialect != Dialect::OpenAi
        && let Some(kind) = value.get("type").and_then(Value::as_str)
    {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A refusal of the request itself, in `dialect`'s envelope.
fn envelope(
    dialect: Dialect,
    status: StatusCode,
    message: &str,
    param: Option<&str>,
    code: &str,
) -> Response {
    let body = match dialect {
        Dialect::OpenAi | Dialect::Responses => {
            openai::error_body(message, "invalid_request_error", param, Some(code))
        }
        Dialect::Anthropic => {
            let message = match param {
                Some(param) => format!("{param}: {message}"),
                None => message.to_string(),
            };
            anthropic::error_body(status.as_u16(), &message)
        }
    };
    (status, json(&body)).into_response()
}

/// A call's error as the API says it: status and envelope.
pub fn error_response(e: &CallError, dialect: Dialect) -> Response {
    let (status, body) = error_json(e, dialect);
    let mut response = (status, json(&body)).into_response();
    let retry_after = match e {
        CallError::UpstreamRejected(r) => r
            .data
            .as_ref()
            .and_then(|d| d.get("retry_after"))
            .and_then(Value::as_str)
            .map(str::to_string),
        CallError::NotAdmitted(NotAdmitted::Full(_)) => Some("1".into()),
        _ => None,
    };
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The status and envelope of a call's error. A model the caller may not
/// see is as unknown as one that does not exist; a provider's own error
/// keeps its status and, when it used the caller's API's envelope, its
/// words as they were.
fn error_json(e: &CallError, dialect: Dialect) -> (StatusCode, Value) {
    let (status, body) = openai_error(e);
    match dialect {
        Dialect::OpenAi | Dialect::Responses => (status, body),
        Dialect::Anthropic => {
            if let CallError::UpstreamRejected(rejection) = e
                && let Some(own) = rejection.data.as_ref().and_then(|d| d.get("body"))
                && own["type"] == "error"
            {
                return (status, own.clone());
            }
            let message = body["error"]["message"].as_str().unwrap_or_default();
            (status, anthropic::error_body(status.as_u16(), message))
        }
    }
}

fn openai_error(e: &CallError) -> (StatusCode, Value) {
    let text = e.to_string();
    let (status, kind, code, message) = match e {
        CallError::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "no valid credential: send a toolgate API key or an access token as `Authorization: Bearer …`".to_string(),
        ),
        CallError::NotFound { name, .. } => (
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{name}` does not exist or you do not have access to it (GET /v1/models lists yours)."),
        ),
        CallError::Denied(_) => (StatusCode::FORBIDDEN, "permission_error", "denied_by_policy", text),
        CallError::ApprovalDenied(_) => {
            (StatusCode::FORBIDDEN, "permission_error", "approval_denied", text)
        }
        CallError::ConfirmationNeeded(_) => (
            StatusCode::FORBIDDEN,
            "permission_error",
            "confirmation_needed",
            "this call needs its user's confirmation, which this API cannot ask for".into(),
        ),
        CallError::Refused { .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "refused_by_guardrail",
            text,
        ),
        CallError::Cancelled => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "invalid_request_error",
            "cancelled",
            text,
        ),
        CallError::NotAdmitted(NotAdmitted::Full(_)) => {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "gateway_busy", text)
        }
        CallError::NotAdmitted(NotAdmitted::ShuttingDown)
        | CallError::AuditUnavailable(_)
        | CallError::ApprovalUnavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "server_error", "unavailable", text)
        }
        CallError::UpstreamTimeout { .. } => {
            (StatusCode::GATEWAY_TIMEOUT, "server_error", "upstream_timeout", text)
        }
        CallError::UpstreamUnavailable { .. } | CallError::UpstreamFailed { .. } => {
            (StatusCode::BAD_GATEWAY, "server_error", "upstream_error", text)
        }
        CallError::UpstreamRejected(rejection) => {
            let status = u16::try_from(rejection.code)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            // The provider's own envelope, as it wrote it.
            if let Some(body) = rejection.data.as_ref().and_then(|d| d.get("body"))
                && body.get("error").is_some_and(Value::is_object)
                && body["type"] != "error"
            {
                return (status, body.clone());
            }
            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limit_error"
            } else if status.is_client_error() {
                "invalid_request_error"
            } else {
                "server_error"
            };
            (status, kind, "upstream_error", text)
        }
    };
    (status, openai::error_body(&message, kind, None, Some(code)))
}
