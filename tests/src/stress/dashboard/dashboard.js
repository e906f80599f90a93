// The pipeline-stress dashboard: plain JavaScript and <canvas>, no library, no build
// step. It reads the control plane (/api/events, /api/decisions, /api/config,
// /api/controller) and the demo's workload routes (/api/workload,
// /api/workload/history), with a bearer token when the server asks for one.
"use strict";

// Script errors are collected for the browser test (and anyone with a console).
window.dashboardErrors = [];
window.addEventListener("error", (e) => window.dashboardErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.dashboardErrors.push(String(e.reason)));

(() => {
  const WINDOW_SECS = 300; // the charts show the last five minutes
  const MAX_DECISIONS = 200; // decisions kept in the list
  const POLL_MS = 1000; // workload and history poll
  const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];
  const MODE_COLORS = { normal: "#2e9d5b", throttled: "#e59a1c", defensive: "#d93838", off: "#9aa1ab" };

  const state = {
    token: sessionStorage.getItem("pipeline-token") || "",
    started: false,
    workload: null,
    status: null,
    samples: [],
    stages: [],
    decisions: [], // newest last
    lastSeq: 0,
    params: [],
    config: null,
    userRateAt: {}, // topic -> time of the user's last slider move
    togglePending: false,
    ratePosts: Promise.resolve(),
  };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- numbers -----------------------------------------------------------------------

  function compact(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
    return v.toFixed(a >= 10 ? 1 : 2);
  }
  const mib = (bytes) => (bytes === null || bytes === undefined ? null : bytes / 1048576);
  /** "12 / 256 MiB": whole MiB (one decimal below 10). */
  function mibText(used, limit) {
    const f = (b) => {
      const m = mib(b);
      return m < 10 ? m.toFixed(1) : compact(Math.round(m));
    };
    return f(used) + (limit ? " / " + f(limit) : "");
  }

  // ---- the API -----------------------------------------------------------------------

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.token) h.Authorization = "Bearer " + state.token;
    return h;
  }

  /** One API call: `{status, ok, data}`, `data` the JSON answer (or `{message}`). */
  async function api(method, path, body) {
    const init = { method, headers: headers() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return { status: 0, ok: false, data: { message: "the server did not answer (" + e.message + ")" } };
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = { message: text };
    }
    if (res.status === 401) askForToken();
    return { status: res.status, ok: res.ok, data };
  }

  function askForToken() {
    $("auth").hidden = false;
    $("token").focus();
  }

  $("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("pipeline-token", state.token);
    $("auth").hidden = true;
    start();
  });

  // ---- the event stream (fetch, so the token can go in a header) ---------------------

  async function streamEvents() {
    for (;;) {
      try {
        const res = await fetch("/api/events?since=" + state.lastSeq, { headers: headers() });
        if (res.status === 401) {
          setConnection(false);
          askForToken();
          return;
        }
        if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
        setConnection(true);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            onSseBlock(block);
          }
        }
      } catch (e) {
        // Reconnect below.
      }
      setConnection(false);
      await sleep(2000);
    }
  }

  function onSseBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length === 0) return;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch (e) {
      return;
    }
    if (event === "status") onStatus(payload);
    else if (event === "decision") onDecision(payload, true);
  }

  function setConnection(live) {
    const el = $("connection");
    el.classList.toggle("live", live);
    el.textContent = live ? "live" : "offline";
  }

  // ---- status: tiles, badge, switch -------------------------------------------------

  function onStatus(s) {
    state.status = s;
    const stages = s.stages || [];
    const workers = stages.reduce((n, st) => n + st.workers, 0);
    $("workers").textContent = String(workers);
    $("workers").dataset.workers = String(workers);
    $("workers-detail").textContent = stages
      .map((st) => st.name + " " + st.workers + " (" + st.min_workers + "–" + st.max_workers + ")")
      .join(", ");
    const len = stages.reduce((n, st) => n + st.len, 0);
    const cap = stages.reduce((n, st) => n + st.capacity, 0);
    $("buffer").textContent = compact(len) + " / " + compact(cap);
    $("buffer-detail").textContent = stages
      .map((st) => st.name + " " + st.min_capacity + "–" + st.max_capacity)
      .join(", ");
    const used = s.memory && s.memory.used_bytes;
    const limit = s.memory && s.memory.limit_bytes;
    if (used !== null && used !== undefined) {
      $("memory").textContent = mibText(used, limit);
      $("memory-detail").textContent = limit ? ((100 * used) / limit).toFixed(0) + "% of the limit" : "no limit known";
    }
    $("rate-limit").textContent = s.publish_rate_limit === null ? "none" : compact(s.publish_rate_limit) + "/s";
    const mode = s.controller_enabled ? s.mode : "off";
    const badge = $("mode-badge");
    badge.textContent = s.controller_enabled ? s.mode : "controller off";
    badge.className = "badge " + mode;
    if (!state.togglePending) $("controller-toggle").checked = !!s.controller_enabled;
  }

  // ---- decisions ---------------------------------------------------------------------

  function decisionText(d) {
    // The log's own "[   1.0s] " prefix: the list shows its own time.
    return String(d.text || "").replace(/^\[\s*[\d.]+s\]\s*/, "");
  }

  function onDecision(d, live) {
    if (d.seq <= state.lastSeq) return;
    state.lastSeq = d.seq;
    state.decisions.push(d);
    if (state.decisions.length > MAX_DECISIONS) state.decisions.shift();
    if (live) renderDecisions();
  }

  function renderDecisions() {
    const showHolds = $("show-holds").checked;
    const list = $("decisions");
    list.textContent = "";
    for (let i = state.decisions.length - 1; i >= 0; i--) {
      const d = state.decisions[i];
      if (d.kind === "hold" && !showHolds) continue;
      const li = document.createElement("li");
      const t = document.createElement("span");
      t.className = "t";
      t.textContent = d.since_start_secs.toFixed(1) + " s";
      const kind = document.createElement("span");
      const refused = d.kind === "action" && d.applied === false;
      kind.className = "kind " + (refused ? "refused" : d.kind);
      kind.textContent = refused ? "refused" : d.kind;
      const text = document.createElement("span");
      text.textContent = decisionText(d);
      li.append(t, kind, text);
      if (d.reason) li.title = d.reason;
      if (refused && d.error) {
        const why = document.createElement("span");
        why.className = "reason";
        why.textContent = d.error;
        li.append(why);
      }
      list.append(li);
    }
  }
  $("show-holds").addEventListener("change", renderDecisions);

  async function loadDecisions() {
    // The latest MAX_DECISIONS records, then the stream from there.
    const head = await api("GET", "/api/decisions?since=18446744073709551615");
    if (!head.ok) return false;
    const since = Math.max(0, head.data.last_seq - MAX_DECISIONS);
    const page = await api("GET", "/api/decisions?since=" + since);
    if (!page.ok) return false;
    for (const d of page.data.decisions) onDecision(d, false);
    state.lastSeq = Math.max(state.lastSeq, page.data.last_seq);
    renderDecisions();
    return true;
  }

  // ---- workload: rates, sliders ------------------------------------------------------

  function renderRateControls(w) {
    const box = $("rates");
    if (box.dataset.ready === "1") return;
    box.textContent = "";
    w.patterns.forEach((p, i) => {
      const div = document.createElement("div");
      div.className = "rate-control";
      const step = p.slider_max / 100;
      div.innerHTML =
        '<label for="rate-' + i + '"></label>' +
        '<div class="row"><input type="range" id="rate-' + i + '" min="0" max="' + p.slider_max +
        '" step="' + step + '">' +
        '<input type="number" id="rate-' + i + '-value" min="0" max="' + w.max_rate + '" step="any">' +
        "<span>/s</span></div>" +
        '<div class="hint" id="rate-' + i + '-hint"></div>' +
        '<div class="error" id="rate-' + i + '-error"></div>';
      div.querySelector("label").textContent = "offered rate of " + p.topic + " (base, events/s)";
      box.append(div);
      const slider = div.querySelector('input[type="range"]');
      const number = div.querySelector('input[type="number"]');
      slider.dataset.topic = p.topic;
      slider.addEventListener("input", () => {
        state.userRateAt[p.topic] = Date.now();
        number.value = slider.value;
      });
      slider.addEventListener("change", () => setRate(i, p.topic, Number(slider.value)));
      number.addEventListener("change", () => {
        state.userRateAt[p.topic] = Date.now();
        // Sent as typed: the server names what is wrong with it.
        const v = number.value.trim();
        setRate(i, p.topic, v === "" || isNaN(Number(v)) ? v : Number(v));
      });
    });
    box.dataset.ready = "1";
  }

  /** Posts a rate after the ones before it have been answered, so the user's last
   * move is the one in force. */
  function setRate(i, topic, rate) {
    state.userRateAt[topic] = Date.now();
    state.ratePosts = state.ratePosts.then(() => postRate(i, topic, rate));
    return state.ratePosts;
  }

  async function postRate(i, topic, rate) {
    const body = { rate };
    if (state.workload && state.workload.patterns.length > 1) body.topic = topic;
    const res = await api("POST", "/api/workload", body);
    const err = $("rate-" + i + "-error");
    if (res.ok) {
      err.textContent = "";
      onWorkload(res.data, true);
    } else {
      const errors = (res.data && res.data.errors) || [];
      err.textContent = errors.length
        ? errors.map((e) => (e.path ? e.path + ": " : "") + e.message).join("; ")
        : (res.data && res.data.message) || "HTTP " + res.status;
    }
  }

  function onWorkload(w, force) {
    state.workload = w;
    renderRateControls(w);
    $("scenario").textContent = "scenario " + w.scenario + (w.description ? " — " + w.description : "");
    $("clock").textContent = w.since_start_secs.toFixed(0) + " s";
    w.patterns.forEach((p, i) => {
      const slider = $("rate-" + i);
      const number = $("rate-" + i + "-value");
      const recent = Date.now() - (state.userRateAt[p.topic] || 0) < 2000;
      if (force || (!recent && document.activeElement !== number)) {
        slider.value = String(Math.min(p.rate, p.slider_max));
        number.value = String(p.rate);
      }
      slider.dataset.rate = String(p.rate);
      const factor = p.rate > 0 ? p.offered_rate / p.rate : 1;
      $("rate-" + i + "-hint").textContent =
        "set " + compact(p.rate) + "/s; offered now " + compact(p.offered_rate) + "/s" +
        (Math.abs(factor - 1) > 1e-9 ? " (the scenario's shape gives ×" + compact(factor) + " now)" : "");
    });
  }

  // ---- history and charts ------------------------------------------------------------

  function onSamples(h) {
    state.stages = h.stages;
    for (const s of h.samples) state.samples.push(s);
    const last = state.samples.length ? state.samples[state.samples.length - 1].t : 0;
    while (state.samples.length && state.samples[0].t < last - WINDOW_SECS) state.samples.shift();
    const s = state.samples[state.samples.length - 1];
    if (s) {
      $("offered-rate").textContent = compact(s.offered_rate);
      $("published-rate").textContent = compact(s.published_rate);
      $("handled-rate").textContent = compact(s.handled_rate);
      if (!state.status || state.status.memory.used_bytes === null) {
        $("memory").textContent = mibText(s.memory_bytes, s.memory_limit);
      }
    }
    drawAll();
  }

  function legend(id, items) {
    const el = $(id);
    const key = JSON.stringify(items);
    if (el.dataset.key === key) return;
    el.dataset.key = key;
    el.textContent = "";
    for (const it of items) {
      const span = document.createElement("span");
      const k = document.createElement("span");
      k.className = "key" + (it.dash ? " dashed" : "") + (it.box ? " box" : "");
      if (it.box) k.style.background = it.color;
      else k.style.borderTopColor = it.color;
      span.append(k, document.createTextNode(it.name));
      el.append(span);
    }
  }

  /** Gridline spacing for values up to `max`: 1, 2 or 5 times a power of ten giving
   * at most four intervals (whole numbers only for counts). */
  function gridStep(max, whole) {
    const raw = max > 0 ? max / 4 : 0.25;
    const unit = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * unit;
    for (const m of [1, 2, 5]) {
      if (m * unit >= raw) {
        step = m * unit;
        break;
      }
    }
    return whole ? Math.max(1, Math.round(step)) : step;
  }

  function sizeCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  function timeRange() {
    const n = state.samples.length;
    const t1 = n ? state.samples[n - 1].t : WINDOW_SECS;
    return [Math.max(0, t1 - WINDOW_SECS), Math.max(t1, 1)];
  }

  /** A line chart of `series` ({name, color, dash, values}) over the samples' times;
   * `markers` are decision times drawn as thin vertical lines. */
  function lineChart(canvas, series, markers, format, whole) {
    const { ctx, w, h } = sizeCanvas(canvas);
    const pad = { l: 48, r: 8, t: 6, b: 18 };
    const [t0, t1] = timeRange();
    let ymax = 0;
    for (const s of series) for (const v of s.values) if (v !== null && isFinite(v)) ymax = Math.max(ymax, v);
    const step = gridStep(ymax * 1.05, whole);
    const lines = Math.max(1, Math.ceil((ymax * 1.05) / step));
    ymax = step * lines;
    const x = (t) => pad.l + ((t - t0) / (t1 - t0 || 1)) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / ymax) * (h - pad.t - pad.b);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    ctx.strokeStyle = "#e3e6ea";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= lines; i++) {
      const v = step * i;
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(y(v)) + 0.5);
      ctx.lineTo(w - pad.r, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillText(format ? format(v) : compact(v), pad.l - 6, y(v));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const span = t1 - t0;
    const every = span > 240 ? 60 : span > 120 ? 30 : span > 40 ? 10 : span > 12 ? 5 : 1;
    for (let t = Math.ceil(t0 / every) * every; t <= t1; t += every) ctx.fillText(t + " s", x(t), h - pad.b + 4);
    ctx.save();
    ctx.setLineDash([2, 3]);
    for (const m of markers) {
      if (m.t < t0 || m.t > t1) continue;
      ctx.strokeStyle = m.color;
      ctx.beginPath();
      ctx.moveTo(Math.round(x(m.t)) + 0.5, pad.t);
      ctx.lineTo(Math.round(x(m.t)) + 0.5, h - pad.b);
      ctx.stroke();
    }
    ctx.restore();
    const times = state.samples.map((s) => s.t);
    for (const s of series) {
      ctx.save();
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width || 2;
      if (s.dash) ctx.setLineDash([6, 4]);
      ctx.beginPath();
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null || !isFinite(v)) {
          pen = false;
          return;
        }
        if (pen) ctx.lineTo(x(times[i]), y(v));
        else ctx.moveTo(x(times[i]), y(v));
        pen = true;
      });
      ctx.stroke();
      ctx.restore();
    }
  }

  function markers(filter, color) {
    return state.decisions
      .filter((d) => (d.kind === "action" && d.applied !== false && filter(d)) || (d.kind === "mode" && filter(d)))
      .map((d) => ({ t: d.since_start_secs, color: d.kind === "mode" ? "#d93838" : color }));
  }

  function drawAll() {
    const S = state.samples;
    const rates = [
      { name: "offered", color: "#7c3aed", values: S.map((s) => s.offered_rate) },
      { name: "published", color: "#2563eb", values: S.map((s) => s.published_rate) },
      { name: "handled", color: "#059669", values: S.map((s) => s.handled_rate) },
      { name: "set rate × shape", color: "#9aa1ab", dash: true, width: 1.5, values: S.map((s) => s.target_rate) },
      {
        name: "publish-rate limit",
        color: "#d97706",
        dash: true,
        width: 1.5,
        values: S.map((s) => (s.publish_rate_limit === null ? null : s.publish_rate_limit)),
      },
    ];
    legend("legend-rates", rates.map((s) => ({ name: s.name, color: s.color, dash: s.dash })));
    lineChart($("chart-rates"), rates, markers((d) => d.knob === "publish rate", "#d97706"));

    const buffer = [];
    const workers = [];
    state.stages.forEach((name, i) => {
      const color = COLORS[i % COLORS.length];
      buffer.push({ name: name + " buffered", color, values: S.map((s) => (s.stages[i] ? s.stages[i].len : null)) });
      buffer.push({
        name: name + " capacity",
        color,
        dash: true,
        width: 1.5,
        values: S.map((s) => (s.stages[i] ? s.stages[i].capacity : null)),
      });
      workers.push({ name, color, values: S.map((s) => (s.stages[i] ? s.stages[i].workers : null)) });
    });
    legend("legend-buffer", buffer.map((s) => ({ name: s.name, color: s.color, dash: s.dash })));
    lineChart($("chart-buffer"), buffer, markers((d) => String(d.knob).startsWith("buffer"), "#2563eb"), null, true);
    legend("legend-workers", workers.map((s) => ({ name: s.name, color: s.color })));
    lineChart($("chart-workers"), workers, markers((d) => String(d.knob).startsWith("pool"), "#2563eb"), String, true);

    const memory = [
      { name: "in use", color: "#2563eb", values: S.map((s) => mib(s.memory_bytes)) },
      { name: "limit", color: "#d93838", dash: true, width: 1.5, values: S.map((s) => mib(s.memory_limit)) },
    ];
    legend("legend-memory", memory.map((s) => ({ name: s.name, color: s.color, dash: s.dash })));
    lineChart($("chart-memory"), memory, []);

    drawModes();
  }

  function drawModes() {
    const { ctx, w, h } = sizeCanvas($("chart-mode"));
    const pad = { l: 48, r: 8 };
    const [t0, t1] = timeRange();
    const x = (t) => pad.l + ((t - t0) / (t1 - t0 || 1)) * (w - pad.l - pad.r);
    const S = state.samples;
    for (let i = 0; i < S.length; i++) {
      const a = Math.max(t0, i ? S[i - 1].t : S[i].t - 1);
      const b = S[i].t;
      if (b < t0) continue;
      const mode = S[i].controller_enabled ? S[i].mode : "off";
      ctx.fillStyle = MODE_COLORS[mode] || MODE_COLORS.off;
      ctx.fillRect(x(a), 4, Math.max(1, x(b) - x(a) + 0.5), h - 8);
    }
    legend(
      "legend-mode",
      Object.entries(MODE_COLORS).map(([name, color]) => ({
        name: name === "off" ? "controller off" : name,
        color,
        box: true,
      })),
    );
  }
  window.addEventListener("resize", drawAll);

  async function poll() {
    let since = -1;
    for (;;) {
      const w = await api("GET", "/api/workload");
      if (w.status === 401) return;
      if (w.ok) onWorkload(w.data, false);
      const h = await api("GET", "/api/workload/history" + (since >= 0 ? "?since=" + since : ""));
      if (h.ok) {
        onSamples(h.data);
        if (state.samples.length) since = state.samples[state.samples.length - 1].t;
      }
      await sleep(POLL_MS);
    }
  }

  // ---- the controller switch ---------------------------------------------------------

  $("controller-toggle").addEventListener("change", async (e) => {
    state.togglePending = true;
    const res = await api("POST", "/api/controller", { enabled: e.target.checked });
    state.togglePending = false;
    const note = $("controller-note");
    if (res.ok) {
      note.textContent = "";
      e.target.checked = res.data.enabled;
    } else {
      note.textContent = (res.data && res.data.message) || "HTTP " + res.status;
      e.target.checked = !e.target.checked;
      if (res.status === 409) e.target.disabled = true;
    }
  });

  // ---- live parameters ---------------------------------------------------------------

  /** Leaves of a nested object as [dotted path, value]. */
  function flatten(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix ? prefix + "." + k : k;
      if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v, path, out);
      else out.push([path, v]);
    }
    return out;
  }

  function paramFor(path) {
    const generic = path.replace(/^stages\.[^.]+\./, "stages.<name>.");
    return state.params.find((p) => p.path === generic);
  }

  function fieldId(path) {
    return "cfg-" + path.replace(/[^A-Za-z0-9_-]/g, "_");
  }

  function renderConfig(config) {
    state.config = config;
    const root = $("config-fields");
    root.className = "";
    root.textContent = "";
    // In the parameter table's order (initial, min, max; as docs/configuration.md).
    const rank = (path) => {
      const generic = path.replace(/^stages\.[^.]+\./, "stages.<name>.");
      const i = state.params.findIndex((p) => p.path === generic);
      return i < 0 ? state.params.length : i;
    };
    const leaves = flatten(config, "", []).sort((a, b) => rank(a[0]) - rank(b[0]));
    const groups = [];
    for (const name of Object.keys(config.stages || {})) {
      groups.push({ title: "stage " + name, prefix: "stages." + name + ".", open: true });
    }
    groups.push({ title: "controller", prefix: "controller.", open: true });
    groups.push({ title: "policy", prefix: "policy.", open: false });
    for (const g of groups) {
      const set = document.createElement("fieldset");
      const legendEl = document.createElement("legend");
      legendEl.textContent = g.title;
      set.append(legendEl);
      let holder = set;
      if (!g.open) {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = "all " + g.title + " parameters";
        details.append(summary);
        set.append(details);
        holder = details;
      }
      for (const [path, value] of leaves) {
        if (!path.startsWith(g.prefix)) continue;
        holder.append(fieldRow(path, path.slice(g.prefix.length), value));
      }
      root.append(set);
    }
  }

  function fieldRow(path, short, value) {
    const p = paramFor(path);
    const row = document.createElement("div");
    row.className = "field";
    row.dataset.path = path;
    const label = document.createElement("label");
    label.textContent = short;
    label.htmlFor = fieldId(path);
    let input;
    if (typeof value === "boolean") {
      input = document.createElement("select");
      for (const v of ["true", "false"]) input.append(new Option(v, v));
      input.value = String(value);
    } else if (path.endsWith(".overflow")) {
      input = document.createElement("select");
      for (const v of ["block", "drop_newest", "drop_oldest"]) input.append(new Option(v, v));
      input.value = String(value);
    } else {
      input = document.createElement("input");
      input.type = "text";
      input.value = String(value);
      input.spellcheck = false;
    }
    input.id = fieldId(path);
    input.dataset.path = path;
    input.dataset.original = String(value);
    input.dataset.type = typeof value;
    const range = document.createElement("span");
    range.className = "range";
    if (p) {
      range.textContent = p.unit + (p.range ? ", " + p.range : "");
      if (p.critical) {
        input.disabled = true;
        range.textContent += " (needs a restart)";
      }
    }
    if (short.endsWith("initial")) range.textContent += " (read at start)";
    const error = document.createElement("div");
    error.className = "error";
    error.id = fieldId(path) + "-error";
    row.append(label, input, range, error);
    return row;
  }

  function clearErrors() {
    for (const row of document.querySelectorAll(".field.invalid")) row.classList.remove("invalid");
    for (const el of document.querySelectorAll(".field .error")) el.textContent = "";
    const msg = $("config-message");
    msg.textContent = "";
    msg.className = "";
  }

  function configMessage(text, ok) {
    const msg = $("config-message");
    msg.textContent = text;
    msg.className = ok ? "ok" : "bad";
  }

  async function loadConfig() {
    const params = await api("GET", "/dashboard/parameters.json");
    if (params.ok) state.params = params.data;
    const res = await api("GET", "/api/config");
    if (res.ok) renderConfig(res.data.config);
    else $("config-fields").textContent = (res.data && res.data.message) || "HTTP " + res.status;
  }

  $("config-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    const patch = {};
    for (const input of document.querySelectorAll("#config-fields [data-path]")) {
      if (input.tagName === "DIV" || input.disabled) continue;
      const raw = input.value.trim();
      if (raw === input.dataset.original) continue;
      let value = raw;
      if (input.dataset.type === "number" && raw !== "" && isFinite(Number(raw))) value = Number(raw);
      else if (input.dataset.type === "boolean" && (raw === "true" || raw === "false")) value = raw === "true";
      patch[input.dataset.path] = value; // anything else is sent as typed: the server names it
    }
    if (Object.keys(patch).length === 0) {
      configMessage("nothing changed", true);
      return;
    }
    const res = await api("PATCH", "/api/config", patch);
    if (res.ok) {
      configMessage("applied: version " + res.data.version, true);
      const again = await api("GET", "/api/config");
      if (again.ok) renderConfig(again.data.config);
      return;
    }
    const errors = (res.data && res.data.errors) || [];
    const unplaced = [];
    for (const err of errors) {
      const row = document.querySelector('.field[data-path="' + CSS.escape(err.path) + '"]');
      if (row) {
        row.classList.add("invalid");
        row.querySelector(".error").textContent = err.message;
        const details = row.closest("details");
        if (details) details.open = true;
      } else {
        unplaced.push(err.path + ": " + err.message);
      }
    }
    const base = (res.data && res.data.message) || "HTTP " + res.status;
    configMessage(unplaced.length ? base + " — " + unplaced.join("; ") : base, false);
  });

  $("config-reset").addEventListener("click", async () => {
    clearErrors();
    const res = await api("GET", "/api/config");
    if (res.ok) renderConfig(res.data.config);
  });

  // ---- start -------------------------------------------------------------------------

  async function start() {
    const probe = await api("GET", "/api/workload");
    if (probe.status === 401) return; // asks for the token; start() runs again after it
    if (state.started) return;
    state.started = true;
    if (probe.ok) onWorkload(probe.data, true);
    await loadDecisions();
    streamEvents();
    poll();
    loadConfig();
  }

  start();
})();
