//! quinn 0.11, the most used Rust QUIC stack.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::{RESPONSE_LEN, STREAM_LIMIT, SendCounters, Stack, body_chunk, other};
use crate::tls::Tls;

/// quinn with its default transport settings and the benchmark's stream limit.
pub(crate) struct Quinn;

async fn respond(mut send: quinn::SendStream, mut recv: quinn::RecvStream) -> io::Result<()> {
    while recv
        .read_chunk(usize::MAX, true)
        .await
        .map_err(other)?
        .is_some()
    {}
    send.write_all(&[0; RESPONSE_LEN]).await.map_err(other)?;
    send.finish().map_err(other)
}

impl Stack for Quinn {
    const NAME: &'static str = "quinn";
    const OVER_UDP: bool = true;
    type Endpoint = quinn::Endpoint;
    type Client = quinn::Connection;

    async fn serve(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) {
        let crypto = QuicServerConfig::try_from((*tls.server).clone()).expect("QUIC-capable TLS");
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(STREAM_LIMIT.into());
        config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).expect("bind");
        let _ = ready.send(endpoint.local_addr().expect("bound"));
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((send, recv)) = connection.accept_bi().await {
                    tokio::spawn(respond(send, recv));
                }
            });
        }
    }

    fn endpoint(tls: &Tls) -> io::Result<quinn::Endpoint> {
        let crypto = QuicClientConfig::try_from((*tls.client).clone()).map_err(other)?;
        let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into())?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        Ok(endpoint)
    }

    async fn connect(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
    ) -> io::Result<quinn::Connection> {
        endpoint
            .connect(addr, "localhost")
            .map_err(other)?
            .await
            .map_err(other)
    }

    async fn request(client: &quinn::Connection, size: u64) -> io::Result<()> {
        let (mut send, mut recv) = client.open_bi().await.map_err(other)?;
        let mut remaining = size;
        while remaining > 0 {
            let chunk = body_chunk(remaining);
            send.write_all(chunk).await.map_err(other)?;
            remaining -= chunk.len() as u64;
        }
        send.finish().map_err(other)?;
        let response = recv.read_to_end(RESPONSE_LEN).await.map_err(other)?;
        if response.len() != RESPONSE_LEN {
            return Err(other("short response"));
        }
        Ok(())
    }

    fn close(client: quinn::Connection) {
        client.close(0u32.into(), b"");
    }

    fn send_counters(_: &quinn::Endpoint, client: &quinn::Connection) -> Option<SendCounters> {
        let stats = client.stats();
        Some(SendCounters {
            packets_sent: stats.path.sent_packets,
            packets_lost: stats.path.lost_packets,
            bytes_sent: stats.udp_tx.bytes,
            bytes_lost: stats.path.lost_bytes,
            probe_timeouts: None,
            acks_received: stats.frame_rx.acks,
            datagrams_sent: stats.udp_tx.datagrams,
            send_calls: stats.udp_tx.ios,
        })
    }
}
