//! TCP with TLS (rustls through tokio-rustls): what a streaming application uses without QUIC.
//! TCP cannot multiplex, so a client is a pool of connections, one per concurrent request,
//! as HTTP/1.1 clients keep. A request is an 8-byte length and the body.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

use super::{RESPONSE_LEN, SendCounters, Stack, body_chunk, other};
use crate::tls::Tls;

/// TCP+TLS.
pub(crate) struct TcpTls;

/// Where a client connects from.
pub(crate) struct TcpEndpoint {
    connector: TlsConnector,
}

/// A pool of TLS connections to one server; a request takes an idle one or opens another.
#[derive(Clone)]
pub(crate) struct TcpClient {
    addr: SocketAddr,
    connector: TlsConnector,
    idle: Arc<Mutex<Vec<TlsStream<TcpStream>>>>,
}

async fn handshake(connector: &TlsConnector, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector
        .connect(ServerName::try_from("localhost").map_err(other)?, tcp)
        .await
}

async fn serve_connection(acceptor: TlsAcceptor, tcp: TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut tls = acceptor.accept(tcp).await?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut header = [0u8; 8];
        match tls.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut remaining = u64::from_be_bytes(header);
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            let n = tls.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            remaining -= n as u64;
        }
        tls.write_all(&[0; RESPONSE_LEN]).await?;
        tls.flush().await?;
    }
}

impl Stack for TcpTls {
    const NAME: &'static str = "tcp+tls";
    const OVER_UDP: bool = false;
    type Endpoint = TcpEndpoint;
    type Client = TcpClient;

    async fn serve(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let _ = ready.send(listener.local_addr().expect("bound"));
        let acceptor = TlsAcceptor::from(tls.server);
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_connection(acceptor.clone(), tcp));
        }
    }

    fn endpoint(tls: &Tls) -> io::Result<TcpEndpoint> {
        Ok(TcpEndpoint {
            connector: TlsConnector::from(tls.client.clone()),
        })
    }

    async fn connect(endpoint: &TcpEndpoint, addr: SocketAddr) -> io::Result<TcpClient> {
        let first = handshake(&endpoint.connector, addr).await?;
        Ok(TcpClient {
            addr,
            connector: endpoint.connector.clone(),
            idle: Arc::new(Mutex::new(vec![first])),
        })
    }

    async fn request(client: &TcpClient, size: u64) -> io::Result<()> {
        let idle = client.idle.lock().expect("pool lock").pop();
        let mut tls = match idle {
            Some(tls) => tls,
            None => handshake(&client.connector, client.addr).await?,
        };
        tls.write_all(&size.to_be_bytes()).await?;
        let mut remaining = size;
        while remaining > 0 {
            let chunk = body_chunk(remaining);
            tls.write_all(chunk).await?;
            remaining -= chunk.len() as u64;
        }
        tls.flush().await?;
        let mut response = [0u8; RESPONSE_LEN];
        tls.read_exact(&mut response).await?;
        client.idle.lock().expect("pool lock").push(tls);
        Ok(())
    }

    fn close(client: TcpClient) {
        drop(client);
    }

    fn send_counters(_: &TcpEndpoint, _: &TcpClient) -> Option<SendCounters> {
        None
    }
}
