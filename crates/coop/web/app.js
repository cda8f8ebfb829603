// The farm's web page: the live hub, the animal race and the kitchen.
//
// Plain browser JavaScript, no framework and no build step; served at
// /ui/app.js from the binary (crates/coop/src/web.rs). Every endpoint used
// here is same-origin: the hub's /topics/{names} (SSE), POST
// /topics/{name}, /api/topics; the farm's /animals; web.rs's /api/race and
// /api/kitchen. Text from the network is only ever put in the page through
// textContent, never as HTML.
"use strict";

// Errors the page met, for people (shown nowhere) and for the browser test,
// which fails if this is not empty after its run.
window.coopErrors = [];
window.addEventListener("error", (e) => {
  window.coopErrors.push(String(e.message || e));
});
window.addEventListener("unhandledrejection", (e) => {
  window.coopErrors.push("unhandled rejection: " + String(e.reason));
});

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function seconds(ms) {
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

// ---------------------------------------------------------------- live hub

// The log keeps this many messages; older ones are dropped from the page.
const LOG_LIMIT = 200;

const hub = {
  source: null, // the current EventSource
  spec: "",
};

function setStreamStatus(state, text) {
  const s = $("#sub-status");
  s.dataset.state = state;
  s.textContent = text;
}

function logEntry(kind, meta, text) {
  const log = $("#log");
  const li = el(
    "li",
    { class: kind },
    el("span", { class: "meta" }, meta),
    el("span", { class: "text" }, text),
  );
  log.append(li);
  while (log.children.length > LOG_LIMIT) log.firstElementChild.remove();
  $("#log-empty").hidden = true;
  li.scrollIntoView({ block: "nearest" });
}

function subscribe(spec) {
  if (hub.source) hub.source.close();
  hub.spec = spec;
  setStreamStatus("connecting", "connecting to " + spec + "…");
  // The browser resends the last `id:` it saw as Last-Event-ID when it
  // reconnects, and the hub replays from there: no gap, no duplicate.
  // EventSource cannot send headers, so a token travels as `?token=`.
  const token = $("#token").value.trim();
  // `sse-json`: SSE whose data is the hub's JSON record, so that each
  // message names its topic (EventSource ignores SSE's `topic:` field).
  const query = "?format=sse-json" + (token ? "&token=" + encodeURIComponent(token) : "");
  const es = new EventSource("/topics/" + encodeURI(spec) + query);
  hub.source = es;
  es.addEventListener("open", () => {
    setStreamStatus("open", "connected to " + spec);
  });
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CONNECTING) {
      setStreamStatus("reconnecting", "reconnecting (will resume after #" + (es.lastId || "start") + ")…");
    } else {
      setStreamStatus("closed", "closed: the hub refused " + spec + " (a bad topic, or a token needed?)");
    }
  });
  es.addEventListener("message", (e) => {
    let rec;
    try {
      rec = JSON.parse(e.data);
    } catch {
      logEntry("note", "bad record", e.data);
      return;
    }
    const time = new Date(rec.time).toLocaleTimeString();
    logEntry("msg", "#" + rec.id + " · " + rec.topic + " · " + time, rec.message);
  });
  es.addEventListener("gap", (e) => {
    logEntry("note", "gap", "Some messages are no longer held: " + e.data);
  });
  es.addEventListener("lagged", (e) => {
    logEntry("note", "lagged", "This page fell behind; resuming. " + e.data);
  });
  es.addEventListener("shutdown", () => {
    logEntry("note", "shutdown", "The hub is restarting; the browser will reconnect and resume.");
  });
}

async function publish(topic, message) {
  const status = $("#pub-status");
  status.textContent = "publishing…";
  try {
    const headers = { Accept: "application/json", "Content-Type": "text/plain; charset=utf-8" };
    const token = $("#token").value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch("/topics/" + encodeURIComponent(topic), { method: "POST", headers, body: message });
    if (!res.ok) {
      status.textContent = "refused (" + res.status + "): " + (await res.text()).trim();
      return;
    }
    const body = await res.json();
    const n = body.subscribers;
    status.textContent =
      "published #" + body.id + " to " + body.topic + ": " + n + (n === 1 ? " subscriber" : " subscribers");
  } catch (err) {
    status.textContent = "could not publish: " + err.message;
  }
}

async function refreshTopics() {
  try {
    // With auth on, the listing needs a token and shows only what it may
    // subscribe to (hub-wide totals only to a token that may read `**`).
    const token = $("#token").value.trim();
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch("/api/topics", { headers });
    if (!res.ok) return;
    const body = await res.json();
    const rows = body.topics.map((t) =>
      el("tr", {}, el("td", {}, t.name), el("td", { class: "num" }, String(t.subscribers)), el("td", { class: "num" }, String(t.history))),
    );
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "3", class: "muted" }, "no topics yet")));
    $("#topics tbody").replaceChildren(...rows);
    $("#sub-total").textContent = body.subscribers == null ? "–" : String(body.subscribers);
  } catch (_) {
    // The server is restarting; the next tick tries again.
  }
}

function setUpHub() {
  for (const o of document.querySelectorAll(".origin")) o.textContent = location.origin;
  $("#sub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const spec = $("#sub-topics").value.trim();
    if (spec) subscribe(spec);
  });
  $("#pub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    publish($("#pub-topic").value.trim(), $("#pub-message").value);
    $("#pub-message").select();
  });
  $("#log-clear").addEventListener("click", () => {
    $("#log").replaceChildren();
    $("#log-empty").hidden = false;
  });
  subscribe($("#sub-topics").value.trim());
  refreshTopics();
  setInterval(refreshTopics, 2000);
}

// ---------------------------------------------------------------- the race

// Both timelines share one time axis, so the bars can be compared by eye.
const race = { sequential: null, concurrent: null };

function drawRace() {
  const span = Math.max(1, ...["sequential", "concurrent"].map((m) => (race[m] ? race[m].total_ms : 0)));
  for (const mode of ["sequential", "concurrent"]) {
    const fig = $("#race-" + mode);
    const r = race[mode];
    const total = $(".total", fig);
    const lane = $(".timeline", fig);
    if (!r) {
      total.textContent = "–";
      total.dataset.totalMs = "";
      lane.replaceChildren();
      lane.setAttribute("aria-label", "Not run yet");
      continue;
    }
    total.textContent = seconds(r.total_ms);
    total.dataset.totalMs = String(Math.round(r.total_ms));
    const rows = r.requests.map((q) => {
      const attempts = q.attempts || 1;
      const bar = el("span", { class: (q.error ? "bar failed" : "bar") + (attempts > 1 ? " retried" : "") });
      if (attempts > 1) bar.textContent = "×" + attempts;
      bar.style.left = (100 * q.start_ms) / span + "%";
      bar.style.width = Math.max(0.5, (100 * (q.end_ms - q.start_ms)) / span) + "%";
      bar.title =
        q.animal + ": " + Math.round(q.start_ms) + "–" + Math.round(q.end_ms) + " ms" +
        (attempts > 1 ? ", " + attempts + " attempts" : "") + (q.error ? " (" + q.error + ")" : " " + q.sound);
      return el("div", { class: "lane" }, el("span", { class: "who" }, q.animal), el("span", { class: "track" }, bar));
    });
    const axis = el("div", { class: "axis" }, el("span", {}, "0"), el("span", {}, seconds(span)));
    lane.replaceChildren(...rows, axis);
    lane.setAttribute(
      "aria-label",
      mode + ": " + r.requests.length + " requests, done after " + seconds(r.total_ms) + " (" + r.where + ")",
    );
  }
  const s = race.sequential;
  const c = race.concurrent;
  if (s && c) {
    $("#race-summary").textContent =
      "One after the other: " + seconds(s.total_ms) + ". All at once: " + seconds(c.total_ms) + ", " +
      (s.total_ms / Math.max(1, c.total_ms)).toFixed(1) + "× faster for the same " + s.requests.length +
      " requests (" + s.where + ").";
  }
}

// What went wrong on the way, summed over a race's requests (server races
// only: the browser's fetch neither retries nor tells a reset from a close).
function mishaps(r) {
  const sum = {};
  for (const q of r.requests) for (const [k, v] of Object.entries(q.mishaps || {})) sum[k] = (sum[k] || 0) + v;
  const parts = Object.entries(sum).filter(([, v]) => v > 0).map(([k, v]) => k.replace("_", " ") + " " + v);
  return parts.length ? parts.join(", ") : "";
}

async function serverRace(mode, n, delay, faults, retries) {
  const res = await fetch(
    "/api/race?mode=" + mode + "&n=" + n + "&delay_ms=" + delay + "&faults=" + encodeURIComponent(faults) + "&retries=" + retries,
  );
  if (!res.ok) throw new Error((await res.text()).trim());
  const r = await res.json();
  r.where = "sent by coop's client on the server";
  return r;
}

let animalNames = null;

async function browserRace(mode, n, delay, faults) {
  if (!animalNames) {
    const res = await fetch("/animals", { headers: { Accept: "application/json" } });
    animalNames = (await res.json()).map((a) => a.animal);
  }
  const names = Array.from({ length: n }, (_, i) => animalNames[i % animalNames.length]);
  const t0 = performance.now();
  const one = async (animal) => {
    const start = performance.now() - t0;
    // A unique query keeps the browser from serving a cached answer.
    const url = "/animals/" + encodeURIComponent(animal) + "?delay=" + delay + "ms&r=" + Math.random() + (faults ? "&" + faults : "");
    try {
      const res = await fetch(url, { cache: "no-store" });
      const text = await res.text();
      const end = performance.now() - t0;
      return { animal, start_ms: start, end_ms: end, sound: res.ok ? text : null, error: res.ok ? null : text };
    } catch (err) {
      // A reset, a cut body or garbage: fetch only says it failed.
      return { animal, start_ms: start, end_ms: performance.now() - t0, sound: null, error: err.message };
    }
  };
  let requests = [];
  if (mode === "sequential") {
    for (const a of names) requests.push(await one(a));
  } else {
    requests = await Promise.all(names.map(one));
  }
  return { mode, total_ms: performance.now() - t0, requests, where: "sent by this browser" };
}

function setUpRace() {
  $("#race-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    if (!form.reportValidity()) return;
    const n = Number($("#race-n").value);
    const delay = Number($("#race-delay").value);
    const where = form.elements.where.value;
    const faults = $("#race-faults").value.trim();
    const retries = Number($("#race-retries").value);
    const button = $("#race-button");
    const status = $("#race-status");
    button.disabled = true;
    race.sequential = race.concurrent = null;
    $("#race-summary").textContent = "";
    drawRace();
    try {
      for (const mode of ["sequential", "concurrent"]) {
        status.textContent = "running " + n + " animals " + (mode === "sequential" ? "one after the other" : "all at once") + "…";
        race[mode] = where === "browser" ? await browserRace(mode, n, delay, faults) : await serverRace(mode, n, delay, faults, retries);
        drawRace();
      }
      const seen = ["sequential", "concurrent"].map((m) => mishaps(race[m])).filter((t) => t);
      status.textContent = seen.length ? "done. The client coped with: " + seen.join("; ") + "." : "done.";
    } catch (err) {
      status.textContent = "the race failed: " + err.message;
    } finally {
      button.disabled = false;
    }
  });
  drawRace();
}

// ------------------------------------------------------------- the kitchen

const KITCHEN_MODES = {
  sequential: "One after the other",
  concurrent: "One cook, interleaved",
  cooks2: "Two cooks",
};

function mmss(ms) {
  const s = Math.round(ms / 1000);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

const kitchenRuns = {};

function showKitchen(mode) {
  const img = $("#kitchen-chart");
  img.src = "/api/kitchen?mode=" + mode + "&format=svg";
  const t = kitchenRuns[mode];
  const text = t
    ? KITCHEN_MODES[mode] + ": dinner is ready after " + mmss(t.total_ms) + " min with " + t.cooks +
      (t.cooks === 1 ? " cook." : " cooks.")
    : KITCHEN_MODES[mode];
  img.alt = "Timeline of the dinner. " + text;
  $("#kitchen-summary").textContent = text;
}

async function setUpKitchen() {
  const radios = document.querySelectorAll('input[name="kmode"]');
  for (const r of radios) r.addEventListener("change", () => showKitchen(r.value));
  // The page may load while the server restarts: a failed load is tried
  // again a little later rather than left as an unhandled rejection.
  for (;;) {
    try {
      await loadKitchen();
      return;
    } catch (_) {
      await new Promise((done) => setTimeout(done, 2000));
    }
  }
}

async function loadKitchen() {
  const rows = [];
  for (const mode of Object.keys(KITCHEN_MODES)) {
    const res = await fetch("/api/kitchen?mode=" + mode + "&format=json");
    if (!res.ok) continue;
    const t = await res.json();
    kitchenRuns[mode] = t;
    const busy = t.steps.filter((s) => s.cook !== null && s.cook !== undefined).reduce((sum, s) => sum + (s.end_ms - s.start_ms), 0);
    rows.push(
      el("tr", { id: "kitchen-" + mode }, el("td", {}, KITCHEN_MODES[mode]), el("td", { class: "num" }, mmss(t.total_ms)), el("td", { class: "num" }, mmss(busy))),
    );
  }
  $("#kitchen-totals tbody").replaceChildren(...rows);
  showKitchen(document.querySelector('input[name="kmode"]:checked').value);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpHub();
  setUpRace();
  setUpKitchen();
});
