//! `GET /api/1/delegate/<ns>?path=` and `GET /api/1/resolve/<ns>?path=`: how a name binds
//! under a namespace's dtab, with the namers of the control plane's config.

use std::time::Duration;

use http::StatusCode;
use weft_naming::{BindState, BoundTree, Dtab, NameTree, Path};

use super::{param, store_error};
use crate::body::{json, text, Rsp};
use crate::store::StoreError;
use crate::Control;

/// How long a request waits for namers that are still loading.
const BIND_WAIT: Duration = Duration::from_secs(5);

/// The namespace's dtab (plus `dtab=` extra dentries, appended last as an `l5d-dtab` header
/// would) and the `path=` to explain; or the error response.
async fn inputs(control: &Control, ns: &str, query: &str) -> Result<(Dtab, Path), Rsp> {
    let Some(path) = param(query, "path") else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "missing query parameter: path",
        ));
    };
    let path =
        Path::read(&path).map_err(|e| text(StatusCode::BAD_REQUEST, &format!("path: {e}")))?;
    let extra = Dtab::read(&param(query, "dtab").unwrap_or_default())
        .map_err(|e| text(StatusCode::BAD_REQUEST, &format!("dtab: {e}")))?;
    match control.store().get(ns).await {
        Ok(Some(v)) => Ok((v.dtab.concat(&extra), path)),
        Ok(None) => Err(store_error(control, "get", &StoreError::not_found(ns))),
        Err(e) => Err(store_error(control, "get", &e)),
    }
}

/// The delegation tree in the shape of the proxy admin's `/delegator.json`; the indented
/// text of `weft dtab delegate` with `format=text`.
pub(crate) async fn delegate(control: &Control, ns: &str, query: &str) -> Rsp {
    let (dtab, path) = match inputs(control, ns, query).await {
        Ok(i) => i,
        Err(rsp) => return rsp,
    };
    let tree = control
        .interpreter()
        .delegate(&dtab, &path, BIND_WAIT)
        .await;
    if param(query, "format").as_deref() == Some("text") {
        return text(StatusCode::OK, &tree.to_string());
    }
    match serde_json::to_value(&tree) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The bound endpoints: `{"path", "state", "names": [{"id", "weight", "addrs": [{"addr",
/// "weight"}]}]}`, where `state` is `bound`, `neg`, `fail`, `empty`, `pending` (a namer still
/// loading after 5 s) or `error` (with `error`).
pub(crate) async fn resolve(control: &Control, ns: &str, query: &str) -> Rsp {
    let (dtab, path) = match inputs(control, ns, query).await {
        Ok(i) => i,
        Err(rsp) => return rsp,
    };
    let current = bind_settled(control, dtab, path.clone()).await;
    json(StatusCode::OK, &state_json(&path, &current))
}

/// Binds `path` under `dtab` with the control plane's namers, waiting up to 5 s for namers
/// still loading (then `Pending`).
pub(crate) async fn bind_settled(control: &Control, dtab: Dtab, path: Path) -> BindState {
    let binding = control.interpreter().bind(dtab, path);
    let mut state = binding.state();
    let settled = state.wait_for(|s| !matches!(s, BindState::Pending));
    let _ = tokio::time::timeout(BIND_WAIT, settled).await;
    let current = state.borrow().clone();
    current
}

/// A binding as JSON: `{"path", "state", "names"}` (see [`resolve`]).
pub(crate) fn state_json(path: &Path, state: &BindState) -> serde_json::Value {
    match state {
        BindState::Pending => serde_json::json!({"path": path.to_string(), "state": "pending"}),
        BindState::Failed(e) => {
            serde_json::json!({"path": path.to_string(), "state": "error", "error": &**e})
        }
        BindState::Bound(tree) => serde_json::json!({
            "path": path.to_string(),
            "state": outcome(tree),
            "names": names(tree, 1.0),
        }),
    }
}

fn outcome(tree: &BoundTree) -> &'static str {
    match tree {
        NameTree::Neg => "neg",
        NameTree::Fail => "fail",
        NameTree::Empty => "empty",
        _ => "bound",
    }
}

/// Every bound name of the tree with its share of traffic (the product of the union
/// weights on its way, normalised per union).
fn names(tree: &BoundTree, share: f64) -> Vec<serde_json::Value> {
    match tree {
        NameTree::Leaf(name) => vec![serde_json::json!({
            "id": name.id.to_string(),
            "weight": share,
            "addrs": name.addrs.iter().map(|a| serde_json::json!({
                "addr": a.addr.to_string(),
                "weight": a.weight,
            })).collect::<Vec<_>>(),
        })],
        NameTree::Union(branches) => {
            let total: f64 = branches.iter().map(|b| b.weight).sum();
            branches
                .iter()
                .flat_map(|b| {
                    let w = if total > 0.0 { b.weight / total } else { 0.0 };
                    names(&b.tree, share * w)
                })
                .collect()
        }
        NameTree::Alt(alts) => alts.first().map(|t| names(t, share)).unwrap_or_default(),
        NameTree::Neg | NameTree::Fail | NameTree::Empty => Vec::new(),
    }
}
