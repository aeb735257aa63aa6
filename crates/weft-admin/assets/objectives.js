// Objectives: every service-level objective with its attainment, error budget left, burn
// rates and verdict, from /objectives.json (computed in the proxy; no Prometheus needed).
"use strict";

weft.pages.objectives = function (main) {
  const el = weft.el;
  const body = el("div", {});
  main.append(el("h2", {}, "Service-level objectives"), body);

  async function refresh() {
    const list = await weft.getJSON("/objectives.json");
    if (!list.length) {
      body.replaceChildren(el("p", { class: "muted" },
        "No objectives with traffic yet. Configure them under a router's service.objectives (docs/configuration.md)."));
      return;
    }
    const windows = list[0].burnRates.map(([w]) => w);
    const rows = list.map((s) => {
      const budget = Math.max(0, Math.min(1, s.budgetLeft));
      const bar = el("span", { class: "bar" }, el("span", {}));
      bar.firstChild.style.width = (budget * 100).toFixed(1) + "%";
      return el("tr", { "data-router": s.router, "data-service": s.service, "data-objective": s.objective, "data-verdict": s.verdict },
        el("td", { class: "name" }, s.router),
        el("td", { class: "name" }, s.service),
        el("td", { class: "name" }, s.objective),
        el("td", {}, s.config.target + " / " + s.config.window),
        el("td", { class: "attainment" }, weft.pct(s.attainment, 3)),
        el("td", { class: "budget" }, weft.pct(s.budgetLeft, 1), " ", bar),
        ...s.burnRates.map(([w, b]) => el("td", { class: b > 1 ? "bad" : "" }, weft.num(b, 2) + "×")),
        el("td", {}, s.requests),
        el("td", { class: "name" }, el("span", { class: "badge " + s.verdict }, s.verdict)));
    });
    body.replaceChildren(weft.table([
      ["Router", "name"], ["Service", "name"], ["Objective", "name"], ["Target / window"],
      ["Attainment"], ["Budget left"], ...windows.map((w) => ["Burn " + w]), ["Requests"], ["Verdict", "name"],
    ], rows), el("p", { class: "muted" },
      "Attainment and budget cover the time since the proxy started; burn rate is the bad fraction over a window divided by the budget (1× spends it in exactly the objective's window). See docs/objectives.md."));
  }
  return weft.poll(refresh, 5000);
};
