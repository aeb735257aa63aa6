//! The crate's one public error.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};

/// An error from loading identity material, building TLS configs, or the CA.
///
/// `Display` names the file (when there is one) and the problem, e.g.
/// `/etc/weft/tls.crt: certificate expired at 2024-01-01T00:00:00Z`; the underlying cause, if
/// any, is available through [`std::error::Error::source`].
pub struct TlsError {
    inner: Box<ErrorImpl>,
}

struct ErrorImpl {
    path: Option<PathBuf>,
    problem: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl TlsError {
    pub(crate) fn new(problem: impl Into<String>) -> TlsError {
        TlsError {
            inner: Box::new(ErrorImpl {
                path: None,
                problem: problem.into(),
                source: None,
            }),
        }
    }

    pub(crate) fn file(path: &Path, problem: impl Into<String>) -> TlsError {
        TlsError::new(problem).with_path(path)
    }

    pub(crate) fn with_path(mut self, path: &Path) -> TlsError {
        self.inner.path = Some(path.to_path_buf());
        self
    }

    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> TlsError {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// The file the problem is in, if the problem is about a file.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The problem, without the file name.
    pub fn problem(&self) -> &str {
        &self.inner.problem
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.inner.problem),
            None => f.write_str(&self.inner.problem),
        }
    }
}

impl fmt::Debug for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TlsError");
        d.field("path", &self.inner.path)
            .field("problem", &self.inner.problem);
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}
