//! Naming for weft: paths, delegation tables (dtabs), name trees, binding, namers and
//! transformers, with Finagle/Linkerd 1 semantics (see `docs/routing.md`).
//!
//! The core is pure: [`Path`] and [`Dtab`] parse and print, [`Dtab::lookup`] does one rewrite
//! step, and the binder turns a logical name such as `/svc/books` into a [`BoundTree`] of
//! concrete address sets. I/O lives only in namers ([`FsNamer`], [`InetNamer`]), which sit
//! behind the [`Namer`] trait and publish live updates on `tokio::sync::watch` channels; an
//! [`Interpreter`] keeps each [`Binding`] up to date as they change. This crate does not
//! connect to endpoints, balance load or parse configuration files.
//!
//! ```
//! use weft_naming::{Dtab, NameTree, Path};
//!
//! let dtab = Dtab::read("/svc => /#/fs; /svc/books => 9 * /k8s/v1 & 1 * /k8s/v2").unwrap();
//! let books = Path::read("/svc/books").unwrap();
//! // The later dentry is tried first; the earlier one is the fallback.
//! assert_eq!(
//!     dtab.lookup(&books),
//!     NameTree::read("(9 * /k8s/v1 & 1 * /k8s/v2) | /#/fs/books").unwrap(),
//! );
//! ```

mod backoff;
mod bind;
mod bound;
mod delegate;
mod dtab;
mod fs;
mod inet;
mod interpreter;
mod namer;
mod parse;
mod path;
mod status;
#[cfg(test)]
mod strategies;
mod transform;
mod tree;

pub use backoff::Backoff;
pub use bound::{AddrSet, Address, AddressMeta, BoundName, BoundTree, Sampled};
pub use delegate::{DelegateNode, DelegateOutcome, DelegateTree};
pub use dtab::{Dentry, Dtab, Prefix, PrefixElem};
pub use fs::FsNamer;
pub use inet::InetNamer;
pub use interpreter::{BindState, Binding, Interpreter, RemoteInterpreter};
pub use namer::{publish_if_changed, wait_or_unwatched, Namer, Resolution};
pub use parse::DtabError;
pub use path::{Path, PathError};
pub use status::{NamerSnapshot, NamerState, NamerStatus, WatchGuard};
pub use transform::{Transformed, Transformer};
pub use tree::{NameTree, Weighted};
