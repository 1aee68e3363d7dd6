// llm-gateway dashboard: polls this gateway's admin API every 2 s with the admin key as a Bearer
// token. No framework, no other host; every value reaches the page through textContent.
"use strict";
(function () {
  const STORE = "llm-gateway-admin-key";
  const POLL_MS = 2000;
  const SPEND_EVERY = 5; // the spend tables read the store: every 10 s is plenty
  const KEYS_SHOWN = 200; // a gateway may hold thousands of keys: the page lists the newest
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let polls = 0;

  function key() { return sessionStorage.getItem(STORE); }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers.Authorization = "Bearer " + key();
    if (opts.body !== undefined) { opts.headers["Content-Type"] = "application/json"; }
    const resp = await fetch(path, opts);
    const data = await resp.json().catch(() => ({}));
    if (resp.status === 401) { signOut("That admin key was refused."); throw new Error("unauthorised"); }
    if (!resp.ok) { throw new Error((data.error && data.error.message) || ("HTTP " + resp.status)); }
    return data;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  function fill(tbody, items, render) {
    const rows = items.map((item) => { const tr = document.createElement("tr"); render(tr, item); return tr; });
    tbody.replaceChildren(...rows);
  }

  function pair(a, b) { return (a === null ? "–" : a) + " / " + (b === null ? "–" : b); }

  function drawChart(canvas, values, format) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 400, h = canvas.clientHeight || 140;
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const max = Math.max(1e-9, ...values);
    const top = 16, bottom = h - 14, left = 4, right = w - 4;
    g.strokeStyle = "#d0d7de"; g.lineWidth = 1;
    g.beginPath(); g.moveTo(left, bottom + 0.5); g.lineTo(right, bottom + 0.5); g.stroke();
    g.fillStyle = "#57606a"; g.font = "11px system-ui, sans-serif";
    g.fillText("max " + format(Math.max(0, ...values)), left, 11);
    g.fillText("-15 min", left, h - 2);
    g.fillText("now", right - 22, h - 2);
    const step = (right - left) / Math.max(1, values.length - 1);
    g.strokeStyle = "#0969da"; g.lineWidth = 1.5; g.beginPath();
    values.forEach((v, i) => {
      const x = left + i * step, y = bottom - (v / max) * (bottom - top);
      if (i === 0) { g.moveTo(x, y); } else { g.lineTo(x, y); }
    });
    g.stroke();
    canvas.setAttribute("aria-label", canvas.previousElementSibling
      ? canvas.previousElementSibling.textContent + ": latest " + format(values[values.length - 1] || 0) : "");
  }

  // Per-second values into buckets of n seconds, as a rate per second.
  function bucket(values, n) {
    const out = [];
    for (let i = 0; i < values.length; i += n) {
      out.push(values.slice(i, i + n).reduce((a, b) => a + b, 0) / n);
    }
    return out;
  }

  function renderLive(v) {
    $("requests-last-min").textContent = v.totals.requests_last_min;
    $("errors-last-min").textContent = v.totals.errors_last_min;
    $("requests-total").textContent = v.totals.requests;
    $("workers").textContent = v.workers;
    fill($("providers").tBodies[0], v.providers, (tr, p) => {
      const name = document.createElement("th"); name.scope = "row"; name.textContent = p.name; tr.appendChild(name);
      cell(tr, p.status, p.status); cell(tr, p.circuit, p.circuit);
      cell(tr, pair(p.latency_p50_ms, p.latency_p95_ms)); cell(tr, pair(p.ttft_p50_ms, p.ttft_p95_ms));
      cell(tr, p.requests); cell(tr, (p.error_rate * 100).toFixed(1) + " %"); cell(tr, p.streams_in_flight);
      cell(tr, p.last_error, "err");
    });
    const reqs = bucket(v.requests_per_s, 10), errs = bucket(v.errors_per_s, 10);
    drawChart($("chart-requests"), reqs, (x) => x.toFixed(2) + "/s");
    drawChart($("chart-errors"), reqs.map((r, i) => (r ? (100 * errs[i]) / r : 0)), (x) => x.toFixed(1) + " %");
    drawChart($("chart-tokens"), v.tokens_per_min, (x) => Math.round(x).toString());
    drawChart($("chart-spend"), v.spend_per_min, (x) => "$" + x.toFixed(4));
  }

  function renderTop(tbody, data) {
    const top = data.slice().sort((a, b) => b.cost_usd - a.cost_usd).slice(0, 10);
    fill(tbody, top, (tr, r) => { cell(tr, r.group); cell(tr, r.requests); cell(tr, r.cost_usd.toFixed(6)); });
  }

  async function refreshSpend() {
    const today = new Date().toISOString().slice(0, 10);
    try {
      const [keys, models] = await Promise.all([
        api("/admin/spend?group_by=key&from=" + today), api("/admin/spend?group_by=model&from=" + today)]);
      renderTop($("top-keys").tBodies[0], keys.data);
      renderTop($("top-models").tBodies[0], models.data);
      $("spend-error").textContent = "";
    } catch (e) { $("spend-error").textContent = "Spend unavailable: " + e.message; }
  }

  async function refreshKeys() {
    const keys = await api("/admin/keys");
    const newest = keys.data.slice().sort((a, b) => (b.created_at || 0) - (a.created_at || 0)).slice(0, KEYS_SHOWN);
    $("keys-caption").textContent = "Virtual keys: " + newest.length + " newest of " + keys.data.length;
    fill($("keys").tBodies[0], newest, (tr, k) => {
      cell(tr, k.name); cell(tr, k.id); cell(tr, k.key_hint);
      cell(tr, typeof k.spend_usd === "number" ? k.spend_usd.toFixed(6) : k.spend_usd);
      cell(tr, k.revoked ? "revoked" : "active");
      const td = document.createElement("td");
      if (!k.revoked) {
        const b = document.createElement("button");
        b.type = "button"; b.className = "secondary"; b.textContent = "Revoke";
        b.setAttribute("aria-label", "Revoke key " + k.name);
        b.addEventListener("click", () => revoke(k.id));
        td.appendChild(b);
      }
      tr.appendChild(td);
    });
  }

  async function poll() {
    try {
      const view = await api("/admin/dashboard");
      renderLive(view);
      if (polls % SPEND_EVERY === 0) { await Promise.all([refreshSpend(), refreshKeys()]); }
      polls += 1;
      $("status").textContent = "Live, updated " + new Date(view.time * 1000).toLocaleTimeString();
    } catch (e) {
      if (key()) { $("status").textContent = "Gateway unreachable: " + e.message; }
    }
  }

  async function revoke(id) {
    try { await api("/admin/keys/" + encodeURIComponent(id), { method: "DELETE" }); await refreshKeys(); }
    catch (e) { $("keys-error").textContent = e.message; }
  }

  async function createKey(event) {
    event.preventDefault();
    $("keys-error").textContent = "";
    try {
      const made = await api("/admin/keys", { method: "POST", body: JSON.stringify({ name: $("key-name").value }) });
      $("new-key-secret").textContent = made.key;
      $("new-key").hidden = false;
      $("key-name").value = "";
      await refreshKeys();
    } catch (e) { $("keys-error").textContent = e.message; }
  }

  function start() {
    $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
    $("status").textContent = "Connecting…";
    polls = 0;
    poll();
    timer = setInterval(poll, POLL_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(STORE);
    if (timer) { clearInterval(timer); timer = null; }
    $("board").hidden = true; $("logout").hidden = true; $("login").hidden = false;
    $("new-key").hidden = true; $("new-key-secret").textContent = "";
    $("status").textContent = "Not signed in";
    $("login-error").textContent = message || "";
    $("admin-key").focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(STORE, $("admin-key").value);
      $("admin-key").value = ""; $("login-error").textContent = "";
      start();
    });
    $("logout").addEventListener("click", () => signOut(""));
    $("create-key").addEventListener("submit", createKey);
    $("new-key-done").addEventListener("click", () => {
      $("new-key").hidden = true; $("new-key-secret").textContent = ""; $("key-name").focus();
    });
    if (key()) { start(); } else { $("admin-key").focus(); }
  });
})();
