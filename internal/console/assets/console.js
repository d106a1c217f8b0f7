// lull console: polls /console/api/overview, draws the rates as small SVG
// charts, keeps the tables and their countdowns live, and sends the
// actions (flush now, replay) after a confirm. Plain JS, no dependencies.
// Every value from the server goes into the page as text, never as HTML.
"use strict";

(() => {
  const $ = (sel) => document.querySelector(sel);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrf = meta("csrf-token");
  const refreshMs = Number(meta("refresh-ms")) || 1000;
  const api = "/console/api";
  const samplesKept = 60; // the last minute, at one poll a second

  let offset = 0;   // Redis clock - this browser's clock, ms
  let samples = []; // {t, totals}: successive polls, for the rates
  let lookupKey = "";

  const redisNow = () => Date.now() + offset;

  // ---- formatting

  function duration(ms) {
    const neg = ms < 0;
    ms = Math.abs(ms);
    let s;
    if (ms < 10000) s = (ms / 1000).toFixed(1) + "s";
    else if (ms < 60000) s = Math.floor(ms / 1000) + "s";
    else if (ms < 3600000) s = Math.floor(ms / 60000) + "m " + String(Math.floor(ms / 1000) % 60).padStart(2, "0") + "s";
    else if (ms < 86400000) s = Math.floor(ms / 3600000) + "h " + String(Math.floor(ms / 60000) % 60).padStart(2, "0") + "m";
    else s = Math.floor(ms / 86400000) + "d " + (Math.floor(ms / 3600000) % 24) + "h";
    return neg ? "-" + s : s;
  }
  const ago = (ms) => (ms <= 0 ? "–" : duration(redisNow() - ms) + " ago");
  const iso = (ms) => (ms > 0 ? new Date(ms).toISOString() : "");
  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function rate(v) {
    if (v == null) return "–";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // ---- requests

  async function call(method, path) {
    const res = await fetch(api + path, {
      method,
      credentials: "same-origin",
      headers: method === "GET" ? {} : { "X-CSRF-Token": csrf },
    });
    if (res.status === 401) {
      location.href = "/console/login";
      throw new Error("session ended");
    }
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) throw new Error((body && body.error) || res.status + " " + res.statusText);
    return body;
  }

  function toast(text, bad) {
    const t = el("div", { class: "toast" + (bad ? " bad" : ""), text });
    $("#toasts").append(t);
    setTimeout(() => t.remove(), 5000);
  }

  // ask shows the confirm dialog and resolves to true on Confirm.
  function ask(text, danger) {
    const d = $("#confirm");
    $("#confirm-text").textContent = text;
    $("#confirm-ok").className = danger ? "danger" : "";
    d.returnValue = "";
    d.showModal();
    return new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true }));
  }

  async function flushNow(key) {
    if (!(await ask(`Flush conversation ${key} now? Its buffer is delivered as a batch (reason manual).`))) return;
    try {
      const r = await call("POST", "/flush?key=" + encodeURIComponent(key));
      toast(r.status === "flushing" ? `Flushing ${key}` : `${key}: nothing buffered`);
      poll();
    } catch (e) { toast(`Flush ${key}: ${e.message}`, true); }
  }

  async function replay(id) {
    if (!(await ask(`Replay dead letter ${id}? The same batch (same id, same messages) is delivered again.`, true))) return;
    try {
      await call("POST", "/replay?batch_id=" + encodeURIComponent(id));
      toast(`Replaying ${id}`);
      poll();
    } catch (e) { toast(`Replay ${id}: ${e.message}`, true); }
  }

  async function showDead(id) {
    try {
      const d = await call("GET", "/dead-letter?batch_id=" + encodeURIComponent(id));
      const b = d.batch;
      const lines = [
        `error     ${d.error}`,
        `dead at   ${d.dead_at}`,
        `attempts  ${b.attempt}`,
        `reason    ${b.reason}`,
        `flushed   ${b.flushed_at}`,
        `messages  ${b.messages.length} (${b.first_at} … ${b.last_at})`,
        "",
        ...b.messages.map((m) => `[${m.received_at}] ${m.type !== "text" ? "(" + m.type + ") " : ""}${m.text}   ${m.id}`),
        "",
        JSON.stringify(b, null, 2),
      ];
      $("#detail-title").textContent = "Dead letter " + id;
      $("#detail-text").textContent = lines.join("\n");
      $("#detail").showModal();
    } catch (e) { toast(`Show ${id}: ${e.message}`, true); }
  }

  // ---- tables, reconciled by row id so rows (and their buttons) stay put

  function reconcile(table, items, idOf, build, update) {
    const body = table.tBodies[0];
    const old = new Map([...body.rows].map((r) => [r.dataset.id, r]));
    let prev = null;
    for (const it of items) {
      const id = idOf(it);
      let row = old.get(id);
      if (row) old.delete(id);
      else row = build(it);
      update(row, it);
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== row) body.insertBefore(row, want);
      prev = row;
    }
    for (const r of old.values()) r.remove();
    document.getElementById(table.id + "-empty").hidden = items.length > 0;
  }

  const cell = (label, cls) => el("td", { "data-label": label, class: cls || "" });
  const keyLink = (text, key) => el("a", { text, title: "look up " + key, onclick: () => lookup(key) });

  function bufferingRow(b) {
    const tr = el("tr", { data: { id: b.key, key: b.key } },
      cell("conversation", "key"), cell("source", "source"), cell("messages", "num msgs"), cell("bytes", "num bytes"),
      cell("flush in", "num left"), cell("reason", "reason"), cell("", "actions"));
    tr.cells[0].append(keyLink(b.key, b.key));
    tr.cells[6].append(el("button", { type: "button", class: "flush", text: "Flush now", onclick: () => flushNow(b.key) }));
    return tr;
  }
  function bufferingUpdate(tr, b) {
    tr.cells[1].textContent = b.source;
    tr.cells[2].textContent = b.messages;
    tr.cells[3].textContent = bytes(b.bytes);
    tr.dataset.deadline = b.deadline;
    tr.dataset.from = b.first_at || b.last_at || b.deadline;
    const reason = tr.cells[5];
    reason.replaceChildren(el("span", { class: "badge " + b.reason, text: b.reason || "?" }));
    if (b.after_batch) reason.append(" ", el("span", { class: "badge after", text: "after batch", title: "an earlier batch is in flight" }));
  }

  function inflightRow(f) {
    const tr = el("tr", { data: { id: f.key, key: f.key } },
      cell("batch", "batch"), cell("attempt", "num attempt"), cell("lease left", "num left"), cell("owner", "owner mono"), cell("last error", "err"));
    tr.cells[0].append(keyLink(f.batch_id || f.key, f.key));
    return tr;
  }
  function inflightUpdate(tr, f) {
    tr.dataset.batch = f.batch_id;
    tr.cells[0].firstChild.textContent = f.batch_id || f.key;
    tr.cells[1].textContent = f.attempt;
    tr.dataset.deadline = f.lease_until;
    tr.cells[3].textContent = f.owner || (f.replayed_at ? "(replayed, waiting)" : "–");
    tr.cells[4].textContent = f.last_error ? f.last_error + (f.last_error_at ? " (" + ago(f.last_error_at) + ")" : "") : "";
  }

  function deadRow(d) {
    const tr = el("tr", { data: { id: d.batch_id, batch: d.batch_id, key: d.key } },
      cell("batch", "batch"), cell("attempts", "num attempt"), cell("error", "err"), cell("dead since", "since"), cell("", "actions"));
    tr.cells[0].append(keyLink(d.batch_id, d.key));
    tr.cells[4].append(
      el("button", { type: "button", class: "quiet-btn show", text: "Show", onclick: () => showDead(d.batch_id) }),
      el("button", { type: "button", class: "danger replay", text: "Replay", onclick: () => replay(d.batch_id) }));
    return tr;
  }
  function deadUpdate(tr, d) {
    tr.cells[1].textContent = d.attempt;
    tr.cells[2].textContent = d.error;
    tr.dataset.at = d.dead_at;
    tr.cells[3].title = iso(d.dead_at);
  }

  function counted(id, shown, total, one, many) {
    const n = `${total} ${total === 1 ? one : many}`;
    $(id).textContent = total > shown ? `${n}, the first ${shown} shown` : n;
  }

  // tick redraws what moves with the clock: countdowns and ages.
  function tick() {
    const now = redisNow();
    for (const tr of document.querySelectorAll("#buffering tbody tr, #inflight tbody tr")) {
      const left = Number(tr.dataset.deadline) - now;
      const c = tr.querySelector("td.left");
      c.textContent = left > 0 ? duration(left) : "due";
      c.classList.toggle("soon", left > 0 && left < 3000);
      c.classList.toggle("due", left <= 0);
    }
    for (const tr of document.querySelectorAll("#dead tbody tr")) {
      tr.cells[3].textContent = ago(Number(tr.dataset.at));
    }
    $("#clock").textContent = new Date(now).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  // ---- charts

  const series = {
    accepted: (a, b, s) => (b.appended - a.appended) / s,
    flushed: (a, b, s) => (b.flushed - a.flushed) / s,
    delivered: (a, b, s) => (b.delivered - a.delivered) / s,
    failed: (a, b, s) => (b.dead_lettered - a.dead_lettered) / s,
    lateness: (a, b) => (b.flushed > a.flushed ? (b.lateness_ms - a.lateness_ms) / (b.flushed - a.flushed) : null),
  };

  function points() {
    const out = {};
    for (const name of Object.keys(series)) out[name] = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      const s = (b.t - a.t) / 1000;
      const reset = b.totals.appended < a.totals.appended || b.totals.flushed < a.totals.flushed;
      for (const [name, f] of Object.entries(series)) {
        const v = s > 0 && !reset ? f(a.totals, b.totals, s) : null;
        out[name].push(v == null || v < 0 ? null : v);
      }
    }
    return out;
  }

  const svgNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  // draw plots values right-aligned over the last samplesKept polls. A null
  // is a gap, or, when bridge is set (an interval without flushes has no
  // lateness, not a lateness of 0), is skipped.
  function draw(fig, values, fmt, bridge) {
    const box = fig.querySelector("svg");
    const w = 120, h = 36;
    const seen = values.filter((v) => v != null);
    const last = bridge ? (seen.length ? seen[seen.length - 1] : null) : values.length ? values[values.length - 1] : null;
    fig.querySelector("output").textContent = last == null ? "–" : fmt(last);
    const top = Math.max(...seen, 0) || 1;
    const step = w / (samplesKept - 1);
    const x0 = w - (values.length - 1) * step;
    const kids = [svg("line", { x1: 0, y1: h, x2: w, y2: h })];
    let run = [];
    const flush = () => {
      if (run.length > 0) {
        const pts = run.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
        kids.push(svg("path", { d: `M${run[0][0].toFixed(1)},${h} L${pts.replaceAll(" ", " L")} L${run[run.length - 1][0].toFixed(1)},${h} Z` }));
        kids.push(svg("polyline", { points: run.length === 1 ? `${pts} ${(run[0][0] + 0.5).toFixed(1)},${run[0][1].toFixed(1)}` : pts }));
      }
      run = [];
    };
    values.forEach((v, i) => {
      if (v == null) return bridge ? undefined : flush();
      run.push([x0 + i * step, h - (v / top) * (h - 2)]);
    });
    flush();
    box.replaceChildren(...kids);
    box.setAttribute("aria-label", `${fig.dataset.series}: max ${fmt(top)}`);
  }

  function charts(totals, now) {
    if (!totals) {
      for (const fig of document.querySelectorAll(".chart")) {
        fig.querySelector("output").textContent = "–";
        fig.querySelector("svg").replaceChildren(svg("text", { x: 2, y: 22, class: "none" }));
        fig.querySelector("svg text").textContent = "no counters";
      }
      return;
    }
    const lastT = samples.length ? samples[samples.length - 1].t : 0;
    if (now > lastT) samples.push({ t: now, totals });
    if (samples.length > samplesKept) samples = samples.slice(-samplesKept);
    const p = points();
    for (const fig of document.querySelectorAll(".chart")) {
      const name = fig.dataset.series;
      const lateness = name === "lateness";
      draw(fig, p[name], lateness ? (v) => v.toFixed(0) : rate, lateness);
    }
  }

  // ---- polling

  let polling = null;
  async function poll() {
    if (polling) return polling;
    polling = (async () => {
      const sent = Date.now();
      try {
        const ov = await call("GET", "/overview");
        const got = Date.now();
        offset = ov.now - (sent + got) / 2;
        reconcile($("#buffering"), ov.buffering || [], (b) => b.key, bufferingRow, bufferingUpdate);
        reconcile($("#inflight"), ov.in_flight || [], (f) => f.key, inflightRow, inflightUpdate);
        reconcile($("#dead"), ov.dead || [], (d) => d.batch_id, deadRow, deadUpdate);
        counted("#buffering-count", (ov.buffering || []).length, ov.buffering_total, "conversation", "conversations");
        counted("#inflight-count", (ov.in_flight || []).length, ov.in_flight_total, "batch", "batches");
        counted("#dead-count", (ov.dead || []).length, ov.dead_total, "batch", "batches");
        charts(ov.totals, ov.now);
        tick();
        const st = $("#status");
        st.className = "status live";
        st.textContent = "live";
        st.title = "refreshed " + new Date().toLocaleTimeString();
      } catch (e) {
        const st = $("#status");
        st.className = "status stale";
        st.textContent = "stale: " + e.message;
      } finally {
        polling = null;
      }
    })();
    return polling;
  }

  // ---- lookup: one conversation's state, as scripts/inspect.sh prints it

  function timed(ms, now) {
    ms = Number(ms);
    if (!(ms > 0)) return String(ms);
    const d = ms - now;
    return `${ms}  (${iso(ms)}, ${d >= 0 ? "in " + d + " ms" : -d + " ms ago"})`;
  }

  function inspectText(c) {
    const k = c.keys, now = c.now;
    const out = [];
    const hash = (h) => {
      if (!h || Object.keys(h).length === 0) return out.push("  (none)");
      for (const f of Object.keys(h).sort()) {
        const v = h[f];
        out.push(`  ${f}: ` + (/(_at|deadline)$/.test(f) && /^\d+$/.test(v) ? timed(v, now) : v));
      }
    };
    out.push(`conversation ${c.key}   shard s${String(c.shard).padStart(2, "0")}   Redis clock ${iso(now)}`, "");
    out.push(`due       ZSCORE ${k.due} ${c.key}`);
    out.push(c.deadline >= 0 ? `  deadline ${timed(c.deadline, now)}` : "  (not scheduled)");
    out.push(`inflight  ZSCORE ${k.inflight} ${c.key}`);
    out.push(c.lease_until >= 0 ? `  lease until ${timed(c.lease_until, now)}` : "  (no batch in flight)");
    const shown = (c.buffer || []).length;
    out.push(`buffer    LRANGE ${k.buf} 0 -1   (${c.buffer_len} messages${shown < c.buffer_len ? ", the first " + shown + " shown" : ""}, TTL ${c.buffer_ttl} ms)`);
    for (const m of c.buffer || []) out.push("  " + JSON.stringify(m));
    out.push(`meta      HGETALL ${k.meta}   (TTL ${c.meta_ttl} ms)`);
    hash(c.meta);
    out.push(`batch     HGETALL ${k.batch}`);
    hash(c.batch);
    if (c.batch_messages) {
      out.push("  messages:");
      const ms = Array.isArray(c.batch_messages) ? c.batch_messages : [c.batch_messages];
      for (const m of ms) out.push("    " + JSON.stringify(m));
    }
    out.push(`seen      ZRANGE ${k.seen} 0 -1 WITHSCORES   (${c.seen_count} message ids in the dedupe window; last ${(c.seen || []).length})`);
    for (const s of c.seen || []) out.push(`  ${s.member}  ${timed(s.score, now)}`);
    out.push(`dead      ZRANGE ${k.dead} 0 -1   (this conversation's dead-lettered batches)`);
    if (!(c.dead_letters || []).length) out.push("  (none)");
    for (const d of c.dead_letters || []) out.push(`  ${d.member}  dead since ${timed(d.score, now)}`);
    return out.join("\n");
  }

  async function lookup(key) {
    key = key.trim();
    if (!key) return;
    lookupKey = key;
    $("#lookup-key").value = key;
    try {
      const r = await call("GET", "/conversation?key=" + encodeURIComponent(key));
      $("#lookup-title").textContent = `${key} · ${r.source}`;
      $("#lookup-text").textContent = inspectText(r.conversation);
      $("#lookup-result").hidden = false;
      $("#lookup-panel").scrollIntoView({ block: "nearest" });
    } catch (e) { toast(`Look up ${key}: ${e.message}`, true); }
  }

  $("#lookup").addEventListener("submit", (e) => { e.preventDefault(); lookup($("#lookup-key").value); });
  $("#lookup-refresh").addEventListener("click", () => lookup(lookupKey));
  $("#lookup-close").addEventListener("click", () => { $("#lookup-result").hidden = true; });

  // A hidden tab stops polling (it costs Redis reads), and catches up at once
  // when shown again.
  poll();
  setInterval(() => { if (!document.hidden) poll(); }, refreshMs);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  setInterval(tick, 100);
})();
