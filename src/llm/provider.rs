//! Talking to one provider: where each API lives on it, how toolgate
//! proves itself (its own credential, never the caller's), sending a
//! request and reading what comes back, whole ([`read_json`]) or as
//! server-sent events ([`Events`]), each bounded. A failure says whether
//! another attempt may help ([`Failure::retryable`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::config::{HostResolver, ProviderAuth, ProviderConfig, ProviderKind};

/// Largest whole answer read from a provider.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Largest single event of a stream.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// Which of a provider's APIs a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Responses,
    Messages,
}

/// One provider, with its pooled HTTP client.
pub struct Provider {
    pub config: Arc<ProviderConfig>,
    client: reqwest::Client,
    headers: HeaderMap,
    /// Azure with Entra ID: the app token, fetched and renewed.
    entra: Option<super::entra::EntraToken>,
}

/// Why an attempt on a provider failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// No connection, or it broke before an answer.
    Connect(String),
    /// No answer (a stream: no first chunk) in time.
    Timeout(Duration),
    /// An error status, with the provider's error body when it was JSON.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<Value>,
        text: String,
    },
    /// An answer toolgate cannot read (not JSON, invalid events, too big).
    Invalid(String),
}

impl Failure {
    /// Whether the next target (or a later attempt) may do better:
    /// connection errors, timeouts, 429, 5xx and unreadable answers, and
    /// what says the target is set up wrong ([`Failure::misconfigured`]);
    /// never the caller's own 4xx.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Connect(_) | Failure::Timeout(_) | Failure::Invalid(_) => true,
            Failure::Status { status, .. } => {
                *status == 429 || *status >= 500 || self.misconfigured()
            }
        }
    }

    /// The provider refused toolgate's credential (401, 403) or does not
    /// know the target's model (404): toolgate's configuration is wrong,
    /// not the caller's request, so the caller must not see it as theirs.
    pub fn misconfigured(&self) -> bool {
        matches!(
            self,
            Failure::Status {
                status: 401 | 403 | 404,
                ..
            }
        )
    }

    /// Whether it counts against the target's health (a 429 is the
    /// provider's quota, not its failure).
    pub fn unhealthy(&self) -> bool {
        self.retryable() && !matches!(self, Failure::Status { status: 429, .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(why) => write!(f, "cannot reach the provider: {why}"),
            Failure::Timeout(after) => {
                write!(f, "no answer within {}s", after.as_secs_f64())
            }
            Failure::Status { status, text, .. } => write!(f, "HTTP {status}: {text}"),
            Failure::Invalid(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

impl Provider {
    pub fn new(config: Arc<ProviderConfig>, resolver: HostResolver) -> Result<Self, String> {
        let place = format!("[llm.providers.{}] of toolgate.toml", config.name);
        let client = crate::egress::client(&place, resolver, config.base_url.allow_link_local)
            .map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        let mut secret = |name: &'static str, value: String| {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| format!("{place}: the credential is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
            Ok::<_, String>(())
        };
        match &config.auth {
            ProviderAuth::None => {}
            ProviderAuth::Bearer(token) => {
                secret("authorization", format!("Bearer {}", token.expose()))?
            }
            ProviderAuth::AzureKey(key) => secret("api-key", key.expose().to_string())?,
            ProviderAuth::AnthropicKey(key) => secret("x-api-key", key.expose().to_string())?,
            ProviderAuth::Entra(_) => {}
        }
        let entra = match &config.auth {
            ProviderAuth::Entra(credentials) => Some(super::entra::EntraToken::new(
                credentials.clone(),
                &format!("the Entra ID client of {place}"),
            )?),
            _ => None,
        };
        if config.kind == ProviderKind::Anthropic
            && let Some(version) = &config.api_version
        {
            let value = HeaderValue::from_str(version)
                .map_err(|_| format!("{place}: api_version is not a valid header value"))?;
            headers.insert("anthropic-version", value);
        }
        Ok(Self {
            config,
            client,
            headers,
            entra,
        })
    }

    /// The URL of `endpoint` for `model` on this provider.
    pub fn url(&self, endpoint: Endpoint, model: &str) -> String {
        let base = self.config.base_url.expose().trim_end_matches('/');
        let path = match endpoint {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
        };
        match self.config.kind {
            ProviderKind::Azure => {
                let version = self.config.api_version.as_deref().unwrap_or_default();
                let deployment: String =
                    url::form_urlencoded::byte_serialize(model.as_bytes()).collect();
                match endpoint {
                    Endpoint::Responses => {
                        format!("{base}/openai/responses?api-version={version}")
                    }
                    _ => format!(
                        "{base}/openai/deployments/{deployment}/{path}?api-version={version}"
                    ),
                }
            }
            _ => format!("{base}/{path}"),
        }
    }

    /// POST `body` to `endpoint`; an error status is a [`Failure`].
    pub async fn send(
        &self,
        endpoint: Endpoint,
        model: &str,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<reqwest::Response, Failure> {
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut request = self
            .client
            .post(self.url(endpoint, model))
            .headers(self.headers.clone());
        if let Some(entra) = &self.entra {
            request = request.bearer_auth(entra.bearer().await?);
        }
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, accept)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Connect(self.scrub(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_bounded(response, 64 << 10).await.unwrap_or_default();
        let body = serde_json::from_slice::<Value>(&bytes).ok();
        let text = body
            .as_ref()
            .and_then(error_message)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into());
        Err(Failure::Status {
            status: status.as_u16(),
            retry_after,
            body,
            text: self.config.base_url.scrub(&text),
        })
    }

    /// An HTTP error without the URL's credentials.
    fn scrub(&self, error: &reqwest::Error) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        self.config.base_url.scrub(&text)
    }
}

/// The message of an error body in OpenAI's or Anthropic's envelope.
fn error_message(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| error.as_str().map(str::to_string))
}

/// The body of `response`, at most `limit` bytes.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Failure::Connect(format!("the answer broke off: {e}")))?
    {
        if out.len() + chunk.len() > limit {
            return Err(Failure::Invalid(format!("an answer over {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A whole JSON answer, strictly parsed.
pub async fn read_json(response: reqwest::Response) -> Result<Value, Failure> {
    let bytes = read_bounded(response, MAX_ANSWER_BYTES).await?;
    crate::util::json::parse(&bytes).map_err(|e| Failure::Invalid(format!("not JSON: {e}")))
}

/// One server-sent event's meaning.
#[derive(Debug)]
pub enum Event {
    /// Its data, parsed.
    Data(Value),
    /// OpenAI's `data: [DONE]`.
    Done,
}

/// The events of a streamed answer, read as they arrive: no more than
/// one event (at most [`MAX_EVENT_BYTES`]) and one network chunk are held.
pub struct Events {
    response: reqwest::Response,
    buffer: BytesMut,
    /// How far `buffer` was searched for the end of an event.
    scanned: usize,
    /// Longest wait for the next bytes.
    idle: Duration,
    ended: bool,
}

impl Events {
    pub fn new(response: reqwest::Response, idle: Duration) -> Self {
        Self {
            response,
            buffer: BytesMut::new(),
            scanned: 0,
            idle,
            ended: false,
        }
    }

    /// The next event with data; `None` when the body ended (a partial
    /// event at the end is dropped, as the SSE rules say).
    pub async fn next(&mut self) -> Result<Option<Event>, Failure> {
        loop {
            while let Some(block) = self.take_block() {
                if let Some(data) = data_of(&block) {
                    if data.trim() == "[DONE]" {
                        return Ok(Some(Event::Done));
                    }
                    let value = crate::util::json::parse(data.as_bytes()).map_err(|e| {
                        Failure::Invalid(format!("an event's data is not JSON: {e}"))
                    })?;
                    return Ok(Some(Event::Data(value)));
                }
            }
            if self.ended {
                return Ok(None);
            }
            if self.buffer.len() > MAX_EVENT_BYTES {
                return Err(Failure::Invalid(format!(
                    "an event over {MAX_EVENT_BYTES} bytes"
                )));
            }
            match tokio::time::timeout(self.idle, self.response.chunk()).await {
                Err(_) => return Err(Failure::Timeout(self.idle)),
                Ok(Err(e)) => {
                    return Err(Failure::Connect(format!("the stream broke off: {e}")));
                }
                Ok(Ok(None)) => self.ended = true,
                Ok(Ok(Some(bytes))) => self.buffer.extend_from_slice(&bytes),
            }
        }
    }

    /// The next complete event block (up to its blank line), if buffered.
    fn take_block(&mut self) -> Option<String> {
        let bytes = &self.buffer[..];
        let mut i = self.scanned;
        // An event ends at a blank line: "\n\n", "\r\n\r\n" or "\r\r".
        while i < bytes.len() {
            let end = match bytes[i..] {
                [b'\n', b'\n', ..] | [b'\r', b'\r', ..] => Some(i + 2),
                [b'\r', b'\n', b'\r', b'\n', ..] => Some(i + 4),
                [b'\n', b'\r', b'\n', ..] => Some(i + 3),
                _ => None,
            };
            if let Some(end) = end {
                let block = String::from_utf8_lossy(&bytes[..i]).into_owned();
                self.buffer.advance(end);
                self.scanned = 0;
                return Some(block);
            }
            i += 1;
        }
        // Leave the last three bytes: a terminator may straddle chunks.
        self.scanned = bytes.len().saturating_sub(3);
        None
    }
}

/// The `data` of an event block: its `data:` lines joined by newlines;
/// `None` for a block without (a comment, a bare `event:`).
fn data_of(block: &str) -> Option<String> {
    let mut data: Option<String> = None;
    for line in block.lines() {
        let Some(rest) = line.strip_prefix("data") else {
            continue;
        };
        let value = match rest.strip_prefix(':') {
            Some(v) => v.strip_prefix(' ').unwrap_or(v),
            None if rest.is_empty() => "",
            None => continue,
        };
        match &mut data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => data = Some(value.to_string()),
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_make_an_event_and_other_fields_do_not() {
        assert_eq!(data_of("data: {\"a\":1}").as_deref(), Some("{\"a\":1}"));
        assert_eq!(
            data_of("event: delta\ndata: a\ndata:b").as_deref(),
            Some("a\nb")
        );
        assert_eq!(data_of(": keep-alive"), None);
        assert_eq!(data_of("event: ping"), None);
        assert_eq!(data_of("dataX: no"), None);
    }

    #[test]
    fn retry_only_what_another_attempt_may_fix() {
        let status = |status| Failure::Status {
            status,
            retry_after: None,
            body: None,
            text: String::new(),
        };
        assert!(status(500).retryable() && status(503).retryable() && status(429).retryable());
        // The caller's own mistakes are theirs.
        assert!(!status(400).retryable() && !status(422).retryable() && !status(413).retryable());
        // toolgate's credential or model name is wrong: another target may do.
        for s in [401, 403, 404] {
            assert!(status(s).misconfigured() && status(s).retryable(), "{s}");
        }
        assert!(!status(429).unhealthy() && status(502).unhealthy());
        assert!(Failure::Timeout(Duration::from_secs(1)).retryable());
    }
}
