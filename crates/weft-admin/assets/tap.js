// Live tap: streams /tap (JSON lines) with server-side filters; one line per request with
// its status and latency, newest first. Pause stops drawing (the stream stays open, and the
// lines missed while paused are counted); Stop closes it.
"use strict";

weft.pages.tap = function (main) {
  const el = weft.el;
  const field = (id, label, size, ph) => {
    const input = el("input", { id, size, placeholder: ph });
    return [input, el("label", {}, label, input)];
  };
  const [service, serviceL] = field("tap-service", "Service", 18, "/svc/books");
  const [route, routeL] = field("tap-route", "Route", 10, "");
  const [method, methodL] = field("tap-method", "Method", 6, "GET");
  const [path, pathL] = field("tap-path", "Path prefix", 16, "/api");
  const [status, statusL] = field("tap-status", "Status", 5, "500");
  const start = el("button", { id: "tap-start", type: "button" }, "Start");
  const pause = el("button", { id: "tap-pause", type: "button", disabled: "" }, "Pause");
  const info = el("span", { id: "tap-info", class: "muted" }, "Not running.");
  const lines = el("tbody", {});
  main.append(el("div", { class: "form" }, serviceL, routeL, methodL, pathL, statusL, start, pause, info),
    el("table", { id: "tap-lines" }, el("thead", {}, el("tr", {},
      ...["Time", "Router", "Method", "Authority", "Path", "Service", "Route", "Status", "Latency", "Error"].map((h) => el("th", {}, h)))),
    lines));

  const MAX_LINES = 500;
  let abort = null;
  let paused = false;
  let missed = 0;
  const rows = new Map();

  function onEvent(ev) {
    const key = ev.router + ":" + ev.id;
    if (ev.type === "req") {
      if (paused) {
        missed++;
        info.textContent = `Paused (${missed} missed).`;
        return;
      }
      const cells = {
        status: el("td", { class: "status" }, "…"), latency: el("td", { class: "latency" }, ""),
        error: el("td", { class: "error" }, ""),
      };
      const tr = el("tr", { "data-path": ev.path, "data-service": ev.service },
        el("td", {}, new Date().toLocaleTimeString()), el("td", {}, ev.router), el("td", {}, ev.method),
        el("td", { class: "authority" }, ev.authority), el("td", { class: "path" }, ev.path), el("td", {}, ev.service), el("td", {}, ev.route),
        cells.status, cells.latency, cells.error);
      rows.set(key, cells);
      lines.prepend(tr);
      while (lines.children.length > MAX_LINES) lines.lastChild.remove();
      if (rows.size > MAX_LINES) rows.delete(rows.keys().next().value);
    } else if (ev.type === "rsp") {
      const c = rows.get(key);
      if (!c) return;
      c.status.textContent = ev.status;
      c.status.className = "status " + (ev.status >= 500 ? "bad" : "ok");
      c.latency.textContent = (ev.latency_us / 1000).toFixed(2) + " ms";
      if (ev.proxy_error) c.error.textContent = ev.proxy_error;
    } else if (ev.type === "end") {
      const c = rows.get(key);
      if (c && ev.error) c.error.textContent = ev.error;
      rows.delete(key);
    }
  }

  async function run() {
    const q = new URLSearchParams();
    for (const [k, input] of [["service", service], ["route", route], ["method", method], ["path", path], ["status", status]]) {
      if (input.value.trim()) q.set(k, input.value.trim());
    }
    abort = new AbortController();
    const rsp = await fetch("/tap?" + q, { signal: abort.signal });
    if (!rsp.ok) throw new Error((await rsp.text()).trim());
    info.textContent = "Streaming.";
    const reader = rsp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) onEvent(JSON.parse(line));
      }
    }
  }

  function stop() {
    if (abort) abort.abort();
    abort = null;
    start.textContent = "Start";
    pause.setAttribute("disabled", "");
  }

  start.addEventListener("click", () => {
    if (abort) { stop(); info.textContent = "Stopped."; return; }
    lines.replaceChildren();
    rows.clear();
    paused = false; missed = 0;
    start.textContent = "Stop";
    pause.removeAttribute("disabled");
    pause.textContent = "Pause";
    run().then(() => { info.textContent = "Stream ended."; stop(); }, (e) => {
      if (e.name !== "AbortError") { info.textContent = String(e.message || e); info.className = "bad"; }
      stop();
    });
  });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    info.textContent = paused ? `Paused (${missed} missed).` : `Streaming (${missed} requests missed while paused).`;
  });
  return stop;
};
