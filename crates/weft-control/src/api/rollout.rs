//! Safe rollout of a dtab update (`PUT /api/1/dtabs/<ns>?dryRun=true`, `?force=true`): what
//! the names proxies route right now (the resolution service's watched names) bind to under
//! the stored dtab and under the proposed one.

use http::StatusCode;
use weft_naming::{BindState, Dtab, NameTree, Path};

use super::naming::{bind_settled, state_json};
use crate::body::{json, Rsp};
use crate::Control;

/// One routed name under the stored and the proposed dtab.
pub(crate) struct Change {
    path: Path,
    local: Dtab,
    proxies: u64,
    old: BindState,
    new: BindState,
}

impl Change {
    /// True when the proposed dtab binds the name differently.
    fn changed(&self) -> bool {
        self.old != self.new
    }

    /// True when the name is routed somewhere now and would bind to nothing (Neg).
    fn lost(&self) -> bool {
        let neg = |s: &BindState| matches!(s, BindState::Bound(t) if matches!(**t, NameTree::Neg));
        !neg(&self.old) && neg(&self.new)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.to_string(),
            "localDtab": self.local.to_string(),
            "proxies": self.proxies,
            "changed": self.changed(),
            "old": state_json(&self.path, &self.old),
            "new": state_json(&self.path, &self.new),
        })
    }
}

/// Binds every name proxies watch in `ns` under `stored` and under `proposed` (each followed
/// by the name's local dtab), waiting for namers still loading.
pub(crate) async fn changes(
    control: &Control,
    ns: &str,
    stored: &Dtab,
    proposed: &Dtab,
) -> Vec<Change> {
    let mut out = Vec::new();
    for w in control.resolution().watched() {
        if w.namespace != ns {
            continue;
        }
        let old = bind_settled(control, stored.concat(&w.local_dtab), w.path.clone()).await;
        let new = bind_settled(control, proposed.concat(&w.local_dtab), w.path.clone()).await;
        out.push(Change {
            path: w.path,
            local: w.local_dtab,
            proxies: w.streams,
            old,
            new,
        });
    }
    out
}

/// The dry-run answer: every routed name, changed or not.
pub(crate) fn dry_run(ns: &str, changes: &[Change]) -> Rsp {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "namespace": ns,
            "names": changes.iter().map(Change::json).collect::<Vec<_>>(),
        }),
    )
}

/// Refuses (422) an update that would leave a routed name bound to nothing, naming them.
pub(crate) fn refuse_lost(changes: &[Change]) -> Option<Rsp> {
    let lost: Vec<String> = changes
        .iter()
        .filter(|c| c.lost())
        .map(|c| format!("{} ({} proxies)", c.path, c.proxies))
        .collect();
    if lost.is_empty() {
        return None;
    }
    Some(super::text(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!(
            "the new dtab binds names proxies are routing to nothing (neg): {}; \
             add force=true to write it anyway",
            lost.join(", ")
        ),
    ))
}
