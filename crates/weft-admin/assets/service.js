// Service: the routes of one service (per-route metrics), how its name binds now, and the
// clients it binds to with each endpoint's share of requests, from /service.json.
"use strict";

weft.pages.service = function (main, params) {
  const el = weft.el;
  const router = params.get("router") || "";
  const service = params.get("service") || "";
  const body = el("div", {});
  main.append(el("h2", {}, `${service} `, el("span", { class: "muted" }, `on router ${router}`)), body);

  async function refresh() {
    const v = await weft.getJSON(`/service.json?${new URLSearchParams({ router, service })}`);
    const routes = v.routes.map((r) => el("tr", { "data-route": r.service },
      el("td", { class: "name" }, r.service),
      el("td", {}, r.requests),
      el("td", {}, weft.pct(r.successRate)),
      el("td", {}, weft.ms(r.p50)), el("td", {}, weft.ms(r.p95)), el("td", {}, weft.ms(r.p99)),
      el("td", { class: "name" }, r.errors.map(([k, n]) => `${k}: ${n}`).join(", "))));
    const clients = [];
    for (const c of v.clients) {
      clients.push(el("tr", { class: "router" },
        el("td", { class: "name" }, c.client), el("td", {}, `${c.endpoints} endpoints`),
        el("td", {}, `${c.ejected} ejected`), el("td", { class: "name", colspan: 5 }, "TLS: " + (c.tls ?? "none (plaintext)"))));
      for (const e of c.endpointRequests) {
        const bar = el("span", { class: "bar" }, el("span", {}));
        bar.firstChild.style.width = (e.share * 100).toFixed(1) + "%";
        let accrual = e.accrual ?? "gone";
        if (e.accrual === "ejected") {
          accrual += ` ${weft.num(e.ejectedForSecs, 0)} s ago, probe in ${weft.num(e.nextProbeInSecs, 0)} s`;
        }
        clients.push(el("tr", { "data-endpoint": e.endpoint },
          el("td", { class: "name" }, e.endpoint), el("td", {}, e.requests),
          el("td", {}, weft.pct(e.share, 1)), el("td", { class: "name" }, bar),
          el("td", { class: "ewma" }, weft.ms(e.latencyEwmaSecs)), el("td", { class: "pending" }, e.pending ?? "–"),
          el("td", { class: "name accrual " + (e.accrual === "alive" ? "ok" : "bad") }, accrual)));
      }
    }
    body.replaceChildren(
      el("h2", {}, "Routes"),
      routes.length ? weft.table([["Route", "name"], ["Requests"], ["Success"], ["p50"], ["p95"], ["p99"], ["Errors", "name"]], routes)
        : el("p", { class: "muted" }, "No requests yet."),
      el("h2", {}, "Binding"),
      v.binding ? weft.tree(v.binding) : el("p", { class: "muted" }, "The router is gone."),
      el("h2", {}, "Clients and endpoints"),
      clients.length ? weft.table([["Client / endpoint", "name"], ["Attempts"], ["Share"], ["", "name"],
          ["Peak EWMA"], ["Pending"], ["Failure accrual", "name"]], clients)
        : el("p", { class: "muted" }, "No bound client has sent a request yet."));
  }
  return weft.poll(refresh, 5000);
};
