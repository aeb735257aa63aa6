//! The built-in certificate authority: a trust anchor and an issuer on disk, issuing
//! short-lived leaf certificates for SPIFFE IDs from CSRs.
//!
//! Files in a CA directory: [`ANCHOR_CERT`] and [`ANCHOR_KEY`] (the self-signed root, 1 year),
//! [`ISSUER_CERT`] and [`ISSUER_KEY`] (the intermediate that signs leaves, 90 days), and
//! [`TRUST_DOMAIN`]. Proxies trust the anchor; leaves carry the issuer in their chain.
//! The anchor key is only needed to make a new issuer ([`rotate_issuer`]) and may be kept
//! offline otherwise.

mod client;
mod server;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::{spiffe, TlsError};

pub use client::{keep_renewed, obtain, renew_loop, request, request_to_files, RenewConfig};
pub use server::{serve, CaServer, ServeConfig};

/// The trust anchor's certificate: what proxies put in their trust bundle.
pub const ANCHOR_CERT: &str = "anchor.crt";
/// The trust anchor's private key.
pub const ANCHOR_KEY: &str = "anchor.key";
/// The issuer's certificate (signed by the anchor).
pub const ISSUER_CERT: &str = "issuer.crt";
/// The issuer's private key.
pub const ISSUER_KEY: &str = "issuer.key";
/// The trust domain, one line.
pub const TRUST_DOMAIN: &str = "trust-domain";

/// How long a trust anchor made by [`init`] is valid.
pub const ANCHOR_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long an issuer made by [`init`] or [`rotate_issuer`] is valid.
pub const ISSUER_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The default lifetime of an issued leaf certificate.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The largest CSR accepted, in bytes of PEM.
pub const MAX_CSR_BYTES: usize = 8 * 1024;
/// Certificates start this long before they are issued, for clock skew.
pub(crate) const BACKDATE: time::Duration = time::Duration::minutes(1);

/// `weft identity init`: creates a trust anchor (self-signed root, 1 year) and an issuer
/// (intermediate signed by it, 90 days) as PEM files in `dir` (created if missing).
///
/// # Errors
/// When `trust_domain` is invalid, when `dir` already holds an anchor or issuer (never
/// overwritten), or on I/O errors.
pub fn init(dir: &Path, trust_domain: &str) -> Result<(), TlsError> {
    spiffe::check_trust_domain(trust_domain)
        .map_err(|w| TlsError::new(format!("trust domain {trust_domain:?}: {w}")))?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::file(dir, format!("cannot create: {e}")))?;
    for f in [ANCHOR_CERT, ANCHOR_KEY, ISSUER_CERT, ISSUER_KEY] {
        let p = dir.join(f);
        if p.exists() {
            return Err(TlsError::file(&p, "already exists; not overwriting a CA"));
        }
    }
    let now = OffsetDateTime::now_utc();
    let anchor_key = KeyPair::generate().map_err(rcgen_err)?;
    let mut params = ca_params(trust_domain, "weft trust anchor", 1)?;
    params.not_before = now - BACKDATE;
    params.not_after = now + ANCHOR_LIFETIME;
    let anchor_cert = params.self_signed(&anchor_key).map_err(rcgen_err)?;
    write_file(
        &dir.join(TRUST_DOMAIN),
        format!("{trust_domain}\n").as_bytes(),
        false,
    )?;
    write_file(
        &dir.join(ANCHOR_KEY),
        anchor_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(&dir.join(ANCHOR_CERT), anchor_cert.pem().as_bytes(), false)?;
    rotate_issuer(dir)
}

/// Makes a new issuer (90 days, capped at the anchor's expiry) signed by the anchor in `dir`,
/// replacing `issuer.crt` and `issuer.key` atomically. Leaves issued before stay valid: they
/// chain to the same anchor.
///
/// # Errors
/// When the anchor files are missing or unusable, or on I/O errors.
pub fn rotate_issuer(dir: &Path) -> Result<(), TlsError> {
    let td = read_trust_domain(dir)?;
    let anchor_pem = read_string(&dir.join(ANCHOR_CERT))?;
    let anchor_key = read_key(&dir.join(ANCHOR_KEY))?;
    let anchor_after = not_after(&anchor_pem, &dir.join(ANCHOR_CERT))?;
    let anchor = Issuer::from_ca_cert_pem(&anchor_pem, anchor_key)
        .map_err(|e| TlsError::file(&dir.join(ANCHOR_CERT), format!("unusable anchor: {e}")))?;
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let mut params = ca_params(&td, "weft issuer", 0)?;
    params.not_before = now - BACKDATE;
    params.not_after = (now + ISSUER_LIFETIME).min(anchor_after);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &anchor).map_err(rcgen_err)?;
    write_file(&dir.join(ISSUER_KEY), key.serialize_pem().as_bytes(), true)?;
    write_file(&dir.join(ISSUER_CERT), cert.pem().as_bytes(), false)
}

/// Issues a leaf certificate for `spiffe_id` from a CSR (PEM), valid for `lifetime` (capped
/// at the issuer's expiry), signed by the issuer in `issuer_dir`.
///
/// Only the CSR's public key is used (its proof of possession is checked); the subject
/// names come from `spiffe_id`: the URI SAN, plus the DNS SAN [`crate::server_name_for`] so
/// that ordinary TLS clients can verify the certificate too. The leaf is valid for server and
/// client authentication.
///
/// Returns the PEM chain: the leaf, then the issuer.
///
/// # Errors
/// A CSR that is too large, malformed or badly signed; a SPIFFE ID that is invalid or outside
/// the CA's trust domain; a lifetime under a minute; an expired issuer; I/O errors.
pub fn issue(
    issuer_dir: &Path,
    csr_pem: &str,
    spiffe_id: &str,
    lifetime: Duration,
) -> Result<String, TlsError> {
    if csr_pem.len() > MAX_CSR_BYTES {
        return Err(TlsError::new(format!(
            "CSR is larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    let td = read_trust_domain(issuer_dir)?;
    let id_td = spiffe::trust_domain(spiffe_id)?;
    if id_td != td {
        return Err(TlsError::new(format!(
            "SPIFFE ID {spiffe_id} is not in this CA's trust domain {td}"
        )));
    }
    if lifetime < Duration::from_secs(60) {
        return Err(TlsError::new(
            "certificate lifetime must be at least 1 minute",
        ));
    }
    let issuer_path = issuer_dir.join(ISSUER_CERT);
    let issuer_pem = read_string(&issuer_path)?;
    let issuer_after = not_after(&issuer_pem, &issuer_path)?;
    let now = OffsetDateTime::now_utc();
    if issuer_after <= now + time::Duration::minutes(1) {
        return Err(TlsError::file(
            &issuer_path,
            "issuer has expired; rotate it",
        ));
    }
    let issuer_key = read_key(&issuer_dir.join(ISSUER_KEY))?;
    let issuer = Issuer::from_ca_cert_pem(&issuer_pem, issuer_key)
        .map_err(|e| TlsError::file(&issuer_path, format!("unusable issuer: {e}")))?;

    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| TlsError::new(format!("bad CSR: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names =
        vec![SanType::URI(spiffe_id.try_into().map_err(|e| {
            TlsError::new(format!("SPIFFE ID {spiffe_id:?}: {e}"))
        })?)];
    if let Ok(name) = crate::server_name_for(spiffe_id) {
        if let Ok(dns) = name.try_into() {
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial()?);
    params.not_before = now - BACKDATE;
    params.not_after = (now + lifetime).min(issuer_after);
    csr.params = params;
    let leaf = csr.signed_by(&issuer).map_err(rcgen_err)?;
    Ok(format!("{}{}", leaf.pem(), issuer_pem))
}

/// Creates a P-256 key pair and a CSR for `spiffe_id` (what a proxy sends to the CA).
///
/// Returns `(key PEM, CSR PEM)`.
///
/// # Errors
/// When `spiffe_id` is not a valid SPIFFE ID.
pub fn csr(spiffe_id: &str) -> Result<(String, String), TlsError> {
    spiffe::trust_domain(spiffe_id)?;
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names =
        vec![SanType::URI(spiffe_id.try_into().map_err(|e| {
            TlsError::new(format!("SPIFFE ID {spiffe_id:?}: {e}"))
        })?)];
    let csr = params.serialize_request(&key).map_err(rcgen_err)?;
    let pem = csr.pem().map_err(rcgen_err)?;
    Ok((key.serialize_pem(), pem))
}

fn ca_params(td: &str, name: &str, path_len: u8) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} {td}"));
    dn.push(DnType::OrganizationName, "weft");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial()?);
    Ok(params)
}

/// A random positive 128-bit serial (RFC 5280 4.1.2.2: at most 20 octets).
pub(crate) fn serial() -> Result<SerialNumber, TlsError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError::new("no system randomness"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn read_trust_domain(dir: &Path) -> Result<String, TlsError> {
    let p = dir.join(TRUST_DOMAIN);
    let td = read_string(&p)?.trim().to_string();
    spiffe::check_trust_domain(&td).map_err(|w| TlsError::file(&p, w))?;
    Ok(td)
}

pub(crate) fn read_string(p: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(p).map_err(|e| TlsError::file(p, format!("cannot read: {e}")))
}

pub(crate) fn read_key(p: &Path) -> Result<KeyPair, TlsError> {
    KeyPair::from_pem(&read_string(p)?)
        .map_err(|e| TlsError::file(p, format!("bad private key: {e}")))
}

fn not_after(pem: &str, p: &Path) -> Result<OffsetDateTime, TlsError> {
    let certs = crate::material::certs(pem.as_bytes(), p)?;
    let info = spiffe::cert_info(&certs[0]).map_err(|e| TlsError::file(p, e))?;
    OffsetDateTime::from_unix_timestamp(info.not_after)
        .map_err(|e| TlsError::file(p, format!("bad expiry: {e}")))
}

pub(crate) fn rcgen_err(e: rcgen::Error) -> TlsError {
    TlsError::new(format!("certificate generation failed: {e}")).with_source(e)
}

/// Writes `path` atomically: a temporary file in the same directory, synced, then renamed
/// over `path`, so a watcher never sees half a file. `private` files are mode 0600 on Unix.
pub fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let err = |e: std::io::Error| TlsError::file(path, format!("cannot write: {e}"));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| TlsError::file(path, "not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}
