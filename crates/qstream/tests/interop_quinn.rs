//! Interoperability with quinn 0.11 over real UDP on loopback, in both roles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qstream::{ClientConfig, Endpoint, ServerConfig, TransportConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// TLS configurations for both stacks: the rustls halves, and qstream's wrappers.
struct Tls {
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
}

const ALPN: &[u8] = b"qstream-test";

fn tls() -> Tls {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert: CertificateDer<'static> = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
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

fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + 7) as u8).collect()
}

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn interop_quinn_qstream_client_to_quinn_server() {
    let tls = tls();
    let quinn_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server).unwrap();
    let quinn_server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(quinn_crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let server_addr = quinn_server.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let connection = quinn_server.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let request = recv.read_to_end(1 << 24).await.unwrap();
        send.write_all(&request).await.unwrap();
        send.finish().unwrap();
        connection.closed().await
    });
    let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = ClientConfig::new(Arc::new(tls.client));
    let connection = tokio::time::timeout(
        TIMEOUT,
        client.connect(&config, server_addr, "localhost").unwrap(),
    )
    .await
    .expect("handshake with quinn timed out")
    .expect("handshake with quinn");
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let request = message(1 << 20);
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();
    let echoed = tokio::time::timeout(TIMEOUT, recv.read_to_end(1 << 24))
        .await
        .expect("echo timed out")
        .unwrap();
    assert!(
        echoed == request,
        "{} of {} bytes echoed",
        echoed.len(),
        request.len()
    );
    connection.close(qstream::proto::wire::VarInt::from_u32(7), b"done");
    let closed = tokio::time::timeout(TIMEOUT, serve).await.unwrap().unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(7));
            assert_eq!(&close.reason[..], b"done");
        }
        other => panic!("quinn saw {other:?}"),
    }
}

#[tokio::test]
async fn interop_quinn_quinn_client_to_qstream_server() {
    let tls = tls();
    let server = Endpoint::server(
        ServerConfig::new(Arc::new(tls.server)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let server_addr: SocketAddr = server.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let connection = server.accept().await.unwrap().unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let request = recv.read_to_end(1 << 24).await.unwrap();
        send.write_all(&request).await.unwrap();
        send.finish().unwrap();
        let error = connection.closed().await;
        (server, error)
    });
    let quinn_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client).unwrap();
    let mut quinn_client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    quinn_client.set_default_client_config(quinn::ClientConfig::new(Arc::new(quinn_crypto)));
    let connection = tokio::time::timeout(
        TIMEOUT,
        quinn_client.connect(server_addr, "localhost").unwrap(),
    )
    .await
    .expect("quinn's handshake with qstream timed out")
    .expect("quinn's handshake with qstream");
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let request = message(1 << 20);
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();
    let echoed = tokio::time::timeout(TIMEOUT, recv.read_to_end(1 << 24))
        .await
        .expect("echo timed out")
        .unwrap();
    assert!(
        echoed == request,
        "{} of {} bytes echoed",
        echoed.len(),
        request.len()
    );
    connection.close(quinn::VarInt::from_u32(9), b"bye");
    let (_server, error) = tokio::time::timeout(TIMEOUT, serve).await.unwrap().unwrap();
    assert_eq!(
        error,
        qstream::ConnectionError::ApplicationClosed {
            code: qstream::proto::wire::VarInt::from_u32(9),
            reason: "bye".into()
        }
    );
    let _ = TransportConfig::default();
}
