// Dtab playground: a router's dtab in an editor, a path and an optional l5d-dtab override;
// shows how the path would bind under the edited dtab (/delegator.json with base=, which
// explains and never applies), with each leaf's endpoints. Parse errors show their line.
"use strict";

weft.pages.playground = function (main, params) {
  const el = weft.el;
  const routerSel = el("select", { id: "pg-router" });
  const dtab = el("textarea", { id: "pg-dtab", spellcheck: "false" });
  const path = el("input", { id: "pg-path", size: 40, value: params.get("path") || "/svc/" });
  const local = el("input", { id: "pg-local", size: 50, placeholder: "/svc/books => /#/fs/books-v2" });
  const go = el("button", { id: "pg-go", type: "button" }, "Delegate");
  const reset = el("button", { type: "button" }, "Reset to the router's dtab");
  const out = el("div", { id: "pg-out" });
  let dtabs = {};

  main.append(
    el("p", { class: "muted" }, "Edits here are never applied: the router keeps its dtab."),
    el("div", { class: "form" }, el("label", {}, "Router", routerSel), el("label", {}, "Path", path),
      el("label", {}, "l5d-dtab override", local), go),
    el("label", { class: "muted" }, "Dtab (one dentry per line)"), el("br"), dtab, el("br"), reset,
    el("h2", {}, "Delegation"), out);

  const pretty = (d) => d.split(";").map((s) => s.trim()).filter(Boolean).join(";\n");

  async function load() {
    const config = await weft.getJSON("/config.json");
    for (const r of config.routers || []) {
      dtabs[r.label] = r.dtab || "";
      routerSel.append(el("option", { value: r.label }, r.label));
    }
    if (params.get("router")) routerSel.value = params.get("router");
    dtab.value = pretty(dtabs[routerSel.value] || "");
    if (params.get("path")) delegate();
  }

  function showError(msg) {
    const m = /line (\d+), column (\d+)/.exec(msg);
    const parts = [el("div", { class: "error", id: "pg-error" }, msg)];
    if (m && msg.startsWith("base:")) {
      const line = dtab.value.split("\n")[Number(m[1]) - 1] ?? "";
      parts.push(el("pre", { class: "error" }, `${m[1]} | ${line}\n${" ".repeat(m[1].length + 3 + Number(m[2]) - 1)}^`));
    }
    out.replaceChildren(...parts);
  }

  async function delegate() {
    const q = new URLSearchParams({ router: routerSel.value, path: path.value.trim(), base: dtab.value, dtab: local.value });
    try {
      const tree = await weft.getJSON("/delegator.json?" + q);
      out.replaceChildren(el("div", { class: "muted" }, "Outcome:"), weft.tree(tree.result),
        el("div", { class: "muted" }, "Steps:"), weft.tree(tree.root));
    } catch (e) {
      showError(String(e.message || e));
    }
  }

  go.addEventListener("click", delegate);
  path.addEventListener("keydown", (e) => { if (e.key === "Enter") delegate(); });
  routerSel.addEventListener("change", () => { dtab.value = pretty(dtabs[routerSel.value] || ""); });
  reset.addEventListener("click", () => { dtab.value = pretty(dtabs[routerSel.value] || ""); });
  load().catch((e) => showError(String(e.message || e)));
  return null;
};
