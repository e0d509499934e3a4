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
//!   the upstream's own `requestState` and `inputResponses`, which
//!   [`unwrap`] puts back before the call is forwarded.
//! - When a confirmed call's upstream asks for input itself, [`wrap`] seals
//!   its state so the next round is not asked again.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::{
    CallToolRequestParams, ClientResult, InputRequiredResult, InputResponses,
    ProgressNotificationParam, ServerRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, now_ms};
use crate::call::{Caller, Confirmation, Gate};
use crate::mcp::hub::Downstream;
use crate::mcp::ingress::lane::LaneInput;
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

/// Where a call's caller is reached again: the way its request came.
#[derive(Clone, Copy)]
pub enum Back<'a> {
    /// An rmcp session: server-to-client requests ride the call's response
    /// stream through the session's peer (`None`: a call with no way back).
    Session(Option<&'a Downstream>),
    /// The fast lane: the call's own response, which becomes a stream.
    Lane(&'a LaneInput),
}

/// Tell the caller the call is still under way (`step` counts from 1), if
/// it asked for progress.
pub async fn progress(back: Back<'_>, step: u32, message: &str) {
    match back {
        Back::Session(Some(origin)) => {
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
        Back::Session(None) => {}
        Back::Lane(input) => input.progress(step, message),
    }
}

/// Ask the end user to confirm a `tools/call` (`params`, over an rmcp
/// session) for `gate`: in the call's answer for a 2026-07-28 caller (see
/// [`ask`]), by form elicitation for the others whose client declared it.
pub async fn confirm(
    mcp: &McpState,
    back: Back<'_>,
    caller: &Caller,
    params: Option<&CallToolRequestParams>,
    cancel: &CancellationToken,
    gate: &Gate,
    question: &str,
) -> Confirmation {
    if let Back::Session(Some(origin)) = back
        && origin.modern
        && let Some(params) = params
    {
        let can_elicit = origin.capabilities.as_ref().is_some_and(can_elicit);
        return ask(
            &mcp.pipeline.audit,
            caller,
            params,
            can_elicit,
            gate,
            question,
        );
    }
    let declared = match back {
        Back::Session(None) => {
            return Confirmation::CannotAsk("this connection has no way to ask".into());
        }
        Back::Session(Some(origin)) => origin
            .peer
            .peer_info()
            .is_some_and(|info| can_elicit(&info.capabilities)),
        Back::Lane(input) => input.can_elicit(mcp),
    };
    if !declared {
        return Confirmation::CannotAsk(
            "the client did not declare the elicitation capability".into(),
        );
    }
    let request = elicitation(question);
    let answer = match back {
        Back::Session(None) => unreachable!("answered above"),
        Back::Session(Some(origin)) => elicit_over_session(mcp, origin, request, cancel).await,
        Back::Lane(input) => input.ask(mcp, &request, cancel).await,
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

/// Ask (or read the answer of) the user of a 2026-07-28 call for `gate`.
pub fn ask(
    audit: &Audit,
    caller: &Caller,
    params: &CallToolRequestParams,
    can_elicit: bool,
    gate: &Gate,
    question: &str,
) -> Confirmation {
    let b = binding(audit, caller, params);
    let ours = params.request_state.as_deref().and_then(|t| open(audit, t));
    let current = ours.as_ref().filter(|s| s.b == b && s.exp > now_ms());
    let answers = params.input_responses.as_ref();
    if let Some(state) = current {
        if state.ok.contains(&gate.policy) {
            return Confirmation::Yes;
        }
        if let Some(answer) = answers.and_then(|r| r.get(&key_of(&gate.policy))) {
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
        for (key, answer) in answers.into_iter().flatten() {
            if let Some(g) = key.strip_prefix(KEY_PREFIX)
                && matches!(confirmation(answer), Confirmation::Yes)
                && !ok.iter().any(|o| o == g)
            {
                ok.push(g.to_string());
            }
        }
    }
    // What the request carried for the upstream travels in our state
    // (never what a state of another call carried).
    let (s, r) = match ours {
        Some(state) if state.b == b => (state.s, state.r),
        Some(_) => (None, None),
        None => (params.request_state.clone(), params.input_responses.clone()),
    };
    let state = State {
        b,
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

/// `params` as the upstream must see them: toolgate's state replaced by
/// the upstream's own (when it is this call's), and toolgate's answers
/// taken out.
pub fn unwrap(audit: &Audit, caller: &Caller, params: &mut CallToolRequestParams) {
    let Some(token) = params.request_state.as_deref() else {
        return;
    };
    if !token.starts_with(PREFIX) {
        return;
    }
    let b = binding(audit, caller, params);
    let state = open(audit, token).filter(|s| s.b == b);
    params.request_state = state.as_ref().and_then(|s| s.s.clone());
    match state.and_then(|s| s.r) {
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

/// The upstream's `InputRequiredResult` to a call the user confirmed under
/// `confirmed`: its state sealed with those gates, so the call's next
/// round is not asked again.
pub fn wrap(
    audit: &Audit,
    caller: &Caller,
    params: &CallToolRequestParams,
    confirmed: &[String],
    result: &mut InputRequiredResult,
) {
    if confirmed.is_empty() {
        return;
    }
    let state = State {
        b: binding(audit, caller, params),
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
        let first = asked(ask(&audit, &alice, &params, true, &gate(), "Send it?"));
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
            ask(&audit, &alice, &retry, true, &gate(), "Send it?"),
            Confirmation::Yes
        ));
        let mut forwarded = retry.clone();
        unwrap(&audit, &alice, &mut forwarded);
        assert_eq!(forwarded.request_state.as_deref(), Some("upstream-state"));
        assert_eq!(forwarded.input_responses, Some(theirs));

        // Another caller, other arguments or a tampered state: asked again.
        let bob = Caller::new("bob".into(), Credential::ApiKey);
        assert!(matches!(
            ask(&audit, &bob, &retry, true, &gate(), "Send it?"),
            Confirmation::Asked(_)
        ));
        let mut other = retry.clone();
        other.arguments = json!({"to": "eve"}).as_object().cloned();
        assert!(matches!(
            ask(&audit, &alice, &other, true, &gate(), "Send it?"),
            Confirmation::Asked(_)
        ));
        let mut tampered = retry.clone();
        tampered.request_state = Some(state.replacen("toolgate1.e", "toolgate1.f", 1));
        assert!(matches!(
            ask(&audit, &alice, &tampered, true, &gate(), "Send it?"),
            Confirmation::Asked(_)
        ));
        // A decline is a no; a client that cannot be asked is told so.
        let mut declined = retry.clone();
        declined.input_responses =
            Some(serde_json::from_value(json!({key: {"action": "decline"}})).expect("responses"));
        assert!(matches!(
            ask(&audit, &alice, &declined, true, &gate(), "Send it?"),
            Confirmation::No(_)
        ));
        assert!(matches!(
            ask(&audit, &alice, &params, false, &gate(), "Send it?"),
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
        wrap(
            &audit,
            &alice,
            &retry,
            &["confirm-notes".to_string()],
            &mut upstream,
        );
        let mut round2 = params.clone();
        round2.request_state = upstream.request_state.clone();
        round2.input_responses =
            Some(serde_json::from_value(json!({"name": {"action": "accept"}})).expect("responses"));
        assert!(matches!(
            ask(&audit, &alice, &round2, true, &gate(), "Send it?"),
            Confirmation::Yes
        ));
        unwrap(&audit, &alice, &mut round2);
        assert_eq!(round2.request_state.as_deref(), Some("upstream-round-2"));
        assert!(round2.input_responses.expect("kept").contains_key("name"));
    }
}
