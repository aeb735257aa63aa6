//! The one public error of this crate.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Why a configuration was rejected: the file, the position and key path of the offending
/// value, and what was wrong or expected.
///
/// Displays as `<origin>:<line>:<column>: <key path>: <message>`, for example
/// `weft.yaml:12:7: routers[0].client.connectTimeout: invalid duration "1x": expected a number
/// with a unit, like 250ms or 10s`. Parts that are unknown are left out (a YAML syntax error
/// has no key path; an error that is not tied to a value has no position). A file that cannot
/// be read displays as `<origin>: cannot read: <reason>` and has the I/O error as `source()`.
pub struct ConfigError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    origin: String,
    line: Option<usize>,
    column: Option<usize>,
    key_path: Option<String>,
    message: String,
    io: Option<io::Error>,
}

impl ConfigError {
    pub(crate) fn invalid(
        origin: &str,
        pos: Option<(usize, usize)>,
        key_path: Option<String>,
        message: String,
    ) -> Self {
        ConfigError(Box::new(Inner {
            origin: origin.to_owned(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key_path: key_path.filter(|k| !k.is_empty() && k != "."),
            message,
            io: None,
        }))
    }

    pub(crate) fn io(origin: &str, err: io::Error) -> Self {
        ConfigError(Box::new(Inner {
            origin: origin.to_owned(),
            line: None,
            column: None,
            key_path: None,
            message: format!("cannot read: {err}"),
            io: Some(err),
        }))
    }

    /// Where the configuration came from: the file path given to [`Config::load`], or the
    /// origin given to [`Config::parse`].
    ///
    /// [`Config::load`]: crate::Config::load
    /// [`Config::parse`]: crate::Config::parse
    pub fn origin(&self) -> &str {
        &self.0.origin
    }

    /// The 1-based line of the offending value, when known.
    pub fn line(&self) -> Option<usize> {
        self.0.line
    }

    /// The 1-based column (in characters, counting from the line start) of the offending
    /// value, when known.
    pub fn column(&self) -> Option<usize> {
        self.0.column
    }

    /// The key path of the offending value, like `routers[0].client.connectTimeout`, when
    /// known.
    pub fn key_path(&self) -> Option<&str> {
        self.0.key_path.as_deref()
    }

    /// What was wrong or expected, without origin, position or key path.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Whether the file could not be read at all (as opposed to being invalid).
    pub fn is_io(&self) -> bool {
        self.0.io.is_some()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        f.write_str(&e.origin)?;
        if let (Some(line), Some(column)) = (e.line, e.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key_path) = &e.key_path {
            write!(f, ": {key_path}")?;
        }
        write!(f, ": {}", e.message)
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for ConfigError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.io.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}
