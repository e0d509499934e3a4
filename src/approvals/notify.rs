//! The `[approvals.webhook]` feed ([`webhook_feed`]): approval requests
//! and decisions, read from the audit trail by the audit forwarder, posted
//! as JSON events or as Slack lines linking to the approver page.

use serde_json::{Value, json};

/// The `[approvals.webhook]` feed's cursor (its row in `audit_forward`).
pub const WEBHOOK_CURSOR: &str = "approvals";

/// The `[approvals.webhook]` feed: each request and decision, as
/// `{"events": […]}` (see [`event`]) or, for Slack, `{"text": …}` with one
/// line per event and a link to the approver page when `ui_url` is set.
pub fn webhook_feed(slack: bool, ui_url: Option<String>) -> crate::audit::forward::Feed {
    crate::audit::forward::Feed {
        cursor: WEBHOOK_CURSOR,
        kinds: &["approval_requested", "approval_decided"],
        body: Box::new(move |records| {
            let events: Vec<Value> = records
                .iter()
                .map(|r| event(r.seq, &r.record, ui_url.as_deref()))
                .collect();
            if slack {
                let lines: Vec<String> = events.iter().map(slack_line).collect();
                json!({ "text": lines.join("\n") })
            } else {
                json!({ "events": events })
            }
        }),
    }
}

/// One request or decision, from its audit record: `event`
/// (`approval_requested` / `approval_decided`), `seq`, `approval`, `tool`,
/// `call`, and for a request `caller`, `gate`, `approver_group`,
/// `expires_ms`; for a decision `approver`, `decision`, `state`, `comment`;
/// `link` to the approver page when known.
fn event(seq: i64, record: &Value, ui_url: Option<&str>) -> Value {
    let detail = &record["detail"];
    let id = detail["approval"].as_str().unwrap_or_default();
    let mut event = json!({
        "event": record["kind"],
        "seq": seq,
        "approval": id,
        "tool": record["target"],
        "call": record["call"],
    });
    let fields = if record["kind"] == "approval_requested" {
        json!({
            "caller": record["caller"]["subject"],
            "gate": detail["gate"],
            "approver_group": detail["approver_group"],
            "expires_ms": detail["expires_ms"],
        })
    } else {
        json!({
            "approver": record["caller"]["subject"],
            "decision": record["decision"],
            "state": detail["state"],
            "comment": record["reason"],
        })
    };
    if let (Value::Object(e), Value::Object(f)) = (&mut event, fields) {
        e.extend(f);
        if let Some(ui) = ui_url {
            e.insert("link".into(), json!(format!("{ui}/ui/approvals/{id}")));
        }
    }
    event
}

/// An event as a line of Slack mrkdwn (what others wrote escaped).
fn slack_line(e: &Value) -> String {
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let review = match e["link"].as_str() {
        Some(link) => format!(" <{link}|Review it>"),
        None => String::new(),
    };
    if e["event"] == "approval_requested" {
        format!(
            ":raised_hand: Approval needed: {} wants to call `{}` (gate `{}`, decided by `{}`), request {}.{review}",
            text(&e["caller"]),
            text(&e["tool"]),
            text(&e["gate"]),
            text(&e["approver_group"]),
            text(&e["approval"]),
        )
    } else {
        let comment = match e["comment"].as_str() {
            Some(c) if !c.is_empty() => format!(": {}", text(&json!(c))),
            _ => String::new(),
        };
        if e["decision"] == "withdraw" {
            return format!(
                ":heavy_minus_sign: withdrawn: `{}`, request {}{comment}",
                text(&e["tool"]),
                text(&e["approval"]),
            );
        }
        let verb = if e["decision"] == "approve" {
            ":white_check_mark: approved"
        } else {
            ":no_entry: denied"
        };
        format!(
            "{verb} by {}: `{}`, request {} (now {}){comment}",
            text(&e["approver"]),
            text(&e["tool"]),
            text(&e["approval"]),
            text(&e["state"]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_lines_link_the_request_and_keep_what_others_wrote_inert() {
        let requested = json!({
            "kind": "approval_requested", "target": "gh__push", "call": "c-1",
            "caller": {"subject": "okta:<b>bob</b>"},
            "detail": {"approval": "ab12", "gate": "gate-push-to-main", "approver_group": "platform", "expires_ms": 5},
        });
        let e = event(7, &requested, Some("https://tg.example.com"));
        assert_eq!(e["link"], "https://tg.example.com/ui/approvals/ab12");
        assert_eq!(e["caller"], "okta:<b>bob</b>");
        let line = slack_line(&e);
        assert!(
            line.contains("okta:&lt;b&gt;bob&lt;/b&gt; wants to call `gh__push`"),
            "{line}"
        );
        assert!(
            line.ends_with("<https://tg.example.com/ui/approvals/ab12|Review it>"),
            "{line}"
        );
        let decided = json!({
            "kind": "approval_decided", "target": "gh__push", "call": "c-1",
            "caller": {"subject": "okta:alice"}, "decision": "deny", "reason": "not <now>",
            "detail": {"approval": "ab12", "state": "denied"},
        });
        let line = slack_line(&event(8, &decided, None));
        assert_eq!(
            line,
            ":no_entry: denied by okta:alice: `gh__push`, request ab12 (now denied): not &lt;now&gt;"
        );
        let withdrawn = json!({
            "kind": "approval_decided", "target": "gh__push", "call": "c-1",
            "decision": "withdraw", "reason": "the call was refused under gate `g`",
            "detail": {"approval": "cd34", "state": "withdrawn"},
        });
        assert_eq!(
            slack_line(&event(9, &withdrawn, None)),
            ":heavy_minus_sign: withdrawn: `gh__push`, request cd34: the call was refused under gate `g`"
        );
    }
}
