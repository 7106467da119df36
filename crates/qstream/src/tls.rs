//! TLS configurations for QUIC in one call: TLS 1.3 only (RFC 9001 §4.2), the aws-lc-rs
//! provider, the ALPN protocols given, and secrets logged to `SSLKEYLOGFILE` when it is set.
//!
//! quinn's counterparts: [`server_config`] is `ServerConfig::with_single_cert`,
//! [`client_config`] is `ClientConfig::with_root_certificates`, and
//! [`client_config_with_system_roots`] plays the part of `ClientConfig::with_platform_verifier`.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ClientConfig, ServerConfig};

/// A server presenting `chain` (its own certificate first) signed by `key`, offering `alpn`
/// (most preferred first; a client that offers none of them is refused), with default
/// transport settings.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, rustls::Error> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls.key_log = crate::key_log();
    Ok(ServerConfig::new(Arc::new(tls)))
}

/// A client that trusts the certificate authorities in `roots`, offering `alpn`, with
/// default transport settings.
pub fn client_config(
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Result<ClientConfig, rustls::Error> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls.key_log = crate::key_log();
    Ok(ClientConfig::new(Arc::new(tls)))
}

/// A client that trusts the operating system's root certificates, or those of the file
/// `SSL_CERT_FILE` (or directory `SSL_CERT_DIR`) names when set, offering `alpn`.
///
/// Fails when no root certificate could be loaded: a client that trusts nothing could
/// connect nowhere.
pub fn client_config_with_system_roots(alpn: &[&[u8]]) -> Result<ClientConfig, SystemRootsError> {
    client_config(system_roots()?, alpn).map_err(SystemRootsError::Tls)
}

/// The operating system's root certificates, or those `SSL_CERT_FILE` / `SSL_CERT_DIR` name;
/// certificates that do not parse are skipped.
pub fn system_roots() -> Result<rustls::RootCertStore, SystemRootsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(SystemRootsError::NoneFound(
            found.errors.first().map(ToString::to_string),
        ));
    }
    Ok(roots)
}

/// Why a client trusting the system's roots could not be made.
#[derive(Debug)]
pub enum SystemRootsError {
    /// No usable root certificate was found; the first error met while looking, if any.
    NoneFound(Option<String>),
    /// rustls refused the configuration.
    Tls(rustls::Error),
}

impl fmt::Display for SystemRootsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoneFound(Some(why)) => write!(f, "no trusted root certificates ({why})"),
            Self::NoneFound(None) => f.write_str("no trusted root certificates on this system"),
            Self::Tls(error) => write!(f, "TLS configuration: {error}"),
        }
    }
}

impl std::error::Error for SystemRootsError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
