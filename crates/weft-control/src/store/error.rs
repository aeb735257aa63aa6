//! [`StoreError`]: why a store operation failed, and who is at fault.

use std::fmt;

/// Why a [`DtabStore`](super::DtabStore) operation failed.
///
/// Displays one line: `namespace "ns" already exists`, `version mismatch: ... (now 42)`,
/// `etcd unavailable: ...`. Predicates tell the HTTP status: not found 404, exists 409,
/// conflict 412, invalid 400, unavailable 503, anything else 500.
pub struct StoreError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    NotFound,
    Exists,
    Conflict { current: String },
    Invalid,
    Unavailable,
    Internal,
}

impl StoreError {
    pub(crate) fn not_found(ns: &str) -> StoreError {
        Self::new(Kind::NotFound, format!("namespace \"{ns}\" does not exist"))
    }

    pub(crate) fn exists(ns: &str) -> StoreError {
        Self::new(Kind::Exists, format!("namespace \"{ns}\" already exists"))
    }

    pub(crate) fn conflict(current: &str) -> StoreError {
        Self::new(
            Kind::Conflict {
                current: current.to_owned(),
            },
            format!("version mismatch: the dtab changed since it was read (now {current})"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> StoreError {
        Self::new(Kind::Invalid, message.into())
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> StoreError {
        Self::new(Kind::Unavailable, message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> StoreError {
        Self::new(Kind::Internal, message.into())
    }

    fn new(kind: Kind, message: String) -> StoreError {
        StoreError(Box::new(Inner { kind, message }))
    }

    /// The namespace does not exist.
    pub fn is_not_found(&self) -> bool {
        self.0.kind == Kind::NotFound
    }

    /// A create found the namespace already there.
    pub fn is_exists(&self) -> bool {
        self.0.kind == Kind::Exists
    }

    /// A compare-and-set found another version; see [`StoreError::current_version`].
    pub fn is_conflict(&self) -> bool {
        matches!(self.0.kind, Kind::Conflict { .. })
    }

    /// The stored version a compare-and-set found, for a conflict.
    pub fn current_version(&self) -> Option<&str> {
        match &self.0.kind {
            Kind::Conflict { current } => Some(current),
            _ => None,
        }
    }

    /// The request was refused as invalid (a bad namespace name).
    pub fn is_invalid(&self) -> bool {
        self.0.kind == Kind::Invalid
    }

    /// The backend could not be reached or did not answer in time; nothing was written.
    pub fn is_unavailable(&self) -> bool {
        self.0.kind == Kind::Unavailable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreError({:?}: {})", self.0.kind, self.0.message)
    }
}

impl std::error::Error for StoreError {}
