// exai monitoring dashboard. Plain JS, no dependencies: reads the agent's `/ws` stream
// (protocol in static/README.md) and renders it. Everything from the stream is inserted
// with textContent / DOM properties, never as HTML.
"use strict";

(function () {
  const SERVICES = ["websocket", "storage", "supabase", "kimi", "glm"];
  const COMPONENTS = ["storage", "supabase", "memory", "disk", "daemon"];
  const WINDOW_MS = 5 * 60 * 1000;   // charts show the last five minutes
  const MAX_HISTORY = 400;           // stats objects kept (one a second)
  const MAX_EVENTS = 500;            // rows kept in the recent-events table
  const GAP_MS = 5000;               // a longer gap between two stats breaks the chart line
  const STALE_MS = 5000;             // connected but no stats for this long: say so
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const CONNECT_TIMEOUT_MS = 8000;
  const EMPTY = Object.freeze({});

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const obj = (v) => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : EMPTY);
  const arr = (v) => (Array.isArray(v) ? v : []);
  const str = (v) => (typeof v === "string" ? v : v === null || v === undefined ? "" : String(v));
  const DASH = "—";

  function setText(el, text, raw) {
    if (!el) return;
    if (el.textContent !== text) el.textContent = text;
    if (raw !== undefined) {
      const v = raw === null || raw === undefined ? "" : String(raw);
      if (el.getAttribute("data-value") !== v) el.setAttribute("data-value", v);
    }
  }
  function setClass(el, cls, on) {
    if (el && el.classList.contains(cls) !== on) el.classList.toggle(cls, on);
  }

  // Plain integer, no separators (for the figures a test reads).
  const fmtInt = (v) => (num(v) === null ? DASH : String(Math.round(v)));
  // Integer with thousands separators, for reading.
  const fmtCount = (v) => (num(v) === null ? DASH : Math.round(v).toLocaleString("en-US"));
  function fmtRate(v) {
    v = num(v);
    if (v === null) return DASH;
    const a = Math.abs(v);
    return a < 10 ? v.toFixed(2) : a < 1000 ? v.toFixed(1) : v.toFixed(0);
  }
  function fmtMs(v) {
    v = num(v);
    if (v === null) return DASH;
    const a = Math.abs(v);
    return a < 1 ? v.toFixed(2) : a < 100 ? v.toFixed(1) : v.toFixed(0);
  }
  function fmtDuration(v) {
    v = num(v);
    if (v === null) return DASH;
    return Math.abs(v) < 1000 ? fmtMs(v) + " ms" : (v / 1000).toFixed(2) + " s";
  }
  function fmtBytes(v) {
    v = num(v);
    if (v === null) return DASH;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? Math.round(v) + " B" : v.toFixed(Math.abs(v) < 10 ? 2 : 1) + " " + units[i];
  }
  function fmtPct(v) {               // v already in percent
    v = num(v);
    if (v === null) return DASH;
    return Math.abs(v) < 10 ? v.toFixed(2) : v.toFixed(1);
  }
  function fmtAge(s) {
    s = num(s);
    if (s === null) return DASH;
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return (s / 3600).toFixed(1) + " h";
  }
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  function fmtClock(ms, withMillis) {
    ms = num(ms);
    if (ms === null) return DASH;
    const d = new Date(ms);
    const t = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    return withMillis ? t + "." + pad(d.getMilliseconds(), 3) : t;
  }
  // Compact axis labels: 1200 -> 1.2k.
  function fmtAxis(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return +(v / 1e3).toFixed(1) + "k";
    return +v.toFixed(a < 1 ? 2 : a < 10 ? 1 : 0) + "";
  }
  const fmtAxisMs = (v) => (Math.abs(v) >= 1000 ? +(v / 1000).toFixed(1) + " s" : fmtAxis(v));
  const fmtAxisPct = (v) => fmtAxis(v) + "%";

  // Error rate of a stats object as a percentage. `error_rate` is a fraction (0..1) of
  // the requests in the last interval; without it, errors_per_s / per_s.
  function errorRatePct(s) {
    const r = obj(obj(s).requests);
    const er = num(r.error_rate);
    if (er !== null) return er * 100;
    const e = num(r.errors_per_s), p = num(r.per_s);
    if (e !== null && p !== null) return p > 0 ? (e / p) * 100 : 0;
    return null;
  }

  function statusClass(status) {
    const s = str(status).toLowerCase();
    if (s === "healthy" || s === "success" || s === "ok") return "ok";
    if (s === "degraded" || s === "warning" || s === "retry" || s === "cancelled" || s === "partial") return "warn";
    if (s === "unhealthy" || s === "error" || s === "failed" || s === "failure" || s === "timeout" ||
        s === "refused" || s === "rate_limited") return "bad";
    return "";
  }

  // ---------------------------------------------------------------- charts

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / e;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * e;
  }

  // A time-series line chart over the last WINDOW_MS of `history` (stats objects).
  // series: [{label, color, value(stats) -> number|null}]
  class TimeChart {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      this.series = opts.series;
      this.axisFmt = opts.axisFormat || fmtAxis;
      this.valueFmt = opts.valueFormat || fmtRate;
      this.minMax = opts.minMax || 1;
      this.fill = !!opts.fill;
      this.points = [];
      this.end = 0;
      this.hoverX = null;
      this.w = 0; this.h = 0;
      this.colors = {
        grid: cssVar("--chart-grid", "#262d37"),
        text: cssVar("--chart-text", "#8b949e"),
        bg: cssVar("--panel-2", "#1c222b"),
        fg: cssVar("--text", "#e6edf3"),
      };
      this.resize = this.resize.bind(this);
      if (typeof ResizeObserver === "function") new ResizeObserver(this.resize).observe(canvas.parentElement);
      window.addEventListener("resize", this.resize);
      canvas.addEventListener("mousemove", (e) => {
        const r = canvas.getBoundingClientRect();
        this.hoverX = e.clientX - r.left;
        this.draw();
      });
      canvas.addEventListener("mouseleave", () => { this.hoverX = null; this.draw(); });
      this.resize();
    }

    resize() {
      const box = this.canvas.parentElement.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, Math.floor(box.width)), h = Math.max(1, Math.floor(box.height));
      if (w === this.w && h === this.h && dpr === this.dpr) return;
      this.w = w; this.h = h; this.dpr = dpr;
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
      this.draw();
    }

    setData(points) {
      this.points = points;
      this.end = points.length ? num(points[points.length - 1].at_ms) || 0 : 0;
      this.draw();
    }

    draw() {
      const ctx = this.ctx, w = this.w, h = this.h, c = this.colors;
      if (!w || !h) return;
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      ctx.font = "11px system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif";
      ctx.textBaseline = "middle";

      const start = this.end - WINDOW_MS;
      const pts = this.points.filter((p) => { const t = num(p.at_ms); return t !== null && t >= start; });
      let max = 0;
      for (const p of pts) for (const s of this.series) {
        const v = num(s.value(p));
        if (v !== null && v > max) max = v;
      }
      const top = Math.max(max * 1.05, this.minMax);
      const step = niceStep(top / 4);
      const yMax = step * Math.ceil(top / step - 1e-9);

      // Plot area, leaving room for the y labels.
      let labelW = 0;
      for (let v = 0; v <= yMax + step / 2; v += step) labelW = Math.max(labelW, ctx.measureText(this.axisFmt(v)).width);
      const L = Math.ceil(labelW) + 10, R = 8, T = 8, B = 20;
      const pw = Math.max(1, w - L - R), ph = Math.max(1, h - T - B);
      const x = (t) => L + ((t - start) / WINDOW_MS) * pw;
      const y = (v) => T + ph - (v / yMax) * ph;

      // Grid and y labels.
      ctx.lineWidth = 1;
      ctx.strokeStyle = c.grid;
      ctx.fillStyle = c.text;
      ctx.textAlign = "right";
      for (let v = 0; v <= yMax + step / 2; v += step) {
        const yy = Math.round(y(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(L + pw, yy); ctx.stroke();
        ctx.fillText(this.axisFmt(v), L - 6, yy);
      }
      // x labels: each minute boundary, clock time.
      ctx.textAlign = "center";
      if (this.end) {
        for (let t = Math.ceil(start / 60000) * 60000; t <= this.end; t += 60000) {
          const xx = Math.round(x(t)) + 0.5;
          ctx.beginPath(); ctx.moveTo(xx, T); ctx.lineTo(xx, T + ph); ctx.stroke();
          const d = new Date(t);
          const lbl = pad(d.getHours()) + ":" + pad(d.getMinutes());
          const tw = ctx.measureText(lbl).width / 2;
          if (xx - tw >= L - 4 && xx + tw <= w) ctx.fillText(lbl, xx, T + ph + 11);
        }
      }

      if (pts.length === 0) {
        ctx.textAlign = "center";
        ctx.fillStyle = c.text;
        ctx.fillText("waiting for data…", L + pw / 2, T + ph / 2);
        return;
      }

      // Series.
      ctx.lineJoin = "round";
      ctx.lineCap = "round";
      for (const s of this.series) {
        const runs = [];           // contiguous runs of [x, y]
        let run = null, prevT = null;
        for (const p of pts) {
          const t = num(p.at_ms), v = num(s.value(p));
          if (v === null || (prevT !== null && t - prevT > GAP_MS)) run = null;
          if (v !== null) {
            if (!run) { run = []; runs.push(run); }
            run.push([x(t), y(v)]);
          }
          prevT = t;
        }
        if (this.fill) {
          const g = ctx.createLinearGradient(0, T, 0, T + ph);
          g.addColorStop(0, hexAlpha(s.color, 0.28));
          g.addColorStop(1, hexAlpha(s.color, 0.02));
          ctx.fillStyle = g;
          for (const r of runs) {
            if (r.length < 2) continue;
            ctx.beginPath();
            ctx.moveTo(r[0][0], T + ph);
            for (const [px, py] of r) ctx.lineTo(px, py);
            ctx.lineTo(r[r.length - 1][0], T + ph);
            ctx.closePath();
            ctx.fill();
          }
        }
        ctx.strokeStyle = s.color;
        ctx.fillStyle = s.color;
        ctx.lineWidth = 1.75;
        for (const r of runs) {
          if (r.length === 1) { ctx.beginPath(); ctx.arc(r[0][0], r[0][1], 1.75, 0, Math.PI * 2); ctx.fill(); continue; }
          ctx.beginPath();
          ctx.moveTo(r[0][0], r[0][1]);
          for (let i = 1; i < r.length; i++) ctx.lineTo(r[i][0], r[i][1]);
          ctx.stroke();
        }
        const last = runs.length ? runs[runs.length - 1] : null;
        if (last && last.length && num(s.value(pts[pts.length - 1])) !== null) {
          const [lx, ly] = last[last.length - 1];
          ctx.beginPath(); ctx.arc(lx, ly, 3, 0, Math.PI * 2); ctx.fill();
        }
      }

      // Hover: nearest point, its time and values.
      if (this.hoverX !== null && this.hoverX >= L && this.hoverX <= L + pw) {
        const tHover = start + ((this.hoverX - L) / pw) * WINDOW_MS;
        let best = null;
        for (const p of pts) if (!best || Math.abs(p.at_ms - tHover) < Math.abs(best.at_ms - tHover)) best = p;
        if (best) {
          const bx = Math.round(x(best.at_ms)) + 0.5;
          ctx.strokeStyle = c.text;
          ctx.setLineDash([3, 3]);
          ctx.beginPath(); ctx.moveTo(bx, T); ctx.lineTo(bx, T + ph); ctx.stroke();
          ctx.setLineDash([]);
          const lines = [fmtClock(best.at_ms)];
          for (const s of this.series) lines.push(s.label + "  " + this.valueFmt(s.value(best)));
          const lw = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 16;
          const lh = 15, bh = lines.length * lh + 8;
          let bxBox = bx + 8;
          if (bxBox + lw > w - 2) bxBox = bx - 8 - lw;
          ctx.fillStyle = c.bg;
          ctx.strokeStyle = c.grid;
          ctx.fillRect(bxBox, T + 2, lw, bh);
          ctx.strokeRect(bxBox + 0.5, T + 2.5, lw - 1, bh - 1);
          ctx.textAlign = "left";
          lines.forEach((l, i) => {
            ctx.fillStyle = i === 0 ? c.text : this.series[i - 1].color;
            ctx.fillText(l, bxBox + 8, T + 2 + 4 + lh / 2 + i * lh);
          });
        }
      }
    }
  }

  function hexAlpha(hex, a) {
    const m = /^#([0-9a-f]{6})$/i.exec(hex);
    if (!m) return hex;
    const n = parseInt(m[1], 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + a + ")";
  }

  // ---------------------------------------------------------------- state

  const state = {
    connection: "connecting",   // connecting | connected | disconnected
    version: null,
    health: null,
    stats: null,                // the latest stats object
    prevStats: null,
    history: [],                // stats objects, oldest first
    events: [],                 // normalised events, newest first, at most MAX_EVENTS
    suppressed: 0,              // events the agent did not send us since the snapshot
    lastStatsLocal: 0,          // performance.now() of the last stats
    retryAt: 0,                 // performance.now() of the next reconnect attempt
    attempts: 0,
    filter: { service: "", search: "" },
    found: [],          // search results from the agent for filter.search
  };
  let socket = null;
  let retryTimer = null;
  let connectTimer = null;

  // ---------------------------------------------------------------- DOM refs

  const el = {
    conn: $("connection-state"),
    version: $("agent-version"),
    lastUpdate: $("last-update"),
    clients: $("dashboard-clients"),
    framesDropped: $("frames-dropped"),
    healthStatus: $("health-status"),
    healthComponents: $("health-components"),
    healthTime: $("health-time"),
    throughput: $("throughput-value"),
    requestsTotal: $("requests-total"),
    errorRate: $("error-rate-value"),
    errorsPerS: $("errors-per-s"),
    errorsTotal: $("errors-total"),
    p50: $("latency-p50"), p95: $("latency-p95"), p99: $("latency-p99"),
    tokensBody: document.querySelector("#tokens tbody"),
    tokensEmpty: $("tokens-empty"),
    pipeReceived: $("pipe-received"), pipeLost: $("pipe-lost"), pipeDropped: $("pipe-dropped"),
    pipeIngest: $("pipe-ingest"), pipeReasons: $("pipe-dropped-reasons"), pipeDaemons: $("pipe-daemons"),
    pipeDaemonsHead: $("pipe-daemons-head"),
    dConn: $("daemon-connections"), dInFlight: $("daemon-in-flight"), dRss: $("daemon-rss"), dCpu: $("daemon-cpu"),
    eventsBody: document.querySelector("#events tbody"),
    eventsEmpty: $("events-empty"),
    eventsShown: $("events-shown"), eventsKept: $("events-kept"), eventsSuppressed: $("events-suppressed"),
    filter: $("event-service-filter"),
    search: $("event-search"),
    cards: {},
  };
  for (const name of SERVICES) {
    const card = document.querySelector('.service-card[data-service="' + name + '"]');
    el.cards[name] = card && {
      card,
      events: card.querySelector(".events"), errors: card.querySelector(".errors"),
      perS: card.querySelector(".per-s"), latency: card.querySelector(".latency"),
      bytes: card.querySelector(".bytes"), tag: card.querySelector(".tag"),
    };
  }

  const charts = {
    throughput: new TimeChart($("chart-throughput"), {
      series: [{ label: "req/s", color: cssVar("--chart-line", "#58a6ff"), value: (s) => obj(s.requests).per_s }],
      fill: true, minMax: 1, valueFormat: (v) => fmtRate(v) + " /s",
    }),
    errors: new TimeChart($("chart-errors"), {
      series: [{ label: "errors", color: cssVar("--chart-err", "#f85149"), value: errorRatePct }],
      fill: true, minMax: 1, axisFormat: fmtAxisPct, valueFormat: (v) => fmtPct(v) + " %",
    }),
    latency: new TimeChart($("chart-latency"), {
      series: ["p50", "p95", "p99"].map((k) => ({
        label: k, color: cssVar("--" + k, "#58a6ff"), value: (s) => obj(s.latency_ms)[k],
      })),
      minMax: 1, axisFormat: fmtAxisMs, valueFormat: fmtDuration,
    }),
  };

  // ---------------------------------------------------------------- connection

  function wsUrl() {
    return (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws";
  }

  function setConnection(s) {
    state.connection = s;
    if (el.conn.getAttribute("data-state") !== s) el.conn.setAttribute("data-state", s);
    document.body.classList.toggle("offline", s !== "connected");
    renderConnectionText();
  }

  function renderConnectionText() {
    let text;
    const now = performance.now();
    switch (state.connection) {
      case "connected": {
        const quiet = state.lastStatsLocal ? now - state.lastStatsLocal : 0;
        const stale = quiet > STALE_MS;
        setClass(el.conn, "stale", stale);
        text = stale ? "Live · no data for " + Math.round(quiet / 1000) + " s" : "Live";
        break;
      }
      case "disconnected": {
        setClass(el.conn, "stale", false);
        const left = Math.max(0, Math.ceil((state.retryAt - now) / 1000));
        text = left > 0 ? "Disconnected · retry in " + left + " s" : "Disconnected · retrying…";
        break;
      }
      default:
        setClass(el.conn, "stale", false);
        text = state.attempts > 0 ? "Connecting… (attempt " + (state.attempts + 1) + ")" : "Connecting…";
    }
    setText(el.conn, text);
    el.conn.title = wsUrl();
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    setConnection("connecting");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    clearTimeout(connectTimer);
    connectTimer = setTimeout(() => { if (ws.readyState === WebSocket.CONNECTING) ws.close(); }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (socket !== ws) return;
      clearTimeout(connectTimer);
      state.attempts = 0;
      state.lastStatsLocal = performance.now();
      setConnection("connected");
      sendSearch();
    };
    ws.onmessage = (m) => { if (socket === ws) onMessage(m.data); };
    ws.onerror = () => { /* onclose follows and handles it */ };
    ws.onclose = () => {
      if (socket !== ws) return;
      clearTimeout(connectTimer);
      socket = null;
      scheduleReconnect();
    };
  }

  // Exponential backoff with jitter: 0.5 s, 1 s, 2 s … up to 10 s, each drawn from
  // [d/2, d] so many pages do not come back in step; reset by a successful open.
  function scheduleReconnect() {
    const d = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempts));
    const delay = d / 2 + Math.random() * (d / 2);
    state.attempts++;
    state.retryAt = performance.now() + delay;
    setConnection("disconnected");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  // ---------------------------------------------------------------- messages

  function onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (e) { return; }
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "snapshot": onSnapshot(msg); break;
      case "stats": onStats(msg); break;
      case "events": onEvents(msg); break;
      case "search_result": onSearchResult(msg); break;
      case "health":
        state.health = msg.health !== undefined ? msg.health : null;
        renderHealth();
        break;
      default: break;   // unknown frame types are ignored
    }
  }

  function onSnapshot(msg) {
    state.version = msg.version === undefined ? null : msg.version;
    state.health = msg.health === undefined ? null : msg.health;
    const hist = arr(msg.history).filter((s) => s && typeof s === "object" && num(s.at_ms) !== null);
    const cur = msg.stats && typeof msg.stats === "object" ? msg.stats : null;
    if (cur && num(cur.at_ms) !== null && (!hist.length || hist[hist.length - 1].at_ms !== cur.at_ms)) hist.push(cur);
    state.history = hist.slice(-MAX_HISTORY);
    state.stats = cur || (hist.length ? hist[hist.length - 1] : null);
    state.prevStats = hist.length > 1 ? hist[hist.length - 2] : null;
    state.lastStatsLocal = performance.now();
    state.suppressed = 0;
    for (const e of state.events) e.evicted = true;
    state.events = [];
    eventsFull = true;
    addEvents(arr(msg.events), false);
    setText(el.version, state.version === null ? DASH : "v" + str(state.version).replace(/^v/, ""));
    renderHealth();
    renderStats();
  }

  function onStats(msg) {
    if (num(msg.at_ms) === null) return;
    const s = msg;
    const h = state.history;
    if (h.length && num(h[h.length - 1].at_ms) !== null && s.at_ms < h[h.length - 1].at_ms - WINDOW_MS) {
      h.length = 0;    // the agent's clock went back a lot: start over
    }
    h.push(s);
    if (h.length > MAX_HISTORY) h.splice(0, h.length - MAX_HISTORY);
    state.prevStats = state.stats;
    state.stats = s;
    state.lastStatsLocal = performance.now();
    renderStats();
  }

  function onEvents(msg) {
    const sup = num(msg.suppressed);
    if (sup !== null && sup > 0) state.suppressed += sup;
    addEvents(arr(msg.events), true);
  }

  // ---------------------------------------------------------------- events table

  let eventsFull = true;          // rebuild the table (filter changed, snapshot)
  let eventsPending = [];         // new events not yet in the table, newest first
  let eventsRaf = 0;

  function normaliseEvent(e) {
    const o = obj(e);
    const cid = str(o.correlation_id);
    return {
      at_ms: num(o.at_ms),
      service: str(o.service),
      kind: str(o.kind),
      correlation_id: cid,
      cidLower: cid.toLowerCase(),
      status: str(o.status),
      latency_ms: num(o.latency_ms),
      summary: str(o.summary),
      fresh: false,
      row: null,
      evicted: false,
    };
  }

  function addEvents(list, fresh) {
    if (!list.length && !eventsFull) { scheduleEventsRender(); return; }
    const incoming = [];
    for (let i = list.length - 1; i >= 0; i--) {     // frames are oldest first
      const ev = normaliseEvent(list[i]);
      ev.fresh = fresh;
      incoming.push(ev);
      if (incoming.length >= MAX_EVENTS) break;
    }
    state.events = incoming.concat(state.events);
    if (state.events.length > MAX_EVENTS) {
      for (const e of state.events.splice(MAX_EVENTS)) e.evicted = true;
    }
    if (!eventsFull) eventsPending = incoming.concat(eventsPending).filter((e) => !e.evicted);
    scheduleEventsRender();
  }

  function scheduleEventsRender() {
    if (eventsRaf) return;
    eventsRaf = requestAnimationFrame(() => { eventsRaf = 0; renderEvents(); });
  }

  function matches(ev) {
    const f = state.filter;
    return (!f.service || ev.service === f.service) && (!f.search || ev.cidLower.includes(f.search));
  }

  function makeRow(ev) {
    const tr = document.createElement("tr");
    tr.dataset.correlationId = ev.correlation_id;
    tr.dataset.service = ev.service;
    const td = (cls, text, title) => {
      const c = document.createElement("td");
      if (cls) c.className = cls;
      c.textContent = text;
      if (title) c.title = title;
      tr.appendChild(c);
      return c;
    };
    td("t", fmtClock(ev.at_ms, true), ev.at_ms === null ? "" : new Date(ev.at_ms).toISOString());
    const svc = td("", "");
    const tag = document.createElement("span");
    tag.className = "svc-tag";
    tag.dataset.s = ev.service;
    tag.textContent = ev.service || DASH;
    svc.appendChild(tag);
    td("", ev.kind || DASH);
    const st = td("st", ev.status || DASH);
    const sc = statusClass(ev.status);
    if (sc) st.classList.add(sc);
    td("num", fmtDuration(ev.latency_ms));
    const cidCell = td("cid", "");
    if (ev.correlation_id) {
      const a = document.createElement("a");
      a.textContent = ev.correlation_id;
      a.title = "show only this correlation id";
      a.href = "#";
      a.addEventListener("click", (e) => {
        e.preventDefault();
        el.search.value = ev.correlation_id;
        onFilterChange();
      });
      cidCell.appendChild(a);
    } else {
      cidCell.textContent = DASH;
      cidCell.classList.add("muted");
    }
    td("sum", ev.summary || DASH);
    if (ev.fresh) {
      tr.classList.add("fresh");
      tr.addEventListener("animationend", () => tr.classList.remove("fresh"), { once: true });
    }
    ev.row = tr;
    tr._ev = ev;
    return tr;
  }

  function renderEvents() {
    const body = el.eventsBody;
    if (eventsFull) {
      eventsFull = false;
      eventsPending = [];
      const frag = document.createDocumentFragment();
      const shown = state.events.filter(matches);
      // Search results from the agent: older than the live rows kept, but asked for.
      const list = state.found.length
        ? shown.concat(state.found.filter(matches)).sort((a, b) => (b.at_ms || 0) - (a.at_ms || 0))
        : shown;
      for (const ev of list) frag.appendChild(ev.row || makeRow(ev));
      body.replaceChildren(frag);
    } else if (eventsPending.length) {
      const frag = document.createDocumentFragment();
      for (const ev of eventsPending) if (!ev.evicted && matches(ev)) frag.appendChild(ev.row || makeRow(ev));
      eventsPending = [];
      body.insertBefore(frag, body.firstChild);
      // Evicted events are the oldest: their rows are at the bottom.
      const kept = new Set(state.events.concat(state.found));
      while (body.lastElementChild && !kept.has(body.lastElementChild._ev)) body.lastElementChild.remove();
    }
    const shown = body.childElementCount;
    setText(el.eventsShown, String(shown));
    setText(el.eventsKept, String(state.events.length));
    setText(el.eventsSuppressed, fmtCount(state.suppressed), state.suppressed);
    el.eventsEmpty.hidden = shown > 0;
    el.eventsEmpty.textContent = state.events.length ? "no events match the filter" : "no events yet";
  }

  function onFilterChange() {
    const search = el.search.value.trim().toLowerCase();
    if (search !== state.filter.search) state.found = [];
    state.filter.service = el.filter.value;
    state.filter.search = search;
    eventsFull = true;
    scheduleEventsRender();
    clearTimeout(searchTimer);
    searchTimer = setTimeout(sendSearch, SEARCH_DEBOUNCE_MS);
  }

  // The live stream shows a rate-limited sliver of a busy second, so a correlation id
  // typed in the search box is also looked up in the agent's recent request events,
  // and again every few seconds while it stays there.
  const SEARCH_DEBOUNCE_MS = 250;
  const SEARCH_REPEAT_MS = 2000;
  let searchTimer = null;

  function sendSearch() {
    const needle = el.search.value.trim();
    if (!needle || !socket || socket.readyState !== WebSocket.OPEN) return;
    try { socket.send(JSON.stringify({ type: "search", correlation_id: needle })); } catch (e) { /* closing */ }
  }
  setInterval(sendSearch, SEARCH_REPEAT_MS);

  function eventKey(e) {
    return e.at_ms + "|" + e.kind + "|" + e.correlation_id + "|" + e.summary;
  }

  // Results are kept apart from the live rows (whose 500-row cap would cut them) and
  // replace the previous results; answers to an earlier search are ignored.
  function onSearchResult(msg) {
    if (str(msg.correlation_id).trim().toLowerCase() !== state.filter.search) return;
    const known = new Set(state.events.map(eventKey));
    state.found = arr(msg.events).map(normaliseEvent).filter((e) => !known.has(eventKey(e)));
    eventsFull = true;
    scheduleEventsRender();
  }
  el.filter.addEventListener("change", onFilterChange);
  el.search.addEventListener("input", onFilterChange);

  // ---------------------------------------------------------------- health

  function componentDetail(name, c) {
    const parts = [];
    const add = (label, v) => { if (v !== null && v !== undefined && v !== "") parts.push(label + v); };
    switch (name) {
      case "storage":
        add("", c.type === undefined ? null : str(c.type));
        if (num(c.latency_ms) !== null) add("", fmtDuration(c.latency_ms));
        break;
      case "supabase":
        if (typeof c.enabled === "boolean") add("", c.enabled ? "enabled" : "disabled");
        if (num(c.spool_depth) !== null) add("spool ", fmtCount(c.spool_depth));
        break;
      case "memory":
        if (num(c.process_memory_mb) !== null) add("process ", c.process_memory_mb.toFixed(1) + " MB");
        if (num(c.system_memory_percent) !== null) add("system ", c.system_memory_percent.toFixed(1) + " %");
        break;
      case "disk":
        if (num(c.disk_percent) !== null) add("", c.disk_percent.toFixed(1) + " % used");
        if (c.path) add("", str(c.path));
        break;
      case "daemon":
        if (typeof c.connected === "boolean") add("", c.connected ? "connected" : "not connected");
        if (num(c.last_event_age_s) !== null) add("last event ", fmtAge(c.last_event_age_s) + " ago");
        break;
      default: break;
    }
    return parts.join(" · ");
  }

  function renderHealth() {
    const h = obj(state.health);
    const status = str(h.status) || "unknown";
    setText(el.healthStatus, h.status ? status : DASH);
    el.healthStatus.setAttribute("data-status", status);
    const comps = obj(h.components);
    const names = COMPONENTS.concat(Object.keys(comps).filter((k) => !COMPONENTS.includes(k)));
    const frag = document.createDocumentFragment();
    for (const name of names) {
      const c = obj(comps[name]);
      const cs = str(c.status) || "unknown";
      const li = document.createElement("li");
      li.setAttribute("data-component", name);
      li.setAttribute("data-status", cs);
      const dot = document.createElement("span"); dot.className = "dot";
      const n = document.createElement("span"); n.className = "name"; n.textContent = name;
      const msg = document.createElement("span"); msg.className = "msg";
      const detail = componentDetail(name, c);
      const message = str(c.message);
      msg.textContent = message || detail || DASH;
      msg.title = [message, detail].filter(Boolean).join(" — ");
      const st = document.createElement("span"); st.className = "st"; st.textContent = c.status ? cs : DASH;
      li.append(dot, n, msg, st);
      frag.appendChild(li);
    }
    el.healthComponents.replaceChildren(frag);
    const when = str(h.timestamp_local) || str(h.timestamp_utc);
    setText(el.healthTime, when ? "checked " + when + (h.timezone ? " (" + str(h.timezone) + ")" : "") : DASH);
  }

  // ---------------------------------------------------------------- stats

  function renderStats() {
    const s = obj(state.stats);
    const prev = obj(state.prevStats);
    const r = obj(s.requests);

    setText(el.throughput, fmtRate(r.per_s), num(r.per_s));
    setText(el.requestsTotal, fmtInt(r.total), num(r.total));
    const erPct = state.stats ? errorRatePct(s) : null;
    setText(el.errorRate, fmtPct(erPct), num(r.error_rate) !== null ? r.error_rate : erPct === null ? null : erPct / 100);
    setClass(el.errorRate, "bad", erPct !== null && erPct >= 5);
    setClass(el.errorRate, "warn", erPct !== null && erPct > 0 && erPct < 5);
    setText(el.errorsPerS, fmtRate(r.errors_per_s));
    setText(el.errorsTotal, fmtCount(r.errors_total), num(r.errors_total));
    const lat = obj(s.latency_ms);
    setText(el.p50, fmtMs(lat.p50), num(lat.p50));
    setText(el.p95, fmtMs(lat.p95), num(lat.p95));
    setText(el.p99, fmtMs(lat.p99), num(lat.p99));

    const svcs = obj(s.services), prevSvcs = obj(prev.services);
    for (const name of SERVICES) {
      const c = el.cards[name];
      if (!c) continue;
      const v = obj(svcs[name]);
      setText(c.events, fmtInt(v.events), num(v.events));
      setText(c.errors, fmtInt(v.errors), num(v.errors));
      setText(c.perS, fmtRate(v.per_s), num(v.per_s));
      setText(c.bytes, fmtBytes(v.bytes), num(v.bytes));
      c.bytes.title = num(v.bytes) === null ? "" : fmtCount(v.bytes) + " bytes";
      const l = obj(v.latency_ms);
      const any = num(l.p50) !== null || num(l.p95) !== null || num(l.p99) !== null;
      setText(c.latency, any ? [l.p50, l.p95, l.p99].map(fmtDuration).join(" / ") : DASH);
      const pe = num(obj(prevSvcs[name]).errors);
      setClass(c.card, "has-errors", pe !== null && num(v.errors) !== null && v.errors > pe);
      if (name === "storage") {
        const b = v.backend;
        const label = b === "memory" ? "in-memory" : b === null || b === undefined || b === "" ? "backend —" : str(b);
        setText(c.tag, label);
        setClass(c.tag, "warn", b === "memory");
      } else if (name === "supabase") {
        const d = num(v.spool_depth);
        setText(c.tag, "spool " + (d === null ? DASH : fmtCount(d)));
        setClass(c.tag, "warn", d !== null && d > 0);
      }
    }

    renderTokens(arr(s.tokens));
    renderPipe(obj(s.pipe));

    const d = obj(s.daemon);
    setText(el.dConn, fmtCount(d.connections), num(d.connections));
    setText(el.dInFlight, fmtCount(d.in_flight), num(d.in_flight));
    setText(el.dRss, fmtBytes(d.rss_bytes), num(d.rss_bytes));
    setText(el.dCpu, num(d.cpu_percent) === null ? DASH : d.cpu_percent.toFixed(1) + " %", num(d.cpu_percent));

    const db = obj(s.dashboard);
    setText(el.clients, fmtCount(db.clients), num(db.clients));
    setText(el.framesDropped, fmtCount(db.frames_dropped), num(db.frames_dropped));
    setText(el.lastUpdate, fmtClock(s.at_ms));

    charts.throughput.setData(state.history);
    charts.errors.setData(state.history);
    charts.latency.setData(state.history);
    renderConnectionText();
  }

  const tokenRows = new Map();   // "provider\0model" -> tr
  function renderTokens(list) {
    const rows = list.map(obj).filter((t) => t !== EMPTY)
      .map((t) => ({ provider: str(t.provider), model: str(t.model), input: num(t.input), output: num(t.output) }))
      .sort((a, b) => a.provider.localeCompare(b.provider) || a.model.localeCompare(b.model));
    const seen = new Set();
    const ordered = [];
    for (const t of rows) {
      const key = t.provider + "\u0000" + t.model;
      if (seen.has(key)) continue;
      seen.add(key);
      let tr = tokenRows.get(key);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.provider = t.provider;
        tr.dataset.model = t.model;
        for (const cls of ["", "model", "num", "num", "num"]) {
          const td = document.createElement("td");
          if (cls) td.className = cls;
          tr.appendChild(td);
        }
        tokenRows.set(key, tr);
      }
      const c = tr.children;
      setText(c[0], t.provider || DASH);
      setText(c[1], t.model || DASH);
      setText(c[2], fmtCount(t.input), t.input);
      setText(c[3], fmtCount(t.output), t.output);
      setText(c[4], t.input === null && t.output === null ? DASH : fmtCount((t.input || 0) + (t.output || 0)));
      ordered.push(tr);
    }
    for (const [key, tr] of tokenRows) if (!seen.has(key)) { tr.remove(); tokenRows.delete(key); }
    const body = el.tokensBody;
    const same = body.children.length === ordered.length && ordered.every((tr, i) => body.children[i] === tr);
    if (!same) body.replaceChildren(...ordered);
    el.tokensEmpty.hidden = ordered.length > 0;
  }

  function kvItem(k, v, cls, title) {
    const li = document.createElement("li");
    const a = document.createElement("span"); a.className = "k"; a.textContent = k;
    const b = document.createElement("span"); b.className = "v" + (cls ? " " + cls : ""); b.textContent = v;
    if (title) a.title = title;
    li.append(a, b);
    return li;
  }

  function renderPipe(p) {
    setText(el.pipeReceived, fmtCount(p.received), num(p.received));
    setText(el.pipeLost, fmtCount(p.lost), num(p.lost));
    setClass(el.pipeLost, "bad", (num(p.lost) || 0) > 0);
    setText(el.pipeIngest, fmtRate(p.ingest_per_s), num(p.ingest_per_s));

    let sum = null;
    const reasons = [];
    if (num(p.dropped) !== null) sum = p.dropped;
    else {
      const d = obj(p.dropped);
      for (const k of Object.keys(d)) {
        const v = num(d[k]);
        reasons.push([k, v]);
        if (v !== null) sum = (sum || 0) + v;
      }
    }
    setText(el.pipeDropped, fmtCount(sum), sum);
    setClass(el.pipeDropped, "warn", (sum || 0) > 0);
    const rf = document.createDocumentFragment();
    for (const [k, v] of reasons) rf.appendChild(kvItem(k.replace(/_/g, " "), fmtCount(v), v > 0 ? "warn" : ""));
    if (!reasons.length) { const li = document.createElement("li"); li.className = "none"; li.textContent = DASH; rf.appendChild(li); }
    el.pipeReasons.replaceChildren(rf);

    const df = document.createDocumentFragment();
    const daemons = arr(p.daemons).map(obj);
    const connected = daemons.filter((d) => d.connected === true).length;
    for (const d of daemons) {
      const inst = str(d.daemon) || str(d.instance) || "?";
      const short = inst.length > 14 ? inst.slice(0, 12) + "…" : inst;
      const on = d.connected === true;
      const age = num(d.last_event_age_s);
      const v = (on ? "connected" : "disconnected") + " · last event " + (age === null ? DASH : fmtAge(age) + " ago");
      df.appendChild(kvItem(short, v, on ? (age !== null && age > 10 ? "warn" : "ok") : "bad", inst));
    }
    if (!daemons.length) { const li = document.createElement("li"); li.className = "none"; li.textContent = "no daemon connected"; df.appendChild(li); }
    el.pipeDaemons.replaceChildren(df);
    setText(el.pipeDaemonsHead, "daemons · " + connected + " connected");
  }

  // ---------------------------------------------------------------- start

  // Once a second: connection text (retry countdown, staleness).
  setInterval(renderConnectionText, 1000);

  renderHealth();
  renderStats();
  renderEvents();

  window.exaiDashboard = {
    state,
    get socket() { return socket; },
    charts,
    reconnect() { if (socket) socket.close(); else connect(); },
  };

  connect();
})();
