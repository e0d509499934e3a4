"""Interop tests: the official Python MCP SDK (PyPI `mcp`, pinned in
requirements.txt) against a running toolgate.

Run by tests/interop/run.sh, which starts `toolgate serve` with three upstreams
(npm server-everything, PyPI mcp-server-time, toolgate's own `notes`).

    python client_test.py --url http://127.0.0.1:PORT/mcp \
        --toolgate /path/to/toolgate --config /tmp/x/toolgate.toml \
        --results results.tsv [--known-failures known-failures.txt] \
        [--eras legacy,2026-07-28]

Every test runs once per protocol era: `legacy` is the 2025-11-25
`initialize` handshake with an Mcp-Session-Id session; `2026-07-28` is the
stateless era, negotiated with `server/discover` (the SDK's mode="auto").
Each test gets a fresh client, so one failure cannot break the next test.

Results go to the TSV file as `STATUS<TAB>NAME<TAB>DETAIL` lines, STATUS one of
PASS, FAIL, XFAIL (a failure listed in the known-failures file) and XPASS (a
listed test that now passes: a stale entry, counted as a failure by run.sh).
Exits 0 when nothing FAILed or XPASSed, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TEST_TIMEOUT_S = 60.0
LEGACY_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"

# Tools the test relies on, one or more per upstream.
EXPECTED_TOOLS = {
    "everything": ["everything__echo", "everything__get-sum", "everything__trigger-long-running-operation"],
    "time": ["time__get_current_time", "time__convert_time"],
    "notes": ["notes__add_note", "notes__read_note", "notes__list_notes", "notes__delete_note"],
}


class Ctx:
    def __init__(self, args: argparse.Namespace, era: str) -> None:
        self.url: str = args.url
        self.toolgate: str = args.toolgate
        self.config: str = args.config
        self.stdio_log: str = args.stdio_log
        self.era = era

    @property
    def mode(self) -> str:
        return "legacy" if self.era == "legacy" else "auto"

    @property
    def expected_version(self) -> str:
        return LEGACY_VERSION if self.era == "legacy" else MODERN_VERSION

    def http(self, **kw: Any) -> Client:
        """A streamable-HTTP client sending run.sh's API key on every request."""
        key = os.environ["TOOLGATE_INTEROP_KEY"]
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        transport = streamable_http_client(self.url, http_client=http)
        return Client(transport, mode=self.mode, cache=None, **kw)

    def stdio(self, errlog: Any) -> Client:
        """A client that spawns `toolgate stdio`, its stderr going to errlog."""
        # The SDK passes only a safe subset of the environment on; hand on
        # run.sh's process marker so its leak check sees toolgate's children.
        marker = {k: v for k, v in os.environ.items() if k == "TOOLGATE_INTEROP_RUN"}
        params = StdioServerParameters(
            command=self.toolgate, args=["stdio", "--config", self.config], env=marker or None
        )
        return Client(stdio_client(params, errlog=errlog), mode=self.mode, cache=None)


def text_of(result: Any) -> str:
    """Concatenated text blocks of a CallToolResult / GetPromptResult message."""
    parts = []
    for block in getattr(result, "content", []) or []:
        if getattr(block, "type", None) == "text":
            parts.append(block.text)
    return "".join(parts)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


# ─── tests ──────────────────────────────────────────────────────────────────


async def t_initialize(ctx: Ctx) -> None:
    async with ctx.http() as c:
        check(c.protocol_version == ctx.expected_version,
              f"negotiated {c.protocol_version!r}, want {ctx.expected_version!r}")
        check(c.server_info is not None and c.server_info.name == "toolgate",
              f"server_info = {c.server_info!r}")
        caps = c.server_capabilities
        check(caps.tools is not None, "no tools capability")
        check(caps.resources is not None, "no resources capability")
        check(caps.prompts is not None, "no prompts capability")


async def t_list_tools(ctx: Ctx) -> None:
    async with ctx.http() as c:
        names: list[str] = []
        cursor = None
        while True:
            page = await c.list_tools(cursor=cursor)
            names += [t.name for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        bad = [n for n in names if not TOOL_NAME_RE.match(n)]
        check(not bad, f"tool names not matching {TOOL_NAME_RE.pattern}: {bad}")
        check(len(names) == len(set(names)), f"duplicate tool names: {sorted(names)}")
        for upstream, wanted in EXPECTED_TOOLS.items():
            missing = [n for n in wanted if n not in names]
            check(not missing, f"{upstream}: missing {missing} in {sorted(names)}")
        for n in names:
            check(n.split("__", 1)[0] in EXPECTED_TOOLS, f"tool {n!r} has no known upstream prefix")


async def t_call_echo(ctx: Ctx) -> None:
    async with ctx.http() as c:
        msg = f"hello interop {ctx.era} ✓"
        r = await c.call_tool("everything__echo", {"message": msg})
        check(not r.is_error, f"is_error: {r!r}")
        check(text_of(r) == f"Echo: {msg}", f"echo text = {text_of(r)!r}")


async def t_call_sum(ctx: Ctx) -> None:
    async with ctx.http() as c:
        r = await c.call_tool("everything__get-sum", {"a": 2, "b": 40})
        check(not r.is_error, f"is_error: {r!r}")
        check("42" in text_of(r), f"sum text = {text_of(r)!r}")


async def t_call_time(ctx: Ctx) -> None:
    async with ctx.http() as c:
        r = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
        check(not r.is_error, f"is_error: {r!r}")
        data = json.loads(text_of(r))
        check(data.get("timezone") == "UTC", f"timezone = {data!r}")
        when = datetime.fromisoformat(data["datetime"])
        drift = abs(when.timestamp() - time.time())
        check(drift < 300, f"datetime {data['datetime']} is {drift:.0f}s off")

        r = await c.call_tool("time__convert_time",
                              {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        check(not r.is_error, f"convert_time is_error: {r!r}")
        data = json.loads(text_of(r))
        check(data["target"]["datetime"].split("T")[1].startswith("21:00"), f"convert_time = {data!r}")


async def t_notes_resource(ctx: Ctx) -> None:
    title = f"interop-{ctx.era.replace('-', '')}-{uuid.uuid4().hex[:8]}"
    body = f"written by the Python SDK over streamable HTTP ({ctx.era})"
    uri = f"notes+note://{title}"
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/list_changed":
            changed.set()

    async with ctx.http(message_handler=on_message) as c:
        r = await c.call_tool("notes__add_note", {"title": title, "body": body})
        check(not r.is_error, f"add_note is_error: {r!r}")

        # The namespaced URI reads straight away (it is routed by prefix).
        read = await c.read_resource(uri)
        check(len(read.contents) >= 1, f"no contents: {read!r}")
        content = read.contents[0]
        check(str(content.uri) == uri, f"content uri {content.uri!r}, want {uri!r}")
        check(body in getattr(content, "text", ""), f"note text = {getattr(content, 'text', None)!r}")

        # The new note shows in resources/list. A list made right after the
        # call may still be the old one (the catalog refreshes when the
        # upstream says list_changed); a client re-lists on the forwarded
        # notification, and that list must have it. The 2026-07-28 era has no
        # standing stream for the notification here, so poll there.
        if ctx.era == "legacy":
            with anyio.fail_after(10):
                await changed.wait()
            uris = [str(x.uri) for x in (await c.list_resources()).resources]
        else:
            deadline = time.monotonic() + 10
            while True:
                uris = [str(x.uri) for x in (await c.list_resources()).resources]
                if uri in uris or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.2)
        check(uri in uris, f"{uri} not in resources/list: {uris}")
        check(all("+" in u for u in uris), f"un-namespaced resource URI in {uris}")

        r = await c.call_tool("notes__delete_note", {"title": title})
        check(not r.is_error, f"delete_note is_error: {r!r}")


async def t_everything_resource(ctx: Ctx) -> None:
    async with ctx.http() as c:
        listed = await c.list_resources()
        uris = [str(x.uri) for x in listed.resources if str(x.uri).startswith("everything+")]
        check(uris, "no everything+ resources listed")
        read = await c.read_resource(uris[0])
        check(read.contents and str(read.contents[0].uri) == uris[0], f"read {uris[0]}: {read!r}")


async def t_prompts(ctx: Ctx) -> None:
    async with ctx.http() as c:
        listed = await c.list_prompts()
        names = [p.name for p in listed.prompts]
        for want in ("everything__simple-prompt", "everything__args-prompt"):
            check(want in names, f"{want} not in prompts/list: {names}")

        got = await c.get_prompt("everything__simple-prompt")
        check(len(got.messages) >= 1, f"simple-prompt: {got!r}")

        got = await c.get_prompt("everything__args-prompt", {"city": "Lisbon", "state": "Lisboa"})
        texts = " ".join(getattr(m.content, "text", "") for m in got.messages)
        check("Lisbon" in texts, f"args-prompt messages = {texts!r}")


async def t_unknown_tool(ctx: Ctx) -> None:
    async with ctx.http() as c:
        try:
            r = await c.call_tool("nosuch__tool", {})
        except MCPError as e:
            # JSON-RPC error, not a tool result; -32602 (invalid params) is the
            # MCP spec's code for an unknown tool.
            check(e.error.code == -32602, f"error code {e.error.code} ({e.error.message!r}), want -32602")
            check("nosuch__tool" in e.error.message, f"message does not name the tool: {e.error.message!r}")
            return
        raise AssertionError(f"no JSON-RPC error; got result {r!r}")


async def _long_running(c: Client, steps: int, duration: float) -> list[tuple[float, float | None, str | None]]:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    r = await c.call_tool("everything__trigger-long-running-operation",
                          {"duration": duration, "steps": steps}, progress_callback=on_progress)
    check(not r.is_error, f"is_error: {r!r}")
    check("completed" in text_of(r).lower(), f"result text = {text_of(r)!r}")
    return updates


async def t_progress(ctx: Ctx) -> None:
    """Progress notifications reach the caller, in order, with the caller's token."""
    steps = 4
    async with ctx.http() as c:
        updates = await _long_running(c, steps, 2)
    check(len(updates) >= 1, "no progress notification arrived")
    progresses = [u[0] for u in updates]
    check(progresses == sorted(set(progresses)), f"progress not strictly increasing: {progresses}")
    check(all(u[1] == steps for u in updates), f"total != {steps}: {updates}")
    check(set(progresses) <= set(range(1, steps + 1)), f"unexpected progress values: {progresses}")


async def t_progress_all_delivered(ctx: Ctx) -> None:
    """Every progress notification the upstream sent before its result arrives
    (the last one is sent right before the result: a race a gateway can lose)."""
    steps, rounds = 4, 5
    async with ctx.http() as c:
        for i in range(rounds):
            updates = await _long_running(c, steps, 0.4)
            got = [u[0] for u in updates]
            check(got == list(range(1, steps + 1)),
                  f"call {i + 1}/{rounds}: progress {got}, want {list(range(1, steps + 1))}")


async def t_sampling(ctx: Ctx) -> None:
    """server-everything asks the client for sampling/createMessage while a
    tools/call is in flight; toolgate relays it to the caller and back."""
    seen: list[str] = []

    async def on_sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        seen.append(getattr(params.messages[0].content, "text", ""))
        return types.CreateMessageResult(
            role="assistant", model="interop-fake-model", stop_reason="endTurn",
            content=types.TextContent(type="text", text="sampled by the interop client"),
        )

    async with ctx.http(sampling_callback=on_sampling) as c:
        r = await c.call_tool("everything__trigger-sampling-request", {"prompt": "ping", "maxTokens": 8})
        check(not r.is_error, f"is_error: {text_of(r)!r}")
        check(seen and "ping" in seen[0], f"sampling callback saw {seen!r}")
        check("sampled by the interop client" in text_of(r), f"result text = {text_of(r)!r}")


async def t_elicitation(ctx: Ctx) -> None:
    """Same for elicitation/create (form mode)."""
    seen: list[str] = []

    async def on_elicit(_ctx: Any, params: Any) -> types.ElicitResult:
        seen.append(getattr(params, "message", ""))
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async with ctx.http(elicitation_callback=on_elicit) as c:
        r = await c.call_tool("everything__trigger-elicitation-request", {})
        check(not r.is_error, f"is_error: {text_of(r)!r}")
        check(len(seen) == 1, f"elicitation callback called {len(seen)} times")
        check("Name: Ada Lovelace" in text_of(r), f"result text = {text_of(r)!r}")


async def t_confirm_gate(ctx: Ctx) -> None:
    """toolgate's own question: a @confirm gate (run.sh's confirm-gate.cedar)
    asks the user through elicitation (legacy: elicitation/create during the
    call; 2026-07-28: an InputRequiredResult the SDK answers and retries)."""
    seen: list[str] = []

    async def on_elicit(_ctx: Any, params: Any) -> types.ElicitResult:
        message = getattr(params, "message", "")
        seen.append(message)
        if "decline me" in message:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"allow": True})

    async with ctx.http(elicitation_callback=on_elicit) as c:
        r = await c.call_tool("everything__echo", {"message": "please confirm"})
        check(not r.is_error, f"is_error: {text_of(r)!r}")
        check(text_of(r) == "Echo: please confirm", f"result text = {text_of(r)!r}")
        check(len(seen) == 1 and "Echo this message?" in seen[0], f"asked {seen!r}")
        r = await c.call_tool("everything__echo", {"message": "confirm? decline me"})
        check(r.is_error, f"a declined call went through: {text_of(r)!r}")
        check("the user declined it" in text_of(r), f"result text = {text_of(r)!r}")
        r = await c.call_tool("everything__echo", {"message": "no gate here"})
        check(text_of(r) == "Echo: no gate here" and len(seen) == 2, f"{text_of(r)!r}, asked {seen!r}")


async def t_stdio(ctx: Ctx) -> None:
    """The same SDK over `toolgate stdio` (spawned by the SDK's stdio client)."""
    with open(ctx.stdio_log, "a") as errlog:
        errlog.write(f"--- toolgate stdio, era {ctx.era} ---\n")
        errlog.flush()
        async with ctx.stdio(errlog) as c:
            check(c.protocol_version == ctx.expected_version,
                  f"negotiated {c.protocol_version!r}, want {ctx.expected_version!r}")
            # Upstreams come up in the background; wait until every prefix shows.
            deadline = time.monotonic() + 45
            while True:
                names = [t.name for t in (await c.list_tools()).tools]
                prefixes = {n.split("__", 1)[0] for n in names}
                if set(EXPECTED_TOOLS) <= prefixes or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.5)
            for upstream, wanted in EXPECTED_TOOLS.items():
                missing = [n for n in wanted if n not in names]
                check(not missing, f"stdio {upstream}: missing {missing} in {sorted(names)}")
            r = await c.call_tool("everything__echo", {"message": "over stdio"})
            check(text_of(r) == "Echo: over stdio", f"echo text = {text_of(r)!r}")


TESTS: list[tuple[str, Callable[[Ctx], Awaitable[None]]]] = [
    ("initialize", t_initialize),
    ("tools_list", t_list_tools),
    ("call_echo", t_call_echo),
    ("call_sum", t_call_sum),
    ("call_time", t_call_time),
    ("notes_add_then_read_resource", t_notes_resource),
    ("everything_read_resource", t_everything_resource),
    ("prompts_list_get", t_prompts),
    ("unknown_tool_jsonrpc_error", t_unknown_tool),
    ("progress_long_running", t_progress),
    ("progress_all_delivered", t_progress_all_delivered),
    ("sampling_roundtrip", t_sampling),
    ("confirm_gate_elicitation", t_confirm_gate),
    ("elicitation_roundtrip", t_elicitation),
    ("stdio_list_and_call", t_stdio),
]


# ─── runner ─────────────────────────────────────────────────────────────────


def load_known_failures(path: str | None) -> dict[str, set[str]]:
    """`ID [TAG...]` lines; the tag `flaky` means the check may also pass."""
    known: dict[str, set[str]] = {}
    if not path or not Path(path).exists():
        return known
    for line in Path(path).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            known[words[0]] = set(words[1:])
    return known


def one_line(exc: BaseException) -> str:
    # Unwrap anyio/asyncio exception groups to the first leaf.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:400]


async def run_one(ctx: Ctx, fn: Callable[[Ctx], Awaitable[None]]) -> BaseException | None:
    try:
        with anyio.fail_after(TEST_TIMEOUT_S):
            await fn(ctx)
    except Exception as e:  # noqa: BLE001 - every failure is a test result
        return e
    except BaseExceptionGroup as e:  # pragma: no cover
        return e
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--toolgate", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--known-failures")
    ap.add_argument("--stdio-log", default="/dev/null")
    ap.add_argument("--eras", default=f"legacy,{MODERN_VERSION}")
    ap.add_argument("--only", help="comma-separated test names")
    args = ap.parse_args()

    known = load_known_failures(args.known_failures)
    only = set(args.only.split(",")) if args.only else None
    bad = 0
    with open(args.results, "a") as out:
        for era in args.eras.split(","):
            ctx = Ctx(args, era)
            for name, fn in TESTS:
                if only and name not in only:
                    continue
                test_id = f"python/{era}/{name}"
                started = time.monotonic()
                err = anyio.run(run_one, ctx, fn)
                took = time.monotonic() - started
                if err is None:
                    if test_id in known and "flaky" not in known[test_id]:
                        status, detail = "XPASS", "listed in known-failures.txt but passes now"
                    else:
                        status, detail = "PASS", ""
                else:
                    status, detail = ("XFAIL" if test_id in known else "FAIL"), one_line(err)
                    if status == "FAIL":  # the whole story, to stderr (run.sh's log)
                        print(f"=== {test_id}", file=sys.stderr)
                        traceback.print_exception(err, file=sys.stderr)
                if status in ("FAIL", "XPASS"):
                    bad += 1
                print(f"{status:5} {test_id} ({took:.1f}s){'  ' + detail if detail else ''}", flush=True)
                out.write(f"{status}\t{test_id}\t{detail}\n")
                out.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
