//! qstream.

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use qstream::proto::recovery::CongestionControl;
use qstream::proto::wire::{FrameType, VarInt};
use qstream::{
    ClientConfig, Connection, Endpoint, RecvStream, SendStream, ServerConfig, TransportConfig,
};

use super::{RESPONSE_LEN, STREAM_LIMIT, SendCounters, Stack, body_chunk, other};
use crate::tls::Tls;

/// The congestion controller a qstream stack runs.
pub(crate) trait Controller: Send + Sync + 'static {
    /// The stack's name in reports.
    const NAME: &'static str;
    /// The controller; `None` for the transport's default.
    const CONTROL: Option<CongestionControl>;
}

/// qstream's default controller.
pub(crate) struct DefaultControl;

impl Controller for DefaultControl {
    const NAME: &'static str = "qstream";
    const CONTROL: Option<CongestionControl> = None;
}

/// NewReno.
pub(crate) struct NewReno;

impl Controller for NewReno {
    const NAME: &'static str = "qstream newreno";
    const CONTROL: Option<CongestionControl> = Some(CongestionControl::NewReno);
}

/// BBRv3.
pub(crate) struct Bbr;

impl Controller for Bbr {
    const NAME: &'static str = "qstream bbr";
    const CONTROL: Option<CongestionControl> = Some(CongestionControl::Bbr);
}

/// qstream with its default transport settings but for the controller `C`, and the
/// benchmark's stream limit.
pub(crate) struct Qstream<C: Controller = DefaultControl>(PhantomData<C>);

/// Writes qlog files of the endpoint's connections into `QLOGDIR`, when it is set: a way to
/// look into a run, which costs throughput.
fn record_qlog(endpoint: &Endpoint) {
    if let Some(dir) = std::env::var_os("QLOGDIR") {
        if let Err(error) = endpoint.set_qlog_dir(&dir) {
            eprintln!(
                "qstream-bench: no qlog in {}: {error}",
                dir.to_string_lossy()
            );
        }
    }
}

fn transport<C: Controller>() -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport.streams.max_concurrent_bidi = u64::from(STREAM_LIMIT);
    if let Some(control) = C::CONTROL {
        transport.congestion_control = control;
    }
    transport
}

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

impl<C: Controller> Stack for Qstream<C> {
    const NAME: &'static str = C::NAME;
    const OVER_UDP: bool = true;
    type Endpoint = QstreamEndpoint;
    type Client = Connection;

    async fn serve(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) {
        let mut config = ServerConfig::new(tls.server);
        config.transport = Arc::new(transport::<C>());
        let endpoint = Endpoint::server(config, ([127, 0, 0, 1], 0).into()).expect("bind");
        record_qlog(&endpoint);
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
            endpoint: {
                let endpoint = Endpoint::client(([127, 0, 0, 1], 0).into())?;
                record_qlog(&endpoint);
                endpoint
            },
            config: ClientConfig {
                transport: Arc::new(transport::<C>()),
                ..ClientConfig::new(tls.client.clone())
            },
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
            bytes_sent: stats.bytes_sent,
            bytes_lost: stats.bytes_lost,
            probe_timeouts: Some(stats.pto_count),
            acks_received: stats.frames_received.get(FrameType::ACK)
                + stats.frames_received.get(FrameType::ACK_ECN),
            datagrams_sent: io.datagrams_sent,
            send_calls: io.send_calls,
        })
    }
}
