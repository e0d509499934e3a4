//! The SEP-2663 Tasks extension fixtures (`greet`, `slow_compute`,
//! `failing_job`, `protocol_error_job`, `confirm_delete`, `multi_input`,
//! `test_tool_with_task`): their catalogue entries, the call that turns a
//! request into a task (or a synchronous answer for clients without the
//! extension), and the jobs rmcp's `TaskManager` runs. `tasks/get`,
//! `tasks/update` and `tasks/cancel` are answered by the `ServerHandler` impl.

use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, ClientCapabilities, CreateTaskResult, JsonObject,
    },
    service::RequestContext,
    task_manager::{TaskContext, TaskExit, TaskOptions},
};
use serde_json::{Value, json};

use super::input::{ask_name, content_str, elicitation_request, input_required, input_response};
use super::{ConformanceServer, error_result, text_result};

impl ConformanceServer {
    /// Task-supporting tools become tasks when the request declares the tasks
    /// extension; task-*required* tools reject other clients with -32021.
    pub(super) async fn call_task_tool(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let client_tasks = cx
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks());
        let name = request.name.as_ref();
        if TASK_REQUIRED_TOOLS.contains(&name) && !client_tasks {
            return Err(ErrorData::missing_required_client_capability(
                ClientCapabilities::builder().enable_tasks().build(),
            ));
        }
        let args = request.arguments.clone().unwrap_or_default();
        let tasks = &self.state.tasks;
        let spawn = |work: fn(TaskContext, JsonObject) -> TaskFuture| -> CallToolResponse {
            let args = args.clone();
            CreateTaskResult::new(tasks.spawn(TaskOptions::default(), move |ctx| work(ctx, args)))
                .into()
        };
        match name {
            "greet" => {
                let who = args.get("name").and_then(Value::as_str).unwrap_or("friend");
                Ok(text_result(format!("Hello, {who}!")).into())
            }
            "slow_compute" if client_tasks => Ok(spawn(slow_compute)),
            "failing_job" => Ok(spawn(failing_job)),
            "protocol_error_job" if client_tasks => Ok(spawn(protocol_error_job)),
            "confirm_delete" => Ok(spawn(confirm_delete)),
            "multi_input" => Ok(spawn(multi_input)),
            // Synchronous fallbacks for clients without the tasks extension.
            "slow_compute" => {
                let (seconds, label) = slow_compute_args(&args);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                Ok(text_result(format!("slow_compute({label}) done after {seconds}s")).into())
            }
            "protocol_error_job" => Err(ErrorData::internal_error(
                "protocol_error_job: intentional protocol-level failure",
                None,
            )),
            "test_tool_with_task" => {
                match input_response(request.input_responses.as_ref(), "user_name") {
                    None => Ok(input_required(
                        [("user_name", ask_name("What is your name?")?)],
                        None,
                    )),
                    Some(response) => {
                        let who = content_str(response, "name").unwrap_or("friend").to_owned();
                        Ok(CreateTaskResult::new(tasks.spawn(
                            TaskOptions::default(),
                            move |_ctx| {
                                Box::pin(async move {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    Ok(text_result(format!("Hello, {who}! (async)")))
                                })
                            },
                        ))
                        .into())
                    }
                }
            }
            other => Err(ErrorData::invalid_params(
                format!("Unknown tool: {other}"),
                None,
            )),
        }
    }
}

type TaskFuture = rmcp::task_manager::TaskFuture;

/// (name, description, input schema) of the SEP-2663 fixture tools.
type TaskToolSpec = (&'static str, &'static str, fn() -> Value);

pub(super) const TASK_FIXTURE_TOOLS: &[TaskToolSpec] = &[
    (
        "greet",
        "Sync-only greeting fixture (SEP-2663)",
        || json!({ "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }),
    ),
    (
        "slow_compute",
        "Task-supporting fixture: sleeps `seconds` then returns a result (SEP-2663)",
        || {
            json!({
                "type": "object",
                "properties": { "seconds": { "type": "number" }, "label": { "type": "string" } }
            })
        },
    ),
    (
        "failing_job",
        "Task-required fixture: ends with a tool execution error (SEP-2663)",
        || json!({ "type": "object", "properties": {} }),
    ),
    (
        "protocol_error_job",
        "Task-supporting fixture: fails with a protocol-level error (SEP-2663)",
        || json!({ "type": "object", "properties": {} }),
    ),
    (
        "confirm_delete",
        "Task-required fixture: parks on one elicitation input request (SEP-2663)",
        || json!({ "type": "object", "properties": { "filename": { "type": "string" } } }),
    ),
    (
        "multi_input",
        "Task-required fixture: parks on two parallel elicitation input requests (SEP-2663)",
        || json!({ "type": "object", "properties": {} }),
    ),
    (
        "test_tool_with_task",
        "MRTR round 1 asks for user_name, round 2 becomes a task (SEP-2663 composition)",
        || json!({ "type": "object", "properties": {} }),
    ),
];

/// Tools that cannot run without returning a task.
const TASK_REQUIRED_TOOLS: &[&str] = &[
    "failing_job",
    "confirm_delete",
    "multi_input",
    "test_tool_with_task",
];

/// `seconds` (clamped to 0..=600, default 1) and `label` of `slow_compute`.
fn slow_compute_args(args: &JsonObject) -> (f64, String) {
    let seconds = args
        .get("seconds")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
        .min(600.0);
    let label = args
        .get("label")
        .and_then(Value::as_str)
        .unwrap_or("compute")
        .to_owned();
    (seconds, label)
}

fn slow_compute(ctx: TaskContext, args: JsonObject) -> TaskFuture {
    let (seconds, label) = slow_compute_args(&args);
    Box::pin(async move {
        tokio::select! {
            _ = ctx.cancelled() => Err(TaskExit::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {
                Ok(text_result(format!("slow_compute({label}) done after {seconds}s")))
            }
        }
    })
}

fn failing_job(_ctx: TaskContext, _args: JsonObject) -> TaskFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        Ok(error_result(
            "failing_job: intentional tool execution error",
        ))
    })
}

fn protocol_error_job(_ctx: TaskContext, _args: JsonObject) -> TaskFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Err(TaskExit::Error(ErrorData::internal_error(
            "protocol_error_job: intentional protocol-level failure",
            None,
        )))
    })
}

fn confirm_delete(ctx: TaskContext, args: JsonObject) -> TaskFuture {
    let filename = args
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("file.txt")
        .to_owned();
    Box::pin(async move {
        let request = elicitation_request(
            &format!("Delete {filename}?"),
            json!({ "confirm": { "type": "boolean" } }),
            json!(["confirm"]),
        )?;
        let response = ctx.request_input("confirm", request).await?;
        let confirmed = response
            .pointer("/content/confirm")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(text_result(format!(
            "confirm_delete({filename}): confirmed = {confirmed}"
        )))
    })
}

fn multi_input(ctx: TaskContext, _args: JsonObject) -> TaskFuture {
    Box::pin(async move {
        let value_schema = || json!({ "value": { "type": "string" } });
        let first = ctx.request_input(
            "input-a",
            elicitation_request("Provide value A", value_schema(), json!(["value"]))?,
        );
        let second = ctx.request_input(
            "input-b",
            elicitation_request("Provide value B", value_schema(), json!(["value"]))?,
        );
        let (a, b) = tokio::join!(first, second);
        let (a, b) = (a?, b?);
        let get = |v: &Value| {
            v.pointer("/content/value")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned()
        };
        Ok(text_result(format!(
            "multi_input: a = {}, b = {}",
            get(&a),
            get(&b)
        )))
    })
}
