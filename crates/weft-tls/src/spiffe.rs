//! SPIFFE IDs: parsing, reading them from certificates, and the DNS-safe SNI derived from them.
//!
//! A SPIFFE ID is `spiffe://<trust-domain>/<path>` (SPIFFE ID spec, section 2). weft's usual
//! shape is `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, as in Linkerd and
//! Istio.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::TlsError;

const SCHEME: &str = "spiffe://";
/// SPIFFE ID spec 2.3: at most 2048 bytes.
const MAX_ID_LEN: usize = 2048;

/// Checks `id` is a workload SPIFFE ID and returns its trust domain.
pub(crate) fn trust_domain(id: &str) -> Result<&str, TlsError> {
    let bad = |why: &str| TlsError::new(format!("invalid SPIFFE ID {id:?}: {why}"));
    if id.len() > MAX_ID_LEN {
        return Err(bad("longer than 2048 bytes"));
    }
    let rest = id
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("must start with spiffe://"))?;
    let (td, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("has no path (a workload ID needs one)"))?;
    check_trust_domain(td).map_err(|w| bad(&w))?;
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad("path segments must be non-empty and not . or .."));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(bad("path may only hold letters, digits, '.', '-', '_'"));
        }
    }
    Ok(td)
}

/// Checks a trust domain: lowercase letters, digits, '.', '-', '_' (SPIFFE ID spec 2.1).
pub(crate) fn check_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("empty trust domain".into());
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("trust domain may only hold lowercase letters, digits, '.', '-', '_'".into());
    }
    Ok(())
}

/// The DNS-safe server name (SNI) a client sends when it expects the server identity `id`.
///
/// - `spiffe://<td>/ns/<ns>/sa/<sa>` maps to `<sa>.<ns>.serviceaccount.identity.<td>`
///   (Linkerd's naming), when `<sa>` and `<ns>` are DNS labels;
/// - any other path maps to `<h>.id.identity.<td>`, `<h>` being the first 16 bytes of the
///   SHA-256 of the whole ID in hex (32 characters).
///
/// The SNI only routes the handshake (it tells mesh TLS from an application's own TLS); the
/// identity is verified from the certificate's URI SAN, never from the SNI.
///
/// # Errors
/// When `id` is not a valid SPIFFE ID, or its trust domain is not a DNS name (it has `_`).
pub fn server_name_for(id: &str) -> Result<String, TlsError> {
    let td = trust_domain(id)?;
    if td.contains('_') || td.split('.').any(|l| !is_dns_label(l)) {
        return Err(TlsError::new(format!(
            "SPIFFE ID {id:?}: trust domain {td:?} is not a DNS name, so no SNI can be derived"
        )));
    }
    let path = &id[SCHEME.len() + td.len() + 1..];
    let segs: Vec<&str> = path.split('/').collect();
    let name = match segs.as_slice() {
        ["ns", ns, "sa", sa] if is_dns_label(ns) && is_dns_label(sa) => {
            format!("{sa}.{ns}.serviceaccount.identity.{td}")
        }
        _ => {
            let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
            let hex: String = digest.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{hex}.id.identity.{td}")
        }
    };
    if name.len() > 253 {
        return Err(TlsError::new(format!(
            "SPIFFE ID {id:?}: derived server name is longer than 253 bytes"
        )));
    }
    Ok(name)
}

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What the parts of a certificate weft needs look like.
pub(crate) struct CertInfo {
    /// The one `spiffe://` URI SAN, if there is exactly one.
    pub(crate) spiffe_id: Option<String>,
    pub(crate) not_after: i64,
    pub(crate) serial_hex: String,
}

/// Parses a DER certificate for its SPIFFE ID, expiry and serial.
pub(crate) fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let mut ids = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with(SCHEME) {
                    ids.push((*uri).to_string());
                }
            }
        }
    }
    // SPIFFE X.509-SVID spec 2: exactly one URI SAN carries the ID.
    let spiffe_id = if ids.len() == 1 { ids.pop() } else { None };
    Ok(CertInfo {
        spiffe_id,
        not_after: cert.validity().not_after.timestamp(),
        serial_hex: cert.raw_serial_as_string(),
    })
}

/// The SPIFFE ID in a DER certificate's URI SAN, if it has exactly one valid one.
pub(crate) fn id_of(der: &[u8]) -> Option<String> {
    let id = cert_info(der).ok()?.spiffe_id?;
    trust_domain(&id).ok()?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_for_namespace_and_service_account() {
        assert_eq!(
            server_name_for("spiffe://weft.local/ns/default/sa/web").unwrap(),
            "web.default.serviceaccount.identity.weft.local"
        );
    }

    #[test]
    fn sni_for_other_paths_is_hashed() {
        let n = server_name_for("spiffe://weft.local/host/Db_1").unwrap();
        assert!(n.ends_with(".id.identity.weft.local"), "{n}");
        assert_eq!(n.split('.').next().unwrap().len(), 32);
    }

    #[test]
    fn invalid_ids_are_refused() {
        for id in [
            "http://x/y",
            "spiffe://weft.local",
            "spiffe://Weft/x",
            "spiffe://td//x",
            "spiffe://td/../x",
            "spiffe://td/a b",
        ] {
            assert!(trust_domain(id).is_err(), "{id}");
        }
        assert_eq!(trust_domain("spiffe://td/a/b").unwrap(), "td");
    }
}
