"""Drives the daemon over Streamable HTTP with the MCP Python SDK 2.x (whose API differs
from 1.x, and which has no WebSocket client), printing one JSON object per observation.

usage: mcp2_client.py http URL [MODE]
  MODE is the SDK's `mode`: "auto" (the default: it probes server/discover and speaks
  2026-07-28 when the server offers it), "2026-07-28" (stateless, no probe) or "legacy"
  (the initialize handshake, 2025-11-25). Steps: the protocol agreed, tools, chat with
  progress and traceparent, continuation, listmodels, status, version, ping (legacy only:
  2026-07-28 has none).
usage: mcp2_client.py calls URL N [MODE]
  N chats, each continuing the conversation the first began, then a summary (answered,
  failed, each answer's history_turns, the protocol agreed). MODE as above, "2026-07-28"
  unless given: "legacy" makes them N calls of one 2025-11-25 session.
usage: mcp2_client.py tasks URL
  2026-07-28 with the tasks extension declared: a thinking chat becomes a task, polled
  with tasks/get until it completes; another is cancelled with tasks/cancel. The SDK has
  no helper for the extension, so these are raw requests through its session (which
  stamps each with the revision and the client's capabilities).

The SDK validates each structured result against its tool's outputSchema itself
(Client.call_tool); this script validates again with jsonschema, reported as `validated`.
"""

import asyncio
import json
import sys

import jsonschema
from mcp import Client
from mcp.client import advertise

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def say(**fields):
    print(json.dumps(fields, default=str), flush=True)


async def conversation(url, mode):
    async with Client(url, mode=mode) as client:
        if client.server_info is None:
            # A pinned revision skips the probe (the SDK synthesizes its answer); ask the
            # server, as such a client may.
            found = await client.session.send_discover(client.protocol_version)
            caps = found["capabilities"]
            server = found["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
        else:
            caps = client.server_capabilities.model_dump(mode="json", by_alias=True, exclude_none=True)
            server = client.server_info.name
        say(step="initialize", protocol=client.protocol_version, server=server,
            tasks=caps.get("tasks"), extensions=caps.get("extensions"))
        tools = await client.list_tools()
        schemas = {t.name: t.output_schema for t in tools.tools}
        say(step="tools", names=sorted(schemas),
            output_schema_types=sorted({(s or {}).get("type", "none") for s in schemas.values()}),
            titles={t.name: t.title for t in tools.tools},
            read_only={t.name: t.annotations.read_only_hint for t in tools.tools})

        def fields(name, result):
            validated = False
            if not result.is_error:
                jsonschema.validate(result.structured_content, schemas[name])
                validated = True
            return dict(is_error=result.is_error, text=result.content[0].text,
                        structured=result.structured_content, meta=result.meta, validated=validated)

        progress = []
        messages = []

        async def on_progress(value, total, message):
            progress.append(value)
            messages.append(message)

        first = await client.call_tool(
            "chat", {"prompt": "hello from the sdk [latency:1200]"},
            progress_callback=on_progress,
            meta={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        say(step="chat", progress=progress, progress_messages=messages, **fields("chat", first))
        second = await client.call_tool(
            "chat", {"prompt": "and again", "continuation_id": first.structured_content["continuation_id"]})
        say(step="continue", **fields("chat", second))
        for tool in ["listmodels", "status", "version"]:
            say(step=tool, **fields(tool, await client.call_tool(tool, {})))
        if client.protocol_version < "2026-07-28":
            await client.send_ping()
            say(step="ping", ok=True)


TASKS = "io.modelcontextprotocol/tasks"


async def raw(session, method, params):
    """A request sent as the SDK sends any: stamped with the revision and capabilities."""
    data = {"method": method, "params": params}
    opts = {}
    session._stamp(data, opts)
    if method.startswith("tasks/"):
        # The extension's methods name their task in Mcp-Name, as tools/call its tool.
        opts.setdefault("headers", {})["Mcp-Name"] = params["taskId"]
    return await session._dispatcher.send_raw_request(method, data["params"], opts)


async def tasks(url):
    async with Client(url, mode="2026-07-28", extensions=[advertise(TASKS, {})]) as client:
        session = client.session
        created = await raw(session, "tools/call", {
            "name": "chat", "arguments": {"prompt": "a long question [think:1500]", "model": "glm-5"}})
        say(step="created", result=created)
        polls = []
        while True:
            got = await raw(session, "tasks/get", {"taskId": created["taskId"]})
            polls.append({"status": got["status"], "message": got.get("statusMessage")})
            if got["status"] not in ("working", "input_required"):
                break
            await asyncio.sleep(created.get("pollIntervalMs", 100) / 1000)
        result = got.get("result") or {}
        say(step="completed", polls=polls, task=got,
            is_error=result.get("isError"), structured=result.get("structuredContent"))
        other = await raw(session, "tools/call", {
            "name": "chat", "arguments": {"prompt": "an endless question [think:60000]", "model": "glm-5"}})
        cancelled = await raw(session, "tasks/cancel", {"taskId": other["taskId"]})
        after = await raw(session, "tasks/get", {"taskId": other["taskId"]})
        say(step="cancelled", ack=cancelled, status=after["status"])
        try:
            await raw(session, "tasks/get", {"taskId": "no-such-task"})
            say(step="unknown", error=None)
        except Exception as e:  # the SDK raises MCPError for an error answer
            say(step="unknown", error=getattr(e, "error", None) and e.error.code, text=str(e))


async def calls(url, n, mode):
    answered, failed, turns, handle, history = 0, [], None, None, []
    async with Client(url, mode=mode) as client:
        protocol = client.protocol_version
        for i in range(n):
            args = {"prompt": f"turn {i}"}
            if handle:
                args["continuation_id"] = handle
            try:
                result = await client.call_tool("chat", args)
            except Exception as e:
                failed.append(str(e))
                continue
            if result.is_error:
                failed.append(result.content[0].text)
                continue
            answered += 1
            handle = result.structured_content["continuation_id"]
            turns = result.structured_content["history_turns"]
            history.append(turns)
    say(step="calls", answered=answered, failed=failed, history_turns=turns, history=history,
        continuation_id=handle, protocol=protocol)


def main():
    scenario, url = sys.argv[1], sys.argv[2]
    if scenario == "http":
        asyncio.run(conversation(url, sys.argv[3] if len(sys.argv) > 3 else "auto"))
    elif scenario == "calls":
        asyncio.run(calls(url, int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "2026-07-28"))
    elif scenario == "tasks":
        asyncio.run(tasks(url))
    else:
        sys.exit(f"unknown scenario {scenario}: the 2.x SDK speaks Streamable HTTP only")


if __name__ == "__main__":
    main()
