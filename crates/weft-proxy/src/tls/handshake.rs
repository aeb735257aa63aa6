//! Why a TLS handshake failed: on the server side a reason from a small fixed set (the
//! `reason` label of `weft_tls_handshakes_total`) with a phrase for the log; on the client
//! side the error that makes a request fail with `upstream-tls`. Pure functions over errors.

use std::fmt;
use std::io;
use std::time::Duration;

use weft_tls::CertProblem;

/// Why a handshake the proxy terminated failed. The reasons are the label values, so the set
/// stays small and fixed (`docs/metrics.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Garbage, or a truncated ClientHello, before a complete ClientHello.
    NoClientHello,
    /// Plaintext HTTP on a TLS ingress server.
    Plaintext,
    /// The handshake did not finish in time.
    Timeout,
    /// The peer closed the connection after its ClientHello, mid-handshake.
    Eof,
    /// The client's certificate is not trusted (another CA or trust domain, not valid yet).
    BadCertificate,
    /// The client's certificate has expired.
    ExpiredCertificate,
    /// The client presented no certificate where mesh TLS requires one.
    NoCertificate,
    /// The peer aborted the handshake with an alert (e.g. it does not trust our certificate).
    PeerAlert,
    /// Any other TLS error: no common version, cipher suite or ALPN; a malformed message.
    Protocol,
    /// Reading or writing the connection failed (e.g. a reset).
    Io,
}

impl Failure {
    /// The `reason` label value.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Failure::NoClientHello => "no-client-hello",
            Failure::Plaintext => "plaintext",
            Failure::Timeout => "timeout",
            Failure::Eof => "eof",
            Failure::BadCertificate => "bad-certificate",
            Failure::ExpiredCertificate => "expired-certificate",
            Failure::NoCertificate => "no-certificate",
            Failure::PeerAlert => "peer-alert",
            Failure::Protocol => "protocol",
            Failure::Io => "io",
        }
    }
}

/// A failed server-side handshake: the reason and a phrase saying why in plain words.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) failure: Failure,
    pub(crate) why: String,
}

impl Refused {
    pub(crate) fn new(failure: Failure, why: impl Into<String>) -> Refused {
        Refused {
            failure,
            why: why.into(),
        }
    }

    /// The handshake (or the wait for the ClientHello) took longer than `limit`.
    pub(crate) fn timeout(limit: Duration) -> Refused {
        Refused::new(
            Failure::Timeout,
            format!("no complete handshake within {limit:?}"),
        )
    }

    /// Reading the ClientHello failed with `err`.
    pub(crate) fn before_hello(err: &io::Error) -> Refused {
        match err.kind() {
            io::ErrorKind::TimedOut => {
                Refused::new(Failure::Timeout, "no complete ClientHello in time")
            }
            io::ErrorKind::UnexpectedEof => Refused::new(
                Failure::NoClientHello,
                "the client closed the connection before a complete ClientHello",
            ),
            io::ErrorKind::InvalidData => match rustls_error(err) {
                Some(e) => Refused::new(
                    Failure::NoClientHello,
                    format!("not a TLS ClientHello: {}", weft_tls::explain(e, "client")),
                ),
                None => Refused::new(
                    Failure::NoClientHello,
                    format!("not a TLS ClientHello: {err}"),
                ),
            },
            _ => Refused::new(
                Failure::Io,
                format!("reading the ClientHello failed: {err}"),
            ),
        }
    }

    /// The handshake failed with `err` after a complete ClientHello.
    pub(crate) fn during(err: &io::Error) -> Refused {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            return Refused::new(
                Failure::Eof,
                "the client closed the connection during the handshake",
            );
        }
        let Some(e) = rustls_error(err) else {
            return Refused::new(Failure::Io, err.to_string());
        };
        let failure = match weft_tls::cert_problem(e) {
            Some(CertProblem::Expired) => Failure::ExpiredCertificate,
            Some(CertProblem::Missing) => Failure::NoCertificate,
            Some(CertProblem::Untrusted) => Failure::BadCertificate,
            None if matches!(e, rustls::Error::AlertReceived(_)) => Failure::PeerAlert,
            None => Failure::Protocol,
        };
        Refused::new(failure, weft_tls::explain(e, "client"))
    }
}

/// A failed client-side handshake towards an endpoint: the request never left, so it fails
/// with `upstream-tls` and may be sent elsewhere.
#[derive(Debug)]
pub(crate) struct UpstreamTlsError {
    /// The name the certificate was checked against (SNI, or the IP address).
    pub(crate) server_name: String,
    /// Why, in plain words.
    pub(crate) why: String,
    source: Option<io::Error>,
}

impl UpstreamTlsError {
    /// The handshake with `server_name` failed with `err`.
    pub(crate) fn handshake(server_name: String, err: io::Error) -> UpstreamTlsError {
        let why = match rustls_error(&err) {
            Some(e) => weft_tls::explain(e, "server"),
            None if err.kind() == io::ErrorKind::UnexpectedEof => {
                "the server closed the connection during the handshake".to_string()
            }
            None => err.to_string(),
        };
        UpstreamTlsError {
            server_name,
            why,
            source: Some(err),
        }
    }

    /// The handshake succeeded but the server did not agree to what it must speak.
    pub(crate) fn refused(server_name: String, why: impl Into<String>) -> UpstreamTlsError {
        UpstreamTlsError {
            server_name,
            why: why.into(),
            source: None,
        }
    }
}

impl fmt::Display for UpstreamTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS with {}: {}", self.server_name, self.why)
    }
}

impl std::error::Error for UpstreamTlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The rustls error inside an I/O error from `tokio-rustls`, if that is what it is.
fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError};

    fn io(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn reasons_after_the_client_hello() {
        let cases = [
            (
                io(rustls::Error::InvalidCertificate(CertificateError::Expired)),
                Failure::ExpiredCertificate,
            ),
            (
                io(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
                Failure::BadCertificate,
            ),
            (
                io(rustls::Error::NoCertificatesPresented),
                Failure::NoCertificate,
            ),
            (
                io(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
                Failure::PeerAlert,
            ),
            (io(rustls::Error::NoApplicationProtocol), Failure::Protocol),
            (io::ErrorKind::UnexpectedEof.into(), Failure::Eof),
            (io::ErrorKind::ConnectionReset.into(), Failure::Io),
        ];
        for (err, want) in cases {
            let r = Refused::during(&err);
            assert_eq!(r.failure, want, "{err}: {}", r.why);
            assert!(!r.why.is_empty());
        }
    }

    #[test]
    fn reasons_before_the_client_hello() {
        let r = Refused::before_hello(&io::ErrorKind::UnexpectedEof.into());
        assert_eq!(r.failure, Failure::NoClientHello);
        let r = Refused::before_hello(&io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert_eq!(r.failure, Failure::Timeout);
        let r = Refused::before_hello(&io(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )));
        assert_eq!(r.failure, Failure::NoClientHello);
        assert!(r.why.starts_with("not a TLS ClientHello"), "{}", r.why);
    }

    #[test]
    fn upstream_errors_name_the_server_and_why() {
        let e = UpstreamTlsError::handshake(
            "api.example.com".into(),
            io(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        );
        assert_eq!(
            e.to_string(),
            "TLS with api.example.com: server certificate is not signed by a trusted root"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
