//! `qstream interop`: an endpoint for the QUIC interop runner
//! (<https://github.com/quic-interop/quic-interop-runner>), configured by its environment:
//! ROLE, TESTCASE, REQUESTS, SSLKEYLOGFILE and QLOGDIR; files from /www, downloads into
//! /downloads, certificates from /certs.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;

use qstream::proto::wire::{VarInt, Version};
use qstream::{ClientConfig, ServerConfig, TransportConfig};

use crate::endpoints;
use crate::get::{self, Url};
use crate::observe::ObserveArgs;
use crate::output::Target;
use crate::serve::{self, HQ_INTEROP};
use crate::tls::{self, Identity, Suites};

/// How long the client waits for a handshake, and for stream credit.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the resumption cases wait for the server's session ticket after the first
/// connection's downloads.
const TICKET_WAIT: Duration = Duration::from_secs(5);
/// Key updates every this many packets in the keyupdate case. A downloading client sends
/// little besides acknowledgments (one per burst of up to 64 KiB), so this is small enough for
/// several updates within the first MB.
const KEY_UPDATE_INTERVAL: u64 = 5;

/// Options of `qstream interop`; each also comes from the runner's environment.
#[derive(clap::Args, Debug)]
pub(crate) struct InteropArgs {
    /// client or server.
    #[arg(long, env = "ROLE")]
    role: Role,
    /// The runner's test case, such as handshake, transfer, retry or keyupdate.
    #[arg(long, env = "TESTCASE")]
    testcase: String,
    /// Client: the URLs to download, separated by spaces.
    #[arg(long, env = "REQUESTS", default_value = "")]
    requests: String,
    /// Server: the directory whose files are served.
    #[arg(long, default_value = "/www")]
    www: PathBuf,
    /// Client: the directory downloads are saved in.
    #[arg(long, default_value = "/downloads")]
    downloads: PathBuf,
    /// Server: the directory holding cert.pem (the chain) and priv.key.
    #[arg(long, default_value = "/certs")]
    certs: PathBuf,
    /// Server: the address to listen on.
    #[arg(long, default_value = "[::]:443")]
    listen: SocketAddr,
    #[command(flatten)]
    observe: ObserveArgs,
}

/// Which end of the runner's connections this endpoint is.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// A test case this endpoint does not implement: the runner expects exit code 127.
#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test case {:?} is not supported", self.0)
    }
}

impl Error for Unsupported {}

/// What a test case asks of the endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Case {
    /// A new connection per request (the runner's multiconnect: handshakeloss,
    /// handshakecorruption).
    connection_per_request: bool,
    /// The server validates the client's address with Retry.
    retry: bool,
    /// Both ends update keys early and often (RFC 9001 §6): either may start an update.
    key_update: bool,
    /// Only ChaCha20-Poly1305 is offered.
    chacha20: bool,
    /// Small initial flow control windows, so they must grow during the transfer.
    small_windows: bool,
    /// The first file on one connection, the rest on a second that resumes the TLS session.
    resumption: bool,
    /// As resumption, the second connection's requests in 0-RTT packets (RFC 9001 §4.6); the
    /// server accepts early data.
    zero_rtt: bool,
    /// The client starts in QUIC v1 offering v2, the server prefers v2 and switches it
    /// (compatible version negotiation).
    v2: bool,
    /// connectionmigration: the server offers a preferred address (RFC 9000 §9.6), a second
    /// socket on its listening IP, and the client moves there.
    preferred_address: bool,
}

impl Case {
    fn from_name(name: &str) -> Result<Self, Unsupported> {
        let case = Self::default();
        Ok(match name {
            "handshake" | "ecn" => case,
            // ipv6 is a transfer between IPv6 addresses: the server listens on [::] and the
            // client binds the family of the address it resolves.
            // rebind-port and rebind-addr: the network moves the client under a transfer
            // (NAT rebinding); the server follows it (RFC 9000 §9.3), the client needs
            // nothing of its own.
            "transfer" | "multiplexing" | "longrtt" | "transferloss" | "transfercorruption"
            | "blackhole" | "goodput" | "crosstraffic" | "ipv6" | "rebind-port" | "rebind-addr" => {
                Self {
                    small_windows: true,
                    ..case
                }
            }
            "multiconnect" | "handshakeloss" | "handshakecorruption" => Self {
                connection_per_request: true,
                ..case
            },
            "retry" => Self {
                retry: true,
                ..case
            },
            "keyupdate" => Self {
                key_update: true,
                ..case
            },
            "chacha20" => Self {
                chacha20: true,
                ..case
            },
            "resumption" => Self {
                resumption: true,
                ..case
            },
            "zerortt" => Self {
                resumption: true,
                zero_rtt: true,
                ..case
            },
            "v2" => Self { v2: true, ..case },
            "connectionmigration" => Self {
                preferred_address: true,
                small_windows: true,
                ..case
            },
            other => return Err(Unsupported(other.to_owned())),
        })
    }

    fn suites(self) -> Suites {
        if self.chacha20 {
            Suites::ChaCha20Only
        } else {
            Suites::All
        }
    }
}

pub(crate) async fn run(args: InteropArgs) -> Result<(), Box<dyn Error>> {
    let case = Case::from_name(&args.testcase)?;
    match args.role {
        Role::Server => run_server(&args, case).await,
        Role::Client => run_client(&args, case).await,
    }
}

async fn run_server(args: &InteropArgs, case: Case) -> Result<(), Box<dyn Error>> {
    if case.preferred_address && args.listen.ip().is_unspecified() {
        // The preferred address is given to clients as an IP they can reach.
        let why = format!("{} on an unspecified listening address", args.testcase);
        return Err(Unsupported(why).into());
    }
    let identity =
        Identity::from_pem_files(&args.certs.join("cert.pem"), &args.certs.join("priv.key"))?;
    let mut tls = tls::server_with(&identity, HQ_INTEROP, case.suites())?;
    if case.zero_rtt {
        // rustls takes early data only at this size (RFC 9001 §4.6.1), and each ticket once.
        tls.max_early_data_size = u32::MAX;
    }
    let mut config = ServerConfig::new(Arc::new(tls));
    config.retry = case.retry;
    if case.v2 {
        config.versions = vec![Version::V2, Version::V1];
    }
    if case.preferred_address {
        config.preferred_address = Some(SocketAddr::new(args.listen.ip(), 0));
    }
    if case.key_update {
        config.transport = Arc::new(TransportConfig {
            key_update_interval: Some(KEY_UPDATE_INTERVAL),
            ..TransportConfig::default()
        });
    }
    let endpoint = endpoints::server(config, args.listen, &args.observe)?;
    eprintln!(
        "interop server ({}) on {}",
        args.testcase,
        endpoint.local_addr()?
    );
    // A relative root would not match the canonical paths requests resolve to.
    let www = std::fs::canonicalize(&args.www)
        .map_err(|e| format!("cannot serve {}: {e}", args.www.display()))?;
    serve::serve_files(&endpoint, www, &args.observe, Default::default()).await;
    Ok(())
}

async fn run_client(args: &InteropArgs, case: Case) -> Result<(), Box<dyn Error>> {
    let urls: Vec<Url> = args
        .requests
        .split_whitespace()
        .map(get::parse_url)
        .collect::<Result<_, _>>()?;
    let Some(first) = urls.first() else {
        return Err("REQUESTS names no URL".into());
    };
    std::fs::create_dir_all(&args.downloads)
        .map_err(|e| format!("cannot use {}: {e}", args.downloads.display()))?;
    let (endpoint, addr) = endpoints::client(&first.host, first.port, &args.observe).await?;
    let mut transport = TransportConfig::default();
    if case.small_windows {
        transport.streams.stream_window = 64 * 1024;
        transport.streams.connection_window = 256 * 1024;
    }
    if case.key_update {
        transport.key_update_interval = Some(KEY_UPDATE_INTERVAL);
    }
    let mut tls = tls::client_insecure_with(HQ_INTEROP, case.suites())?;
    tls.enable_early_data = case.zero_rtt;
    let tickets = Arc::new(TicketWatch::default());
    tls.resumption = rustls::client::Resumption::store(tickets.clone());
    let mut config = ClientConfig::new(Arc::new(tls));
    config.transport = Arc::new(transport);
    if case.v2 {
        config.compatible_versions = vec![Version::V2];
    }
    let batches: Vec<&[Url]> = if case.connection_per_request {
        urls.chunks(1).collect()
    } else if case.resumption && urls.len() > 1 {
        let (first, rest) = urls.split_at(1);
        vec![first, rest]
    } else {
        vec![&urls]
    };
    let mut failed = 0;
    for (index, batch) in batches.into_iter().enumerate() {
        let connecting = endpoint.connect(&config, addr, &first.host)?;
        // zerortt: the second connection's requests go before its handshake completes.
        let (connection, early) = match connecting.into_0rtt() {
            Ok((connection, accepted)) => (connection, Some(accepted)),
            Err(_) if case.zero_rtt && index > 0 => {
                return Err("the second connection has no ticket allowing 0-RTT".into());
            }
            Err(connecting) => {
                let connection = endpoints::handshake(
                    connecting,
                    CLIENT_TIMEOUT,
                    || format!("no handshake with {addr} within {CLIENT_TIMEOUT:?}"),
                    get::explain_handshake_error,
                )
                .await?;
                (connection, None)
            }
        };
        args.observe.watch(&connection, addr.to_string());
        if case.resumption
            && index > 0
            && early.is_none()
            && connection.handshake_resumed() != Some(true)
        {
            return Err("the second connection did not resume the TLS session".into());
        }
        if case.v2 && connection.version() != Some(Version::V2) {
            return Err("the server did not switch the connection to QUIC v2".into());
        }
        let downloads: Vec<_> = batch
            .iter()
            .map(|url| {
                let connection = connection.clone();
                let url = url.clone();
                let output = args.downloads.clone();
                tokio::spawn(async move {
                    let target = Target::File(output.join(url.file_name()));
                    let result =
                        get::fetch(&connection, &url, &target, true, CLIENT_TIMEOUT, None).await;
                    (url, result)
                })
            })
            .collect();
        for download in downloads {
            match download.await {
                Ok((_, Ok(_))) => {}
                Ok((url, Err(error))) => {
                    eprintln!("{}: {error}", url.path);
                    failed += 1;
                }
                Err(error) => {
                    eprintln!("a download task failed: {error}");
                    failed += 1;
                }
            }
        }
        let (key_updates, initiated) = connection
            .stats()
            .map_or((0, 0), |s| (s.key_updates, s.key_updates_initiated));
        if case.key_update {
            if key_updates == 0 {
                return Err("the keys were never updated during the transfer".into());
            }
            eprintln!(
                "key updates: {key_updates}, {initiated} started by this client, {} by the server",
                key_updates.saturating_sub(initiated)
            );
        }
        if case.resumption && index == 0 {
            // The server's ticket may come after the answers; the next connection needs it.
            if tokio::time::timeout(TICKET_WAIT, tickets.arrived())
                .await
                .is_err()
            {
                return Err(
                    format!("no session ticket from the server within {TICKET_WAIT:?}").into(),
                );
            }
        }
        if let Some(accepted) = early {
            if !accepted.await {
                return Err("the server refused the 0-RTT data (it went again in 1-RTT)".into());
            }
            let sent = connection.stats().map_or(0, |s| s.zero_rtt_packets_sent);
            eprintln!("0-RTT: accepted, {sent} packets");
        }
        if case.preferred_address {
            let moved = connection
                .stats()
                .is_some_and(|s| s.moved_to_preferred_address);
            if !moved {
                return Err("the client did not move to the server's preferred address".into());
            }
            let to = connection.remote_address().map(|a| a.to_string());
            eprintln!("preferred address: moved to {}", to.unwrap_or_default());
        }
        connection.close(VarInt::ZERO, b"");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    if failed > 0 {
        return Err(format!("{failed} of {} downloads failed", urls.len()).into());
    }
    Ok(())
}

/// rustls's in-memory session store, saying when a TLS 1.3 ticket arrived: the resumption
/// cases close their first connection only once the server's ticket is in, since a server may
/// send it after its answers.
#[derive(Debug)]
struct TicketWatch {
    store: ClientSessionMemoryCache,
    received: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Default for TicketWatch {
    fn default() -> Self {
        Self {
            // rustls's default store size.
            store: ClientSessionMemoryCache::new(256),
            received: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        }
    }
}

impl ClientSessionStore for TicketWatch {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.store.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.store.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.store.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.store.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.store.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.store.insert_tls13_ticket(server_name, value);
        self.received.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.store.take_tls13_ticket(server_name)
    }
}

impl TicketWatch {
    /// Returns once a ticket has arrived.
    async fn arrived(&self) {
        loop {
            let notified = self.notify.notified();
            if self.received.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_test_cases_map_to_behaviours_and_the_rest_are_unsupported() {
        assert!(
            Case::from_name("handshakeloss")
                .unwrap()
                .connection_per_request
        );
        assert!(
            Case::from_name("multiconnect")
                .unwrap()
                .connection_per_request
        );
        assert!(Case::from_name("retry").unwrap().retry);
        assert!(Case::from_name("keyupdate").unwrap().key_update);
        assert_eq!(
            Case::from_name("chacha20").unwrap().suites(),
            Suites::ChaCha20Only
        );
        assert!(Case::from_name("transfer").unwrap().small_windows);
        assert!(Case::from_name("ipv6").unwrap().small_windows);
        assert!(Case::from_name("resumption").unwrap().resumption);
        assert!(Case::from_name("v2").unwrap().v2);
        assert!(Case::from_name("rebind-port").unwrap().small_windows);
        assert!(Case::from_name("rebind-addr").unwrap().small_windows);
        assert!(Case::from_name("zerortt").unwrap().zero_rtt);
        assert!(
            Case::from_name("connectionmigration")
                .unwrap()
                .preferred_address
        );
        for name in ["http3", ""] {
            assert!(Case::from_name(name).is_err(), "{name}");
        }
    }
}
