//! The rustls hooks that read the current material on every handshake, so a reload needs no
//! new `ServerConfig` or `ClientConfig`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, ResolvesClientCert};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::files::State;
use crate::spiffe;

// === impl CurrentCert ===

/// Presents the current certificate, as a server and as a client.
#[derive(Debug)]
pub(crate) struct CurrentCert(pub(crate) Arc<State>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

// === impl MeshClientVerifier ===

/// Inbound: requires a client certificate with a SPIFFE ID in our trust domain that chains to
/// the current bundle, or one in a federated trust domain that chains to that domain's bundle.
#[derive(Debug)]
pub(crate) struct MeshClientVerifier(pub(crate) Arc<State>);

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to borrow from the current material, which a reload may drop;
        // sending none is allowed (RFC 8446 4.2.4) and our clients have one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.0.current();
        let id = spiffe::id_of(end_entity).ok_or_else(|| not_for_name("no SPIFFE ID"))?;
        let td = spiffe::trust_domain(&id).map_err(|_| not_for_name("bad SPIFFE ID"))?;
        // The chain must lead to the anchors of the trust domain the ID claims: a federated
        // CA cannot vouch for our own domain's identities, nor ours for theirs.
        let Some((_, verifier)) = current.anchors_for(td) else {
            return Err(not_for_name(
                "client identity is in a trust domain this proxy does not federate with",
            ));
        };
        verifier.verify_client_cert(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// === impl SpiffeServerVerifier ===

/// Outbound: the server's certificate must carry exactly the expected SPIFFE ID and chain to
/// the current bundle (a federated domain's bundle when the expected ID is in that domain). The SNI is not compared: it is derived from the expected ID anyway.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) state: Arc<State>,
    pub(crate) expected: String,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let current = self.state.current();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        // A federated trust domain's server must chain to that domain's anchors; any other
        // expected ID (our own domain) to ours.
        let roots = spiffe::trust_domain(&self.expected)
            .ok()
            .and_then(|td| current.federated.get(td))
            .map_or(&current.roots, |a| &a.roots);
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            intermediates,
            now,
            self.state.provider().signature_verification_algorithms.all,
        )?;
        match spiffe::id_of(end_entity) {
            Some(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(not_for_name("server has another identity")),
            None => Err(not_for_name("server certificate has no SPIFFE ID")),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.state.provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.state.provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.state
            .provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn not_for_name(why: &'static str) -> rustls::Error {
    tracing::debug!(reason = why, "peer identity refused");
    rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
}

/// The ring provider weft uses everywhere (never the process default).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
