"""Drives the daemon with the official MCP Python SDK and prints one JSON object per
observation, for the Rust end-to-end tests to assert on.

usage: mcp_client.py SCENARIO URL [ARG]
  ws       URL=ws://…/mcp      initialize, tools, chat with progress and traceparent, continuation, ping
  http     URL=http://…/mcp    the same over Streamable HTTP
  bridge   URL=ws://…/mcp      the same through `exai-daemon bridge` (ARG = path of exai-daemon)
  cancel   URL=ws://…/mcp      start a slow chat, cancel it, report what came back
  handoff  URL=http://…/mcp    a chat on one daemon (Streamable HTTP), continued on
           ARG=ws://…/mcp      another (WebSocket) with its continuation_id
"""

import asyncio
import json
import sys
from datetime import timedelta

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.client.websocket import websocket_client

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def say(**fields):
    print(json.dumps(fields), flush=True)


async def conversation(session: ClientSession):
    init = await session.initialize()
    say(step="initialize", protocol=init.protocolVersion, server=init.serverInfo.name)
    tools = await session.list_tools()
    say(step="tools", names=sorted(t.name for t in tools.tools),
        schema_types=sorted({t.inputSchema.get("type") for t in tools.tools}))

    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    first = await session.call_tool(
        "chat", {"prompt": "hello from the sdk [latency:1200]"},
        progress_callback=on_progress,
        meta={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    )
    say(step="chat", is_error=first.isError, text=first.content[0].text, meta=first.meta, progress=progress)
    second = await session.call_tool(
        "chat", {"prompt": "and again", "continuation_id": first.meta["continuation_id"]})
    say(step="continue", is_error=second.isError, text=second.content[0].text, meta=second.meta)
    await session.send_ping()
    say(step="ping", ok=True)
    await session.set_logging_level("debug")
    say(step="set_level", ok=True)


async def over_ws(url):
    async with websocket_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await conversation(session)


async def over_http(url):
    async with streamablehttp_client(url) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            await conversation(session)


async def over_bridge(url, daemon):
    params = StdioServerParameters(command=daemon, args=["bridge", url])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await conversation(session)


async def cancel(url):
    async with websocket_client(url) as (read, write):
        async with ClientSession(read, write) as session:
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
            say(step="status", meta=status.meta)


async def handoff(first_url, second_url):
    async with streamablehttp_client(first_url) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            await session.initialize()
            first = await session.call_tool("chat", {"prompt": "started on one daemon"})
            say(step="first", is_error=first.isError, text=first.content[0].text, meta=first.meta)
    async with websocket_client(second_url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            second = await session.call_tool("chat", {
                "prompt": "continued on another", "continuation_id": first.meta["continuation_id"]})
            say(step="second", is_error=second.isError, text=second.content[0].text, meta=second.meta)


def main():
    scenario, url = sys.argv[1], sys.argv[2]
    if scenario == "ws":
        asyncio.run(over_ws(url))
    elif scenario == "http":
        asyncio.run(over_http(url))
    elif scenario == "bridge":
        asyncio.run(over_bridge(url, sys.argv[3]))
    elif scenario == "cancel":
        asyncio.run(cancel(url))
    elif scenario == "handoff":
        asyncio.run(handoff(url, sys.argv[3]))
    else:
        sys.exit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
