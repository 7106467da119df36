//! `qstream get`: fetches files over hq-interop (HTTP/0.9 over QUIC), concurrently over one
//! connection per server.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use qstream::proto::Side;
use qstream::proto::wire::{Dir, VarInt};
use qstream::{ClientConfig, Connection, ConnectionError, ResetByPeer};
use tokio::io::AsyncWriteExt;

use crate::endpoints;
use crate::observe::ObserveArgs;
use crate::serve::HQ_INTEROP;
use crate::tls;
use crate::transport::TransportArgs;

/// Options of `qstream get`.
#[derive(clap::Args, Debug)]
pub(crate) struct GetArgs {
    /// URLs to fetch, like https://example.net:4433/file.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Directory to save the files in.
    #[arg(short = 'o', long, default_value = ".")]
    output: PathBuf,
    /// Trust the certificate(s) in this PEM file (the server's own, or its CA).
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<PathBuf>,
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

/// A parsed https URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
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

pub(crate) async fn run(args: GetArgs) -> Result<(), Box<dyn Error>> {
    let urls: Vec<Url> = args
        .urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&args.output).map_err(|e| {
        format!(
            "cannot use {} as output directory: {e}",
            args.output.display()
        )
    })?;
    let tls = if args.insecure {
        tls::client_insecure(HQ_INTEROP)?
    } else if let Some(ca) = &args.ca {
        tls::client_trusting_file(ca, HQ_INTEROP)?
    } else {
        tls::client_trusting_nothing(HQ_INTEROP)?
    };
    let config = ClientConfig {
        transport: Arc::new(args.transport.config()),
        ..ClientConfig::new(Arc::new(tls))
    };
    let mut by_server: BTreeMap<(String, u16), Vec<Url>> = BTreeMap::new();
    for url in urls {
        by_server
            .entry((url.host.clone(), url.port))
            .or_default()
            .push(url);
    }
    let mut failures = Vec::new();
    for ((host, port), urls) in by_server {
        match fetch_from(&host, port, &urls, &config, &args).await {
            Ok(failed) => failures.extend(failed),
            Err(error) => {
                eprintln!("{host}:{port}: {error}");
                failures.extend(std::iter::repeat_n(Failure::Connect, urls.len()));
            }
        }
    }
    if let Some(worst) = failures.iter().max() {
        return Err(Box::new(GetFailed {
            failure: *worst,
            message: format!("{} of {} downloads failed", failures.len(), args.urls.len()),
        }));
    }
    Ok(())
}

/// Fetches `urls` from one server over one connection; returns the failures.
async fn fetch_from(
    host: &str,
    port: u16,
    urls: &[Url],
    config: &ClientConfig,
    args: &GetArgs,
) -> Result<Vec<Failure>, Box<dyn Error>> {
    let (endpoint, addr) = endpoints::client(host, port, &args.observe).await?;
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
    // Drawn only when standard error is a terminal.
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{spinner} {prefix:30!} {bytes:>10} {bytes_per_sec:>12}")
            .expect("a valid template");
    let tasks: Vec<_> = urls
        .iter()
        .map(|url| {
            let connection = connection.clone();
            let url = url.clone();
            let output = args.output.clone();
            let open_timeout = Duration::from_secs_f64(args.open_timeout);
            let bar = bars.add(
                ProgressBar::no_length()
                    .with_style(style.clone())
                    .with_prefix(url.path.clone()),
            );
            tokio::spawn(async move {
                let result = fetch(&connection, &url, &output, open_timeout, Some(&bar)).await;
                bar.finish();
                result
            })
        })
        .collect();
    let mut failed = Vec::new();
    for (task, url) in tasks.into_iter().zip(urls) {
        match task.await {
            Ok(Ok(bytes)) => println!("{}: {bytes} bytes", url.path),
            Ok(Err(error)) => {
                eprintln!("{}: {error}", url.path);
                failed.push(error.failure);
            }
            Err(error) => {
                eprintln!("{}: {error}", url.path);
                failed.push(Failure::Other);
            }
        }
    }
    connection.close(VarInt::ZERO, b"");
    Ok(failed)
}

pub(crate) fn explain_handshake_error(error: &ConnectionError) -> String {
    endpoints::explain_handshake_error(
        error,
        "the server's certificate is not trusted: pass --ca FILE with its certificate, or \
         --insecure for testing",
        "the server does not speak hq-interop",
    )
}

/// Downloads one file into `output`, named after the last segment of its path; returns its
/// size.
pub(crate) async fn fetch(
    connection: &Connection,
    url: &Url,
    output: &std::path::Path,
    open_timeout: Duration,
    progress: Option<&ProgressBar>,
) -> Result<u64, FetchError> {
    let other = |e: &dyn std::fmt::Display| FetchError::new(Failure::Other, e.to_string());
    let (mut send, mut recv) = open_reporting_waits(connection, &url.path, open_timeout).await?;
    send.write_all(format!("GET {}\r\n", url.path).as_bytes())
        .await
        .map_err(|e| other(&e))?;
    send.finish().map_err(|e| other(&e))?;
    let name = url
        .path
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("index.html");
    let file_path = output.join(name);
    let mut file = tokio::fs::File::create(&file_path).await.map_err(|e| {
        FetchError::new(
            Failure::Write,
            format!("cannot create {}: {e}", file_path.display()),
        )
    })?;
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::io::AsyncReadExt::read(&mut recv, &mut buf).await {
            Ok(n) => n,
            Err(error) => {
                let _ = tokio::fs::remove_file(&file_path).await;
                let code = error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<ResetByPeer>());
                return Err(match code {
                    Some(ResetByPeer(code)) if code.into_inner() == 0x10c => FetchError::new(
                        Failure::NotFound,
                        "not found on the server (stream reset with 0x10c)",
                    ),
                    _ => other(&error),
                });
            }
        };
        if n == 0 {
            break;
        }
        if let Err(error) = file.write_all(&buf[..n]).await {
            return Err(write_failed(&file_path, error).await);
        }
        received += n as u64;
        if let Some(bar) = progress {
            bar.set_position(received);
        }
    }
    if let Err(error) = file.flush().await {
        return Err(write_failed(&file_path, error).await);
    }
    Ok(received)
}

/// Removes the partial file `path` and says why writing it failed.
async fn write_failed(path: &std::path::Path, error: std::io::Error) -> FetchError {
    let _ = tokio::fs::remove_file(path).await;
    FetchError::new(
        Failure::Write,
        format!(
            "cannot write {}: {error} (disk full?); the partial file was removed",
            path.display()
        ),
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
