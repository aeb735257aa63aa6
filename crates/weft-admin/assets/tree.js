// Renders a delegation tree from /delegator.json (DelegateNode) as nested lists: each node
// shows the path looked up, the dentry or namer that handled it, and what came of it
// (delegate, alt, union with weights, neg, fail, empty, pending, bound with its endpoints).
"use strict";

weft.explain = {
  neg: "neg: no dentry or namer knows this name",
  fail: "fail: the dtab says ! (binding fails here)",
  empty: "empty: the name is known but has no endpoints",
  pending: "pending: a namer is still loading",
  skipped: "skipped: an earlier alternative decided",
};

weft.tree = function (node) {
  const ul = weft.el("ul", { class: "tree root" });
  ul.append(weft.treeNode(node));
  return ul;
};

weft.treeNode = function (node) {
  const el = weft.el;
  const type = node.type;
  const line = el("div", { class: "node", "data-type": type });
  if (node.weight !== undefined) line.append(el("span", { class: "weight" }, node.weight + " ×"));
  line.append(el("span", { class: "kind " + type }, type));
  if (node.path) line.append(el("span", { class: "path" }, node.path + " "));
  if (node.dentry) line.append(el("span", { class: "muted" }, "via " + node.dentry + " "));
  if (node.namer) line.append(el("span", { class: "muted" }, "namer " + node.namer + " "));
  if (node.residual && node.residual !== "/") line.append(el("span", { class: "muted" }, "residual " + node.residual + " "));
  if (weft.explain[type]) line.append(el("span", { class: "muted" }, " " + weft.explain[type]));
  if (type === "error") line.append(el("span", { class: "bad" }, " " + node.message));
  const li = el("li", {}, line);
  if (type === "bound") {
    line.append(el("span", { class: "bound-id" }, node.id + " "));
    const addrs = (node.addrs || []).map((a) => a.addr + (a.weight !== 1 ? ` (weight ${a.weight})` : ""));
    line.append(el("span", { class: "addrs" }, addrs.length ? "→ " + addrs.join(", ") : "→ no endpoints"));
  }
  const children = type === "delegate" ? [node.delegate] : type === "alt" ? node.alt : type === "union" ? node.union : [];
  if (children && children.length) {
    const ul = el("ul", { class: "tree" });
    for (const c of children) ul.append(weft.treeNode(c));
    li.append(ul);
  }
  return li;
};
