"""Drives the daemon with the official MCP Python SDK 1.x and prints one JSON object per
observation, for the Rust end-to-end tests to assert on.

usage: mcp_client.py SCENARIO URL [ARG]
  ws        URL=ws://…/mcp    initialize, tools, chat with progress and traceparent, continuation, ping
  http      URL=http://…/mcp  the same over Streamable HTTP
  bridge    URL=ws://…/mcp    the same through `exai-daemon bridge` (ARG = path of exai-daemon)
  cancel    URL=ws://…/mcp    start a slow chat, cancel it, report what came back
  thinking  URL=ws://…/mcp    a thinking chat with progress and its reasoning (ARG = model)
  tasks     URL=ws://… or http://…  a chat run as a task to its result; another cancelled
            mid-thinking; the session's tasks as `status` shows them
  handoff   URL=http://…/mcp  a chat on one daemon (Streamable HTTP), continued on
            ARG=ws://…/mcp    another (WebSocket) with its continuation_id

Every structured result is validated against its tool's outputSchema: by the SDK itself
(ClientSession.call_tool) and here again with jsonschema, reported as `validated`.
"""

import asyncio
import json
import sys
from datetime import timedelta

import jsonschema
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.client.websocket import websocket_client

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def say(**fields):
    print(json.dumps(fields, default=str), flush=True)


class Schemas:
    """The tools' output schemas, as tools/list gave them."""

    def __init__(self, tools):
        self.by_name = {t.name: t.outputSchema for t in tools.tools}

    def check(self, name, result):
        """Validates a result's structuredContent; returns whether it did."""
        if result.isError:
            return False
        jsonschema.validate(result.structuredContent, self.by_name[name])
        return True


def result_fields(result, schemas, name):
    return dict(is_error=result.isError, text=result.content[0].text, meta=result.meta,
                structured=result.structuredContent, validated=schemas.check(name, result))


async def conversation(session: ClientSession):
    init = await session.initialize()
    caps = init.capabilities.model_dump(mode="json", exclude_none=True)
    say(step="initialize", protocol=init.protocolVersion, server=init.serverInfo.name,
        tasks=caps.get("tasks"))
    tools = await session.list_tools()
    schemas = Schemas(tools)
    say(step="tools", names=sorted(t.name for t in tools.tools),
        schema_types=sorted({t.inputSchema.get("type") for t in tools.tools}),
        output_schema_types=sorted({(t.outputSchema or {}).get("type", "none") for t in tools.tools}),
        titles={t.name: t.title for t in tools.tools},
        annotations={t.name: t.annotations.model_dump(mode="json", exclude_none=True) for t in tools.tools},
        execution={t.name: (t.execution.taskSupport if t.execution else None) for t in tools.tools})

    progress = []
    messages = []

    async def on_progress(value, total, message):
        progress.append(value)
        messages.append(message)

    first = await session.call_tool(
        "chat", {"prompt": "hello from the sdk [latency:1200]"},
        progress_callback=on_progress,
        meta={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    )
    say(step="chat", progress=progress, progress_messages=messages, **result_fields(first, schemas, "chat"))
    second = await session.call_tool(
        "chat", {"prompt": "and again", "continuation_id": first.structuredContent["continuation_id"]})
    say(step="continue", **result_fields(second, schemas, "chat"))
    for tool in ["listmodels", "status", "version"]:
        result = await session.call_tool(tool, {})
        say(step=tool, **result_fields(result, schemas, tool))
    await session.send_ping()
    say(step="ping", ok=True)
    await session.set_logging_level("debug")
    say(step="set_level", ok=True)


async def over_ws(url, scenario=conversation):
    async with websocket_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await scenario(session)


async def over_http(url, scenario=conversation):
    async with streamablehttp_client(url) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            await scenario(session)


async def over_bridge(url, daemon):
    params = StdioServerParameters(command=daemon, args=["bridge", url])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await conversation(session)


async def cancel(session: ClientSession):
    await session.initialize()
    started = asyncio.Event()

    async def on_progress(value, total, message):
        started.set()

    request_id = session._request_id  # the id the next request will get
    call = asyncio.create_task(session.call_tool(
        "chat", {"prompt": "a very slow question [latency:30000]"},
        progress_callback=on_progress, read_timeout_seconds=timedelta(seconds=3)))
    await asyncio.wait_for(started.wait(), 10)
    await session.send_notification(types.ClientNotification(types.CancelledNotification(
        params=types.CancelledNotificationParams(requestId=request_id, reason="test cancels"))))
    try:
        result = await call
        say(step="cancel", answered=True, result=result.model_dump(mode="json"))
    except Exception as e:  # the SDK times out: no response came
        say(step="cancel", answered=False, error=str(e))
    status = await session.call_tool("status", {})
    say(step="status", structured=status.structuredContent)


def thinking(model):
    async def scenario(session: ClientSession):
        await session.initialize()
        schemas = Schemas(await session.list_tools())
        messages = []

        async def on_progress(value, total, message):
            messages.append(message)

        result = await session.call_tool(
            "chat", {"prompt": "think first [think:1500]", "model": model, "include_reasoning": True},
            progress_callback=on_progress)
        say(step="thinking", progress_messages=messages, **result_fields(result, schemas, "chat"))
    return scenario


async def tasks(session: ClientSession):
    await session.initialize()
    schemas = Schemas(await session.list_tools())

    created = await session.experimental.call_tool_as_task(
        "chat", {"prompt": "a long question [think:1500]", "model": "glm-5"}, ttl=60000)
    task_id = created.task.taskId
    say(step="created", task=created.task.model_dump(mode="json"))
    polls = []
    async for status in session.experimental.poll_task(task_id):
        polls.append({"status": status.status, "message": status.statusMessage})
    result = await session.experimental.get_task_result(task_id, types.CallToolResult)
    say(step="completed", polls=polls, **result_fields(result, schemas, "chat"))

    doomed = await session.experimental.call_tool_as_task(
        "chat", {"prompt": "an endless question [think:60000]", "model": "glm-5"})
    doomed_id = doomed.task.taskId
    while True:  # until the model is mid-thinking
        status = await session.experimental.get_task(doomed_id)
        if status.statusMessage and status.statusMessage.startswith("thinking"):
            break
        await asyncio.sleep(0.05)
    say(step="mid_thinking", message=status.statusMessage)
    cancelled = await session.experimental.cancel_task(doomed_id)
    say(step="cancelled", status=cancelled.status, message=cancelled.statusMessage)
    try:
        await session.experimental.get_task_result(doomed_id, types.CallToolResult)
        say(step="cancelled_result", error=None)
    except Exception as e:
        say(step="cancelled_result", error=str(e))
    listed = await session.experimental.list_tasks()
    say(step="listed", tasks={t.taskId: t.status for t in listed.tasks}, first=task_id, second=doomed_id)
    status = await session.call_tool("status", {})
    say(step="status", tasks=status.structuredContent["tasks"])
    try:
        await session.experimental.cancel_task(task_id)
        say(step="cancel_finished", error=None)
    except Exception as e:
        say(step="cancel_finished", error=str(e))


async def handoff(first_url, second_url):
    async with streamablehttp_client(first_url) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            await session.initialize()
            first = await session.call_tool("chat", {"prompt": "started on one daemon"})
            say(step="first", is_error=first.isError, text=first.content[0].text, meta=first.meta,
                structured=first.structuredContent)
    async with websocket_client(second_url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            second = await session.call_tool("chat", {
                "prompt": "continued on another", "continuation_id": first.meta["continuation_id"]})
            say(step="second", is_error=second.isError, text=second.content[0].text, meta=second.meta,
                structured=second.structuredContent)


def main():
    scenario, url = sys.argv[1], sys.argv[2]
    if scenario == "ws":
        asyncio.run(over_ws(url))
    elif scenario == "http":
        asyncio.run(over_http(url))
    elif scenario == "bridge":
        asyncio.run(over_bridge(url, sys.argv[3]))
    elif scenario == "cancel":
        asyncio.run(over_ws(url, cancel))
    elif scenario == "thinking":
        asyncio.run(over_ws(url, thinking(sys.argv[3])))
    elif scenario == "tasks":
        asyncio.run((over_ws if url.startswith("ws") else over_http)(url, tasks))
    elif scenario == "handoff":
        asyncio.run(handoff(url, sys.argv[3]))
    else:
        sys.exit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
