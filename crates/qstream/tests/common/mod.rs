//! Test set-up shared by the loopback and quinn interop tests: one self-signed certificate
//! and TLS 1.3 configurations that trust it.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// TLS configurations for a server and a client that trusts it.
pub struct Tls {
    pub server: rustls::ServerConfig,
    pub client: rustls::ClientConfig,
}

/// The ALPN protocol both sides offer.
pub const ALPN: &[u8] = b"qstream-test";

/// TLS configurations around the test binary's one certificate for "localhost".
pub fn tls() -> Tls {
    // One certificate for the whole test binary: every client trusts every server.
    static IDENTITY: std::sync::OnceLock<(CertificateDer<'static>, Vec<u8>)> =
        std::sync::OnceLock::new();
    let (cert, key) = IDENTITY.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.der().clone(), key.serialize_der())
    });
    let cert = cert.clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server_tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![ALPN.to_vec()];
    Tls {
        server: server_tls,
        client: client_tls,
    }
}
