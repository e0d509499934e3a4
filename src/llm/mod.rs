//! The LLM front end: the agent's LLM calls through the same pipeline as
//! its tool calls. Callers speak OpenAI's API at `/v1` ([`api`]); a model
//! name is an alias of `[llm.models]`, routed to weighted targets on the
//! providers of `[llm.providers]`. A chat completion, a Messages or
//! Responses API call, or an embeddings request is a call kind
//! ([`calls`]) like `tools/call`: authenticated,
//! resolved, authorized (`Action::"chat"` on `Model::"<alias>"`),
//! inspected, approved, recorded, forwarded, inspected again and recorded
//! completed by the spine.
//!
//! Forwarding tries the route's targets ([`LlmState::attempt`]): the first
//! by weight, then the others, on connection errors, timeouts, 429 and
//! 5xx (never the caller's 4xx), within a retry budget, past targets a
//! circuit breaker has ejected ([`route`]). A stream falls back only until
//! its first event; after that its failure is the caller's to see.
//!
//! - [`api`]: the HTTP handlers and OpenAI's error envelope;
//! - [`openai`]: the wire format as toolgate reads it;
//! - [`anthropic`]: Anthropic's Messages API, and its translation to and
//!   from chat completions for OpenAI-speaking targets;
//! - [`anthropic_chat`]: chat completions translated for Anthropic targets;
//! - [`calls`]: the call kinds and what a call used ([`calls::Meter`]);
//! - [`responses`]: OpenAI's Responses API, passed through;
//! - [`provider`]: one provider's URLs, credentials, answers and events
//!   (Azure's Entra ID app token in `entra`);
//! - [`route`]: target order, breakers, the retry budget.

pub mod anthropic;
pub mod anthropic_chat;
pub mod api;
pub mod calls;
mod entra;
pub mod openai;
pub mod provider;
pub mod responses;
pub mod route;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use provider::{Endpoint, Failure, Provider};
use route::{Breaker, RetryBudget};

use crate::call::{CallContext, CallError, CallKind, Rejection};
use crate::config::{Config, LlmConfig, ModelRoute, ProviderConfig, RouteTarget};
use crate::pipeline::Pipeline;

/// The LLM front end's state: the routes, one pooled client per provider,
/// a breaker per target, the retry budget.
pub struct LlmState {
    pub config: Arc<LlmConfig>,
    pub pipeline: Arc<Pipeline>,
    providers: BTreeMap<String, Arc<Provider>>,
    /// By target label (`provider/model`).
    breakers: BTreeMap<String, Arc<Breaker>>,
    budget: RetryBudget,
    /// Spreads first attempts over a route's targets by weight.
    picks: AtomicU64,
    /// Largest request body read (`http.max_body_bytes`).
    pub max_body_bytes: usize,
}

impl LlmState {
    /// Build the providers' clients; fails only when one cannot be built.
    pub fn new(config: &Config, pipeline: Arc<Pipeline>) -> Result<Arc<Self>, String> {
        let llm = Arc::new(config.llm.clone());
        let providers = llm
            .providers
            .iter()
            .map(|(name, p)| {
                Provider::new(p.clone(), config.host_resolver.clone())
                    .map(|p| (name.clone(), Arc::new(p)))
            })
            .collect::<Result<_, _>>()?;
        let breakers = llm
            .models
            .values()
            .flat_map(|r| &r.targets)
            .map(|t| (t.label(), Arc::new(Breaker::new(llm.breaker.clone()))))
            .collect();
        Ok(Arc::new(Self {
            budget: RetryBudget::new(&llm.retry),
            config: llm,
            pipeline,
            providers,
            breakers,
            picks: AtomicU64::new(0),
            max_body_bytes: config.http.max_body_bytes,
        }))
    }

    /// The route of a model name, if configured.
    pub fn route(&self, alias: &str) -> Option<Arc<ModelRoute>> {
        self.config.models.get(alias).cloned()
    }

    /// Every target and its breaker's state, for `/readyz`.
    pub fn targets(&self) -> Vec<serde_json::Value> {
        self.breakers
            .iter()
            .map(|(label, b)| serde_json::json!({"target": label, "state": b.state().name()}))
            .collect()
    }

    fn breaker(&self, target: &RouteTarget) -> Arc<Breaker> {
        self.breakers
            .get(&target.label())
            .cloned()
            .unwrap_or_else(|| Arc::new(Breaker::new(self.config.breaker.clone())))
    }

    /// Send a call to its route's targets until one answers: the first by
    /// weight, then the others, each within its timeout; a failure another
    /// attempt may fix (connection, timeout, 429, 5xx, an unreadable
    /// answer) moves on while attempts (`[llm.retry]`) and the retry
    /// budget last, waiting a backoff before a target already tried; the
    /// caller's own error (another 4xx) is theirs at once. Targets whose
    /// breaker is open are passed over.
    pub async fn attempt<K, T, F, Fut>(
        &self,
        ctx: &CallContext<K>,
        route: &ModelRoute,
        endpoint: Endpoint,
        send: F,
    ) -> Result<T, CallError>
    where
        K: CallKind<Input = calls::LlmInput>,
        F: Fn(Arc<Provider>, &RouteTarget) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.budget.deposit();
        let serving: Vec<usize> = route::order(route, &self.picks)
            .into_iter()
            .filter(|&i| serves(&route.targets[i].provider, endpoint))
            .collect();
        if serving.is_empty() {
            return Err(unserved(route, endpoint));
        }
        let retry = &self.config.retry;
        let mut tried = vec![false; route.targets.len()];
        let mut last: Option<(String, Failure)> = None;
        for attempt in 0..=retry.attempts {
            // An untried target first; a tried one again only after a backoff.
            let pick = serving
                .iter()
                .copied()
                .filter(|&i| !tried[i])
                .chain(serving.iter().copied().filter(|&i| tried[i]))
                .find_map(|i| {
                    let breaker = self.breaker(&route.targets[i]);
                    breaker.admit().then_some((i, breaker))
                });
            let Some((i, breaker)) = pick else {
                break;
            };
            let target = &route.targets[i];
            if attempt > 0 {
                if !self.budget.withdraw() {
                    breaker.release();
                    tracing::debug!(call = ctx.id, "retry budget spent; no further attempt");
                    break;
                }
                if tried[i] {
                    let wait = route::backoff(retry, attempt, ctx.id);
                    tokio::select! {
                        () = ctx.cancel.cancelled() => {
                            breaker.release();
                            return Err(CallError::Cancelled);
                        }
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            tried[i] = true;
            let label = target.label();
            ctx.input.attempting(label.clone());
            let Some(provider) = self.providers.get(&target.provider.name).cloned() else {
                unreachable!("every target names a configured provider")
            };
            let outcome = tokio::select! {
                () = ctx.cancel.cancelled() => {
                    breaker.release();
                    return Err(CallError::Cancelled);
                }
                outcome = tokio::time::timeout(target.timeout, send(provider, target)) => {
                    outcome.unwrap_or(Err(Failure::Timeout(target.timeout)))
                }
            };
            match outcome {
                Ok(answer) => {
                    breaker.success();
                    return Ok(answer);
                }
                Err(failure) if failure.retryable() => {
                    tracing::info!(call = ctx.id, target = %label, %failure, "attempt failed");
                    if failure.unhealthy() {
                        if breaker.failure() {
                            tracing::warn!(target = %label, cool_down_s = self.config.breaker.cool_down.as_secs_f64(), "target ejected by its circuit breaker");
                        }
                    } else {
                        breaker.release();
                    }
                    last = Some((label, failure));
                }
                Err(failure) => {
                    // The caller's own error: the provider is well.
                    breaker.success();
                    return Err(call_error(label, failure));
                }
            }
        }
        Err(match last {
            Some((label, failure)) => call_error(label, failure),
            None => CallError::UpstreamUnavailable {
                server: format!("model {}", route.alias),
                reason: "every target is ejected by its circuit breaker; try again after the cool-down ([llm.breaker] cool_down)".into(),
            },
        })
    }
}

/// Whether `provider` serves `endpoint`.
fn serves(provider: &ProviderConfig, endpoint: Endpoint) -> bool {
    match endpoint {
        // Translated for a provider that speaks the other API.
        Endpoint::Messages | Endpoint::ChatCompletions => true,
        Endpoint::Embeddings => provider.kind.speaks_openai(),
        Endpoint::Responses => provider.responses,
    }
}

/// Why none of a route's targets can take a call to `endpoint`, and what
/// to use instead: the caller's to change, so a 400.
fn unserved(route: &ModelRoute, endpoint: Endpoint) -> CallError {
    let instead = match endpoint {
        Endpoint::Responses => {
            "; use /v1/chat/completions instead (the OpenAI Agents SDK: `set_default_openai_api(\"chat_completions\")`), or set `responses = true` on a provider that serves the Responses API"
        }
        Endpoint::Embeddings => "; Anthropic targets serve chat and messages, not embeddings",
        Endpoint::ChatCompletions | Endpoint::Messages => "",
    };
    CallError::UpstreamRejected(Box::new(Rejection {
        server: format!("model {}", route.alias),
        code: 400,
        message: format!(
            "model `{}` has no target serving {}{instead}",
            route.alias,
            endpoint.path()
        ),
        data: None,
    }))
}

/// A failed attempt as the pipeline's error, naming the target.
fn call_error(target: String, failure: Failure) -> CallError {
    match failure {
        Failure::Timeout(after) => CallError::UpstreamTimeout {
            server: target,
            after,
        },
        Failure::Connect(reason) => CallError::UpstreamUnavailable {
            server: target,
            reason,
        },
        Failure::Invalid(reason) => CallError::UpstreamFailed {
            server: target,
            reason,
        },
        failure if failure.misconfigured() => {
            let (provider, model) = target.split_once('/').unwrap_or((&target, ""));
            let why = if matches!(failure, Failure::Status { status: 404, .. }) {
                format!(
                    "the provider does not know model `{model}`: check the targets of this model name in [llm.models]"
                )
            } else {
                format!(
                    "the provider refused toolgate's credential: check api_key of [llm.providers.{provider}]"
                )
            };
            CallError::UpstreamFailed {
                reason: format!("{why} ({failure})"),
                server: target,
            }
        }
        Failure::Status {
            status,
            retry_after,
            body,
            text,
        } => CallError::UpstreamRejected(Box::new(Rejection {
            server: target,
            code: i64::from(status),
            message: text,
            data: Some(serde_json::json!({"retry_after": retry_after, "body": body})),
        })),
    }
}

impl Endpoint {
    /// The path callers use for it.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Messages => "/v1/messages",
        }
    }
}
