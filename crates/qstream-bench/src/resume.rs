//! The resume scenario: how long a client that connects again to a server it knows waits for
//! the first byte of an answer, with its request in 0-RTT packets (RFC 9001 §4.6) or sent
//! once the resumed handshake completes; qstream and quinn, on loopback and over the relay's
//! delayed paths. Each server answers 0-RTT requests at once, in 0.5-RTT packets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness;
use crate::relay::{Path, Relay};
use crate::report::Measure;
use crate::scenarios::Failure;
use crate::tls::Tls;

/// Bytes of each request and of each answer.
const MESSAGE: usize = 64;

/// One path of the scenario.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    /// Its name in reports.
    pub(crate) name: &'static str,
    /// Propagation delay each way; zero for loopback without the relay.
    one_way: Duration,
}

/// Loopback, and the relay at 1 ms and 20 ms round trips.
pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "resume loopback",
            one_way: Duration::ZERO,
        },
        Case {
            name: "resume rtt=1ms",
            one_way: Duration::from_micros(500),
        },
        Case {
            name: "resume rtt=20ms",
            one_way: Duration::from_millis(10),
        },
    ]
}

/// The stacks compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResumeStack {
    Qstream,
    Quinn,
}

impl ResumeStack {
    pub(crate) const ALL: [Self; 2] = [Self::Qstream, Self::Quinn];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Qstream => "qstream",
            Self::Quinn => "quinn",
        }
    }
}

/// `samples` new connections each way (0-RTT and 1-RTT, in turns) after a first one that gets
/// the tickets: the median time from starting to connect to the answer's first byte.
pub(crate) fn first_byte(
    stack: ResumeStack,
    tls: &Tls,
    case: &Case,
    samples: usize,
) -> Result<Vec<Measure>, Failure> {
    let tls = resumable(tls);
    let (server_tls, client_tls) = (tls.clone(), tls);
    let case = case.clone();
    harness::run(
        move |ready| async move {
            match stack {
                ResumeStack::Qstream => serve_qstream(server_tls, ready).await,
                ResumeStack::Quinn => serve_quinn(server_tls, ready).await,
            }
        },
        move |addr, _| async move {
            let relay = (!case.one_way.is_zero())
                .then(|| Relay::start(addr, Path::delay(case.one_way), 1))
                .transpose()
                .map_err(|e| format!("relay: {e}"))?;
            let target = relay.as_ref().map_or(addr, Relay::addr);
            let mut client = Client::new(stack, &client_tls)?;
            client.ask(target, false).await?;
            let (mut early, mut late) = (Vec::new(), Vec::new());
            for _ in 0..samples {
                early.push(client.ask(target, true).await?);
                late.push(client.ask(target, false).await?);
            }
            let ms = |d: &[Duration]| median(d).map(|d| d.as_secs_f64() * 1e3);
            let name = case.name;
            Ok(vec![
                Measure::lower(name, "first byte, 0-RTT", "ms", ms(&early)),
                Measure::lower(name, "first byte, resumed 1-RTT", "ms", ms(&late)),
            ])
        },
    )
}

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}

/// The benchmark's TLS with session tickets and early data on both sides.
fn resumable(tls: &Tls) -> Tls {
    let mut server = (*tls.server).clone();
    server.send_tls13_tickets = 4;
    server.max_early_data_size = u32::MAX;
    let mut client = (*tls.client).clone();
    client.resumption = rustls::client::Resumption::in_memory_sessions(64);
    client.enable_early_data = true;
    Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// Answers every stream with [`MESSAGE`] bytes once it read the request, taking 0-RTT
/// connections before their handshake completes.
async fn serve_qstream(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) {
    let config = qstream::ServerConfig::new(tls.server);
    let endpoint = qstream::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).expect("bind");
    let _ = ready.send(endpoint.local_addr().expect("bound"));
    while let Some(connecting) = endpoint.accept_connecting().await {
        tokio::spawn(async move {
            let connection = match connecting.into_0rtt() {
                Ok((connection, _)) => connection,
                Err(connecting) => match connecting.await {
                    Ok(connection) => connection,
                    Err(_) => return,
                },
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    if recv.read_to_end(MESSAGE).await.is_ok() {
                        let _ = send.write_all(&[0; MESSAGE]).await;
                        let _ = send.finish();
                    }
                });
            }
        });
    }
}

/// quinn's server of the same: quinn's server-side `into_0rtt` always succeeds (0.5-RTT).
async fn serve_quinn(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from((*tls.server).clone())
        .expect("QUIC-capable TLS");
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).expect("bind");
    let _ = ready.send(endpoint.local_addr().expect("bound"));
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(connecting) = incoming.accept() else {
                return;
            };
            let connection = match connecting.into_0rtt() {
                Ok((connection, _)) => connection,
                Err(connecting) => match connecting.await {
                    Ok(connection) => connection,
                    Err(_) => return,
                },
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    if recv.read_to_end(MESSAGE).await.is_ok() {
                        let _ = send.write_all(&[0; MESSAGE]).await;
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    }
                });
            }
        });
    }
}

/// A client endpoint of either stack, keeping the server's tickets across connections.
enum Client {
    Qstream(qstream::Endpoint, qstream::ClientConfig),
    Quinn(quinn::Endpoint),
}

impl Client {
    fn new(stack: ResumeStack, tls: &Tls) -> Result<Self, Failure> {
        let local = ([127, 0, 0, 1], 0).into();
        Ok(match stack {
            ResumeStack::Qstream => Self::Qstream(
                qstream::Endpoint::client(local).map_err(|e| e.to_string())?,
                qstream::ClientConfig::new(tls.client.clone()),
            ),
            ResumeStack::Quinn => {
                let crypto =
                    quinn::crypto::rustls::QuicClientConfig::try_from((*tls.client).clone())
                        .map_err(|e| e.to_string())?;
                let mut endpoint = quinn::Endpoint::client(local).map_err(|e| e.to_string())?;
                endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
                Self::Quinn(endpoint)
            }
        })
    }

    /// A new connection to `addr` and one request on it, in 0-RTT when `early` (which must
    /// then be possible); the time to the answer's first byte.
    async fn ask(&mut self, addr: SocketAddr, early: bool) -> Result<Duration, Failure> {
        let started = Instant::now();
        match self {
            Self::Qstream(endpoint, config) => {
                let connecting = endpoint
                    .connect(config, addr, "localhost")
                    .map_err(|e| e.to_string())?;
                let connection = match (early, connecting.into_0rtt()) {
                    (true, Ok((connection, _))) => connection,
                    (true, Err(_)) => return Err("qstream: no ticket for 0-RTT".into()),
                    (false, Ok((connection, accepted))) => {
                        accepted.await;
                        connection
                    }
                    (false, Err(connecting)) => connecting.await.map_err(|e| e.to_string())?,
                };
                let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(&[0; MESSAGE])
                    .await
                    .map_err(|e| e.to_string())?;
                send.finish().map_err(|e| e.to_string())?;
                recv.read_chunk(MESSAGE).await.map_err(|e| e.to_string())?;
                let took = started.elapsed();
                recv.read_to_end(MESSAGE).await.map_err(|e| e.to_string())?;
                connection.close(qstream::proto::wire::VarInt::ZERO, b"");
                Ok(took)
            }
            Self::Quinn(endpoint) => {
                let connecting = endpoint
                    .connect(addr, "localhost")
                    .map_err(|e| e.to_string())?;
                let connection = match (early, connecting.into_0rtt()) {
                    (true, Ok((connection, _))) => connection,
                    (true, Err(_)) => return Err("quinn: no ticket for 0-RTT".into()),
                    (false, Ok((connection, accepted))) => {
                        accepted.await;
                        connection
                    }
                    (false, Err(connecting)) => connecting.await.map_err(|e| e.to_string())?,
                };
                let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(&[0; MESSAGE])
                    .await
                    .map_err(|e| e.to_string())?;
                send.finish().map_err(|e| e.to_string())?;
                recv.read_chunk(MESSAGE, true)
                    .await
                    .map_err(|e| e.to_string())?;
                let took = started.elapsed();
                recv.read_to_end(MESSAGE).await.map_err(|e| e.to_string())?;
                connection.close(quinn::VarInt::from_u32(0), b"");
                Ok(took)
            }
        }
    }
}
