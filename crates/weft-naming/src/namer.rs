//! The [`Namer`] trait: live lookups of names under a prefix.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{BoundName, NameTree, NamerStatus, Path};

/// What a namer knows about one residual path right now.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// Still loading; bindings that need this name stay pending.
    Pending,
    /// No such name (an `Alt` falls back to its next branch).
    Neg,
    /// The name exists. `id` is the full bound id (e.g. `/#/fs/rates`); `addrs` may be empty,
    /// which is *not* Neg: an `Alt` does not fall back past it.
    Bound(BoundName),
    /// The namer rewrote the name into a tree of other paths, which are bound again.
    Delegate(NameTree<Path>),
    /// An error with no last good state to fall back on; the message says what went wrong.
    Failed(Arc<str>),
}

/// A source of live name resolutions, such as the fs namer or DNS.
///
/// Namers are configured under a prefix (e.g. `/#/fs`); the binder offers them paths that
/// start with that prefix, with the prefix stripped. Implementations do their I/O in their
/// own tasks and publish on watch channels; `lookup` itself must not block.
pub trait Namer: Send + Sync + 'static {
    /// Starts (or joins) watching `residual`, the path with the namer's prefix stripped.
    ///
    /// The receiver's current value is what is known now (possibly
    /// [`Resolution::Pending`]); every later change is sent on it. A namer may stop updating a
    /// name once all receivers for it are dropped.
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution>;

    /// The health of the namer's backend, for namers that have one (shown on `/namers.json`,
    /// in metrics and by `weft check`); `None` (the default) for namers without a backend.
    fn status(&self) -> Option<NamerStatus> {
        None
    }
}
