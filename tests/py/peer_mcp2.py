"""The 2026 reference point for BENCHMARKS.md: the official MCP Python SDK 2.x's MCPServer
with the same `version` tool as exai, over Streamable HTTP on `/mcp`, serving 2026-07-28
requests statelessly (the SDK's own per-request path) — driven by the same load as exai
(tests/bench/eras.sh, `exai-load --stateless`).

usage: peer_mcp2.py [PORT]   (0 or none: a free port; prints "listening on 127.0.0.1:PORT")
"""

import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("peer-mcp2")


@mcp.tool()
def version() -> str:
    """The server's version, as exai's `version` tool answers it."""
    return "peer-mcp2 1"


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    app = mcp.streamable_http_app(json_response=True, stateless_http=True)
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
