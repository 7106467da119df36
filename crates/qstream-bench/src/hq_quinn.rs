//! A minimal hq-interop (HTTP/0.9 over QUIC) server and client on quinn, to compare `qstream
//! serve` and `qstream get` with as processes: what a small quinn tool would do, with its
//! default transport settings and a 1 MiB buffered writer.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN of hq-interop.
const HQ_INTEROP: &[u8] = b"hq-interop";
/// The stream reset code for a file the server does not have.
const NOT_FOUND: u32 = 0x10c;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Serves the files under `root` on `listen` until killed. Announces "serving ADDR" on
/// standard output once listening.
pub(crate) fn serve(
    listen: SocketAddr,
    root: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(), Failure> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![HQ_INTEROP.to_vec()];
    let config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let root = Arc::new(std::fs::canonicalize(root)?);
    runtime()?.block_on(async move {
        let endpoint = quinn::Endpoint::server(config, listen)?;
        println!("serving {}", endpoint.local_addr()?);
        while let Some(incoming) = endpoint.accept().await {
            let root = root.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((send, recv)) = connection.accept_bi().await {
                    tokio::spawn(answer(send, recv, root.clone()));
                }
            });
        }
        Ok(())
    })
}

async fn answer(mut send: quinn::SendStream, mut recv: quinn::RecvStream, root: Arc<PathBuf>) {
    let Ok(request) = recv.read_to_end(8 * 1024).await else {
        return;
    };
    let request = String::from_utf8_lossy(&request);
    let path = request
        .strip_prefix("GET ")
        .map(|p| p.trim().trim_start_matches('/'))
        .unwrap_or("");
    let file = root.join(path);
    let Ok(mut file) = (if file.starts_with(&*root) && !path.contains("..") {
        tokio::fs::File::open(file).await
    } else {
        Err(std::io::ErrorKind::NotFound.into())
    }) else {
        let _ = send.reset(NOT_FOUND.into());
        return;
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if send.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => {
                let _ = send.reset(NOT_FOUND.into());
                return;
            }
        }
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

/// Downloads `url` (`https://host:port/path`) into `output`, trusting only the certificate in
/// the PEM file `ca`.
pub(crate) fn get(url: &str, output: &Path, ca: &Path) -> Result<(), Failure> {
    let rest = url.strip_prefix("https://").ok_or("not an https URL")?;
    let (authority, path) = rest.split_at(rest.find('/').ok_or("no path")?);
    let addr: SocketAddr = authority.parse()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![HQ_INTEROP.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    runtime()?.block_on(async move {
        let local: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let endpoint = quinn::Endpoint::client(local)?;
        let connection = endpoint.connect_with(config, addr, "localhost")?.await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(format!("GET {path}\r\n").as_bytes()).await?;
        send.finish()?;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            out.write_all(&chunk.bytes)?;
        }
        out.flush()?;
        connection.close(0u32.into(), b"");
        endpoint.wait_idle().await;
        Ok(())
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
