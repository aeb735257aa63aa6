// Overview: every router and service with request counts, rates, success rate, latency
// quantiles and a 15-minute sparkline, from /overview.json (refreshed every 5 seconds);
// and proxy errors by l5d-proxy-error reason.
"use strict";

weft.pages.overview = function (main) {
  const el = weft.el;
  const services = el("div", { id: "services" });
  const errors = el("div", { id: "errors" });
  main.append(el("h2", {}, "Routers and services"), services, el("h2", {}, "Proxy errors by reason"), errors);

  const headers = [
    ["Router", "name"], ["Service", "name"], ["Requests"], ["RPS"], ["Success"],
    ["p50"], ["p95"], ["p99"], ["Last 15 min", "name"],
  ];

  function row(r, isRouter) {
    const name = isRouter
      ? el("td", { class: "name" }, "")
      : el("td", { class: "name" }, weft.link("service", { router: r.router, service: r.service }, r.service));
    const sr = r.successRate;
    const srClass = sr === null ? "muted" : sr >= 0.99 ? "ok" : sr >= 0.95 ? "warn" : "bad";
    return el("tr", { class: isRouter ? "router" : "service", "data-router": r.router, "data-service": isRouter ? null : r.service },
      el("td", { class: "name" }, r.router),
      name,
      el("td", { class: "requests", "data-value": r.requests }, r.requests),
      el("td", { class: "rps", "data-value": r.rps }, weft.num(r.rps, 2)),
      el("td", { class: "success " + srClass, "data-value": sr ?? "" }, weft.pct(sr)),
      el("td", { class: "p50" }, weft.ms(r.p50)),
      el("td", { class: "p95" }, weft.ms(r.p95)),
      el("td", { class: "p99" }, weft.ms(r.p99)),
      el("td", { class: "name" }, weft.sparkline(r.sparkline)));
  }

  async function refresh() {
    const o = await weft.getJSON("/overview.json");
    const rows = [];
    for (const r of o.routers) {
      rows.push(row(r, true));
      for (const s of o.services.filter((s) => s.router === r.router)) rows.push(row(s, false));
    }
    services.replaceChildren(
      rows.length ? weft.table(headers, rows) : el("p", { class: "muted" }, "No requests yet."),
      el("p", { class: "muted" }, `Rates and latency over the last ${Math.round(o.rateWindowSecs)} s; requests since start.`));
    errors.replaceChildren(o.errors.length
      ? weft.table([["Reason", "name"], ["Exchanges"]], o.errors.map(([reason, n]) =>
          el("tr", { "data-reason": reason }, el("td", { class: "name" }, reason), el("td", {}, n))))
      : el("p", { class: "muted" }, "None."));
  }
  return weft.poll(refresh, 5000);
};
