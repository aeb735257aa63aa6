// weft dashboard: page routing and shared helpers. Every page is a function that fills a
// container and returns a cleanup function. Text from the proxy (names, paths, headers) is
// only ever set with textContent, never parsed as HTML.
"use strict";

const weft = { pages: {} };

// Creates an element: el("td", {class: "name"}, "text", child, ...).
weft.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
};

weft.svg = function (tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
};

weft.getJSON = async function (url) {
  const rsp = await fetch(url, { cache: "no-store" });
  const text = await rsp.text();
  if (!rsp.ok) throw new Error(text.trim() || rsp.status + " " + rsp.statusText);
  return JSON.parse(text);
};

weft.pct = (x, digits) => (x === null || x === undefined ? "–" : (x * 100).toFixed(digits ?? 2) + "%");
weft.num = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits ?? 1));
weft.ms = (secs) => (secs === null || secs === undefined ? "–" : (secs * 1000).toFixed(secs < 0.01 ? 2 : 1) + " ms");

// A sparkline of requests per second, failed steps marked under the line.
weft.sparkline = function (points) {
  const w = 120, h = 24;
  const s = weft.svg("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  if (!points || points.length === 0) return s;
  const max = Math.max(...points.map((p) => p.rps), 1e-9);
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const xy = points.map((p, i) => `${(i * step).toFixed(1)},${(h - 2 - (p.rps / max) * (h - 4)).toFixed(1)}`);
  s.append(weft.svg("polyline", { points: xy.join(" ") }));
  points.forEach((p, i) => {
    if (p.successRate !== null && p.successRate < 1) {
      s.append(weft.svg("rect", { class: "fail", x: i * step - 1, y: h - 2, width: 2, height: 2 }));
    }
  });
  const last = points[points.length - 1];
  const title = weft.svg("title");
  title.textContent = `last 15 minutes; now ${last.rps.toFixed(2)} rps`;
  s.append(title);
  return s;
};

weft.table = function (headers, rows) {
  const head = weft.el("tr", {}, ...headers.map(([label, cls]) => weft.el("th", { class: cls }, label)));
  return weft.el("table", {}, weft.el("thead", {}, head), weft.el("tbody", {}, ...rows));
};

// Parses "#/page?k=v" into [page, URLSearchParams].
weft.route = function () {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, query] = hash.split("?");
  return [page || "overview", new URLSearchParams(query || "")];
};

weft.link = (page, params, text) => weft.el("a", { href: `#/${page}?${new URLSearchParams(params)}` }, text);

weft.status = function (text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = bad ? "bad" : "muted";
};

// Runs fn now and every `ms` until the page changes; errors show in the header.
weft.poll = function (fn, ms) {
  let stopped = false;
  let timer;
  const tick = async () => {
    try {
      await fn();
      weft.status("updated " + new Date().toLocaleTimeString());
    } catch (e) {
      weft.status(String(e.message || e), true);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
};

let cleanup = null;
function show() {
  const [page, params] = weft.route();
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById("main");
  main.replaceChildren();
  weft.status("");
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page);
  }
  const render = weft.pages[page];
  if (!render) {
    main.append(weft.el("p", { class: "bad" }, "no such page: " + page));
    return;
  }
  document.title = "weft · " + page;
  cleanup = render(main, params) || null;
}

window.addEventListener("hashchange", show);
window.addEventListener("DOMContentLoaded", show);
