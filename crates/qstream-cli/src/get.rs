//! `qstream get`: fetches files over hq-interop (HTTP/0.9 over QUIC), concurrently over one
//! connection per server.
//!
//! Outputs follow curl's conventions: `-o FILE` (or `-`, standard output) for one URL, else
//! files named after the URLs' last path segments in `--output-dir`. Two URLs that would land
//! in one file are refused before anything is fetched; an existing file is never overwritten
//! without `--force`, and a file appears under its name only once complete.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use qstream::proto::Side;
use qstream::proto::wire::{Dir, VarInt};
use qstream::{ClientConfig, Connection, ConnectionError, Endpoint, ReadError};

use crate::UsageError;
use crate::endpoints;
use crate::observe::ObserveArgs;
use crate::output::{Sink, Target};
use crate::serve::HQ_INTEROP;
use crate::shutdown::{self, Interrupted};
use crate::tls;
use crate::transport::TransportArgs;

/// Options of `qstream get`.
#[derive(clap::Args, Debug)]
pub(crate) struct GetArgs {
    /// URLs to fetch, like https://example.net:4433/file.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Write the one URL's file here (`-` for standard output), as curl's -o.
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Directory to save files in, each named after its URL's last path segment.
    #[arg(long, default_value = ".", conflicts_with = "output")]
    output_dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
    /// Trust the certificate(s) in this PEM file: a CA, or the server's own certificate
    /// (self-signed ones included, trusted as exactly that certificate).
    #[arg(long, conflicts_with_all = ["insecure", "fingerprint"])]
    ca: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint, as `qstream serve` prints it.
    #[arg(long, conflicts_with = "insecure")]
    fingerprint: Option<String>,
    /// Accept any server certificate (testing only).
    #[arg(long)]
    insecure: bool,
    /// Give up on a download that waits this long for stream credit, in seconds.
    #[arg(long, default_value_t = 10.0)]
    open_timeout: f64,
    /// Give up connecting after this long, in seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    #[command(flatten)]
    transport: TransportArgs,
    #[command(flatten)]
    observe: ObserveArgs,
}

/// Why a download failed; each has its own exit code, documented in `qstream get --help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failure {
    /// Anything else: a reset stream, a lost connection.
    Other = 1,
    /// No connection: unreachable, or the handshake failed.
    Connect = 3,
    /// The server has no such file (it reset the stream with 0x10c).
    NotFound = 4,
    /// No stream credit within --open-timeout.
    NoCredit = 5,
    /// The file could not be written.
    Write = 6,
}

/// A failed download: its kind and what to tell the user.
#[derive(Debug)]
pub(crate) struct FetchError {
    pub(crate) failure: Failure,
    pub(crate) message: String,
}

impl FetchError {
    fn new(failure: Failure, message: impl Into<String>) -> Self {
        Self {
            failure,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `get`'s overall failure: the message and the exit code of the worst failure.
#[derive(Debug)]
pub(crate) struct GetFailed {
    pub(crate) failure: Failure,
    message: String,
}

impl std::fmt::Display for GetFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for GetFailed {}

/// How long an open waits for credit before `get` says it is waiting.
const CREDIT_WAIT_NOTICE: Duration = Duration::from_secs(1);
/// How long `get` lets its CONNECTION_CLOSE frames go out when interrupted.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// A parsed https URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl Url {
    /// The name a download of this URL is saved under: the path's last segment.
    pub(crate) fn file_name(&self) -> &str {
        self.path
            .rsplit('/')
            .find(|s| !s.is_empty() && *s != "." && *s != "..")
            .unwrap_or("index.html")
    }
}

/// An `https://host[:port]/path` URL, or a message saying what is wrong with it.
pub(crate) fn parse_url(text: &str) -> Result<Url, String> {
    let invalid = || format!("invalid URL {text:?}: expected https://host[:port]/path");
    let rest = text.strip_prefix("https://").ok_or_else(invalid)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| invalid())?,
            None if after.is_empty() => 443,
            None => return Err(invalid()),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().map_err(|_| invalid())?),
            None => (authority.to_owned(), 443),
        }
    };
    if host.is_empty() || path.contains(char::is_whitespace) {
        return Err(invalid());
    }
    Ok(Url {
        host,
        port,
        path: path.to_owned(),
    })
}

/// Where each URL's bytes go: `-o` for the only URL, else a file named after the URL in
/// `output_dir`. Two URLs that map to one file are refused.
fn targets(urls: &[Url], args: &GetArgs) -> Result<Vec<Target>, UsageError> {
    if let Some(output) = &args.output {
        if urls.len() != 1 {
            return Err(UsageError(format!(
                "-o names one output but {} URLs were given; use --output-dir for several",
                urls.len()
            )));
        }
        return Ok(vec![Target::parse(output)]);
    }
    let targets: Vec<Target> = urls
        .iter()
        .map(|url| Target::File(args.output_dir.join(url.file_name())))
        .collect();
    let mut seen = BTreeMap::new();
    for (url, target) in urls.iter().zip(&targets) {
        if let Some(first) = seen.insert(target.to_string(), url) {
            return Err(UsageError(format!(
                "{} and {} would both be saved as {target}; fetch them separately with -o",
                first.path, url.path
            )));
        }
    }
    Ok(targets)
}

pub(crate) async fn run(args: GetArgs) -> Result<(), Box<dyn Error>> {
    let urls: Vec<Url> = args
        .urls
        .iter()
        .map(|u| parse_url(u).map_err(UsageError))
        .collect::<Result<_, _>>()?;
    let targets = targets(&urls, &args)?;
    if args.output.is_none() && !args.output_dir.is_dir() {
        return Err(UsageError(format!("{}: no such directory", args.output_dir.display())).into());
    }
    for target in &targets {
        target.check(args.force).map_err(|message| GetFailed {
            failure: Failure::Write,
            message,
        })?;
    }
    let tls = if args.insecure {
        tls::client_insecure(HQ_INTEROP)?
    } else if let Some(fingerprint) = &args.fingerprint {
        tls::client_pinned(tls::parse_fingerprint(fingerprint)?, HQ_INTEROP)?
    } else if let Some(ca) = &args.ca {
        tls::client_trusting_file(ca, HQ_INTEROP)?
    } else {
        tls::client_trusting_system(HQ_INTEROP)?
    };
    let config = ClientConfig {
        transport: Arc::new(args.transport.config()),
        ..ClientConfig::new(Arc::new(tls))
    };
    fetch_all(&urls, targets, &config, &args).await
}

/// One server's connection and the downloads from it.
struct Server {
    endpoint: Endpoint,
    connection: Connection,
}

/// Fetches every URL, one connection per server, all downloads at once; closes every
/// connection with the signal's reason when interrupted.
async fn fetch_all(
    urls: &[Url],
    targets: Vec<Target>,
    config: &ClientConfig,
    args: &GetArgs,
) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let mut servers: BTreeMap<(String, u16), Option<Server>> = BTreeMap::new();
    let mut failures = Vec::new();
    let bars = Progress::new(urls.len());
    let mut downloads = Vec::new();
    for (url, target) in urls.iter().zip(targets) {
        let key = (url.host.clone(), url.port);
        if !servers.contains_key(&key) {
            let connected = tokio::select! {
                connected = connect(&url.host, url.port, config, args) => connected,
                signal = shutdown::signal() => {
                    close_all(&servers, shutdown::INTERRUPTED, signal.reason()).await;
                    return Err(Box::new(Interrupted(signal)));
                }
            };
            let server = match connected {
                Ok(server) => Some(server),
                Err(error) => {
                    eprintln!("{}:{}: {error}", url.host, url.port);
                    None
                }
            };
            servers.insert(key.clone(), server);
        }
        let Some(server) = &servers[&key] else {
            failures.push(Failure::Connect);
            continue;
        };
        let connection = server.connection.clone();
        let (url, bar) = (url.clone(), bars.add(&url.path));
        let open_timeout = Duration::from_secs_f64(args.open_timeout);
        let force = args.force;
        downloads.push(tokio::spawn(async move {
            let result = fetch(&connection, &url, &target, force, open_timeout, Some(&bar)).await;
            bar.finish();
            (url, target, result)
        }));
    }
    // Downloads are aborted (and their partial files removed) if this future is dropped.
    let guard = AbortOnDrop(downloads.iter().map(|d| d.abort_handle()).collect());
    let interrupted = tokio::select! {
        finished = async {
            let mut finished = Vec::new();
            for download in &mut downloads {
                finished.push(download.await);
            }
            finished
        } => Ok(finished),
        signal = shutdown::signal() => Err(signal),
    };
    let finished = match interrupted {
        Ok(finished) => finished,
        Err(signal) => {
            drop(guard);
            for download in downloads {
                let _ = download.await;
            }
            close_all(&servers, shutdown::INTERRUPTED, signal.reason()).await;
            return Err(Box::new(Interrupted(signal)));
        }
    };
    drop(guard);
    let mut total = 0u64;
    for result in finished {
        match result {
            Ok((url, target, Ok(bytes))) => {
                total += bytes;
                if target != Target::Stdout {
                    eprintln!("{}: {bytes} bytes to {target}", url.path);
                }
            }
            Ok((url, _, Err(error))) => {
                eprintln!("{}: {error}", url.path);
                failures.push(error.failure);
            }
            Err(error) => {
                eprintln!("a download failed: {error}");
                failures.push(Failure::Other);
            }
        }
    }
    close_all(&servers, 0, b"").await;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{} of {} files, {total} bytes in {elapsed:.2} s ({:.1} MB/s)",
        urls.len() - failures.len(),
        urls.len(),
        total as f64 / 1e6 / elapsed.max(1e-9)
    );
    if let Some(worst) = failures.iter().max() {
        return Err(Box::new(GetFailed {
            failure: *worst,
            message: format!("{} of {} downloads failed", failures.len(), urls.len()),
        }));
    }
    Ok(())
}

/// Aborts the downloads when dropped.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for download in &self.0 {
            download.abort();
        }
    }
}

/// Closes every connection with `code` and `reason` and lets the CONNECTION_CLOSE frames
/// go out.
async fn close_all(servers: &BTreeMap<(String, u16), Option<Server>>, code: u32, reason: &[u8]) {
    for server in servers.values().flatten() {
        server.connection.close(VarInt::from_u32(code), reason);
    }
    for server in servers.values().flatten() {
        let _ = tokio::time::timeout(CLOSE_GRACE, server.endpoint.wait_idle()).await;
    }
}

/// A connection to `host:port` with its handshake done.
async fn connect(
    host: &str,
    port: u16,
    config: &ClientConfig,
    args: &GetArgs,
) -> Result<Server, Box<dyn Error>> {
    let (endpoint, addr) = endpoints::client(host, port, &args.observe).await?;
    args.transport.apply(&endpoint);
    let connecting = endpoint.connect(config, addr, host)?;
    let connection = endpoints::handshake(
        connecting,
        Duration::from_secs_f64(args.connect_timeout),
        || {
            format!(
                "no answer within {} s: is the server running and the UDP port open?",
                args.connect_timeout
            )
        },
        explain_handshake_error,
    )
    .await?;
    args.observe.watch(&connection, format!("{host}:{port}"));
    Ok(Server {
        endpoint,
        connection,
    })
}

/// Progress bars: one per download with its bytes, rate and time, and a total; drawn only
/// when standard error is a terminal.
struct Progress {
    bars: MultiProgress,
    style: ProgressStyle,
    total: Option<ProgressBar>,
}

impl Progress {
    fn new(downloads: usize) -> Self {
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} {prefix:30!} {bytes:>10} {bytes_per_sec:>12} {elapsed:>4}",
        )
        .expect("a valid template");
        let total = (downloads > 1).then(|| {
            bars.add(
                ProgressBar::no_length()
                    .with_style(style.clone())
                    .with_prefix(format!("total ({downloads} files)")),
            )
        });
        Self { bars, style, total }
    }

    /// A bar for one download, counting into the total too.
    fn add(&self, name: &str) -> DownloadBar {
        let bar = self.bars.insert_from_back(
            usize::from(self.total.is_some()),
            ProgressBar::no_length()
                .with_style(self.style.clone())
                .with_prefix(name.to_owned()),
        );
        DownloadBar {
            bar,
            total: self.total.clone(),
        }
    }
}

/// One download's bar and the total bar.
pub(crate) struct DownloadBar {
    bar: ProgressBar,
    total: Option<ProgressBar>,
}

impl DownloadBar {
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if let Some(total) = &self.total {
            total.inc(bytes);
        }
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

pub(crate) fn explain_handshake_error(error: &ConnectionError) -> String {
    endpoints::explain_handshake_error(
        error,
        "the server's certificate is not trusted: pass --ca FILE with its certificate, \
         --fingerprint as `qstream serve` prints it, or --insecure for testing",
        "the server does not speak hq-interop",
    )
}

/// Downloads one URL into `target`; returns its size. The bytes go through a large buffer to
/// a temporary file, renamed to the target once the stream ended normally; on any failure
/// nothing is left behind.
pub(crate) async fn fetch(
    connection: &Connection,
    url: &Url,
    target: &Target,
    force: bool,
    open_timeout: Duration,
    progress: Option<&DownloadBar>,
) -> Result<u64, FetchError> {
    let other = |e: &dyn std::fmt::Display| FetchError::new(Failure::Other, e.to_string());
    let (mut send, mut recv) = open_reporting_waits(connection, &url.path, open_timeout).await?;
    send.write_all(format!("GET {}\r\n", url.path).as_bytes())
        .await
        .map_err(|e| other(&e))?;
    send.finish().map_err(|e| other(&e))?;
    // Created when the first bytes arrive: a file the server does not have leaves nothing.
    let mut sink: Option<Sink> = None;
    let mut received = 0u64;
    let mut chunks = vec![bytes::Bytes::new(); 64];
    loop {
        let n = match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(ReadError::Reset(code)) if code.into_inner() == 0x10c => {
                return Err(FetchError::new(
                    Failure::NotFound,
                    "not found on the server (stream reset with 0x10c)",
                ));
            }
            Err(error) => return Err(other(&error)),
        };
        let sink = match &mut sink {
            Some(sink) => sink,
            None => sink.insert(
                Sink::create(target, force)
                    .await
                    .map_err(|message| FetchError::new(Failure::Write, message))?,
            ),
        };
        sink.write(&chunks[..n])
            .await
            .map_err(|e| write_failed(target, &e))?;
        let bytes: u64 = chunks[..n].iter().map(|c| c.len() as u64).sum();
        received += bytes;
        if let Some(bar) = progress {
            bar.advance(bytes);
        }
    }
    let sink = match sink {
        Some(sink) => sink,
        None => Sink::create(target, force)
            .await
            .map_err(|message| FetchError::new(Failure::Write, message))?,
    };
    sink.commit()
        .await
        .map_err(|message| FetchError::new(Failure::Write, message))?;
    Ok(received)
}

/// Says why writing `target` failed; its partial file is removed as the sink drops.
fn write_failed(target: &Target, error: &std::io::Error) -> FetchError {
    FetchError::new(
        Failure::Write,
        format!("cannot write {target}: {error} (disk full?); nothing was kept"),
    )
}

/// Opens a stream, saying so on standard error when it has to wait for credit, and giving up
/// after `open_timeout` with the cause. The open keeps its place in the queue while it waits.
async fn open_reporting_waits(
    connection: &Connection,
    path: &str,
    open_timeout: Duration,
) -> Result<(qstream::SendStream, qstream::RecvStream), FetchError> {
    let lost = |e: ConnectionError| FetchError::new(Failure::Other, e.to_string());
    let open = connection.open_bi();
    tokio::pin!(open);
    let quiet = CREDIT_WAIT_NOTICE.min(open_timeout);
    if let Ok(result) = tokio::time::timeout(quiet, &mut open).await {
        return result.map_err(lost);
    }
    eprintln!("{path}: {}", credit_wait_message(connection));
    match tokio::time::timeout(open_timeout - quiet, &mut open).await {
        Ok(result) => result.map_err(lost),
        Err(_) => Err(FetchError::new(
            Failure::NoCredit,
            format!(
                "gave up after {open_timeout:?}: {}",
                credit_wait_message(connection)
            ),
        )),
    }
}

/// Why an open waits: the peer's limit, and how many of our streams are done on our
/// side but still count against it because the peer has not released them.
fn credit_wait_message(connection: &Connection) -> String {
    let Some(snapshot) = connection.streams() else {
        return "waiting for stream credit".to_owned();
    };
    let credit = snapshot.credit(Side::Client, Dir::Bi);
    // MAX_STREAMS is cumulative: a stream we are done with counts against the limit until the
    // server releases its side and raises it.
    let done_here = credit.opened_total - credit.open;
    format!(
        "waiting for stream credit: the server allows {} bidirectional streams in total and all \
         are used; {done_here} of ours are finished on our side but the server has not released \
         them (it holds them half-open), {} still open here",
        credit.limit, credit.open
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_explained() {
        assert_eq!(
            parse_url("https://example.net:4433/a/b.txt"),
            Ok(Url {
                host: "example.net".into(),
                port: 4433,
                path: "/a/b.txt".into()
            })
        );
        assert_eq!(parse_url("https://[::1]:9/x").unwrap().host, "::1");
        assert_eq!(
            parse_url("https://host").unwrap(),
            Url {
                host: "host".into(),
                port: 443,
                path: "/".into()
            }
        );
        for bad in [
            "http://host/x",
            "https://:1/x",
            "https://host:port/x",
            "https://[::1/x",
            "host/x",
        ] {
            assert!(
                parse_url(bad).unwrap_err().contains("expected https://"),
                "{bad}"
            );
        }
    }
}
