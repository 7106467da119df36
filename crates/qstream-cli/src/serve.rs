//! `qstream serve`: files over ALPN hq-interop (HTTP/0.9 over QUIC), as interop servers do.

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qstream::proto::wire::VarInt;
use qstream::{Endpoint, RecvStream, SendStream, ServerConfig};

use crate::endpoints;
use crate::input::ReadAhead;
use crate::observe::ObserveArgs;
use crate::shutdown::{self, Interrupted};
use crate::tls::{self, Identity};
use crate::transport::TransportArgs;

/// The ALPN of HTTP/0.9 over QUIC used by the QUIC interop runner.
pub(crate) const HQ_INTEROP: &[u8] = b"hq-interop";
/// The code interop servers reset a stream with when the file is missing or refused.
const NOT_FOUND: u32 = 0x10c;
/// The longest request line accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// Options of `qstream serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on, for example 127.0.0.1:4433 or [::]:4433.
    #[arg(long)]
    listen: SocketAddr,
    /// Directory whose files are served.
    #[arg(long)]
    root: PathBuf,
    /// Certificate chain (PEM), with --key. Without them a self-signed certificate is made and
    /// its SHA-256 fingerprint printed.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Validate client addresses with a Retry first.
    #[arg(long)]
    retry: bool,
    /// Bidirectional streams a client may have open at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    max_streams: u64,
    /// Write the self-signed certificate (PEM) to this file, for clients to pass to --ca.
    #[arg(long, conflicts_with = "cert")]
    save_cert: Option<PathBuf>,
    /// On SIGINT or SIGTERM, let responses in flight finish for up to this long, in seconds,
    /// then close every connection.
    #[arg(long, default_value_t = 1.0)]
    grace: f64,
    #[command(flatten)]
    transport: TransportArgs,
    #[command(flatten)]
    observe: ObserveArgs,
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), Box<dyn Error>> {
    let root = std::fs::canonicalize(&args.root)
        .map_err(|e| format!("cannot serve {}: {e}", args.root.display()))?;
    if !root.is_dir() {
        return Err(format!("cannot serve {}: not a directory", root.display()).into());
    }
    let (identity, self_signed) =
        Identity::from_options(args.cert.as_deref(), args.key.as_deref())?;
    let mut config = ServerConfig::new(Arc::new(tls::server(&identity, HQ_INTEROP)?));
    let mut transport = args.transport.config();
    transport.streams.max_concurrent_bidi = args.max_streams;
    config.transport = Arc::new(transport);
    config.retry = args.retry;
    let endpoint = endpoints::server(config, args.listen, &args.observe)?;
    args.transport.apply(&endpoint);
    if self_signed {
        println!(
            "self-signed certificate, SHA-256 fingerprint {}",
            identity.fingerprint()
        );
    }
    if let (Some(path), Some(pem)) = (&args.save_cert, identity.self_signed_pem()) {
        std::fs::write(path, pem)
            .map_err(|e| format!("cannot save the certificate to {}: {e}", path.display()))?;
        println!("certificate saved to {}", path.display());
    }
    println!("serving {} on {}", root.display(), endpoint.local_addr()?);
    let answering = Arc::new(AtomicUsize::new(0));
    let signal = tokio::select! {
        _ = serve_files(&endpoint, root, &args.observe, answering.clone()) => return Ok(()),
        signal = shutdown::signal() => signal,
    };
    // Stop accepting; let what is being answered finish, for up to the grace period.
    let grace = Duration::from_secs_f64(args.grace.max(0.0));
    let _ = tokio::time::timeout(grace, async {
        while answering.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    endpoint.close(VarInt::from_u32(shutdown::INTERRUPTED), signal.reason());
    let _ = tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
    Err(Box::new(Interrupted(signal)))
}

/// Answers hq-interop requests on every connection `endpoint` accepts with the files under
/// `root`, until the endpoint closes; `answering` counts the responses in progress. Says
/// how each connection ended.
pub(crate) async fn serve_files(
    endpoint: &Endpoint,
    root: PathBuf,
    observe: &ObserveArgs,
    answering: Arc<AtomicUsize>,
) {
    let root = Arc::new(root);
    while let Some(connecting) = endpoint.accept_connecting().await {
        // A client whose early data the server took is answered at once, in 0.5-RTT packets
        // (RFC 9001 §4.6); the others after their handshake.
        let connection = match connecting.into_0rtt() {
            Ok((connection, _)) => connection,
            Err(connecting) => match connecting.await {
                Ok(connection) => connection,
                Err(_) => continue,
            },
        };
        let root = root.clone();
        let peer = connection
            .remote_address()
            .map_or_else(|| "a client".to_owned(), |a| a.to_string());
        observe.watch(&connection, peer.clone());
        let answering = answering.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = connection.accept_bi().await {
                let (answering, root) = (answering.clone(), root.clone());
                answering.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    answer(send, recv, root).await;
                    answering.fetch_sub(1, Ordering::SeqCst);
                });
            }
            eprintln!("{peer}: {}", connection.closed().await);
        });
    }
}

/// Answers one request as soon as its line ends, whether or not the client finished its side,
/// and leaves nothing half-open: the handles are dropped at the end, which stops a receive
/// half not read to its end.
async fn answer(mut send: SendStream, mut recv: RecvStream, root: Arc<PathBuf>) {
    let line = match read_request_line(&mut recv).await {
        Some(line) => line,
        None => {
            let _ = send.reset(VarInt::from_u32(NOT_FOUND));
            return;
        }
    };
    let Some(path) = line.strip_prefix("GET ").map(str::trim) else {
        eprintln!("refused request {line:?}: not a GET");
        let _ = send.reset(VarInt::from_u32(NOT_FOUND));
        return;
    };
    let Some(file) = resolve(&root, path) else {
        eprintln!("GET {path}: not found or outside the root (reset {NOT_FOUND:#x})");
        let _ = send.reset(VarInt::from_u32(NOT_FOUND));
        return;
    };
    let opened = std::fs::File::open(&file).and_then(|f| ReadAhead::start(f, false));
    let mut blocks = match opened {
        Ok(blocks) => blocks,
        Err(error) => {
            eprintln!("GET {path}: {error} (reset {NOT_FOUND:#x})");
            let _ = send.reset(VarInt::from_u32(NOT_FOUND));
            return;
        }
    };
    let mut sent = 0u64;
    while let Some(block) = blocks.next().await {
        match block {
            Ok(block) => {
                if send.write_all(&block).await.is_err() {
                    return;
                }
                sent += block.len() as u64;
            }
            Err(error) => {
                eprintln!("GET {path}: read error {error}");
                let _ = send.reset(VarInt::from_u32(NOT_FOUND));
                return;
            }
        }
    }
    let _ = send.finish();
    eprintln!("GET {path}: {sent} bytes");
}

/// Reads up to the first CRLF (or the end of the stream); `None` if it is too long or not text.
async fn read_request_line(recv: &mut RecvStream) -> Option<String> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = request.windows(2).position(|w| w == b"\r\n") {
            request.truncate(end);
            break;
        }
        let Some(n) = recv.read(&mut buf).await.ok()? else {
            break;
        };
        request.extend_from_slice(&buf[..n]);
        if request.len() > MAX_REQUEST {
            return None;
        }
    }
    String::from_utf8(request).ok()
}

/// The file `path` names under `root`, refusing anything that escapes it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.strip_prefix('/')?);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let file = std::fs::canonicalize(root.join(relative)).ok()?;
    (file.starts_with(root) && file.is_file()).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_root() {
        let dir = std::env::temp_dir().join(format!("qstream-resolve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/file"), b"x").unwrap();
        let root = std::fs::canonicalize(&dir).unwrap();
        assert!(resolve(&root, "/sub/file").is_some());
        for bad in [
            "/../etc/passwd",
            "/sub/../../x",
            "sub/file",
            "//etc/passwd",
            "/sub",
            "/missing",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
