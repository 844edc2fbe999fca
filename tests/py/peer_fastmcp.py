"""The reference point for BENCHMARKS.md: the official MCP Python SDK's FastMCP server
with the same `version` tool as exai, over Streamable HTTP and WebSocket on one port
(`/mcp`), driven by the same load (tests/bench/overhead.sh with PEER=1).

usage: peer_fastmcp.py [PORT]   (0 or none: a free port; prints "listening on 127.0.0.1:PORT")
"""

import socket
import sys

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.websocket import websocket_server
from starlette.routing import WebSocketRoute

mcp = FastMCP("peer-fastmcp", log_level="WARNING")


@mcp.tool()
def version() -> str:
    """The server's version, as exai's `version` tool answers it."""
    return "peer-fastmcp 1"


async def websocket_endpoint(websocket):
    server = mcp._mcp_server
    async with websocket_server(websocket.scope, websocket.receive, websocket.send) as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    app = mcp.streamable_http_app()
    app.router.routes.append(WebSocketRoute("/mcp", websocket_endpoint))
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
