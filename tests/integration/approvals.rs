//! Approval gates through the real gateway: `@approval` policies hold the
//! allowed calls they match, and a held call never reaches its upstream.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::storage::Store;

use crate::audit::Witness;
use crate::common::*;
use crate::rbac::{Session, default_policies, key};

/// A gate on the witness's `note` tool when the message mentions prod.
const GATE: &str = r#"@id("prod-notes")
@approval("security")
@reason("notes about prod are reviewed")
permit (principal, action == Action::"call_tool", resource == Tool::"witness__note")
when { context.args has message && context.args.message like "*prod*" };
"#;

#[tokio::test]
async fn a_call_a_gate_holds_is_refused_naming_the_gate_and_never_forwarded() {
    let ct = CancellationToken::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let witness = {
        let seen = seen.clone();
        http_upstream(move || Witness { seen: seen.clone() }, ct.clone()).await
    };
    let servers = [(
        "witness",
        http_server_toml("witness", &witness, "[policy]\ntrusted = true"),
    )];
    let files = default_policies(&[("gates", GATE)]);
    let files = Gateway::policy_refs(&files);
    let gw = Gateway::start_governed(&servers, "", false, &files).await;
    gw.wait_ready(&["witness"]).await;
    let eng = key(&gw, "eng", &["eng"]);
    for via_rmcp in [false, true] {
        let s = Session::open(&gw.url, &eng, via_rmcp).await;
        // Not matched by the gate: through.
        assert_eq!(
            s.call("witness__note", json!({"message": "hello"})).await,
            Ok("hello".into())
        );
        let held = s
            .call("witness__note", json!({"message": "restart prod"}))
            .await
            .unwrap_err();
        assert!(
            held.contains(
                "needs approval by `security` (gate `prod-notes`: notes about prod are reviewed)"
            ) && held.contains("not forwarded"),
            "{held}"
        );
    }
    assert_eq!(*seen.lock().unwrap(), vec!["hello", "hello"]);

    // The refusal is in the audit trail, with the gate.
    let store = Store::open(None, &gw.dir.path().join("data"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT body FROM audit_records WHERE kind = 'decided' AND decision = 'gated'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        if rows.len() == 2 {
            let body: Value = serde_json::from_str(&rows[0].0).unwrap();
            assert_eq!(body["target"], "witness__note");
            assert_eq!(
                body["detail"]["gates"],
                json!([{"policy": "prod-notes", "approver_group": "security"}])
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ct.cancel();
}
