//! Interoperability with quinn 0.11 over real UDP on loopback, in both roles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qstream::{ClientConfig, Endpoint, ServerConfig, TransportConfig};

mod common;

use common::tls;

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
}

/// How a test server answers each stream.
#[derive(Clone, Copy)]
enum Habit {
    /// Reads the request to the end and sends it back.
    Echo,
    /// Sends a fixed response, finishes, and drops both halves without reading (the seed
    /// scenario's server).
    RespondWithoutReading,
}

const RESPONSE: &[u8] = b"response without reading the request";

/// A quinn server answering every stream per `habit`, with a bidirectional stream limit.
fn quinn_server(habit: Habit, limit: u32, ip: &str) -> SocketAddr {
    let tls = tls();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server).unwrap();
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(limit));
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, format!("{ip}:0").parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        match habit {
                            Habit::Echo => {
                                let Ok(request) = recv.read_to_end(1 << 27).await else {
                                    return;
                                };
                                let _ = send.write_all(&request).await;
                                let _ = send.finish();
                            }
                            Habit::RespondWithoutReading => {
                                let _ = send.write_all(RESPONSE).await;
                                let _ = send.finish();
                            }
                        }
                        // Keep the send half until its data is acknowledged; recv dropped.
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    addr
}

/// A qstream server answering every stream per `habit`.
fn qstream_server(habit: Habit, transport: TransportConfig, retry: bool, ip: &str) -> SocketAddr {
    let tls = tls();
    let mut config = ServerConfig::new(Arc::new(tls.server));
    config.transport = Arc::new(transport);
    config.retry = retry;
    let endpoint = Endpoint::server(config, format!("{ip}:0").parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(Ok(connection)) = endpoint.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        match habit {
                            Habit::Echo => {
                                let Ok(request) = recv.read_to_end(1 << 27).await else {
                                    return;
                                };
                                let _ = send.write_all(&request).await;
                                let _ = send.finish();
                            }
                            Habit::RespondWithoutReading => {
                                let _ = send.write_all(RESPONSE).await;
                                let _ = send.finish();
                                // Both handles dropped here: finished send half kept, receive
                                // half stopped.
                            }
                        }
                    });
                }
            });
        }
    });
    addr
}

async fn qstream_client(addr: SocketAddr, transport: TransportConfig) -> qstream::Connection {
    let ip = if addr.is_ipv6() { "[::1]" } else { "127.0.0.1" };
    let client = Endpoint::client(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut config = ClientConfig::new(Arc::new(tls().client));
    config.transport = Arc::new(transport);
    tokio::time::timeout(TIMEOUT, client.connect(&config, addr, "localhost").unwrap())
        .await
        .expect("handshake timed out")
        .expect("handshake")
}

async fn quinn_client(addr: SocketAddr) -> quinn::Connection {
    let ip = if addr.is_ipv6() { "[::1]" } else { "127.0.0.1" };
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls().client).unwrap();
    let mut endpoint = quinn::Endpoint::client(format!("{ip}:0").parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    tokio::time::timeout(TIMEOUT, endpoint.connect(addr, "localhost").unwrap())
        .await
        .expect("handshake timed out")
        .expect("handshake")
}

async fn qstream_exchange(connection: &qstream::Connection, request: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(request).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 27).await.unwrap()
}

async fn quinn_exchange(connection: &quinn::Connection, request: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(request).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 27).await.unwrap()
}

#[tokio::test]
async fn interop_quinn_50mib_on_one_stream_both_roles() {
    let data = message(50 << 20);
    let addr = quinn_server(Habit::Echo, 100, "127.0.0.1");
    let connection = qstream_client(addr, TransportConfig::default()).await;
    let echoed = tokio::time::timeout(TIMEOUT * 3, qstream_exchange(&connection, &data))
        .await
        .unwrap();
    assert!(
        echoed == data,
        "qstream client: {} of {} bytes",
        echoed.len(),
        data.len()
    );
    let addr = qstream_server(Habit::Echo, TransportConfig::default(), false, "127.0.0.1");
    let connection = quinn_client(addr).await;
    let echoed = tokio::time::timeout(TIMEOUT * 3, quinn_exchange(&connection, &data))
        .await
        .unwrap();
    assert!(
        echoed == data,
        "quinn client: {} of {} bytes",
        echoed.len(),
        data.len()
    );
}

#[tokio::test]
async fn interop_quinn_seed_scenario_2000_exchanges_limit_100_both_roles() {
    // The server finishes its response and drops the stream without reading the request: the
    // client must be able to go on opening streams through a limit of 100, never hanging.
    let addr = quinn_server(Habit::RespondWithoutReading, 100, "127.0.0.1");
    let connection = qstream_client(addr, TransportConfig::default()).await;
    for i in 0..2000 {
        let response = tokio::time::timeout(TIMEOUT, qstream_exchange(&connection, b"request"))
            .await
            .unwrap_or_else(|_| panic!("qstream client hung at exchange {i}"));
        assert_eq!(response, RESPONSE);
    }
    let mut transport = TransportConfig::default();
    transport.streams.max_concurrent_bidi = 100;
    let addr = qstream_server(Habit::RespondWithoutReading, transport, false, "127.0.0.1");
    let connection = quinn_client(addr).await;
    for i in 0..2000 {
        let response = tokio::time::timeout(TIMEOUT, quinn_exchange(&connection, b"request"))
            .await
            .unwrap_or_else(|_| panic!("quinn client hung at exchange {i}"));
        assert_eq!(response, RESPONSE);
    }
}

#[tokio::test]
async fn interop_quinn_200_concurrent_streams_both_roles() {
    let addr = quinn_server(Habit::Echo, 100, "127.0.0.1");
    let connection = qstream_client(addr, TransportConfig::default()).await;
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let request = message(1000 + i as usize * 37);
                assert_eq!(qstream_exchange(&connection, &request).await, request);
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    }
    let addr = qstream_server(Habit::Echo, TransportConfig::default(), false, "127.0.0.1");
    let connection = quinn_client(addr).await;
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let request = message(1000 + i as usize * 37);
                assert_eq!(quinn_exchange(&connection, &request).await, request);
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn interop_quinn_reset_and_stop_codes_cross_stacks() {
    let tls_pair = tls();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls_pair.server).unwrap();
    let quinn_endpoint = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = quinn_endpoint.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let connection = quinn_endpoint.accept().await.unwrap().await.unwrap();
        // First stream: the qstream client resets it with 11; quinn sees the code.
        let (_send, mut recv) = connection.accept_bi().await.unwrap();
        let reset = recv.read_to_end(1 << 20).await.unwrap_err();
        // Second stream: quinn stops it with 22; the qstream client sees the code on write.
        let (_send2, mut recv2) = connection.accept_bi().await.unwrap();
        recv2.stop(quinn::VarInt::from_u32(22)).unwrap();
        (reset, connection)
    });
    let connection = qstream_client(addr, TransportConfig::default()).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(b"some bytes").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    send.reset(qstream::proto::wire::VarInt::from_u32(11))
        .unwrap();
    let (mut send2, _recv2) = connection.open_bi().await.unwrap();
    send2.write_all(b"x").await.unwrap();
    let (reset, _quinn_connection) = tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(reset, quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) if code == quinn::VarInt::from_u32(11)),
        "quinn saw {reset:?}"
    );
    let stopped = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Err(error) = send2.write_all(b"more").await {
                return error;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(stopped.to_string().contains("22"), "qstream saw {stopped}");
}

#[tokio::test]
async fn interop_quinn_key_updates_mid_transfer() {
    let addr = quinn_server(Habit::Echo, 100, "127.0.0.1");
    let transport = TransportConfig {
        key_update_interval: Some(500),
        ..TransportConfig::default()
    };
    let connection = qstream_client(addr, transport).await;
    let data = message(8 << 20);
    let echoed = tokio::time::timeout(TIMEOUT, qstream_exchange(&connection, &data))
        .await
        .unwrap();
    assert!(echoed == data);
    let stats = connection.stats().unwrap();
    assert!(stats.key_updates_initiated >= 3, "{stats:?}");
}

#[tokio::test]
async fn interop_quinn_client_through_qstream_retry() {
    let addr = qstream_server(Habit::Echo, TransportConfig::default(), true, "127.0.0.1");
    let connection = quinn_client(addr).await;
    assert_eq!(
        quinn_exchange(&connection, b"after retry").await,
        b"after retry"
    );
}

#[tokio::test]
async fn interop_quinn_over_ipv6() {
    let addr = quinn_server(Habit::Echo, 100, "[::1]");
    let connection = qstream_client(addr, TransportConfig::default()).await;
    assert_eq!(qstream_exchange(&connection, b"v6").await, b"v6");
    let addr = qstream_server(Habit::Echo, TransportConfig::default(), false, "[::1]");
    let connection = quinn_client(addr).await;
    assert_eq!(quinn_exchange(&connection, b"v6").await, b"v6");
}

#[tokio::test]
async fn interop_quinn_qstream_client_through_quinn_retry() {
    let tls_pair = tls();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls_pair.server).unwrap();
    let endpoint = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            // Validate every address with a Retry first.
            if !incoming.remote_address_validated() {
                incoming.retry().unwrap();
                continue;
            }
            let connection = incoming.await.unwrap();
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            let request = recv.read_to_end(1 << 20).await.unwrap();
            send.write_all(&request).await.unwrap();
            send.finish().unwrap();
            let _ = send.stopped().await;
        }
    });
    let connection = qstream_client(addr, TransportConfig::default()).await;
    assert_eq!(
        qstream_exchange(&connection, b"after quinn's retry").await,
        b"after quinn's retry"
    );
}

#[tokio::test]
async fn interop_quinn_client_that_rebinds_keeps_its_download_from_qstream() {
    // RFC 9000 §9.3: quinn's client moves to a new UDP socket (a new port, as a NAT rebinding
    // would give it) in the middle of an echo of 32 MiB; our server follows it to the new
    // address, validates it, and the echo completes there, every byte checked.
    let addr = qstream_server(Habit::Echo, TransportConfig::default(), false, "127.0.0.1");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls().client).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = tokio::time::timeout(TIMEOUT, endpoint.connect(addr, "localhost").unwrap())
        .await
        .expect("handshake timed out")
        .expect("handshake");
    let data = message(32 << 20);
    let old = endpoint.local_addr().unwrap();
    let exchange = {
        let (connection, data) = (connection.clone(), data.clone());
        tokio::spawn(async move { quinn_exchange(&connection, &data).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    endpoint
        .rebind(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .unwrap();
    assert_ne!(endpoint.local_addr().unwrap(), old);
    let echoed = tokio::time::timeout(TIMEOUT * 3, exchange)
        .await
        .expect("the echo stalled after the rebind")
        .unwrap();
    assert!(echoed == data, "{} of {} bytes", echoed.len(), data.len());
    // The connection works on the new socket.
    assert_eq!(quinn_exchange(&connection, b"after").await, b"after");
}

#[tokio::test]
async fn interop_quinn_qstream_client_that_rebinds_keeps_its_download_from_quinn() {
    // The other way round: our client moves to a new UDP socket (Endpoint::rebind) mid-echo
    // of 32 MiB, with a new connection ID; quinn's server follows it and the echo completes.
    let addr = quinn_server(Habit::Echo, 100, "127.0.0.1");
    let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = ClientConfig::new(Arc::new(tls().client));
    let connection =
        tokio::time::timeout(TIMEOUT, client.connect(&config, addr, "localhost").unwrap())
            .await
            .expect("handshake timed out")
            .expect("handshake");
    let data = message(32 << 20);
    let old = client.local_addr().unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let echo = async {
        let writing = async {
            send.write_all(&data).await.unwrap();
            send.finish().unwrap();
        };
        let reading = async {
            let (mut got, mut buf) = (Vec::with_capacity(data.len()), vec![0u8; 1 << 16]);
            while let Some(n) = recv.read(&mut buf).await.unwrap() {
                got.extend_from_slice(&buf[..n]);
                if got.len() > 4 << 20 && client.local_addr().unwrap() == old {
                    client.rebind("127.0.0.1:0".parse().unwrap()).unwrap();
                }
            }
            got
        };
        tokio::join!(writing, reading).1
    };
    let echoed = tokio::time::timeout(TIMEOUT * 3, echo)
        .await
        .expect("the echo stalled after the rebind");
    assert_ne!(client.local_addr().unwrap(), old, "the client never moved");
    assert!(echoed == data, "{} of {} bytes", echoed.len(), data.len());
    assert_eq!(qstream_exchange(&connection, b"after").await, b"after");
}

#[tokio::test]
async fn interop_quinn_qstream_client_resumes_in_0rtt_with_a_quinn_server() {
    // RFC 9001 §4.6: our second connection to quinn resumes the first one's session and sends
    // its request in 0-RTT packets; quinn takes it as early data.
    let mut server_tls = tls().server;
    server_tls.max_early_data_size = u32::MAX;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                // quinn marks a stream as 0-RTT when it is accepted during the handshake, so
                // the server takes the connection before its handshake completes.
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
                    let Ok(request) = recv.read_to_end(1 << 16).await else {
                        return;
                    };
                    let _ = send.write_all(&[u8::from(recv.is_0rtt())]).await;
                    let _ = send.write_all(&request).await;
                    let _ = send.finish();
                    let _ = send.stopped().await;
                }
            });
        }
    });
    let mut client_tls = tls().client;
    client_tls.enable_early_data = true;
    let config = ClientConfig::new(Arc::new(client_tls));
    let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let first = client.connect(&config, addr, "localhost").unwrap();
    let first = tokio::time::timeout(TIMEOUT, first).await.unwrap().unwrap();
    assert_eq!(qstream_exchange(&first, b"first").await, b"\x00first");
    first.close(qstream::proto::wire::VarInt::from_u32(0), b"done");
    let second = client.connect(&config, addr, "localhost").unwrap();
    let (second, accepted) = second.into_0rtt().expect("a ticket allowing early data");
    let answer = tokio::time::timeout(TIMEOUT, qstream_exchange(&second, b"early"));
    assert_eq!(answer.await.unwrap(), b"\x01early");
    assert!(accepted.await, "quinn took the early data");
    assert!(second.stats().unwrap().zero_rtt_packets_sent > 0);
}

#[tokio::test]
async fn interop_quinn_quinn_client_resumes_in_0rtt_with_a_qstream_server() {
    // RFC 9001 §4.6: quinn's second connection to our server resumes and sends its request in
    // 0-RTT packets (quinn's Connecting::into_0rtt); our server takes it as early data.
    let mut server_tls = tls().server;
    server_tls.max_early_data_size = u32::MAX;
    let server = Endpoint::server(
        ServerConfig::new(Arc::new(server_tls)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(Ok(connection)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let Ok(request) = recv.read_to_end(1 << 16).await else {
                        return;
                    };
                    let _ = send.write_all(&[u8::from(recv.is_early())]).await;
                    let _ = send.write_all(&request).await;
                    let _ = send.finish();
                }
            });
        }
    });
    let mut client_tls = tls().client;
    client_tls.enable_early_data = true;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let first = endpoint.connect(addr, "localhost").unwrap();
    let first = tokio::time::timeout(TIMEOUT, first).await.unwrap().unwrap();
    assert_eq!(quinn_exchange(&first, b"first").await, b"\x00first");
    first.close(quinn::VarInt::from_u32(0), b"done");
    let second = endpoint.connect(addr, "localhost").unwrap();
    let Ok((second, accepted)) = second.into_0rtt() else {
        panic!("quinn found no ticket allowing early data");
    };
    let answer = tokio::time::timeout(TIMEOUT, quinn_exchange(&second, b"early"));
    assert_eq!(answer.await.unwrap(), b"\x01early");
    assert!(accepted.await, "our server took the early data");
}
