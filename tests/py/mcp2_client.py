"""Drives the daemon over Streamable HTTP with the MCP Python SDK 2.x (whose API differs
from 1.x, and which has no WebSocket client), printing one JSON object per observation.

usage: mcp2_client.py http URL
  initialize (the SDK probes server/discover, then falls back to initialize), tools,
  chat with progress and traceparent, continuation, listmodels, status, version, ping.

The SDK validates each structured result against its tool's outputSchema itself
(Client.call_tool); this script validates again with jsonschema, reported as `validated`.
"""

import asyncio
import json
import sys

import jsonschema
from mcp import Client

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def say(**fields):
    print(json.dumps(fields, default=str), flush=True)


async def conversation(url):
    async with Client(url) as client:
        caps = client.server_capabilities.model_dump(mode="json", by_alias=True, exclude_none=True)
        say(step="initialize", protocol=client.protocol_version, server=client.server_info.name,
            tasks=caps.get("tasks"))
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
        await client.send_ping()
        say(step="ping", ok=True)


def main():
    scenario, url = sys.argv[1], sys.argv[2]
    if scenario != "http":
        sys.exit(f"unknown scenario {scenario}: the 2.x SDK speaks Streamable HTTP only")
    asyncio.run(conversation(url))


if __name__ == "__main__":
    main()
