//! [`DelegateTree`]: a binding explained step by step, for the admin API and the CLI.

use std::fmt;

use crate::{Address, BoundTree, Dtab, NameTree, Path};

/// The explanation of how a path binds under a dtab ("why did my request go there?").
///
/// Serialises to JSON for the admin API (`/delegator.json`):
/// `{"path": "/svc/books", "dtab": "...", "result": <node>, "root": <node>}`. `root` is the
/// step-by-step tree; `result` is the final bound tree in the same node format (types
/// `neg`, `fail`, `empty`, `pending`, `error`, `bound` and `union`). [`Display`](fmt::Display)
/// renders an indented text tree for `weft dtab delegate`. Deserialising reads the same JSON
/// back (a delegation explained by the control plane travels as this JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DelegateTree {
    /// The path that was bound.
    pub path: Path,
    /// The dtab it was bound under.
    pub dtab: Dtab,
    /// The outcome: the bound tree, or pending, or an error.
    pub result: DelegateNode,
    /// The steps, starting with `path`.
    pub root: DelegateNode,
}

/// One step of a [`DelegateTree`].
///
/// JSON: the fields below that are set, plus `"type"` and the fields of the
/// [`DelegateOutcome`], e.g.
/// `{"path": "/svc/rates", "dentry": "/svc => /#/fs", "residual": "/rates", "type": "delegate",
/// "delegate": {...}}`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DelegateNode {
    /// The path looked up at this step; absent for literal leaves (`~`, `!`, `$`) and for
    /// nested alternatives and unions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Path>,
    /// The dentry that fired for `path`, in dtab syntax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dentry: Option<String>,
    /// The namer prefix that handled `path` (e.g. `/#/fs` or `/$/inet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namer: Option<Path>,
    /// The rest of `path` after the dentry prefix or namer prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residual: Option<Path>,
    /// The weight, for a branch of a union.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: DelegateOutcome,
}

/// What happened at one [`DelegateNode`]; serialised with a `"type"` tag.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum DelegateOutcome {
    /// No such name.
    Neg,
    /// Fail: the binding stops here.
    Fail,
    /// The name exists but has no addresses.
    Empty,
    /// A namer is still loading.
    Pending,
    /// A namer bound the name.
    Bound {
        /// The bound id.
        id: Path,
        /// The current addresses.
        addrs: Vec<Address>,
    },
    /// The path was rewritten to one other path.
    Delegate {
        /// The step for that path.
        delegate: Box<DelegateNode>,
    },
    /// Alternatives, in the order tried.
    Alt {
        /// The branches; those after the winning one are `skipped`.
        alt: Vec<DelegateNode>,
    },
    /// A weighted union; every branch carries its `weight`.
    Union {
        /// The branches.
        union: Vec<DelegateNode>,
    },
    /// An alternative that was not tried because an earlier one decided the outcome.
    Skipped,
    /// An error: a namer failure or a delegation loop.
    Error {
        /// What went wrong.
        message: String,
    },
}

// === impl DelegateNode ===

impl DelegateNode {
    pub(crate) fn new(outcome: DelegateOutcome) -> DelegateNode {
        DelegateNode {
            path: None,
            dentry: None,
            namer: None,
            residual: None,
            weight: None,
            outcome,
        }
    }

    pub(crate) fn at(path: &Path, outcome: DelegateOutcome) -> DelegateNode {
        DelegateNode {
            path: Some(path.clone()),
            ..DelegateNode::new(outcome)
        }
    }

    /// The node describing a final bound tree (used for [`DelegateTree::result`]).
    pub(crate) fn from_bound(tree: &BoundTree) -> DelegateNode {
        let outcome = match tree {
            NameTree::Neg => DelegateOutcome::Neg,
            NameTree::Fail => DelegateOutcome::Fail,
            NameTree::Empty => DelegateOutcome::Empty,
            NameTree::Leaf(b) => DelegateOutcome::Bound {
                id: b.id.clone(),
                addrs: b.addrs.to_vec(),
            },
            NameTree::Alt(ts) => DelegateOutcome::Alt {
                alt: ts.iter().map(DelegateNode::from_bound).collect(),
            },
            NameTree::Union(ws) => DelegateOutcome::Union {
                union: ws
                    .iter()
                    .map(|w| DelegateNode {
                        weight: Some(w.weight),
                        ..DelegateNode::from_bound(&w.tree)
                    })
                    .collect(),
            },
        };
        DelegateNode::new(outcome)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
        write!(f, "{:indent$}", "")?;
        let mut head = Vec::new();
        if let Some(w) = self.weight {
            head.push(format!("{w}*"));
        }
        if let Some(p) = &self.path {
            head.push(p.to_string());
        }
        if let Some(d) = &self.dentry {
            head.push(format!("(dentry {d})"));
        }
        if let Some(n) = &self.namer {
            head.push(format!("(namer {n})"));
        }
        if let Some(r) = &self.residual {
            head.push(format!("(residual {r})"));
        }
        if !head.is_empty() {
            write!(f, "{} ", head.join(" "))?;
        }
        match &self.outcome {
            DelegateOutcome::Neg => writeln!(f, "-> neg"),
            DelegateOutcome::Fail => writeln!(f, "-> fail"),
            DelegateOutcome::Empty => writeln!(f, "-> empty"),
            DelegateOutcome::Pending => writeln!(f, "-> pending"),
            DelegateOutcome::Skipped => writeln!(f, "-> skipped"),
            DelegateOutcome::Error { message } => writeln!(f, "-> error: {message}"),
            DelegateOutcome::Bound { id, addrs } => {
                write!(f, "-> bound {id} [")?;
                for (i, a) in addrs.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    if a.weight == 1.0 {
                        write!(f, "{sep}{}", a.addr)?;
                    } else {
                        write!(f, "{sep}{} * {}", a.addr, a.weight)?;
                    }
                }
                writeln!(f, "]")
            }
            DelegateOutcome::Delegate { delegate } => {
                writeln!(f, "->")?;
                delegate.write(f, indent + 2)
            }
            DelegateOutcome::Alt { alt } => {
                writeln!(f, "-> alt")?;
                alt.iter().try_for_each(|n| n.write(f, indent + 2))
            }
            DelegateOutcome::Union { union } => {
                writeln!(f, "-> union")?;
                union.iter().try_for_each(|n| n.write(f, indent + 2))
            }
        }
    }
}

/// An indented text tree: one step per line, children indented by two spaces, then the
/// result.
impl fmt::Display for DelegateTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.write(f, 0)?;
        write!(f, "result: ")?;
        self.result.write(f, 0)
    }
}

impl fmt::Display for DelegateNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}
