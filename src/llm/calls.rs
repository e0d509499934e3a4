//! The LLM call kinds: a chat completion ([`Chat`], streamed or not), a
//! Messages API call ([`Messages`]), a Responses API call ([`Responses`]) and
//! an embeddings request ([`Embeddings`]). Each resolves the model name to
//! its route and forwards through [`LlmState::attempt`] (fallback, retries,
//! breakers); everything else is the shared pipeline. What a call used
//! (target, tokens, time to first token, finish reasons) is noted in its
//! [`Meter`] as the answer passes, for the `completed` record.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use serde_json::{Map, Value};

use super::LlmState;
use super::openai::{self, Usage};
use super::provider::{Endpoint, Event, Events, Failure, Provider, read_json};
use super::{anthropic, anthropic_chat, responses};
use crate::call::{
    CallContext, CallError, CallKind, Channel, ModelRequest, NoStream, Part, PolicyQuestion, Reply,
    Target,
};
use crate::config::{ModelRoute, ProviderKind};

/// What the LLM ingress hands the pipeline: the request as parsed, and
/// what policies are told of it.
pub struct LlmInput {
    /// The model name the caller used (an alias of `[llm.models]`).
    pub model: String,
    /// The request body: what policies, guardrails and the audit see, and
    /// (with the target's model name) what the provider receives.
    pub body: Map<String, Value>,
    pub request: ModelRequest,
    /// The caller asked for usage in its stream; toolgate always asks the
    /// provider, and drops it from the stream when the caller did not.
    pub include_usage: bool,
    pub meter: Arc<Meter>,
}

impl LlmInput {
    pub fn new(model: String, body: Map<String, Value>, request: ModelRequest) -> Self {
        let include_usage = openai::wants_usage(&body);
        Self {
            model,
            body,
            request,
            include_usage,
            meter: Arc::new(Meter::new()),
        }
    }
}

/// What one LLM call used, noted as its answer passes.
pub struct Meter {
    started: Instant,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    /// `provider/model` of the target that answered (or failed last).
    target: Option<String>,
    attempts: u32,
    usage: Option<Usage>,
    /// From the call's start to the first chunk with content.
    first_token: Option<Duration>,
    finish: Vec<String>,
    /// The model the provider says answered.
    upstream_model: Option<String>,
}

impl Meter {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            used: Mutex::new(Used::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Used) -> T) -> T {
        f(&mut self.used.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn attempt(&self, target: String) {
        self.with(|u| {
            u.attempts += 1;
            u.target = Some(target);
        });
    }

    /// Note what an answer (or one chunk of it) says.
    fn note(&self, answer: &Value) {
        let usage = Usage::of(answer);
        let first = answer
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        self.with(|u| {
            if let Some(usage) = usage {
                u.usage = Some(usage);
            }
            if first && u.first_token.is_none() {
                u.first_token = Some(self.started.elapsed());
            }
            for reason in openai::finish_reasons(answer) {
                u.finish.push(reason.to_string());
            }
            if u.upstream_model.is_none()
                && let Some(model) = answer.get("model").and_then(Value::as_str)
            {
                u.upstream_model = Some(model.to_string());
            }
        });
    }

    /// Note what a Messages API answer (or one of its events) says.
    fn note_messages(&self, answer: &Value) {
        let usage = anthropic::usage_of(answer);
        let first = answer["type"] == "content_block_delta";
        let model = answer
            .get("model")
            .or_else(|| answer.get("message").and_then(|m| m.get("model")))
            .and_then(Value::as_str);
        self.with(|u| {
            if let Some(usage) = usage {
                let before = u.usage.unwrap_or_default();
                u.usage = Some(Usage {
                    input: usage.input.max(before.input),
                    output: usage.output.max(before.output),
                    cached: usage.cached.max(before.cached),
                });
            }
            if (first || answer["type"] == "message") && u.first_token.is_none() {
                u.first_token = Some(self.started.elapsed());
            }
            if let Some(reason) = anthropic::stop_reason(answer) {
                u.finish.push(reason.to_string());
            }
            if u.upstream_model.is_none()
                && let Some(model) = model
            {
                u.upstream_model = Some(model.to_string());
            }
        });
    }

    /// Note what a Responses API answer (or one of its events) says.
    fn note_responses(&self, answer: &Value) {
        let usage = responses::usage_of(answer);
        let status = responses::status_of(answer).map(str::to_string);
        let model = responses::model_of(answer).map(str::to_string);
        let first = answer["type"] == "response.output_text.delta"
            || answer["type"] == "response.function_call_arguments.delta"
            || answer["object"] == "response";
        self.with(|u| {
            if usage.is_some() {
                u.usage = usage;
            }
            if first && u.first_token.is_none() {
                u.first_token = Some(self.started.elapsed());
            }
            u.finish.extend(status);
            if u.upstream_model.is_none() {
                u.upstream_model = model;
            }
        });
    }

    /// The `completed` record's detail.
    pub fn detail(&self) -> Value {
        self.with(|u| {
            let mut detail = serde_json::json!({
                "target": u.target,
                "attempts": u.attempts,
                "upstream_model": u.upstream_model,
                "finish_reasons": u.finish,
                "time_to_first_token_us": u.first_token.map(|d| d.as_micros() as u64),
            });
            if let Some(usage) = u.usage {
                detail["tokens"] = serde_json::json!({
                    "input": usage.input, "output": usage.output, "cached": usage.cached,
                });
            }
            serde_json::json!({"llm": detail})
        })
    }
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

/// A streamed chat completion: its chunks, as the provider sent them
/// (usage dropped when the caller did not ask).
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<Value, CallError>> + Send>>;

/// `POST /v1/chat/completions`.
pub struct Chat;

/// `POST /v1/embeddings`.
pub struct Embeddings;

/// What every LLM call kind has in common: its input, target and Env,
/// its subject (the model alias), how it resolves (alias to route), what
/// policies are asked (`chat` on the model, with the whole request as
/// arguments), and the `completed` record's detail (the meter's).
macro_rules! llm_call_kind {
    () => {
        type Input = LlmInput;
        type Target = Arc<ModelRoute>;
        type Output = Value;
        type Env = LlmState;

        fn subject(input: &LlmInput) -> &str {
            &input.model
        }

        fn resolve(llm: &LlmState, input: &LlmInput) -> Result<Arc<ModelRoute>, CallError> {
            llm.route(&input.model).ok_or_else(|| CallError::NotFound {
                kind: "model",
                name: input.model.clone(),
            })
        }

        fn question<'a>(
            ctx: &'a CallContext<Self>,
            _route: &'a Arc<ModelRoute>,
        ) -> Option<PolicyQuestion<'a>> {
            let input = &ctx.input;
            Some(PolicyQuestion {
                target: Target::Model {
                    name: &input.model,
                    request: Some(input.request),
                },
                // The whole request: what the audit hashes and keeps
                // (masked), and what an approval binds to.
                args: Some(&input.body),
                definition_hash: None,
            })
        }

        fn completed_detail(ctx: &CallContext<Self>) -> Option<Value> {
            Some(ctx.input.meter.detail())
        }
    };
}

/// What a provider answered: a whole answer, or a stream with its first
/// event already read.
enum Answer {
    Whole(Value),
    Stream(Event, Events),
}

/// Send one request body to a target (with the target's model name in
/// it) and read the answer: all of it, or a stream's first event, so a
/// provider that fails before it is still one to fall back from.
async fn exchange(
    provider: &Provider,
    endpoint: Endpoint,
    model: &str,
    mut body: Map<String, Value>,
    stream: bool,
    idle: Duration,
) -> Result<Answer, Failure> {
    body.insert("model".into(), Value::String(model.to_string()));
    let bytes = serde_json::to_vec(&body).map_err(|e| Failure::Invalid(e.to_string()))?;
    let response = provider.send(endpoint, model, bytes, stream).await?;
    if !stream {
        return Ok(Answer::Whole(read_json(response).await?));
    }
    let mut events = Events::new(response, idle);
    let first = events
        .next()
        .await?
        .ok_or_else(|| Failure::Invalid("the stream ended before its first event".into()))?;
    Ok(Answer::Stream(first, events))
}

impl CallKind for Chat {
    const METHOD: &'static str = "chat/completions";
    type Chunk = Value;
    type Stream = ChatStream;

    llm_call_kind!();

    fn input_parts(input: &mut LlmInput, visit: &mut dyn FnMut(Part<'_>)) {
        openai::message_parts(&mut input.body, visit);
    }

    fn output_parts(output: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
        openai::completion_parts(output, visit);
    }

    fn chunk_parts(chunk: &mut Value, visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {
        openai::chunk_parts(chunk, visit);
    }

    async fn forward(
        llm: &LlmState,
        ctx: &CallContext<Self>,
        route: &Arc<ModelRoute>,
    ) -> Result<Reply<Value, ChatStream>, CallError> {
        let input = &ctx.input;
        let stream = input.request.stream;
        let idle = llm.config.stream_idle_timeout;
        llm.attempt(ctx, route, Endpoint::ChatCompletions, |provider, target| {
            let model = target.model.clone();
            let label = target.label();
            // Anthropic targets get the request in their API's words.
            let native = provider.config.kind.speaks_openai();
            let body = if native {
                let mut body = input.body.clone();
                if stream {
                    // Always asked, so usage is known whatever the caller asked.
                    let options = body
                        .entry("stream_options")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(options) = options {
                        options.insert("include_usage".into(), Value::Bool(true));
                    }
                }
                Ok(body)
            } else {
                anthropic_chat::to_messages(&input.body, &model)
            };
            let meter = input.meter.clone();
            let include_usage = input.include_usage;
            async move {
                let body = body.map_err(untranslatable)?;
                let endpoint = if native {
                    Endpoint::ChatCompletions
                } else {
                    Endpoint::Messages
                };
                match exchange(&provider, endpoint, &model, body, stream, idle).await? {
                    Answer::Whole(completion) if native => {
                        meter.note(&completion);
                        Ok(Reply::Done(completion))
                    }
                    Answer::Whole(answer) => {
                        meter.note_messages(&answer);
                        Ok(Reply::Done(anthropic_chat::to_completion(&answer)))
                    }
                    Answer::Stream(first, events) => {
                        let shape = if native {
                            Shape::Chat { include_usage }
                        } else {
                            let translator = anthropic_chat::ChunkTranslator::new(include_usage);
                            Shape::MessagesAsChat(Box::new(translator))
                        };
                        Ok(Reply::Stream(relay(first, events, meter, shape, label)))
                    }
                }
            }
        })
        .await
    }
}

/// A request this target cannot be sent (its API cannot say it): the
/// caller's to change (400), not a failure to retry elsewhere.
fn untranslatable(e: super::openai::BadRequest) -> Failure {
    Failure::Status {
        status: 400,
        retry_after: None,
        body: None,
        text: format!("{}: {}", e.param.unwrap_or_default(), e.message),
    }
}

/// What a relayed stream is, and what is done to each event on its way.
pub(super) enum Shape {
    /// Chat completion chunks, as the provider sent them; usage dropped
    /// when the caller did not ask for it.
    Chat { include_usage: bool },
    /// Messages API events from an Anthropic target, as sent.
    Messages,
    /// Chat completion chunks turned into Messages API events.
    ChatAsMessages(Box<anthropic::StreamTranslator>),
    /// Messages API events turned into chat completion chunks.
    MessagesAsChat(Box<anthropic_chat::ChunkTranslator>),
    /// Responses API events, as sent.
    Responses,
}

/// The events of a streamed answer from its first, noted in the meter and
/// shaped for the caller, until the provider's end (`[DONE]`, or
/// `message_stop`); a stream that breaks off before it ends with an error.
pub(super) fn relay(
    first: Event,
    events: Events,
    meter: Arc<Meter>,
    shape: Shape,
    target: String,
) -> ChatStream {
    struct State {
        first: Option<Event>,
        events: Events,
        shape: Shape,
        pending: VecDeque<Value>,
        done: bool,
        meter: Arc<Meter>,
        target: String,
    }
    impl State {
        /// One event from the provider: noted, shaped, queued for the
        /// caller; or the error it carries.
        fn take(&mut self, mut event: Value) -> Result<(), String> {
            match &mut self.shape {
                Shape::Chat { include_usage } => {
                    self.meter.note(&event);
                    if !*include_usage && let Value::Object(map) = &mut event {
                        let usage = map.remove("usage").is_some_and(|u| !u.is_null());
                        let empty = map
                            .get("choices")
                            .and_then(Value::as_array)
                            .is_some_and(Vec::is_empty);
                        if usage && empty {
                            // The usage-only last chunk the caller did not ask for.
                            return Ok(());
                        }
                    }
                    self.pending.push_back(event);
                }
                Shape::Messages => {
                    self.meter.note_messages(&event);
                    if event["type"] == "message_stop" {
                        self.done = true;
                    }
                    self.pending.push_back(event);
                }
                Shape::ChatAsMessages(translator) => {
                    self.meter.note(&event);
                    self.pending.extend(translator.chunk(&event));
                }
                Shape::MessagesAsChat(translator) => {
                    self.meter.note_messages(&event);
                    if event["type"] == "message_stop" {
                        self.done = true;
                    }
                    self.pending.extend(translator.event(&event)?);
                }
                Shape::Responses => {
                    self.meter.note_responses(&event);
                    if responses::is_final(&event) {
                        self.done = true;
                    }
                    self.pending.push_back(event);
                }
            }
            Ok(())
        }
    }

    let state = State {
        first: Some(first),
        events,
        shape,
        pending: VecDeque::new(),
        done: false,
        meter,
        target,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            let next = match state.first.take() {
                Some(first) => Ok(Some(first)),
                None => state.events.next().await,
            };
            let failure = match next {
                Ok(Some(Event::Data(event))) => match state.take(event) {
                    Ok(()) => continue,
                    Err(said) => format!("the provider sent an error: {said}"),
                },
                Ok(Some(Event::Done)) => {
                    state.done = true;
                    if let Shape::ChatAsMessages(translator) = &mut state.shape {
                        state.pending.extend(translator.finish());
                    }
                    continue;
                }
                Ok(None) => "the provider's stream ended before it was complete".to_string(),
                Err(failure) => failure.to_string(),
            };
            state.done = true;
            let e = CallError::UpstreamFailed {
                server: state.target.clone(),
                reason: failure,
            };
            return Some((Err(e), state));
        }
    }))
}

/// `POST /v1/messages`: Anthropic's Messages API, served natively by
/// Anthropic targets and translated to and from chat completions for the
/// others.
pub struct Messages;

impl CallKind for Messages {
    const METHOD: &'static str = "messages";
    type Chunk = Value;
    type Stream = ChatStream;

    llm_call_kind!();

    fn input_parts(input: &mut LlmInput, visit: &mut dyn FnMut(Part<'_>)) {
        anthropic::message_parts(&mut input.body, visit);
    }

    fn output_parts(output: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
        anthropic::answer_parts(output, visit);
    }

    fn chunk_parts(chunk: &mut Value, visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {
        anthropic::event_parts(chunk, visit);
    }

    async fn forward(
        llm: &LlmState,
        ctx: &CallContext<Self>,
        route: &Arc<ModelRoute>,
    ) -> Result<Reply<Value, ChatStream>, CallError> {
        let input = &ctx.input;
        let stream = input.request.stream;
        let idle = llm.config.stream_idle_timeout;
        llm.attempt(ctx, route, Endpoint::Messages, |provider, target| {
            let model = target.model.clone();
            let label = target.label();
            let native = provider.config.kind == ProviderKind::Anthropic;
            let body = if native {
                Ok(input.body.clone())
            } else {
                anthropic::to_chat(&input.body, &model)
            };
            let meter = input.meter.clone();
            async move {
                let body = body.map_err(untranslatable)?;
                let endpoint = if native {
                    Endpoint::Messages
                } else {
                    Endpoint::ChatCompletions
                };
                match exchange(&provider, endpoint, &model, body, stream, idle).await? {
                    Answer::Whole(answer) if native => {
                        meter.note_messages(&answer);
                        Ok(Reply::Done(answer))
                    }
                    Answer::Whole(answer) => {
                        meter.note(&answer);
                        Ok(Reply::Done(anthropic::from_chat(&answer)))
                    }
                    Answer::Stream(first, events) => {
                        let shape = if native {
                            Shape::Messages
                        } else {
                            Shape::ChatAsMessages(Box::default())
                        };
                        Ok(Reply::Stream(relay(first, events, meter, shape, label)))
                    }
                }
            }
        })
        .await
    }
}

/// `POST /v1/responses`: OpenAI's Responses API, passed through to the
/// targets that serve it.
pub struct Responses;

impl CallKind for Responses {
    const METHOD: &'static str = "responses";
    type Chunk = Value;
    type Stream = ChatStream;

    llm_call_kind!();

    fn input_parts(input: &mut LlmInput, visit: &mut dyn FnMut(Part<'_>)) {
        responses::request_parts(&mut input.body, visit);
    }

    fn output_parts(output: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
        responses::response_parts(output, visit);
    }

    fn chunk_parts(chunk: &mut Value, visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {
        responses::event_parts(chunk, visit);
    }

    async fn forward(
        llm: &LlmState,
        ctx: &CallContext<Self>,
        route: &Arc<ModelRoute>,
    ) -> Result<Reply<Value, ChatStream>, CallError> {
        let input = &ctx.input;
        let stream = input.request.stream;
        let idle = llm.config.stream_idle_timeout;
        llm.attempt(ctx, route, Endpoint::Responses, |provider, target| {
            let model = target.model.clone();
            let label = target.label();
            let body = input.body.clone();
            let meter = input.meter.clone();
            async move {
                let endpoint = Endpoint::Responses;
                match exchange(&provider, endpoint, &model, body, stream, idle).await? {
                    Answer::Whole(answer) => {
                        meter.note_responses(&answer);
                        Ok(Reply::Done(answer))
                    }
                    Answer::Stream(first, events) => {
                        let shape = Shape::Responses;
                        Ok(Reply::Stream(relay(first, events, meter, shape, label)))
                    }
                }
            }
        })
        .await
    }
}

impl CallKind for Embeddings {
    const METHOD: &'static str = "embeddings";
    type Chunk = NoStream;
    type Stream = NoStream;

    llm_call_kind!();

    fn input_parts(input: &mut LlmInput, visit: &mut dyn FnMut(Part<'_>)) {
        openai::input_parts(&mut input.body, visit);
    }

    async fn forward(
        llm: &LlmState,
        ctx: &CallContext<Self>,
        route: &Arc<ModelRoute>,
    ) -> Result<Reply<Value, NoStream>, CallError> {
        let input = &ctx.input;
        llm.attempt(ctx, route, Endpoint::Embeddings, |provider, target| {
            let body = input.body.clone();
            let model = target.model.clone();
            let meter = input.meter.clone();
            let idle = llm.config.stream_idle_timeout;
            async move {
                let endpoint = Endpoint::Embeddings;
                match exchange(&provider, endpoint, &model, body, false, idle).await? {
                    Answer::Whole(answer) => {
                        meter.note(&answer);
                        Ok(Reply::Done(answer))
                    }
                    // Not asked for: `exchange` streams only when told to.
                    Answer::Stream(..) => Err(Failure::Invalid("a stream, not asked for".into())),
                }
            }
        })
        .await
    }
}

impl LlmInput {
    /// Note the target an attempt goes to.
    pub(super) fn attempting(&self, target: String) {
        self.meter.attempt(target);
    }
}
