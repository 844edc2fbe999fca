"""Drives the monitoring dashboard in headless Chromium (Debian's, through Playwright) and
prints one JSON object per observation, for the Rust end-to-end tests to assert on.

usage: dashboard_check.py live URL DAEMON_WS_URL SCREENSHOT
         open the page at URL under load, read its figures, make a chat with a known
         correlation id over DAEMON_WS_URL and find it in the recent events
       dashboard_check.py before-agent PORT STATIC_DIR AGENT_BIN SOCKET SCREENSHOT
         serve the page from STATIC_DIR on PORT, open it, stop serving, then start the
         agent on PORT and report when the page connects
"""

import asyncio
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import websockets
from playwright.async_api import async_playwright

CHROMIUM = os.environ.get("EXAI_CHROMIUM", "/usr/bin/chromium")


def say(**fields):
    print(json.dumps(fields), flush=True)


async def browser_page(p):
    browser = await p.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
    )
    page = await browser.new_page(viewport={"width": 1600, "height": 1100})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page, errors


async def number(page, selector, attribute="data-value"):
    value = await page.get_attribute(selector, attribute)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


async def wait_until(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def chat_with_correlation(ws_url, correlation_id):
    """One MCP chat over a raw WebSocket, carrying `correlation_id` in `_meta`."""
    async with websockets.connect(ws_url, subprotocols=["mcp"]) as ws:
        async def call(msg):
            await ws.send(json.dumps(msg))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") == msg["id"]:
                    return answer

        await call({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "dashboard-check", "version": "1"}}})
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        answer = await call({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "chat", "arguments": {"prompt": "find me on the dashboard"},
            "_meta": {"correlation_id": correlation_id}}})
        return answer["result"]["_meta"].get("correlation_id")


async def live(url, daemon_ws, screenshot):
    async with async_playwright() as p:
        browser, page, errors = await browser_page(p)
        await page.goto(url)
        await page.wait_for_selector("#connection-state[data-state=connected]", timeout=20000)
        say(step="connected")

        async def figures():
            throughput = await number(page, "#throughput-value")
            ws_events = await number(page, '.service-card[data-service="websocket"] .events')
            glm_events = await number(page, '.service-card[data-service="glm"] .events')
            received = await number(page, "#pipe-received")
            if throughput and ws_events and glm_events and received:
                return {"throughput": throughput, "websocket_events": ws_events,
                        "glm_events": glm_events, "pipe_received": received}
            return None

        seen = await wait_until("non-zero figures", figures)
        seen["latency_p99"] = await number(page, "#latency-p99")
        seen["health"] = await page.get_attribute("#health-status", "data-status")
        seen["rows"] = await page.locator("#events tbody tr").count()
        say(step="figures", **seen)

        correlation_id = "dash-" + uuid.uuid4().hex
        echoed = await chat_with_correlation(daemon_ws, correlation_id)
        say(step="chat", correlation_id=correlation_id, echoed=echoed)
        started = time.monotonic()
        await page.fill("#event-search", correlation_id)
        row = f'#events tbody tr[data-correlation-id="{correlation_id}"]'
        await page.wait_for_selector(row, timeout=15000)
        services = await page.eval_on_selector_all(row, "rows => rows.map(r => r.dataset.service)")
        say(step="found", seconds=round(time.monotonic() - started, 2),
            rows=len(services), services=sorted(set(services)),
            visible_rows=await page.locator("#events tbody tr").count())
        await page.fill("#event-search", "")
        await page.wait_for_timeout(1200)
        await page.screenshot(path=screenshot, full_page=True)
        say(step="screenshot", path=screenshot, page_errors=errors)
        await browser.close()


def serve_static(port, directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def before_agent(port, static_dir, agent_bin, socket_path, screenshot):
    server = serve_static(port, static_dir)
    agent = None
    try:
        async with async_playwright() as p:
            browser, page, errors = await browser_page(p)
            await page.goto(f"http://127.0.0.1:{port}/monitoring_dashboard.html")
            # The static server has no /ws: the page keeps trying.
            state = await page.get_attribute("#connection-state", "data-state")
            await wait_until("a failed attempt", lambda: page_state_is(page, "disconnected"))
            server.shutdown()
            server.server_close()
            say(step="page_open_without_agent", first_state=state)

            env = dict(os.environ, EXAI_EVENTS_SOCKET=socket_path, MONITORING_PORT=str(port),
                       METRICS_PORT="0", HEALTH_CHECK_PORT="0")
            agent = subprocess.Popen([agent_bin], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            started = time.monotonic()
            await page.wait_for_selector("#connection-state[data-state=connected]", timeout=30000)
            say(step="connected_after_agent_start", seconds=round(time.monotonic() - started, 2))
            await page.wait_for_function(
                "document.getElementById('agent-version').textContent.trim() !== '—'", timeout=10000)
            await page.screenshot(path=screenshot)
            say(step="done", page_errors=errors)
            await browser.close()
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=10)


async def page_state_is(page, wanted):
    return await page.get_attribute("#connection-state", "data-state") == wanted


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "live":
        asyncio.run(live(*args))
    elif mode == "before-agent":
        port, static_dir, agent_bin, socket_path, screenshot = args
        asyncio.run(before_agent(int(port), static_dir, agent_bin, socket_path, screenshot))
    else:
        sys.exit(f"unknown mode {mode!r}\n\n{__doc__}")


if __name__ == "__main__":
    main()
