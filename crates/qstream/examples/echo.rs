//! An echo server and client in one process, over loopback with a fresh self-signed
//! certificate: `cargo run -p qstream --example echo`.
//!
//! Shows a blocking open bounded by a timeout, `finish` (quic-go's Close) and `stop` (CancelRead),
//! and the stream snapshot every connection can report. Set `SSLKEYLOGFILE` to log TLS secrets.

use std::sync::Arc;
use std::time::Duration;

use qstream::proto::wire::VarInt;
use qstream::{ClientConfig, Endpoint, ServerConfig, TransportConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A certificate for "localhost", and TLS configurations trusting it.
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    server_tls.alpn_protocols = vec![b"echo".to_vec()];
    server_tls.key_log = qstream::key_log();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone())?;
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"echo".to_vec()];
    client_tls.key_log = qstream::key_log();

    // The server allows two concurrent streams, to show what waiting for credit looks like.
    let mut server_config = ServerConfig::new(Arc::new(server_tls));
    let mut transport = TransportConfig::default();
    transport.streams.max_concurrent_bidi = 2;
    server_config.transport = Arc::new(transport);
    let server = Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    println!("server listening on {addr}");

    tokio::spawn(async move {
        while let Some(Ok(connection)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        // Echo the request, then finish: every byte arrives, then the end.
                        let Ok(request) = recv.read_to_end(1 << 20).await else {
                            return;
                        };
                        let _ = send.write_all(&request).await;
                        let _ = send.finish();
                        // Dropping both halves now releases the stream: its credit goes back.
                    });
                }
            });
        }
    });

    let client = Endpoint::client("127.0.0.1:0".parse()?)?;
    let connection = client
        .connect(&ClientConfig::new(Arc::new(client_tls)), addr, "localhost")?
        .await?;
    println!(
        "connected to {addr}, ALPN {:?}",
        connection.alpn_protocol().map(String::from_utf8)
    );

    for i in 0..3 {
        // A blocking open (quic-go's OpenStreamSync) bounded by a timeout: cancelling it takes no
        // stream ID.
        let (mut send, mut recv) =
            tokio::time::timeout(Duration::from_secs(5), connection.open_bi()).await??;
        send.write_all(format!("hello {i}").as_bytes()).await?;
        send.finish()?;
        let echoed = recv.read_to_end(1 << 20).await?;
        println!(
            "stream {}: echoed {:?}",
            send.id(),
            String::from_utf8_lossy(&echoed)
        );
    }

    // Two streams held open use up the server's limit of two...
    let (_held_a, _held_a_recv) = connection.open_bi().await?;
    let (mut held_b, mut held_b_recv) = connection.open_bi().await?;
    // ...so a third open waits, and gives up after 200 ms without side effects.
    let waited = tokio::time::timeout(Duration::from_millis(200), connection.open_bi()).await;
    println!(
        "third open while two are held: {}",
        if waited.is_err() {
            "timed out, as expected"
        } else {
            "opened"
        }
    );
    if let Some(snapshot) = connection.streams() {
        let credit = snapshot.credit(qstream::proto::Side::Client, qstream::proto::wire::Dir::Bi);
        println!(
            "snapshot: {} open, {} opened in total of a limit of {} (MAX_STREAMS is cumulative), \
             {} available, {} opens waiting",
            credit.open, credit.opened_total, credit.limit, credit.available, credit.waiting
        );
        for stream in &snapshot.streams {
            println!(
                "  stream {}: send {:?}, receive {:?}, age {:?}",
                stream.id,
                stream.send.as_ref().map(|s| s.state),
                stream.recv.as_ref().map(|r| r.state),
                stream.age
            );
        }
    }
    // Stop reading one (quic-go's CancelRead) and finish it (Close): released, credit returns.
    held_b_recv.stop(VarInt::from_u32(0))?;
    held_b.finish()?;
    drop((held_b, held_b_recv));
    let (mut send, mut recv) =
        tokio::time::timeout(Duration::from_secs(5), connection.open_bi()).await??;
    send.write_all(b"after credit came back").await?;
    send.finish()?;
    println!(
        "stream {}: echoed {:?}",
        send.id(),
        String::from_utf8_lossy(&recv.read_to_end(1 << 20).await?)
    );

    connection.close(VarInt::from_u32(0), b"done");
    if let Some(stats) = connection.stats() {
        println!(
            "{} packets sent, {} received, {} lost; RTT {:?}",
            stats.packets_sent,
            stats.packets_received,
            stats.packets_lost,
            connection.rtt().unwrap_or_default()
        );
    }
    Ok(())
}
