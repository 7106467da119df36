//! qstream.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use qstream::proto::wire::{FrameType, VarInt};
use qstream::{ClientConfig, Connection, Endpoint, RecvStream, SendStream, ServerConfig};

use super::{RESPONSE_LEN, STREAM_LIMIT, SendCounters, Stack, body_chunk, other};
use crate::tls::Tls;

/// qstream with its default transport settings and the benchmark's stream limit.
pub(crate) struct Qstream;

/// A client endpoint and the configuration it connects with.
pub(crate) struct QstreamEndpoint {
    endpoint: Endpoint,
    config: ClientConfig,
}

async fn respond(mut send: SendStream, mut recv: RecvStream) -> io::Result<()> {
    while recv.read_chunk(usize::MAX).await?.is_some() {}
    send.write_all(&[0; RESPONSE_LEN]).await?;
    send.finish()
}

impl Stack for Qstream {
    const NAME: &'static str = "qstream";
    const OVER_UDP: bool = true;
    type Endpoint = QstreamEndpoint;
    type Client = Connection;

    async fn serve(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) {
        let mut config = ServerConfig::new(tls.server);
        let mut transport = qstream::TransportConfig::default();
        transport.streams.max_concurrent_bidi = u64::from(STREAM_LIMIT);
        config.transport = Arc::new(transport);
        let endpoint = Endpoint::server(config, ([127, 0, 0, 1], 0).into()).expect("bind");
        let _ = ready.send(endpoint.local_addr().expect("bound"));
        while let Some(connection) = endpoint.accept().await {
            let Ok(connection) = connection else { continue };
            tokio::spawn(async move {
                while let Ok((send, recv)) = connection.accept_bi().await {
                    tokio::spawn(respond(send, recv));
                }
            });
        }
    }

    fn endpoint(tls: &Tls) -> io::Result<QstreamEndpoint> {
        Ok(QstreamEndpoint {
            endpoint: Endpoint::client(([127, 0, 0, 1], 0).into())?,
            config: ClientConfig::new(tls.client.clone()),
        })
    }

    async fn connect(endpoint: &QstreamEndpoint, addr: SocketAddr) -> io::Result<Connection> {
        let connecting = endpoint
            .endpoint
            .connect(&endpoint.config, addr, "localhost")
            .map_err(other)?;
        connecting.await.map_err(other)
    }

    async fn request(client: &Connection, size: u64) -> io::Result<()> {
        let (mut send, mut recv) = client.open_bi().await.map_err(other)?;
        let mut remaining = size;
        while remaining > 0 {
            let chunk = body_chunk(remaining);
            send.write_all(chunk).await?;
            remaining -= chunk.len() as u64;
        }
        send.finish()?;
        let response = recv.read_to_end(RESPONSE_LEN).await?;
        if response.len() != RESPONSE_LEN {
            return Err(other("short response"));
        }
        Ok(())
    }

    fn close(client: Connection) {
        client.close(VarInt::ZERO, b"");
    }

    fn send_counters(endpoint: &QstreamEndpoint, client: &Connection) -> Option<SendCounters> {
        let stats = client.stats()?;
        let io = endpoint.endpoint.io_stats();
        Some(SendCounters {
            packets_sent: stats.packets_sent,
            packets_lost: stats.packets_lost,
            acks_received: stats.frames_received.get(FrameType::ACK)
                + stats.frames_received.get(FrameType::ACK_ECN),
            datagrams_sent: io.datagrams_sent,
            send_calls: io.send_calls,
        })
    }
}
