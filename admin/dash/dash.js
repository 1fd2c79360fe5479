/*
 * The dashboard's logic (admin/dash/index.html; docs/dashboard.md). Follows
 * GET /v1/events with fetch() and a streaming reader, so the token travels
 * in the Authorization header (EventSource cannot send one) and never in a
 * cookie or a URL; the token lives in this script's memory only. Every
 * figure and name is written with textContent or as an SVG attribute
 * value, never parsed as HTML. The charts' history (5 minutes) is kept
 * here, from the frames.
 */
"use strict";

(() => {
  const HISTORY_MS = 5 * 60 * 1000;
  const STALL_MS = 5000;            /* no frame this long: reconnect */
  const RETRY_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const CHANGE_ACTIONS = new Set(["weight", "rollback", "promote", "switch", "freeze",
    "plan_start", "plan_pause", "plan_resume", "plan_abort", "plan_step", "recovered"]);
  /* service fields drawn by their own part of the card; the rest is listed under "more" */
  const DRAWN = new Set(["name", "weight", "state", "generation", "plan", "mode", "legacy",
    "new", "last_change", "gates", "effective_weight", "effective_percent", "effective"]);

  let token = null;                 /* in memory only */
  let stream = null;                /* AbortController of the stream */
  let live = false;
  let lastFrame = 0;                /* Date.now() of the last frame */
  const cards = new Map();          /* service name -> parts of its card */
  const hist = new Map();           /* service name -> [{t, req:[l,n], err:[l,n], p99:[l,n]}] */

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmt(v, digits) {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    return v.toFixed(digits).replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1");
  }

  function ago(ms) {
    if (!(ms >= 0)) return "";
    const s = Math.round(ms / 1000);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function setConn(kind, text) {
    const c = $("conn");
    c.className = "conn " + kind;
    c.textContent = text;
  }

  function notice(text) {
    const n = $("notice");
    n.textContent = text || "";
    n.hidden = !text;
  }

  /* ---- the stream ------------------------------------------------------ */

  async function errorText(res) {
    try {
      const j = await res.json();
      if (j && typeof j.error === "string") return res.status + ": " + j.error;
    } catch (e) { /* not JSON */ }
    return "HTTP " + res.status;
  }

  function retry(ctl, why) {
    if (stream !== ctl) return;
    live = false;
    setConn("wait", "reconnecting (" + why + ")");
    setTimeout(() => { if (stream === ctl && token) connect(); }, RETRY_MS);
  }

  async function connect() {
    if (stream) stream.abort();
    const ctl = new AbortController();
    stream = ctl;
    setConn("wait", "connecting");
    let res;
    try {
      res = await fetch("/v1/events", { headers: { "Authorization": "Bearer " + token },
        cache: "no-store", signal: ctl.signal });
    } catch (e) {
      if (!ctl.signal.aborted) retry(ctl, "cannot reach the daemon");
      return;
    }
    if (res.status === 401) {
      stream = null;
      setConn("off", "token refused");
      notice("The token was refused: enter a valid one.");
      forget(false);
      return;
    }
    if (!res.ok || !res.body) {
      retry(ctl, await errorText(res));
      return;
    }
    live = true;
    lastFrame = Date.now();
    setConn("on", "live");
    notice("");
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          onBlock(block);
        }
        if (buf.length > (8 << 20)) break;      /* not an event stream */
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    retry(ctl, "the stream ended");
  }

  function onBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) data.push(line.slice(line[5] === " " ? 6 : 5));
      else if (line.startsWith("event:")) event = line.slice(6).trim();
    }
    if (event !== "status" || data.length === 0) return;
    let frame;
    try {
      frame = JSON.parse(data.join("\n"));
    } catch (e) {
      notice("A frame that is not JSON was skipped.");
      return;
    }
    lastFrame = Date.now();
    render(frame);
  }

  setInterval(() => {
    if (live && stream && Date.now() - lastFrame > STALL_MS) {
      const ctl = stream;
      live = false;
      ctl.abort();
      stream = ctl;                 /* retry() checks it is still the current one */
      retry(ctl, "no frame for " + STALL_MS / 1000 + " s");
    }
  }, 1000);

  /* ---- commands -------------------------------------------------------- */

  async function command(card, cmd, body) {
    const out = card.result;
    out.className = "result";
    out.textContent = cmd + ": sending…";
    let res, j = null;
    try {
      res = await fetch("/v1/" + cmd, { method: "POST", cache: "no-store",
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify(body) });
      try { j = await res.json(); } catch (e) { j = null; }
    } catch (e) {
      out.className = "result err";
      out.textContent = cmd + ": cannot reach the daemon";
      return false;
    }
    if (res.ok && j && j.ok) {
      out.className = "result ok";
      out.textContent = cmd + ": done";
      return true;
    }
    out.className = "result err";
    let msg = cmd + ": refused (" + res.status;
    if (j && typeof j.required_level === "string") msg += ", needs a token of level " + j.required_level;
    msg += ")";
    if (j && typeof j.error === "string") msg += ": " + j.error;
    out.textContent = msg;
    return false;
  }

  /* ---- the cards ------------------------------------------------------- */

  function button(text, cls, onclick) {
    const b = el("button", cls, text);
    b.type = "button";
    b.addEventListener("click", onclick);
    return b;
  }

  function chart(title) {
    const box = el("div", "chart");
    const t = el("div", "t");
    const name = el("span", null, title);
    const now = el("span");
    t.append(name, now);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 300 60");
    svg.setAttribute("preserveAspectRatio", "none");
    const pl = document.createElementNS(SVG, "polyline");
    pl.setAttribute("class", "pl");
    const pn = document.createElementNS(SVG, "polyline");
    pn.setAttribute("class", "pn");
    svg.append(pl, pn);
    box.append(t, svg);
    return { box, now, pl, pn };
  }

  function makeCard(name) {
    const c = { name };
    c.root = el("section", "card");
    c.root.dataset.service = name;

    const h = el("h2");
    c.title = el("span", "svcname", name);
    c.meta = el("span", "muted");
    h.append(c.title, c.meta);

    const r1 = el("div", "row");
    const wbox = el("div");
    c.weight = el("div", "big weight");
    c.eff = el("div", "muted eff");
    wbox.append(c.weight, c.eff);
    c.split = el("div", "split");
    c.splitL = el("div", "l");
    c.splitN = el("div", "n");
    c.split.append(c.splitL, c.splitN);
    const sbox = el("div");
    c.state = el("span", "badge state");
    c.why = el("div", "why");
    sbox.append(c.state, c.why);
    r1.append(wbox, c.split, sbox);

    const r2 = el("div", "row plan");
    c.steps = el("div", "steps");
    c.planText = el("span", "plantext");
    c.gates = el("span", "gates");
    r2.append(el("span", "muted", "plan"), c.steps, c.planText, c.gates);

    c.sides = el("div", "sides");
    c.side = {};
    for (const s of ["legacy", "new"]) {
      const d = el("div", "side " + s);
      const hh = el("h3");
      const nm = el("span", null, s + " ");
      const hl = el("span", "muted");
      hh.append(nm, hl);
      const srv = el("div", "servers");
      const win = el("div", "muted window");
      d.append(hh, srv, win);
      c.sides.append(d);
      c.side[s] = { health: hl, servers: srv, window: win };
    }

    c.charts = el("div", "charts");
    c.ch = { req: chart("requests/s"), err: chart("errors %"), p99: chart("p99 ms") };
    c.charts.append(c.ch.req.box, c.ch.err.box, c.ch.p99.box);

    c.more = el("details", "more");
    const sm = el("summary", "muted", "more fields");
    c.moreText = el("div", "extra");
    c.more.append(sm, c.moreText);

    /* controls: shown with a token; the daemon decides what its level may do */
    c.controls = el("div", "controls");
    const r3 = el("div", "row");
    c.wIn = el("input", "w-in");
    c.wIn.type = "number";
    c.wIn.min = "0";
    c.wIn.max = "100";
    c.wIn.step = "0.01";
    c.wIn.placeholder = "0–100";
    c.wSet = button("set weight", "w-set", () => {
      const v = c.wIn.value.trim();
      if (v === "" || !(Number(v) >= 0 && Number(v) <= 100)) {
        c.result.className = "result err";
        c.result.textContent = "weight: a number from 0 to 100, at most two decimals";
        return;
      }
      command(c, "weight", { service: name, percent: Number(v) });
    });
    const plan = el("span");
    for (const a of ["start", "pause", "resume", "abort"]) {
      plan.append(button("plan " + a, "p-" + a,
        () => command(c, "plan", { service: name, action: a })));
    }
    c.rb = button("roll back…", "danger rb", () => { c.confirm.hidden = false; c.rbReason.focus(); });
    r3.append(el("span", "muted", "weight %"), c.wIn, c.wSet, plan, c.rb);
    c.confirm = el("div", "row confirm");
    c.confirm.hidden = true;
    c.rbReason = el("input", "rb-reason");
    c.rbReason.placeholder = "reason (optional)";
    c.rbReason.maxLength = 256;
    const yes = button("confirm rollback to legacy", "danger rb-yes", async () => {
      const body = { service: name };
      const reason = c.rbReason.value.trim();
      if (reason) body.reason = reason;
      c.confirm.hidden = true;
      if (await command(c, "rollback", body)) c.rbReason.value = "";
    });
    const no = button("cancel", "rb-no", () => { c.confirm.hidden = true; });
    c.confirm.append(el("span", null, "Set the weight of " + name + " to 0 now and latch it?"),
      c.rbReason, yes, no);
    c.result = el("div", "result");
    c.controls.append(r3, c.confirm, c.result);
    c.controls.hidden = token === null;

    c.root.append(h, r1, r2, c.sides, c.charts, c.controls, c.more);
    return c;
  }

  function effective(s) {
    for (const k of ["effective_weight", "effective_percent", "effective"]) {
      if (typeof s[k] === "number") return s[k];
    }
    const lh = s.legacy && s.legacy.healthy !== false;
    const nh = s.new && s.new.healthy !== false;
    if (!lh && !nh) return null;
    if (!nh) return 0;
    if (!lh) return 100;
    return s.weight;
  }

  function lastChange(s, entries) {
    const lc = s.last_change;
    if (lc && typeof lc === "object") {
      return { action: lc.action, actor: lc.actor, reason: lc.reason, ts: lc.at || lc.ts };
    }
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i];
      if (e && e.service === s.name && CHANGE_ACTIONS.has(e.action)) return e;
    }
    return null;
  }

  function drawPlan(c, s) {
    const p = s.plan || {};
    const steps = Array.isArray(p.steps_percent) ? p.steps_percent : [];
    const running = p.state === "progressing" || p.state === "paused";
    c.steps.replaceChildren();
    steps.forEach((pct, i) => {
      let cls = "step";
      if (i + 1 < p.step || (!running && p.step >= i + 1 && p.state !== "idle")) cls += " done";
      if (running && i + 1 === p.step) cls += " cur";
      c.steps.append(el("span", cls, fmt(pct, 2) + "%"));
    });
    let text;
    if (!p.state || p.state === "none") {
      text = "none configured";
    } else if (running) {
      text = p.state + ": step " + p.step + "/" + p.steps + " (" + fmt(p.percent, 2) + "%), bake " +
        fmt(p.bake_left_s, 0) + " s left of " + fmt(p.bake_s, 0) + " s";
      if (typeof p.requests === "number" && typeof p.min_requests === "number") {
        text += ", new served " + p.requests + " of " + p.min_requests + " requests";
        if (p.requests < p.min_requests && !(p.bake_left_s > 0)) text += " — held: waiting for requests";
      }
    } else {
      text = p.state;
    }
    c.planText.textContent = text;
    c.gates.replaceChildren();
    if (Array.isArray(s.gates)) {
      for (const g of s.gates) {
        if (!g || typeof g !== "object") continue;
        const ok = g.ok === true || g.verdict === "ok" || g.verdict === "pass";
        const txt = "gate " + g.name + ": " + (g.verdict !== undefined ? g.verdict : ok ? "ok" : "failing") +
          (g.value !== undefined ? " (" + g.value + ")" : "");
        c.gates.append(el("span", "badge" + (ok ? "" : " frozen"), txt));
      }
    }
  }

  function drawSide(c, name, side) {
    const part = c.side[name];
    if (!side) return;
    part.health.textContent = side.healthy === false ? "— no healthy server" : "— healthy";
    part.servers.replaceChildren();
    for (const srv of Array.isArray(side.servers) ? side.servers : []) {
      let label = String(srv.addr) + (srv.up ? " up" : " down");
      for (const k of ["drain", "draining", "disabled"]) if (srv[k]) label += " " + k;
      part.servers.append(el("span", "srv " + (srv.up ? "up" : "down"), label));
    }
    const w = side.window || {};
    part.window.textContent = "last window: " + fmt(w.requests, 0) + " requests, " +
      fmt(w.error_rate * 100, 2) + "% errors, p50 " + fmt(w.p50_ms, 1) + " ms, p99 " + fmt(w.p99_ms, 1) + " ms";
  }

  function record(s, t) {
    let h = hist.get(s.name);
    if (!h) { h = []; hist.set(s.name, h); }
    const last = h[h.length - 1];
    if (last && t - last.t < 900) return h;     /* one point a second */
    const cnt = (side) => (s[side] && s[side].counters && s[side].counters.requests) || 0;
    const win = (side, k) => (s[side] && s[side].window && s[side].window[k]) || 0;
    const p = { t, cnt: [cnt("legacy"), cnt("new")],
      err: [win("legacy", "error_rate") * 100, win("new", "error_rate") * 100],
      p99: [win("legacy", "p99_ms"), win("new", "p99_ms")], req: [0, 0] };
    if (last) {
      const dt = (t - last.t) / 1000;
      p.req = [0, 1].map((i) => Math.max(0, (p.cnt[i] - last.cnt[i]) / dt));
    }
    h.push(p);
    while (h.length && h[0].t < t - HISTORY_MS) h.shift();
    return h;
  }

  function drawChart(ch, h, key, t, digits) {
    let max = 0;
    for (const p of h) max = Math.max(max, p[key][0], p[key][1]);
    const scale = max > 0 ? max : 1;
    const pts = (i) => h.map((p) => {
      const x = 300 - (t - p.t) / HISTORY_MS * 300;
      const y = 58 - p[key][i] / scale * 54;
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
    ch.pl.setAttribute("points", pts(0));
    ch.pn.setAttribute("points", pts(1));
    const cur = h.length ? h[h.length - 1][key] : [NaN, NaN];
    ch.now.textContent = "legacy " + fmt(cur[0], digits) + " · new " + fmt(cur[1], digits) +
      " (max " + fmt(max, digits) + ")";
  }

  function drawCard(c, s, entries, t) {
    c.meta.textContent = (s.mode || "") + " · generation " + s.generation;
    c.weight.textContent = "weight " + fmt(s.weight, 2) + "% to new";
    const eff = effective(s);
    const h = record(s, t);
    let observed = "";
    if (h.length > 1) {
      const a = h[0], b = h[h.length - 1];
      const dl = b.cnt[0] - a.cnt[0], dn = b.cnt[1] - a.cnt[1];
      if (dl + dn > 0) observed = ", served " + fmt(dn / (dl + dn) * 100, 1) + "% over " + fmt((b.t - a.t) / 60000, 1) + " min";
    }
    c.eff.textContent = (eff === null ? "effective: none (both sides down: 503)"
      : "effective " + fmt(eff, 2) + "% to new" + (eff !== s.weight ? " (fallback)" : "")) + observed;
    const shown = eff === null ? 0 : eff;
    c.splitL.style.width = (100 - shown) + "%";
    c.splitN.style.width = shown + "%";
    c.split.title = "legacy " + fmt(100 - shown, 2) + "% · new " + fmt(shown, 2) + "%";
    c.state.className = "badge state " + String(s.state);
    c.state.textContent = String(s.state);
    const lc = lastChange(s, entries);
    if (lc) {
      let w = "since " + ago(t - Date.parse(lc.ts)) + " by " + lc.actor + " (" + lc.action + ")";
      if (lc.reason) w += ": " + lc.reason;
      c.why.textContent = w;
    } else {
      c.why.textContent = "no change in the audit tail";
    }
    drawPlan(c, s);
    drawSide(c, "legacy", s.legacy);
    drawSide(c, "new", s.new);
    drawChart(c.ch.req, h, "req", t, 1);
    drawChart(c.ch.err, h, "err", t, 2);
    drawChart(c.ch.p99, h, "p99", t, 1);
    const extra = [];
    for (const k of Object.keys(s)) {
      if (!DRAWN.has(k)) extra.push(k + ": " + JSON.stringify(s[k]));
    }
    c.moreText.textContent = extra.join("\n");
  }

  function drawAudit(entries) {
    const body = $("audit").tBodies[0];
    body.replaceChildren();
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i] || {};
      const tr = el("tr");
      const ft = (e.from !== undefined || e.to !== undefined) ? String(e.from) + " → " + String(e.to) : "";
      for (const v of [String(e.ts || "").replace("T", " ").replace(/\.\d+Z$|Z$/, ""),
        e.service, e.actor, e.action, ft, e.reason]) {
        tr.append(el("td", null, v === undefined || v === null ? "" : String(v)));
      }
      body.append(tr);
    }
  }

  function drawStore(st) {
    const p = $("store");
    const store = st.store;
    if (!store || typeof store !== "object") { p.hidden = true; return; }
    p.hidden = false;
    let text = "state store";
    if (store.kind) text += " " + store.kind;
    if (store.file) text += " " + store.file;
    if (store.up === false) text += ": DOWN";
    if (store.dirty) text += ": STATE NOT SAVED" + (store.last_error ? " (" + store.last_error + ")" : "");
    else text += ": saved";
    if (store.leader !== undefined) text += store.leader ? ", leader" : ", follower";
    p.textContent = text;
    p.className = "store" + (store.dirty || store.up === false ? " notice" : "");
  }

  function render(frame) {
    const t = typeof frame.ts_ms === "number" ? frame.ts_ms : Date.now();
    $("asof").textContent = "as of " + new Date(t).toISOString().slice(11, 19) + " UTC";
    const st = frame.status || {};
    if (!st.ok) {
      notice("status: " + (st.error || "no reply"));
      return;
    }
    const au = frame.audit || {};
    const entries = au.ok && Array.isArray(au.entries) ? au.entries : [];
    drawStore(st);
    const seen = new Set();
    const main = $("services");
    for (const s of Array.isArray(st.services) ? st.services : []) {
      const name = String(s.name);
      seen.add(name);
      let c = cards.get(name);
      if (!c) {
        c = makeCard(name);
        cards.set(name, c);
        main.append(c.root);
      }
      drawCard(c, s, entries, t);
    }
    for (const [name, c] of cards) {
      if (!seen.has(name)) { c.root.remove(); cards.delete(name); hist.delete(name); }
    }
    drawAudit(entries);
    if (!au.ok && au.error) notice("audit: " + au.error);
  }

  /* ---- the token ------------------------------------------------------- */

  function forget(clear) {
    token = null;
    if (stream) stream.abort();
    stream = null;
    live = false;
    $("token").hidden = false;
    $("connect").hidden = false;
    $("forget").hidden = true;
    for (const c of cards.values()) c.controls.hidden = true;
    if (clear) {
      for (const c of cards.values()) c.root.remove();
      cards.clear();
      hist.clear();
      $("audit").tBodies[0].replaceChildren();
      setConn("off", "not connected");
    }
  }

  $("tokenform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token").value.trim();
    $("token").value = "";
    if (!v) return;
    token = v;
    $("token").hidden = true;
    $("connect").hidden = true;
    $("forget").hidden = false;
    for (const c of cards.values()) c.controls.hidden = false;
    connect();
  });
  $("forget").addEventListener("click", () => forget(true));
  $("token").focus();
})();
