//! Bound trees and binding states to and from their `weft.resolve.v1` messages.

use std::sync::Arc;

use weft_naming::{
    Address, AddressMeta, BindState, BoundName, BoundTree, NameTree, Path, Weighted,
};

use crate::proto;
use crate::proto::bound_tree::Node;
use crate::proto::resolve_update::State;

/// Nesting accepted in a received tree; deeper is refused (binding itself stops at 100 steps,
/// so a real tree is far shallower).
const MAX_DEPTH: usize = 128;

/// The message for `state`, bound under namespace dtab `version`.
pub(crate) fn update(state: &BindState, version: &str) -> proto::ResolveUpdate {
    let state = match state {
        BindState::Pending => State::Pending(proto::Pending {}),
        BindState::Bound(tree) => State::Bound(tree_to_proto(tree)),
        BindState::Failed(why) => State::Error(why.to_string()),
    };
    proto::ResolveUpdate {
        state: Some(state),
        dtab_version: version.to_owned(),
    }
}

/// The binding state an update carries.
///
/// # Errors
/// A message that does not describe a valid tree (no state, a bad path or address, nesting
/// deeper than 128), with what is wrong.
pub(crate) fn state(update: &proto::ResolveUpdate) -> Result<BindState, String> {
    match &update.state {
        None => Err("update without a state".into()),
        Some(State::Pending(_)) => Ok(BindState::Pending),
        Some(State::Error(e)) => Ok(BindState::Failed(e.as_str().into())),
        Some(State::Bound(t)) => Ok(BindState::Bound(Arc::new(tree_from_proto(t, 0)?))),
    }
}

fn tree_to_proto(tree: &BoundTree) -> proto::BoundTree {
    let node = match tree {
        NameTree::Neg => Node::Neg(proto::Neg {}),
        NameTree::Fail => Node::Fail(proto::Fail {}),
        NameTree::Empty => Node::Empty(proto::Empty {}),
        NameTree::Leaf(b) => Node::Leaf(proto::BoundLeaf {
            id: b.id.to_string(),
            endpoints: b.addrs.iter().map(endpoint_to_proto).collect(),
        }),
        // A binder's tree has no Alt; its first branch that is not Neg is what it means.
        NameTree::Alt(ts) => {
            let first = ts.iter().find(|t| !matches!(t, NameTree::Neg));
            return first.map_or(
                proto::BoundTree {
                    node: Some(Node::Neg(proto::Neg {})),
                },
                tree_to_proto,
            );
        }
        NameTree::Union(ws) => Node::Union(proto::Union {
            branches: ws
                .iter()
                .map(|w| proto::WeightedTree {
                    weight: w.weight,
                    tree: Some(tree_to_proto(&w.tree)),
                })
                .collect(),
        }),
    };
    proto::BoundTree { node: Some(node) }
}

fn endpoint_to_proto(a: &Address) -> proto::Endpoint {
    proto::Endpoint {
        address: a.addr.to_string(),
        weight: a.weight,
        meta: a.meta.as_deref().map(|m| proto::EndpointMeta {
            node: m.node.as_deref().unwrap_or_default().to_owned(),
            authority: m.authority.as_deref().unwrap_or_default().to_owned(),
            labels: m
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
    }
}

fn tree_from_proto(tree: &proto::BoundTree, depth: usize) -> Result<BoundTree, String> {
    if depth > MAX_DEPTH {
        return Err(format!("bound tree nested deeper than {MAX_DEPTH}"));
    }
    Ok(match &tree.node {
        None => return Err("tree node without a kind".into()),
        Some(Node::Neg(_)) => NameTree::Neg,
        Some(Node::Fail(_)) => NameTree::Fail,
        Some(Node::Empty(_)) => NameTree::Empty,
        Some(Node::Leaf(leaf)) => {
            let id = Path::read(&leaf.id).map_err(|e| format!("bound id {:?}: {e}", leaf.id))?;
            let addrs = leaf
                .endpoints
                .iter()
                .map(endpoint_from_proto)
                .collect::<Result<Vec<_>, _>>()?;
            NameTree::Leaf(BoundName::new(id, addrs))
        }
        Some(Node::Union(u)) => NameTree::Union(
            u.branches
                .iter()
                .map(|w| {
                    let tree = w.tree.as_ref().ok_or("union branch without a tree")?;
                    Ok(Weighted {
                        weight: if w.weight.is_finite() && w.weight > 0.0 {
                            w.weight
                        } else {
                            0.0
                        },
                        tree: tree_from_proto(tree, depth + 1)?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn endpoint_from_proto(e: &proto::Endpoint) -> Result<Address, String> {
    let addr = e
        .address
        .parse()
        .map_err(|_| format!("endpoint address {:?} is not ip:port", e.address))?;
    let address = Address::weighted(addr, e.weight);
    Ok(match &e.meta {
        None => address,
        Some(m) => address.with_meta(AddressMeta {
            node: (!m.node.is_empty()).then(|| m.node.as_str().into()),
            authority: (!m.authority.is_empty()).then(|| m.authority.as_str().into()),
            // A BTreeMap: already sorted by key, as AddressMeta wants.
            labels: m
                .labels
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(id: &str, port: u16, weight: f64) -> BoundTree {
        let addr =
            Address::weighted(([127, 0, 0, 1], port).into(), weight).with_meta(AddressMeta {
                node: Some("node-1".into()),
                authority: None,
                labels: vec![("zone".into(), "a".into())],
            });
        NameTree::Leaf(BoundName::new(Path::read(id).unwrap(), vec![addr]))
    }

    #[test]
    fn every_state_round_trips() {
        let union = NameTree::Union(vec![
            Weighted {
                weight: 9.0,
                tree: leaf("/#/fs/v1", 1, 1.0),
            },
            Weighted {
                weight: 1.0,
                tree: leaf("/#/fs/v2", 2, 3.5),
            },
        ]);
        for state in [
            BindState::Pending,
            BindState::Failed("delegation loop".into()),
            BindState::Bound(Arc::new(NameTree::Neg)),
            BindState::Bound(Arc::new(NameTree::Fail)),
            BindState::Bound(Arc::new(NameTree::Empty)),
            BindState::Bound(Arc::new(leaf("/#/fs/books", 8080, 2.0))),
            BindState::Bound(Arc::new(union)),
        ] {
            let msg = update(&state, "7");
            assert_eq!(msg.dtab_version, "7");
            assert_eq!(super::state(&msg).unwrap(), state);
        }
    }

    #[test]
    fn malformed_updates_are_refused() {
        let bad = proto::ResolveUpdate {
            state: Some(State::Bound(proto::BoundTree {
                node: Some(Node::Leaf(proto::BoundLeaf {
                    id: "/#/fs/a".into(),
                    endpoints: vec![proto::Endpoint {
                        address: "nowhere".into(),
                        weight: 1.0,
                        meta: None,
                    }],
                })),
            })),
            dtab_version: String::new(),
        };
        assert!(state(&bad).unwrap_err().contains("nowhere"));
        let none = proto::ResolveUpdate::default();
        assert!(state(&none).is_err());
    }
}
