//! Who may read and who may write: the bearer token file and the read access policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use http::HeaderMap;
use weft_config::{ControlAuth, ReadAccess};

/// The credential checks of the HTTP API.
pub(crate) struct Auth {
    token_file: Option<PathBuf>,
    client_ids: Vec<String>,
    read_access: ReadAccess,
    /// The token as last read, keyed by the file's modification time and length so that a
    /// changed file is read again.
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    token: Option<String>,
}

/// Why a request is refused: 401 (no credential) or 403 (a credential that is not good
/// enough), with the reason for the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    Unauthorized(String),
    Forbidden(String),
}

impl Denied {
    /// The reason, for a gRPC status message.
    pub(crate) fn into_reason(self) -> String {
        match self {
            Denied::Unauthorized(r) | Denied::Forbidden(r) => r,
        }
    }
}

impl Auth {
    pub(crate) fn new(config: &ControlAuth, read_access: ReadAccess) -> Auth {
        Auth {
            token_file: config.token_file.clone(),
            client_ids: config.client_ids.clone(),
            read_access,
            cached: Mutex::new(None),
        }
    }

    /// Reads (of the HTTP API and of the resolution service): anyone with
    /// `readAccess: any`, else loopback clients only.
    pub(crate) fn check_read(&self, peer: SocketAddr) -> Result<(), Denied> {
        if self.read_access == ReadAccess::Any || peer.ip().is_loopback() {
            return Ok(());
        }
        Err(Denied::Forbidden(
            "reads are allowed from loopback only (readAccess: loopback)".into(),
        ))
    }

    /// Writes: a TLS client whose verified certificate names a SPIFFE id of
    /// `auth.clientIds`, or `Authorization: Bearer <token>` equal to the token file's content.
    pub(crate) fn check_write(
        &self,
        headers: &HeaderMap,
        client_id: Option<&str>,
    ) -> Result<(), Denied> {
        if let Some(id) = client_id {
            if self.client_ids.iter().any(|c| c == id) {
                return Ok(());
            }
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(match client_id {
                Some(id) => Denied::Forbidden(format!(
                    "client {id} is not in auth.clientIds, and there is no bearer token"
                )),
                None => Denied::Unauthorized(
                    "a write needs a credential: Authorization: Bearer <token> (or an mTLS client certificate of auth.clientIds)".into(),
                ),
            });
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| Denied::Unauthorized("Authorization must be `Bearer <token>`".into()))?;
        let Some(token) = self.token() else {
            return Err(Denied::Forbidden(
                "writes are disabled: no usable auth.tokenFile is configured".into(),
            ));
        };
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(Denied::Forbidden("the bearer token is not accepted".into()))
        }
    }

    /// The current token: the file's content without surrounding whitespace, re-read when
    /// the file's modification time or length changed; `None` if unset, unreadable or empty.
    fn token(&self) -> Option<String> {
        let path = self.token_file.as_ref()?;
        let meta = std::fs::metadata(path).ok();
        let (modified, len) = meta
            .as_ref()
            .map_or((None, 0), |m| (m.modified().ok(), m.len()));
        // The cache is replaced whole: a poisoned lock holds a consistent value.
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some(c) if c.modified == modified && c.len == len && modified.is_some() => {
                c.token.clone()
            }
            _ => {
                let token = std::fs::read_to_string(path)
                    .inspect_err(|error| {
                        tracing::warn!(file = %path.display(), %error, "cannot read the token file")
                    })
                    .ok()
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty());
                *cached = Some(Cached {
                    modified,
                    len,
                    token: token.clone(),
                });
                token
            }
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().expect("header"));
        h
    }

    #[test]
    fn token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let auth = Auth::new(
            &ControlAuth {
                token_file: Some(file.clone()),
                ..ControlAuth::default()
            },
            ReadAccess::Loopback,
        );
        assert!(matches!(
            auth.check_write(&HeaderMap::new(), None),
            Err(Denied::Unauthorized(_))
        ));
        assert_eq!(auth.check_write(&headers("Bearer s3cret"), None), Ok(()));
        assert!(matches!(
            auth.check_write(&headers("Bearer nope"), None),
            Err(Denied::Forbidden(_))
        ));
        std::fs::write(&file, "rotated-token\n").expect("rewrite");
        assert!(matches!(
            auth.check_write(&headers("Bearer s3cret"), None),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            auth.check_write(&headers("Bearer rotated-token"), None),
            Ok(())
        );
    }

    #[test]
    fn clients_of_client_ids_may_write_without_a_token() {
        let auth = Auth::new(
            &ControlAuth {
                client_ids: vec!["spiffe://example.org/ops".into()],
                ..ControlAuth::default()
            },
            ReadAccess::Loopback,
        );
        let none = HeaderMap::new();
        assert_eq!(
            auth.check_write(&none, Some("spiffe://example.org/ops")),
            Ok(())
        );
        assert!(matches!(
            auth.check_write(&none, Some("spiffe://example.org/web")),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            auth.check_write(&none, None),
            Err(Denied::Unauthorized(_))
        ));
    }

    #[test]
    fn reads_from_other_hosts_need_read_access_any() {
        let auth = Auth::new(&ControlAuth::default(), ReadAccess::Loopback);
        assert!(auth
            .check_read("127.0.0.1:1".parse().expect("addr"))
            .is_ok());
        assert!(auth
            .check_read("10.0.0.1:1".parse().expect("addr"))
            .is_err());
        let open = Auth::new(&ControlAuth::default(), ReadAccess::Any);
        assert!(open.check_read("10.0.0.1:1".parse().expect("addr")).is_ok());
    }
}
