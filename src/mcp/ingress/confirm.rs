//! Asking the end user over MCP (an approval gate's `@confirm`): by form
//! elicitation ([`elicitation`], [`confirmation`]) where the client takes
//! server-to-client requests, and otherwise, for 2026-07-28 callers,
//! which take none: the question goes out as an `InputRequiredResult`
//! (SEP-2322) and the call comes back with the user's answer in
//! `inputResponses`.
//!
//! - Each gate's question is the input request `toolgate_confirm:<gate>`;
//!   its answer is read by [`confirmation`].
//! - The `requestState` is toolgate's, sealed with the audit signing key
//!   (so any replica sharing `audit.signing_key` opens it, and nobody can
//!   forge one): it binds the call (caller, tool, arguments), expires with
//!   the gate's timeout, lists the gates already confirmed, and carries
//!   the upstream's own `requestState` and `inputResponses`.
//! - The ingress runs both ends, around the pipeline: before it, [`take`]
//!   reads what the call brought back and puts the upstream's own state
//!   back in the request; the await-approval stage asks by it ([`ask`]);
//!   after it, when a confirmed call's upstream asks for input itself,
//!   [`wrap`] seals its state so the next round is not asked again. So
//!   nothing of this runs inside the forward stage.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use rmcp::model::{
    CallToolRequestParams, ClientResult, InputRequiredResult, InputResponses,
    ProgressNotificationParam, ServerRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, now_ms};
use crate::call::{Caller, Confirmation, Gate};
use crate::mcp::calls::Origin;
use crate::mcp::hub::{Downstream, LaneDownstream, Out};
use crate::mcp::jsonrpc::{self, Id, Typed};
use crate::mcp::state::McpState;

/// What every toolgate `requestState` starts with.
const PREFIX: &str = "toolgate1.";
/// What the signature is for (never a checkpoint's).
const PURPOSE: &str = "toolgate input state v1";
/// How long a confirmed call's later rounds go unasked.
const CONFIRMED_FOR_MS: i64 = 15 * 60 * 1000;
/// The input request key of a gate's question.
const KEY_PREFIX: &str = "toolgate_confirm:";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct State {
    /// The call it belongs to ([`binding`]).
    b: String,
    /// Expiry, Unix ms.
    exp: i64,
    /// Gates the user confirmed.
    ok: Vec<String>,
    /// The upstream's `requestState`.
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// The upstream's `inputResponses`, when toolgate's question came
    /// first; absent when the answers in the request are the upstream's.
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<InputResponses>,
}

/// The `elicitation/create` request (as JSON) that asks the user
/// `question`: a form with one yes/no field, `allow`.
pub fn elicitation(question: &str) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": question,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "allow": {
                        "type": "boolean",
                        "title": "Allow this call",
                        "description": "toolgate forwards the call only if you allow it",
                        "default": false
                    }
                },
                "required": ["allow"]
            }
        }
    })
}

/// The user's answer to [`elicitation`] (an `ElicitResult` as JSON): yes
/// only when they accepted the form with `allow` true.
pub fn confirmation(result: &Value) -> Confirmation {
    match (result["action"].as_str(), &result["content"]["allow"]) {
        (Some("accept"), Value::Bool(true)) => Confirmation::Yes,
        (Some("accept"), _) => Confirmation::No("did not allow it".into()),
        (Some("decline"), _) => Confirmation::No("declined it".into()),
        (Some("cancel"), _) => Confirmation::No("dismissed the question".into()),
        _ => Confirmation::No(format!("gave an answer toolgate cannot read ({result})")),
    }
}

/// Whether a client with `capabilities` takes form elicitation (an
/// empty `elicitation` capability means form, as before modes existed).
pub fn can_elicit(capabilities: &rmcp::model::ClientCapabilities) -> bool {
    capabilities
        .elicitation
        .as_ref()
        .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// Tell the caller the call is still under way (`step` counts from 1), if
/// it asked for progress.
pub async fn progress(origin: &Origin, step: u32, message: &str) {
    match origin {
        Origin::Session(origin) => {
            if let Some(token) = &origin.progress_token {
                let _ = origin
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(step))
                            .with_message(message),
                    )
                    .await;
            }
        }
        Origin::Lane(down) => lane_progress(down, step, message),
    }
}

/// Ask the end user to confirm a `tools/call` (`params`) for `gate`: in
/// the call's answer for a 2026-07-28 caller (see [`ask`]), by form
/// elicitation for the others whose client declared it.
pub async fn confirm(
    mcp: &McpState,
    origin: &Origin,
    returned: Option<&Returned>,
    cancel: &CancellationToken,
    gate: &Gate,
    question: &str,
) -> Confirmation {
    if let Some(session) = origin.session()
        && session.modern
        && let Some(returned) = returned
    {
        let can_elicit = session.capabilities.as_ref().is_some_and(can_elicit);
        return ask(&mcp.pipeline.audit, returned, can_elicit, gate, question);
    }
    let declared = match origin {
        Origin::Session(session) => session
            .peer
            .peer_info()
            .is_some_and(|info| can_elicit(&info.capabilities)),
        // What the client declared when it opened the session.
        Origin::Lane(down) => mcp.session_owners.elicits(&down.session),
    };
    if !declared {
        return Confirmation::CannotAsk(
            "the client did not declare the elicitation capability".into(),
        );
    }
    let request = elicitation(question);
    let answer = match origin {
        Origin::Session(session) => elicit_over_session(mcp, session, request, cancel).await,
        Origin::Lane(down) => elicit_over_lane(mcp, down, &request, cancel).await,
    };
    match answer {
        Ok(result) => confirmation(&result),
        Err(why) => why,
    }
}

/// Put the elicitation `request` to an rmcp session's client; its
/// `ElicitResult` as JSON, or the answer to give when there is none.
async fn elicit_over_session(
    mcp: &McpState,
    origin: &Downstream,
    request: Value,
    cancel: &CancellationToken,
) -> Result<Value, Confirmation> {
    let request = match serde_json::from_value(request) {
        Ok(request) => ServerRequest::ElicitRequest(request),
        Err(e) => {
            return Err(Confirmation::CannotAsk(format!(
                "the question could not be built: {e}"
            )));
        }
    };
    match crate::mcp::upstream::relay_to(&mcp.hub, origin, request, None, cancel).await {
        Ok(ClientResult::ElicitResult(result)) => {
            Ok(serde_json::to_value(&result).unwrap_or_default())
        }
        Ok(_) => Err(Confirmation::No(
            "answered with something other than an elicitation result".into(),
        )),
        Err(e) => Err(Confirmation::CannotAsk(format!(
            "asking failed: {}",
            e.message
        ))),
    }
}

/// Tell a lane caller how the call is going, if it asked for progress:
/// the response becomes a stream; a full one skips a beat.
fn lane_progress(down: &LaneDownstream, step: u32, message: &str) {
    if let Some(token) = &down.progress_token {
        let params = ProgressNote {
            progress_token: token,
            progress: step,
            message,
        };
        let notification = jsonrpc::notification("notifications/progress", &Typed(&params));
        let _ = down.out.try_send(Out::Message(Bytes::from(notification)));
    }
}

/// The params of the `notifications/progress` the lane sends a caller.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressNote<'a> {
    progress_token: &'a RawValue,
    progress: u32,
    message: &'a str,
}

/// Put the elicitation `request` (`method` and `params`) to a lane caller
/// on the call's own response, which becomes a stream, and wait for the
/// answer's `result`; why not, as the answer to give.
async fn elicit_over_lane(
    mcp: &McpState,
    down: &LaneDownstream,
    request: &Value,
    cancel: &CancellationToken,
) -> Result<Value, Confirmation> {
    let relay_id = mcp.hub.new_lane_relay_id();
    mcp.hub
        .register_lane_relay(&relay_id, down.session.clone(), None);
    let request = jsonrpc::request(
        Id::Text(&relay_id),
        request["method"].as_str().unwrap_or_default(),
        &Typed(&request["params"]),
    );
    let answer = mcp.hub.lane_answer(relay_id);
    if down
        .out
        .send(Out::Message(Bytes::from(request)))
        .await
        .is_err()
    {
        return Err(Confirmation::CannotAsk("the caller has gone".into()));
    }
    let answer = tokio::select! {
        answer = answer => answer,
        () = cancel.cancelled() => return Err(Confirmation::No("cancelled the call".into())),
    };
    let Some(answer) = answer else {
        return Err(Confirmation::CannotAsk("the caller did not answer".into()));
    };
    let mut answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
    match answer.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(Confirmation::CannotAsk(format!(
            "the client answered with an error: {}",
            answer["error"]
        ))),
    }
}

/// The call a state belongs to: who, which tool, which arguments.
fn binding(audit: &Audit, caller: &Caller, params: &CallToolRequestParams) -> String {
    let none = serde_json::Map::new();
    let args = audit.args_hash(params.arguments.as_ref().unwrap_or(&none));
    crate::util::digest::sha256_hex(
        format!("{}\n{}\n{args}", caller.subject, params.name).as_bytes(),
    )
}

fn seal(audit: &Audit, state: &State) -> String {
    let payload = serde_json::to_vec(state).unwrap_or_default();
    let signature = audit.key().sign_for(PURPOSE, &payload);
    format!(
        "{PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A state toolgate sealed (expired or not), or `None` for anything else.
fn open(audit: &Audit, token: &str) -> Option<State> {
    let (payload, signature) = token.strip_prefix(PREFIX)?.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    audit
        .key()
        .verify_for(PURPOSE, &payload, &signature)
        .then(|| serde_json::from_slice(&payload).ok())
        .flatten()
}

fn key_of(gate: &str) -> String {
    format!("{KEY_PREFIX}{gate}")
}

/// What a 2026-07-28 caller's `tools/call` brought back for toolgate,
/// read by the ingress before the pipeline ([`take`]): stage 5 asks the
/// user by it ([`ask`]), and the ingress seals a following round with it
/// ([`wrap`]).
#[derive(Debug)]
pub struct Returned {
    /// The call it belongs to ([`binding`]).
    binding: String,
    /// toolgate's state, when it is this call's and has not expired.
    current: Option<State>,
    /// The caller's answers to toolgate's own questions.
    answers: InputResponses,
    /// What the request carried for the upstream (its `requestState` and
    /// `inputResponses`), to travel in toolgate's state when the user is
    /// asked; never what a state of another call carried.
    travel: (Option<String>, Option<InputResponses>),
}

impl Returned {
    /// The call this belongs to, for sealing the call's next round.
    pub fn binding(&self) -> &str {
        &self.binding
    }
}

/// Read what a 2026-07-28 `tools/call` brought back for toolgate, and leave
/// `params` as the upstream must see them: toolgate's state replaced by the
/// upstream's own (when it is this call's), and toolgate's answers taken
/// out.
pub fn take(audit: &Audit, caller: &Caller, params: &mut CallToolRequestParams) -> Returned {
    let binding = binding(audit, caller, params);
    let token = params.request_state.as_deref();
    let ours = token.filter(|t| t.starts_with(PREFIX));
    let opened = ours.and_then(|t| open(audit, t));
    let travel = match &opened {
        Some(state) if state.b == binding => (state.s.clone(), state.r.clone()),
        Some(_) => (None, None),
        None => (params.request_state.clone(), params.input_responses.clone()),
    };
    let answers: InputResponses = params
        .input_responses
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(KEY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if ours.is_some() {
        let state = opened.as_ref().filter(|s| s.b == binding);
        params.request_state = state.and_then(|s| s.s.clone());
        match state.and_then(|s| s.r.clone()) {
            Some(theirs) => params.input_responses = Some(theirs),
            None => {
                if let Some(answers) = &mut params.input_responses {
                    answers.retain(|k, _| !k.starts_with(KEY_PREFIX));
                }
            }
        }
        if params
            .input_responses
            .as_ref()
            .is_some_and(|r| r.is_empty())
        {
            params.input_responses = None;
        }
    }
    let current = opened.filter(|s| s.b == binding && s.exp > now_ms());
    Returned {
        binding,
        current,
        answers,
        travel,
    }
}

/// Ask (or read the answer of) the user of a 2026-07-28 call for `gate`,
/// by what the call brought back.
pub fn ask(
    audit: &Audit,
    returned: &Returned,
    can_elicit: bool,
    gate: &Gate,
    question: &str,
) -> Confirmation {
    let current = returned.current.as_ref();
    if let Some(state) = current {
        if state.ok.contains(&gate.policy) {
            return Confirmation::Yes;
        }
        if let Some(answer) = returned.answers.get(&key_of(&gate.policy)) {
            return confirmation(answer);
        }
    }
    if !can_elicit {
        return Confirmation::CannotAsk(
            "the client did not declare the elicitation capability".into(),
        );
    }
    // Gates this request's answers confirm count as confirmed from now on.
    let mut ok: Vec<String> = current.map(|s| s.ok.clone()).unwrap_or_default();
    if current.is_some() {
        for (key, answer) in &returned.answers {
            if let Some(g) = key.strip_prefix(KEY_PREFIX)
                && matches!(confirmation(answer), Confirmation::Yes)
                && !ok.iter().any(|o| o == g)
            {
                ok.push(g.to_string());
            }
        }
    }
    let (s, r) = returned.travel.clone();
    let state = State {
        b: returned.binding.clone(),
        exp: now_ms() + gate.timeout.as_millis() as i64,
        ok,
        s,
        r,
    };
    let result = json!({
        "resultType": "input_required",
        "inputRequests": { key_of(&gate.policy): elicitation(question) },
        "requestState": seal(audit, &state),
    });
    match serde_json::from_value::<InputRequiredResult>(result.clone()) {
        Ok(_) => Confirmation::Asked(Box::new(result)),
        Err(e) => Confirmation::CannotAsk(format!("the question could not be built: {e}")),
    }
}

/// The upstream's `InputRequiredResult` to the call `binding` whose user
/// confirmed `confirmed`: its state sealed with those gates, so the call's
/// next round is not asked again.
pub fn wrap(audit: &Audit, binding: &str, confirmed: &[String], result: &mut InputRequiredResult) {
    if confirmed.is_empty() {
        return;
    }
    let state = State {
        b: binding.to_string(),
        exp: now_ms() + CONFIRMED_FOR_MS,
        ok: confirmed.to_vec(),
        s: result.request_state.take(),
        r: None,
    };
    result.request_state = Some(seal(audit, &state));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Credential;

    async fn audit(dir: &std::path::Path) -> Audit {
        let store = crate::storage::Store::open(None, dir).await.expect("store");
        let key = crate::audit::SigningKey::from_text(&"7".repeat(64)).expect("key");
        Audit::start(store, crate::audit::AuditConfig::defaults(dir), key).expect("audit")
    }

    fn gate() -> Gate {
        Gate {
            policy: "confirm-notes".into(),
            group: None,
            confirm: Some("Send it?".into()),
            timeout: std::time::Duration::from_secs(60),
            approvers: 1,
            reason: None,
        }
    }

    /// Ask as the await-approval stage does, by what the call brought back.
    fn asks(
        audit: &Audit,
        caller: &Caller,
        params: &CallToolRequestParams,
        can_elicit: bool,
    ) -> Confirmation {
        let returned = take(audit, caller, &mut params.clone());
        ask(audit, &returned, can_elicit, &gate(), "Send it?")
    }

    fn asked(c: Confirmation) -> InputRequiredResult {
        match c {
            Confirmation::Asked(r) => serde_json::from_value(*r).expect("an InputRequiredResult"),
            other => panic!("not asked: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_user_is_asked_once_and_the_upstreams_state_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = audit(dir.path()).await;
        let alice = Caller::new("alice".into(), Credential::ApiKey);
        let mut params = CallToolRequestParams::new("notes__send");
        params.arguments = json!({"to": "bob"}).as_object().cloned();
        params.request_state = Some("upstream-state".into());
        let theirs: InputResponses =
            serde_json::from_value(json!({"name": {"action": "accept"}})).expect("responses");
        params.input_responses = Some(theirs.clone());

        // Asked: the question, and a state toolgate sealed.
        let first = asked(asks(&audit, &alice, &params, true));
        let state = first.request_state.clone().expect("state");
        assert!(state.starts_with(PREFIX));
        let key = "toolgate_confirm:confirm-notes";
        assert!(
            first
                .input_requests
                .as_ref()
                .expect("requests")
                .contains_key(key)
        );

        // The answer comes back: yes; the upstream gets its own state back.
        let mut retry = params.clone();
        retry.request_state = Some(state.clone());
        retry.input_responses = Some(
            serde_json::from_value(json!({key: {"action": "accept", "content": {"allow": true}}}))
                .expect("responses"),
        );
        assert!(matches!(
            asks(&audit, &alice, &retry, true),
            Confirmation::Yes
        ));
        let mut forwarded = retry.clone();
        take(&audit, &alice, &mut forwarded);
        assert_eq!(forwarded.request_state.as_deref(), Some("upstream-state"));
        assert_eq!(forwarded.input_responses, Some(theirs));

        // Another caller, other arguments or a tampered state: asked again.
        let bob = Caller::new("bob".into(), Credential::ApiKey);
        assert!(matches!(
            asks(&audit, &bob, &retry, true),
            Confirmation::Asked(_)
        ));
        let mut other = retry.clone();
        other.arguments = json!({"to": "eve"}).as_object().cloned();
        assert!(matches!(
            asks(&audit, &alice, &other, true),
            Confirmation::Asked(_)
        ));
        let mut tampered = retry.clone();
        tampered.request_state = Some(state.replacen("toolgate1.e", "toolgate1.f", 1));
        assert!(matches!(
            asks(&audit, &alice, &tampered, true),
            Confirmation::Asked(_)
        ));
        // A decline is a no; a client that cannot be asked is told so.
        let mut declined = retry.clone();
        declined.input_responses =
            Some(serde_json::from_value(json!({key: {"action": "decline"}})).expect("responses"));
        assert!(matches!(
            asks(&audit, &alice, &declined, true),
            Confirmation::No(_)
        ));
        assert!(matches!(
            asks(&audit, &alice, &params, false),
            Confirmation::CannotAsk(_)
        ));

        // The upstream asks for input in turn: its state is sealed with
        // the confirmation, and the next round is not asked again.
        let mut upstream: InputRequiredResult = serde_json::from_value(json!({
            "resultType": "input_required",
            "inputRequests": {},
            "requestState": "upstream-round-2"
        }))
        .expect("result");
        let binding = take(&audit, &alice, &mut retry.clone()).binding;
        wrap(
            &audit,
            &binding,
            &["confirm-notes".to_string()],
            &mut upstream,
        );
        let mut round2 = params.clone();
        round2.request_state = upstream.request_state.clone();
        round2.input_responses =
            Some(serde_json::from_value(json!({"name": {"action": "accept"}})).expect("responses"));
        assert!(matches!(
            asks(&audit, &alice, &round2, true),
            Confirmation::Yes
        ));
        take(&audit, &alice, &mut round2);
        assert_eq!(round2.request_state.as_deref(), Some("upstream-round-2"));
        assert!(round2.input_responses.expect("kept").contains_key("name"));
    }
}
