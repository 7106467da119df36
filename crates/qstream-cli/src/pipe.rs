//! `qstream send` and `qstream recv`: one byte stream through a pipe, checked end to end.
//!
//! The sender opens one bidirectional stream, writes everything and finishes. The receiver
//! writes what arrives to its output, then answers with the BLAKE3 hash of what it wrote and
//! finishes. The sender compares it with the hash of what it sent and closes the connection with
//! [`TRANSFER_OK`] or [`HASH_MISMATCH`], so both ends exit with the same verdict.

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qstream::proto::wire::VarInt;
use qstream::{ClientConfig, Connection, ConnectionError, Endpoint, ServerConfig};

use crate::endpoints;
use crate::input::ReadAhead;
use crate::observe::ObserveArgs;
use crate::output::{Sink, Target};
use crate::shutdown::{self, Interrupted};
use crate::tls::{self, Identity};
use crate::transport::TransportArgs;

/// The ALPN of qstream's pipe protocol.
const PIPE_ALPN: &[u8] = b"qstream-pipe/1";
/// Connection close code: the receiver's hash matched.
const TRANSFER_OK: u32 = 0;
/// Connection close code: the receiver's hash differed from the sender's.
const HASH_MISMATCH: u32 = 1;
/// Stream stop and connection close code: the receiver could not write its output.
const RECEIVER_FAILED: u32 = 2;
/// How long an endpoint waits for its CONNECTION_CLOSE to go out before exiting.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Options of `qstream send`.
#[derive(clap::Args, Debug)]
pub(crate) struct SendArgs {
    /// The receiver, as host:port.
    addr: String,
    /// File to send; `-` or nothing reads standard input.
    #[arg(default_value = "-")]
    file: String,
    /// Trust the certificate(s) in this PEM file.
    #[arg(long, conflicts_with_all = ["insecure", "fingerprint"])]
    ca: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint, as `qstream recv` prints it.
    #[arg(long, conflicts_with = "insecure")]
    fingerprint: Option<String>,
    /// Accept any certificate (testing only).
    #[arg(long)]
    insecure: bool,
    /// Give up connecting after this long, in seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    #[command(flatten)]
    transport: TransportArgs,
    #[command(flatten)]
    observe: ObserveArgs,
}

/// Options of `qstream recv`.
#[derive(clap::Args, Debug)]
pub(crate) struct RecvArgs {
    /// Address to listen on, for example 127.0.0.1:4433 or [::]:4433.
    #[arg(long)]
    listen: SocketAddr,
    /// File to write; `-` or nothing writes standard output. It appears under its name only
    /// once the transfer is complete and checked.
    #[arg(short = 'o', long, default_value = "-")]
    output: String,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Certificate chain (PEM), with --key. Without them a self-signed certificate is made and
    /// its SHA-256 fingerprint printed on standard error.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    #[command(flatten)]
    transport: TransportArgs,
    #[command(flatten)]
    observe: ObserveArgs,
}

/// Runs `body` on `endpoint` until it returns or a signal comes; then closes the endpoint's
/// connections with the signal's reason.
async fn until_signal(
    endpoint: &Endpoint,
    body: impl Future<Output = Result<(), Box<dyn Error>>>,
) -> Result<(), Box<dyn Error>> {
    tokio::select! {
        result = body => result,
        signal = shutdown::signal() => {
            endpoint.close(VarInt::from_u32(shutdown::INTERRUPTED), signal.reason());
            let _ = tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
            Err(Box::new(Interrupted(signal)))
        }
    }
}

/// A progress bar for `len` bytes (a spinner when unknown), drawn only on a terminal.
fn progress(len: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{bytes:>10}/{total_bytes} {percent:>3}% {bytes_per_sec:>12} eta {eta}"
    } else {
        "{spinner} {bytes:>10} {bytes_per_sec:>12} {elapsed}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar
}

pub(crate) async fn send(args: SendArgs) -> Result<(), Box<dyn Error>> {
    // Read, and hashed, on a thread of their own: the runtime only drives the connection.
    let cannot_read = |e: std::io::Error| format!("cannot read {}: {e}", args.file);
    let (input, len) = if args.file == "-" {
        (
            ReadAhead::start(std::io::stdin(), true).map_err(cannot_read)?,
            None,
        )
    } else {
        let file = std::fs::File::open(&args.file).map_err(cannot_read)?;
        let len = file.metadata().ok().map(|m| m.len());
        (ReadAhead::start(file, true).map_err(cannot_read)?, len)
    };
    let tls = if args.insecure {
        tls::client_insecure(PIPE_ALPN)?
    } else if let Some(fingerprint) = &args.fingerprint {
        tls::client_pinned(tls::parse_fingerprint(fingerprint)?, PIPE_ALPN)?
    } else if let Some(ca) = &args.ca {
        tls::client_trusting_file(ca, PIPE_ALPN)?
    } else {
        return Err(
            "name the receiver's certificate: --fingerprint (printed by qstream recv), \
                    --ca FILE, or --insecure for testing"
                .into(),
        );
    };
    let (host, port) = args
        .addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("invalid address {:?}: expected host:port", args.addr))?;
    let (endpoint, addr) = endpoints::client(host, port, &args.observe).await?;
    let config = ClientConfig {
        transport: Arc::new(args.transport.config()),
        ..ClientConfig::new(Arc::new(tls))
    };
    args.transport.apply(&endpoint);
    until_signal(
        &endpoint,
        send_over(&endpoint, &config, addr, host, input, len, &args),
    )
    .await
}

async fn send_over(
    endpoint: &Endpoint,
    config: &ClientConfig,
    addr: SocketAddr,
    host: &str,
    mut input: ReadAhead,
    len: Option<u64>,
    args: &SendArgs,
) -> Result<(), Box<dyn Error>> {
    let connecting = endpoint.connect(config, addr, host)?;
    let connection = endpoints::handshake(
        connecting,
        Duration::from_secs_f64(args.connect_timeout),
        || {
            format!(
                "no answer from {addr} within {} s: is qstream recv running there?",
                args.connect_timeout
            )
        },
        explain_handshake_error,
    )
    .await?;
    args.observe.watch(&connection, "send");
    let started = Instant::now();
    let (mut send, mut recv) = connection.open_bi().await?;
    let mut sent = 0u64;
    let bar = progress(len);
    while let Some(block) = input.next().await {
        let block = block.map_err(|e| format!("cannot read {}: {e}", args.file))?;
        if let Err(error) = send.write_all(&block).await {
            let receiver_failed = match send.stopped().await {
                Ok(Some(code)) => code.into_inner() == u64::from(RECEIVER_FAILED),
                Err(ConnectionError::ApplicationClosed { code, .. }) => {
                    code.into_inner() == u64::from(RECEIVER_FAILED)
                }
                Ok(None) | Err(_) => false,
            };
            return Err(if receiver_failed {
                "the receiver could not write its output and stopped the transfer".into()
            } else {
                format!("sending failed: {error}").into()
            });
        }
        sent += block.len() as u64;
        bar.set_position(sent);
    }
    bar.finish_and_clear();
    send.finish()?;
    let ours = input.hash().ok_or("the input's hash is missing")?;
    let answer = recv.read_to_end(blake3::OUT_LEN).await?;
    let verdict = if answer.as_slice() == ours.as_bytes().as_slice() {
        connection.close(VarInt::from_u32(TRANSFER_OK), b"hash matches");
        Ok(())
    } else {
        connection.close(VarInt::from_u32(HASH_MISMATCH), b"hash mismatch");
        Err("the receiver's BLAKE3 hash differs from what was sent".into())
    };
    let elapsed = started.elapsed().as_secs_f64();
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
    eprintln!(
        "sent {sent} bytes in {elapsed:.2} s ({:.1} MB/s), BLAKE3 {}",
        sent as f64 / elapsed / 1e6,
        ours.to_hex()
    );
    verdict
}

pub(crate) async fn recv(args: RecvArgs) -> Result<(), Box<dyn Error>> {
    let target = Target::parse(&args.output);
    target.check(args.force)?;
    let (identity, self_signed) =
        Identity::from_options(args.cert.as_deref(), args.key.as_deref())?;
    let mut config = ServerConfig::new(Arc::new(tls::server(&identity, PIPE_ALPN)?));
    config.transport = Arc::new(args.transport.config());
    let endpoint = endpoints::server(config, args.listen, &args.observe)?;
    args.transport.apply(&endpoint);
    if self_signed {
        eprintln!(
            "self-signed certificate, SHA-256 fingerprint {}",
            identity.fingerprint()
        );
    }
    eprintln!("listening on {}", endpoint.local_addr()?);
    until_signal(&endpoint, receive(&endpoint, &target, &args)).await
}

/// Receives one transfer into `target`: created when the sender's stream arrives, put under
/// its name once the sender confirmed the hash, removed otherwise.
async fn receive(
    endpoint: &Endpoint,
    target: &Target,
    args: &RecvArgs,
) -> Result<(), Box<dyn Error>> {
    let connection = loop {
        match endpoint.accept().await {
            Some(Ok(connection)) => break connection,
            Some(Err(error)) => eprintln!("a connection attempt failed: {error}"),
            None => return Err("the endpoint closed".into()),
        }
    };
    args.observe.watch(&connection, "recv");
    let (mut send, mut recv) = connection.accept_bi().await?;
    let mut output = Sink::create(target, args.force).await?;
    let hasher = HashingThread::start()?;
    let mut chunks = vec![bytes::Bytes::new(); 64];
    let mut received = 0u64;
    let bar = progress(None);
    while let Some(n) = recv.read_chunks(&mut chunks).await? {
        received += chunks[..n].iter().map(|c| c.len() as u64).sum::<u64>();
        hasher.update(&chunks[..n]);
        if let Err(error) = output.write(&chunks[..n]).await {
            return Err(receiver_failed(endpoint, &connection, &mut recv, target, &error).await);
        }
        bar.set_position(received);
    }
    bar.finish_and_clear();
    let hash = hasher.finish().ok_or("hashing what arrived failed")?;
    send.write_all(hash.as_bytes()).await?;
    send.finish()?;
    let verdict: Result<(), Box<dyn Error>> = match connection.closed().await {
        ConnectionError::ApplicationClosed { code, .. }
            if code.into_inner() == u64::from(TRANSFER_OK) =>
        {
            output.commit().await.map_err(Into::into)
        }
        ConnectionError::ApplicationClosed { code, .. }
            if code.into_inner() == u64::from(HASH_MISMATCH) =>
        {
            Err("the sender's BLAKE3 hash differs from what arrived; nothing was kept".into())
        }
        other => Err(format!(
            "the connection ended before the sender confirmed: {other}; nothing was kept"
        )
        .into()),
    };
    eprintln!("received {received} bytes, BLAKE3 {}", hash.to_hex());
    verdict
}

/// The output could not be written: stops the sender rather than let it fill a stream
/// nobody reads, and says why.
/// Bytes gathered before each BLAKE3 update.
const HASH_BATCH: usize = 256 * 1024;

/// BLAKE3 on a thread of its own, fed the received pieces without a copy, so hashing does
/// not take turns with the connection on the runtime's thread.
struct HashingThread {
    pieces: std::sync::mpsc::Sender<Vec<bytes::Bytes>>,
    thread: std::thread::JoinHandle<blake3::Hash>,
}

impl HashingThread {
    fn start() -> std::io::Result<Self> {
        let (pieces, received) = std::sync::mpsc::channel::<Vec<bytes::Bytes>>();
        let thread = std::thread::Builder::new()
            .name("qstream-hash".into())
            .spawn(move || {
                // BLAKE3 hashes many 1 KiB chunks at once (SIMD) only when given them together:
                // fed packet-sized pieces one by one it is several times slower.
                let mut hasher = blake3::Hasher::new();
                let mut pending = Vec::with_capacity(HASH_BATCH);
                for batch in received {
                    for piece in batch {
                        pending.extend_from_slice(&piece);
                        if pending.len() >= HASH_BATCH {
                            hasher.update(&pending);
                            pending.clear();
                        }
                    }
                }
                hasher.update(&pending);
                hasher.finalize()
            })?;
        Ok(Self { pieces, thread })
    }

    fn update(&self, pieces: &[bytes::Bytes]) {
        // The thread lives until `finish`: a send cannot fail before it.
        let _ = self.pieces.send(pieces.to_vec());
    }

    /// The hash of everything given to `update`; `None` if the thread died.
    fn finish(self) -> Option<blake3::Hash> {
        drop(self.pieces);
        self.thread.join().ok()
    }
}

async fn receiver_failed(
    endpoint: &Endpoint,
    connection: &Connection,
    recv: &mut qstream::RecvStream,
    target: &Target,
    error: &std::io::Error,
) -> Box<dyn Error> {
    let _ = recv.stop(VarInt::from_u32(RECEIVER_FAILED));
    connection.close(
        VarInt::from_u32(RECEIVER_FAILED),
        b"cannot write the output",
    );
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
    format!("cannot write {target}: {error}").into()
}

fn explain_handshake_error(error: &ConnectionError) -> String {
    endpoints::explain_handshake_error(
        error,
        "the receiver's certificate is not the one named by --fingerprint or --ca",
        "the peer is not qstream recv: it does not speak qstream-pipe/1",
    )
}
