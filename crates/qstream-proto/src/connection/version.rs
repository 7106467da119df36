//! Compatible version negotiation on the server (RFC 9368 §2.3, RFC 9369 §4.1). The client's
//! ClientHello is held back from TLS until it is complete, so the server can read the client's
//! version_information and, when the client offers a version the server prefers, answer in that
//! version from its first CRYPTO frame on.

use std::sync::Arc;

use crate::Side;
use crate::crypto::derived::SecretCapture;
use crate::crypto::rustls_version;
use crate::wire::ConnectionId;
use crate::wire::{TransportParameters, Version, VersionInformation};

/// The largest ClientHello held back; a larger one goes to TLS as it comes, in the original
/// version.
const MAX_HELD: usize = 16 * 1024;

/// Whether a connection begun in `original` can continue in `negotiated`: QUIC v1 and v2 are
/// compatible both ways (RFC 9369 §4), and every version is compatible with itself
/// (RFC9368-007: no other compatibility is assumed).
pub(crate) fn compatible(original: Version, negotiated: Version) -> bool {
    original == negotiated
        || ([Version::V1, Version::V2].contains(&original)
            && [Version::V1, Version::V2].contains(&negotiated))
}

/// A connection's version negotiation state.
pub(crate) struct Versions {
    /// The version of the client's first Initial (RFC 9368 "Original Version").
    pub(crate) original_version: Version,
    /// Server: the version is still to be chosen from the client's offer (RFC 9368 §2.3).
    pub(crate) version_choice: Option<VersionChoice>,
    /// Server, after switching versions: Initial keys of the original version, to read the
    /// client's Initials until it switched too (RFC9369-011).
    pub(crate) original_initial_keys: Option<rustls::quic::Keys>,
    /// The connection ID Initial keys derive from.
    pub(crate) initial_keys_cid: ConnectionId,
    /// The version TLS's QUIC key schedule was created for.
    pub(crate) tls_version: Version,
    /// Client: versions the server may switch this connection to (RFC 9368 §2.3).
    pub(crate) compatible_versions: Vec<Version>,
    /// Client offering other versions: TLS secrets as logged, to derive keys after a switch.
    pub(crate) secret_capture: Option<Arc<SecretCapture>>,
}

/// A server connection's pending choice of version, made once the ClientHello is complete.
pub(crate) struct VersionChoice {
    /// The ClientHello bytes received so far.
    held: Vec<u8>,
    /// To start TLS anew in the negotiated version.
    tls: Arc<rustls::ServerConfig>,
    /// Our transport parameters; version_information is set for the negotiated version.
    params: TransportParameters,
    /// The versions this server accepts, most preferred first.
    versions: Vec<Version>,
}

impl VersionChoice {
    /// A choice to make for a client that began in `original`, when this server, accepting
    /// `versions` (most preferred first), prefers a compatible one; `None` when `original` is
    /// already the best the server could pick.
    pub(crate) fn new(
        original: Version,
        versions: &[Version],
        tls: Arc<rustls::ServerConfig>,
        params: TransportParameters,
    ) -> Option<Self> {
        let better = versions
            .iter()
            .take_while(|v| **v != original)
            .any(|v| compatible(original, *v));
        better.then(|| Self {
            held: Vec::new(),
            tls,
            params,
            versions: versions.to_vec(),
        })
    }

    /// Adds in-order Initial CRYPTO bytes; returns everything held once the ClientHello is
    /// complete (or too large to hold), to be passed to TLS.
    pub(crate) fn push(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.held.extend_from_slice(data);
        let complete = client_hello_len(&self.held).is_some_and(|len| self.held.len() >= len);
        (complete || self.held.len() > MAX_HELD).then(|| std::mem::take(&mut self.held))
    }

    /// The version to continue in, for a client that began in `original` and sent `hello`: the
    /// server's most preferred version that the client lists as available and that is
    /// compatible with `original` (RFC9368-008); `original` when there is none or the
    /// ClientHello cannot be read.
    /// The versions this server accepts, most preferred first.
    pub(crate) fn versions(&self) -> &[Version] {
        &self.versions
    }

    pub(crate) fn negotiate(&self, original: Version, hello: &[u8]) -> Version {
        let offered = client_hello_transport_parameters(hello)
            .and_then(|raw| TransportParameters::decode(raw, Side::Client).ok())
            .and_then(|params| params.version_information)
            .map(|info| info.available)
            .unwrap_or_default();
        self.versions
            .iter()
            .copied()
            .find(|v| *v == original || (offered.contains(v) && compatible(original, *v)))
            .unwrap_or(original)
    }

    /// A TLS server for `version`, with our transport parameters naming it as chosen.
    pub(crate) fn tls_for(&self, version: Version) -> Option<rustls::quic::Connection> {
        let mut params = self.params.clone();
        params.version_information = Some(VersionInformation {
            chosen: version,
            available: self.versions.clone(),
        });
        let mut encoded = Vec::new();
        params.encode(&mut encoded);
        rustls::quic::ServerConnection::new(self.tls.clone(), rustls_version(version)?, encoded)
            .ok()
            .map(Into::into)
    }
}

impl std::fmt::Debug for VersionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionChoice")
            .field("held", &self.held.len())
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

/// The length of the handshake message at the start of `held`, header included, once its
/// header is there (RFC 8446 §4: a type byte and a 24-bit length).
fn client_hello_len(held: &[u8]) -> Option<usize> {
    let header = held.get(..4)?;
    Some(4 + (usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3])))
}

/// Reads a TLS structure front to back; every read fails rather than run past the end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// The quic_transport_parameters extension (RFC 9001 §8.2) of a complete ClientHello
/// (RFC 8446 §4.1.2); `None` if it is malformed or has none.
fn client_hello_transport_parameters(hello: &[u8]) -> Option<&[u8]> {
    const CLIENT_HELLO: usize = 1;
    const QUIC_TRANSPORT_PARAMETERS: usize = 0x39;
    let mut message = Cursor(hello);
    if message.u8()? != CLIENT_HELLO {
        return None;
    }
    let length = message.take(3)?;
    let length =
        usize::from(length[0]) << 16 | usize::from(length[1]) << 8 | usize::from(length[2]);
    let mut body = Cursor(message.take(length)?);
    body.take(2 + 32)?; // legacy_version, random
    let n = body.u8()?;
    body.take(n)?; // legacy_session_id
    let n = body.u16()?;
    body.take(n)?; // cipher_suites
    let n = body.u8()?;
    body.take(n)?; // legacy_compression_methods
    let n = body.u16()?;
    let mut extensions = Cursor(body.take(n)?);
    while !extensions.0.is_empty() {
        let ty = extensions.u16()?;
        let n = extensions.u16()?;
        let data = extensions.take(n)?;
        if ty == QUIC_TRANSPORT_PARAMETERS {
            return Some(data);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it, with `params` as its QUIC transport parameters.
    fn client_hello(params: &TransportParameters) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut encoded = Vec::new();
        params.encode(&mut encoded);
        let mut tls = rustls::quic::ClientConnection::new(
            Arc::new(config),
            rustls::quic::Version::V1,
            "localhost".try_into().unwrap(),
            encoded,
        )
        .unwrap();
        let mut hello = Vec::new();
        tls.write_hs(&mut hello);
        hello
    }

    fn offering(available: Vec<Version>) -> TransportParameters {
        TransportParameters {
            version_information: Some(VersionInformation {
                chosen: Version::V1,
                available,
            }),
            ..TransportParameters::default()
        }
    }

    fn choice(versions: &[Version]) -> Option<VersionChoice> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        VersionChoice::new(
            Version::V1,
            versions,
            Arc::new(tls),
            TransportParameters::default(),
        )
    }

    #[test]
    fn version_choice_is_made_only_when_the_server_prefers_another_version() {
        assert!(choice(&[Version::V1, Version::V2]).is_none());
        assert!(choice(&[Version::V1]).is_none());
        assert!(choice(&[Version::V2, Version::V1]).is_some());
    }

    #[test]
    fn version_choice_follows_the_client_offer() {
        let choice = choice(&[Version::V2, Version::V1]).unwrap();
        let upgrade = client_hello(&offering(vec![Version::V1, Version::V2]));
        assert_eq!(choice.negotiate(Version::V1, &upgrade), Version::V2);
        // RFC9368-008: only a version the client lists.
        let v1_only = client_hello(&offering(vec![Version::V1]));
        assert_eq!(choice.negotiate(Version::V1, &v1_only), Version::V1);
        let silent = client_hello(&TransportParameters::default());
        assert_eq!(choice.negotiate(Version::V1, &silent), Version::V1);
        assert!(choice.tls_for(Version::V2).is_some());
    }

    #[test]
    fn version_choice_holds_the_client_hello_until_complete() {
        let mut choice = choice(&[Version::V2, Version::V1]).unwrap();
        let hello = client_hello(&offering(vec![Version::V1, Version::V2]));
        for (i, byte) in hello.iter().enumerate() {
            let released = choice.push(&[*byte]);
            assert_eq!(released.is_some(), i == hello.len() - 1, "byte {i}");
            if let Some(released) = released {
                assert_eq!(released, hello);
            }
        }
    }

    #[test]
    fn version_choice_reads_no_parameters_from_malformed_hellos() {
        let hello = client_hello(&offering(vec![Version::V1, Version::V2]));
        assert!(client_hello_transport_parameters(&hello).is_some());
        for cut in 0..hello.len() {
            assert!(
                client_hello_transport_parameters(&hello[..cut]).is_none(),
                "cut {cut}"
            );
        }
        let mut wrong_type = hello.clone();
        wrong_type[0] = 2;
        assert!(client_hello_transport_parameters(&wrong_type).is_none());
    }
}
