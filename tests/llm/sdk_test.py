"""The LLM gateway through real SDKs (tests/llm/run.sh starts everything).

Environment: TOOLGATE_BASE (http://127.0.0.1:PORT), TOOLGATE_KEY (an API key
in group eng), TOOLGATE_ADMIN (the first admin key). Prints PASS/FAIL per
check; exits 1 if any failed.
"""

import asyncio
import json
import os
import sys
import time
import traceback
import urllib.request

import anthropic
import openai

BASE = os.environ["TOOLGATE_BASE"]
KEY = os.environ["TOOLGATE_KEY"]
ADMIN = os.environ["TOOLGATE_ADMIN"]
failed = []


def check(name):
    def run(fn):
        started = time.monotonic()
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                asyncio.run(result)
            print(f"PASS  {name}  ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported
            failed.append(name)
            print(f"FAIL  {name}", flush=True)
            traceback.print_exc()
        return fn

    return run


client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY)
claude = anthropic.Anthropic(base_url=BASE, api_key=KEY)


def say(model, text, **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


@check("openai/chat")
def _():
    r = say("fast", "hello there")
    assert r.choices[0].message.content == "You said: hello there", r
    assert r.usage.prompt_tokens == 2, r.usage


@check("openai/chat-stream")
def _():
    chunks = list(say("fast", "one two three", stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two three", text
    assert all(c.usage is None for c in chunks), "usage the caller did not ask for"
    chunks = list(
        say("fast", "one two", stream=True, stream_options={"include_usage": True})
    )
    assert chunks[-1].usage.prompt_tokens == 2, chunks[-1]


def tools_round_trip(model):
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    messages = [{"role": "user", "content": "weather?"}]
    r = client.chat.completions.create(model=model, messages=messages, tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather", r
    messages += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert r.choices[0].message.content == "The tool said: sunny", r


@check("openai/tools-round-trip")
def _():
    tools_round_trip("fast")


@check("openai/chat-to-an-anthropic-target")
def _():
    # toolgate speaks the Messages API to it and answers in OpenAI's shape.
    r = say("native-claude", "hello there")
    assert r.choices[0].message.content == "You said: hello there", r
    assert r.choices[0].finish_reason == "stop", r
    assert r.usage.prompt_tokens == 2, r.usage
    chunks = list(
        say("native-claude", "one two", stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two", text
    assert chunks[-1].usage.completion_tokens > 0, chunks[-1]
    tools_round_trip("native-claude")


@check("openai/embeddings")
def _():
    r = client.embeddings.create(model="fast", input=["a", "b"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8, r


@check("openai/models")
def _():
    ids = sorted(m.id for m in client.models.list())
    assert "fast" in ids and "secret" not in ids, ids
    assert client.models.retrieve("fast").id == "fast"


@check("openai/denied-model-403")
def _():
    try:
        say("fast", "hi", max_tokens=5000)
    except openai.PermissionDeniedError as e:
        assert e.status_code == 403
        assert e.body["code"] == "denied_by_policy", e.body
        assert "short-answers" in e.body["message"], e.body
    else:
        raise AssertionError("not refused")


@check("openai/hidden-model-is-unknown")
def _():
    for model in ("secret", "no-such-model"):
        try:
            say(model, "hi")
        except openai.NotFoundError as e:
            assert e.body["code"] == "model_not_found", e.body
        else:
            raise AssertionError(f"{model}: not refused")


@check("openai/fallback-after-500")
def _():
    r = say("sturdy", "hi")
    assert r.choices[0].message.content == "You said: hi", r


@check("openai/429-retry-after-passed-on")
def _():
    strict = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
    try:
        strict.chat.completions.create(model="limited", messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError as e:
        assert e.response.headers["retry-after"] == "7", dict(e.response.headers)
    else:
        raise AssertionError("not refused")


@check("openai/bad-api-key-401")
def _():
    bad = openai.OpenAI(base_url=f"{BASE}/v1", api_key="sk-nope", max_retries=0)
    try:
        bad.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as e:
        assert e.status_code == 401
    else:
        raise AssertionError("not refused")


@check("litellm-target/chat")
def _():
    r = say("litellm-mock", "hi")
    assert r.choices[0].message.content == "Hello from LiteLLM", r


@check("litellm-target/chat-stream")
def _():
    chunks = list(say("litellm-mock", "hi", stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from LiteLLM", text


TOOLS = [{"name": "get_time", "description": "now", "input_schema": {"type": "object"}}]


def messages_round_trip(model):
    r = claude.messages.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "hello there"}]
    )
    assert r.content[0].text == "You said: hello there", r
    asked = claude.messages.create(
        model=model, max_tokens=50, tools=TOOLS,
        messages=[{"role": "user", "content": "what time is it?"}],
    )
    assert asked.stop_reason == "tool_use", asked
    use = next(b for b in asked.content if b.type == "tool_use")
    answered = claude.messages.create(
        model=model, max_tokens=50, tools=TOOLS,
        messages=[
            {"role": "user", "content": "what time is it?"},
            {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "noon"}]},
        ],
    )
    assert answered.content[0].text == "The tool said: noon", answered
    with claude.messages.stream(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "one two"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "You said: one two", text
    assert final.stop_reason == "end_turn", final


@check("anthropic/messages-translated-to-an-openai-target")
def _():
    messages_round_trip("fast")


@check("anthropic/messages-native-to-an-anthropic-target")
def _():
    messages_round_trip("native-claude")


@check("anthropic/errors")
def _():
    try:
        claude.messages.create(model="secret", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    except anthropic.NotFoundError as e:
        assert e.body["error"]["type"] == "not_found_error", e.body
    else:
        raise AssertionError("not refused")


def audit(**query):
    url = f"{BASE}/admin/v1/audit?limit=500&" + "&".join(f"{k}={v}" for k, v in query.items())
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return [x["record"] for x in json.load(r)["records"]]


@check("openai-agents/one-turn-with-toolgate-as-model-and-mcp-server")
async def _():
    from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
    from agents.mcp import MCPServerStreamableHttp

    set_tracing_disabled(True)
    model = OpenAIResponsesModel(
        model="agentic", openai_client=openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key=KEY)
    )
    async with MCPServerStreamableHttp(
        params={"url": f"{BASE}/mcp", "headers": {"Authorization": f"Bearer {KEY}"}},
        name="toolgate",
    ) as mcp:
        agent = Agent(name="timekeeper", instructions="Tell the time.", model=model, mcp_servers=[mcp])
        result = await Runner.run(agent, "What time is it?")
    assert result.final_output.startswith("The tool said:"), result.final_output
    for _ in range(50):
        records = [r for r in audit(kind="completed") if r.get("caller", {}).get("name") == "sdk"]
        methods = {(r["method"], r["target"]) for r in records}
        if ("responses", "agentic") in methods and ("tools/call", "clock__now") in methods:
            break
        time.sleep(0.1)
    assert ("responses", "agentic") in methods, methods
    assert ("tools/call", "clock__now") in methods, methods


print(f"RESULT: {'FAIL' if failed else 'PASS'} ({len(failed)} failed)")
sys.exit(1 if failed else 0)
