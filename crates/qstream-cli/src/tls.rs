//! TLS set-up shared by the commands: self-signed certificates and rustls configurations.

use std::sync::Arc;

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate chain and its key, for a server.
pub(crate) struct Identity {
    /// The end-entity certificate first, then any intermediates.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The certificate in PEM, for a self-signed one (to save for clients).
    pem: Option<String>,
}

impl Identity {
    /// A certificate chain and key from PEM files, checked to belong together.
    pub(crate) fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in the file", cert.display()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
        match rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider())
        {
            Ok(_) => Ok(Self {
                chain,
                key: key_der,
                pem: None,
            }),
            Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
                "the private key {} does not belong to the certificate {}: pass the key the \
                 certificate was issued for",
                key.display(),
                cert.display()
            )),
            Err(error) => Err(format!(
                "cannot use the certificate {} with the key {}: {error}",
                cert.display(),
                key.display()
            )),
        }
    }

    /// The server identity the `--cert`/`--key` options name, or a fresh self-signed one;
    /// the flag says which (the self-signed one's fingerprint is for the user to see).
    pub(crate) fn from_options(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<(Self, bool), Box<dyn std::error::Error>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok((Self::from_pem_files(cert, key)?, false)),
            _ => Ok((Self::self_signed(&["localhost"])?, true)),
        }
    }

    /// The end-entity certificate.
    pub(crate) fn cert(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The certificate's SHA-256 fingerprint, as colon-separated hex pairs.
    pub(crate) fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.cert());
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// A fresh self-signed certificate for `names`.
    pub(crate) fn self_signed(names: &[&str]) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?
                .self_signed(&key)?;
        Ok(Self {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            pem: Some(cert.pem()),
        })
    }

    /// The self-signed certificate in PEM, for clients to trust with `--ca`; `None` for one
    /// given with `--cert`, which the user has already.
    pub(crate) fn self_signed_pem(&self) -> Option<&str> {
        self.pem.as_deref()
    }
}

/// Which TLS 1.3 cipher suites an endpoint offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suites {
    /// AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305.
    All,
    /// Only TLS_CHACHA20_POLY1305_SHA256 (the interop runner's chacha20 case).
    ChaCha20Only,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    provider_with(Suites::All)
}

fn provider_with(suites: Suites) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if suites == Suites::ChaCha20Only {
        provider
            .cipher_suites
            .retain(|s| s.suite() == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }
    Arc::new(provider)
}

/// A TLS 1.3 server configuration presenting `identity` with `alpn`.
pub(crate) fn server(
    identity: &Identity,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, rustls::Error> {
    server_with(identity, alpn, Suites::All)
}

/// A TLS 1.3 server configuration presenting `identity` with `alpn`, offering `suites`.
pub(crate) fn server_with(
    identity: &Identity,
    alpn: &[u8],
    suites: Suites,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider_with(suites))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    config.key_log = qstream::key_log();
    Ok(config)
}

/// A TLS 1.3 client configuration trusting exactly `trusted`, with `alpn`.
pub(crate) fn client(
    trusted: &CertificateDer<'static>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone())?;
    client_with_roots(roots, alpn)
}

/// A TLS 1.3 client configuration trusting the certificates in the PEM file `ca`: as CAs,
/// and each also as exactly itself, so that a server's own self-signed certificate (which
/// openssl marks CA:TRUE, and which WebPKI refuses as a server's certificate) can be given.
pub(crate) fn client_trusting_file(ca: &Path, alpn: &[u8]) -> Result<rustls::ClientConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read {}: {e}", ca.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", ca.display()));
    }
    let mut roots = rustls::RootCertStore::empty();
    // A certificate that is no usable trust anchor can still be pinned by equality.
    roots.add_parsable_certificates(certs.iter().cloned());
    let provider = provider();
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?,
        )
    };
    let check = ServerCertificateCheck {
        provider: provider.clone(),
        trust: Trust::Given { certs, webpki },
    };
    client_with_verifier(provider, Arc::new(check), alpn).map_err(|e| e.to_string())
}

/// A TLS 1.3 client configuration trusting the system's store of root certificates, or the
/// file SSL_CERT_FILE (or directory SSL_CERT_DIR) names.
pub(crate) fn client_trusting_system(alpn: &[u8]) -> Result<rustls::ClientConfig, String> {
    let roots = qstream::tls::system_roots().map_err(|error| {
        format!(
            "{error}: set SSL_CERT_FILE, or pass --ca FILE, --fingerprint, or --insecure for \
             testing"
        )
    })?;
    client_with_roots(roots, alpn).map_err(|e| e.to_string())
}

/// A TLS 1.3 client configuration that accepts any server certificate: for testing only.
pub(crate) fn client_insecure(alpn: &[u8]) -> Result<rustls::ClientConfig, rustls::Error> {
    client_with_check(None, alpn, Suites::All)
}

/// Like [`client_insecure`], offering only `suites`.
pub(crate) fn client_insecure_with(
    alpn: &[u8],
    suites: Suites,
) -> Result<rustls::ClientConfig, rustls::Error> {
    client_with_check(None, alpn, suites)
}

/// A TLS 1.3 client configuration that accepts exactly the server certificate whose SHA-256
/// digest is `fingerprint`, whatever its names and issuer.
pub(crate) fn client_pinned(
    fingerprint: [u8; 32],
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    client_with_check(Some(fingerprint), alpn, Suites::All)
}

/// A SHA-256 fingerprint from 64 hex digits, colons between pairs allowed.
pub(crate) fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let invalid = || format!("invalid fingerprint {text:?}: expected 32 hex pairs like ab:cd:…");
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return Err(invalid());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(out)
}

fn client_with_check(
    pinned: Option<[u8; 32]>,
    alpn: &[u8],
    suites: Suites,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider_with(suites);
    let trust = match pinned {
        Some(fingerprint) => Trust::Fingerprint(fingerprint),
        None => Trust::Any,
    };
    let check = ServerCertificateCheck {
        provider: provider.clone(),
        trust,
    };
    client_with_verifier(provider, Arc::new(check), alpn)
}

fn client_with_verifier(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config.key_log = qstream::key_log();
    Ok(config)
}

/// Which server certificates a client accepts.
#[derive(Debug)]
enum Trust {
    /// Any (testing only).
    Any,
    /// Exactly the one with this SHA-256 fingerprint, whatever its names and issuer.
    Fingerprint([u8; 32]),
    /// One of these certificates itself, or one they issued for the server's name.
    Given {
        certs: Vec<CertificateDer<'static>>,
        webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    },
}

/// Accepts a server certificate as `trust` says; either way the handshake signatures made
/// with it are still checked.
#[derive(Debug)]
struct ServerCertificateCheck {
    provider: Arc<rustls::crypto::CryptoProvider>,
    trust: Trust,
}

impl rustls::client::danger::ServerCertVerifier for ServerCertificateCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let refused = || {
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )
        };
        match &self.trust {
            Trust::Any => {}
            Trust::Fingerprint(pinned) => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, end_entity);
                if digest.as_ref() != pinned {
                    return Err(refused());
                }
            }
            Trust::Given { certs, webpki } => {
                if !certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                    let webpki = webpki.as_ref().ok_or_else(refused)?;
                    return webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now);
                }
            }
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The library's client configuration trusting `roots`, as a rustls configuration.
fn client_with_roots(
    roots: rustls::RootCertStore,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    qstream::tls::client_config(roots, &[alpn]).map(|config| (*config.tls).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_only_offers_exactly_chacha20_and_all_offers_more() {
        let suites = |choice| -> Vec<rustls::CipherSuite> {
            provider_with(choice)
                .cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect()
        };
        assert_eq!(
            suites(Suites::ChaCha20Only),
            [rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256]
        );
        assert!(suites(Suites::All).contains(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons_and_bad_ones_are_refused() {
        let identity = Identity::self_signed(&["localhost"]).unwrap();
        let printed = identity.fingerprint();
        let parsed = parse_fingerprint(&printed).unwrap();
        assert_eq!(parse_fingerprint(&printed.replace(':', "")), Ok(parsed));
        for bad in [
            "",
            "00:11",
            &"zz".repeat(32),
            &"0".repeat(65),
            "é".repeat(32).as_str(),
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
