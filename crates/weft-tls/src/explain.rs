//! Plain words for why a TLS handshake failed, for log lines and proxy error bodies.

use rustls::{AlertDescription, CertificateError, Error};

use crate::material::rfc3339;

/// Which certificate problem a handshake error is about, if any: the basis of the bounded
/// `reason` of handshake metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertProblem {
    /// The peer's certificate has expired.
    Expired,
    /// The peer presented no certificate where one is required.
    Missing,
    /// The peer's certificate is not trusted or not acceptable otherwise (unknown issuer,
    /// another trust domain, wrong name, not valid yet, bad signature).
    Untrusted,
}

/// What certificate problem `err` reports about the peer's certificate, if any.
pub fn cert_problem(err: &Error) -> Option<CertProblem> {
    match err {
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => Some(CertProblem::Expired),
        Error::InvalidCertificate(_) => Some(CertProblem::Untrusted),
        Error::NoCertificatesPresented => Some(CertProblem::Missing),
        _ => None,
    }
}

/// One phrase saying why a handshake failed, from our side's rustls error; `peer` names the
/// other side (`client`, `server`), e.g. `client certificate expired at
/// 2024-01-01T00:00:00Z (now 2024-02-01T00:00:00Z)` or `the server refused our certificate
/// (alert UnknownCA)`.
pub fn explain(err: &Error, peer: &str) -> String {
    match err {
        Error::InvalidCertificate(e) => certificate(e, peer),
        Error::NoCertificatesPresented => format!("the {peer} presented no certificate"),
        Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied => {
                format!("the {peer} refused our certificate (alert {alert:?})")
            }
            AlertDescription::CertificateRequired => {
                format!("the {peer} requires a client certificate")
            }
            AlertDescription::NoApplicationProtocol => {
                format!("the {peer} speaks none of the offered application protocols (ALPN)")
            }
            AlertDescription::UnrecognisedName => {
                format!("the {peer} does not serve the requested name (SNI)")
            }
            other => format!("the {peer} aborted the handshake (alert {other:?})"),
        },
        Error::PeerIncompatible(why) => {
            format!("no TLS version or algorithm in common with the {peer} ({why:?})")
        }
        Error::NoApplicationProtocol => {
            format!("no application protocol (ALPN) in common with the {peer}")
        }
        Error::InvalidMessage(why) => format!("the {peer} sent a malformed TLS message ({why:?})"),
        Error::PeerMisbehaved(why) => format!("the {peer} broke the TLS protocol ({why:?})"),
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            format!("the {peer} sent an unexpected TLS message")
        }
        other => other.to_string(),
    }
}

fn certificate(e: &CertificateError, peer: &str) -> String {
    match e {
        CertificateError::Expired => format!("{peer} certificate has expired"),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "{peer} certificate expired at {} (now {})",
            rfc3339(not_after.as_secs()),
            rfc3339(time.as_secs())
        ),
        CertificateError::NotValidYet => format!("{peer} certificate is not valid yet"),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "{peer} certificate is not valid before {} (now {})",
            rfc3339(not_before.as_secs()),
            rfc3339(time.as_secs())
        ),
        CertificateError::UnknownIssuer => {
            format!("{peer} certificate is not signed by a trusted root")
        }
        CertificateError::BadSignature => format!("{peer} certificate has a bad signature"),
        CertificateError::NotValidForName => {
            format!("{peer} certificate is not valid for the expected name or identity")
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "{peer} certificate is not valid for {} (it is for {})",
            expected.to_str(),
            if presented.is_empty() {
                "no name".to_string()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::Revoked => format!("{peer} certificate has been revoked"),
        other => format!("{peer} certificate is invalid ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{ServerName, UnixTime};
    use std::time::Duration;

    #[test]
    fn certificate_problems_in_plain_words() {
        let expired = Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_600_000_000)),
        });
        assert_eq!(
            explain(&expired, "client"),
            "client certificate expired at 2020-09-13T12:26:40Z (now 2023-11-14T22:13:20Z)"
        );
        assert_eq!(cert_problem(&expired), Some(CertProblem::Expired));
        let name = Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("api.example.com").unwrap(),
            presented: vec!["DnsName(\"other.test\")".into()],
        });
        assert!(explain(&name, "server")
            .starts_with("server certificate is not valid for api.example.com"));
        assert_eq!(cert_problem(&name), Some(CertProblem::Untrusted));
        assert_eq!(
            cert_problem(&Error::NoCertificatesPresented),
            Some(CertProblem::Missing)
        );
        assert_eq!(
            explain(&Error::AlertReceived(AlertDescription::UnknownCA), "client"),
            "the client refused our certificate (alert UnknownCA)"
        );
        assert_eq!(cert_problem(&Error::NoApplicationProtocol), None);
    }
}
