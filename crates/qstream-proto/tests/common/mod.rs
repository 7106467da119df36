//! Shared set-up for the simulator tests: certificates, TLS configurations, and a client and a
//! server on a simulated link.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qstream_proto::crypto::{initial_keys, protect};
use qstream_proto::sim::{LinkConfig, Simulator};
use qstream_proto::wire::{ConnectionId, Dir, Header, StreamId, TruncatedPacketNumber, Version};
use qstream_proto::{
    ClientConfig, ConnectionHandle, Endpoint, EndpointConfig, Event, ServerConfig, Side,
    TransportConfig,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const ALPN: &[u8] = b"qstream-test";
pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

/// A self-signed certificate for "localhost" and its key.
pub fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    certificate_issued_by("qstream test")
}

/// A self-signed certificate for "localhost" whose subject (and issuer) is `issuer`.
pub fn certificate_issued_by(issuer: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    certificate_with_names(issuer, 0)
}

/// A self-signed certificate for "localhost" and `extra` more names, issued by `issuer`.
pub fn certificate_with_names(
    issuer: &str,
    extra: usize,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key generation");
    let mut names = vec!["localhost".to_owned()];
    names.extend((0..extra).map(|i| format!("host-{i}.qstream.example")));
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, issuer);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn server_tls(
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
    alpn: &[u8],
) -> rustls::ServerConfig {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .unwrap();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.max_early_data_size = 0;
    tls
}

pub fn client_tls(trusted: &CertificateDer<'static>, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls
}

/// Options for a [`Pair`].
pub struct PairOptions {
    pub seed: u64,
    pub link: LinkConfig,
    pub version: Version,
    pub client_transport: TransportConfig,
    pub server_transport: TransportConfig,
    /// The client trusts a different certificate than the server presents.
    pub untrusted: bool,
    pub server_alpn: &'static [u8],
    /// The server validates addresses with Retry.
    pub retry: bool,
    /// Extra names on the server certificate, to make its first flight large.
    pub extra_names: usize,
    /// Both endpoints record qlog traces.
    pub qlog: bool,
    /// Versions the server may switch the client to.
    pub client_compatible_versions: Vec<Version>,
    /// The server's versions, most preferred first.
    pub server_versions: Vec<Version>,
    /// The client asks for early data when it resumes and the server takes it (RFC 9001 §4.6).
    pub early_data: bool,
    /// A second address of the server's, advertised as its preferred address (RFC 9000 §9.6).
    pub server_preferred_address: Option<SocketAddr>,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            link: LinkConfig::default(),
            version: Version::V1,
            client_transport: TransportConfig::default(),
            server_transport: TransportConfig::default(),
            untrusted: false,
            server_alpn: ALPN,
            retry: false,
            extra_names: 0,
            qlog: false,
            client_compatible_versions: Vec::new(),
            server_versions: vec![Version::V1, Version::V2],
            early_data: false,
            server_preferred_address: None,
        }
    }
}

/// A client and a server endpoint on a simulated link, the client connecting.
pub struct Pair {
    pub sim: Simulator,
    pub client_config: ClientConfig,
    pub client: ConnectionHandle,
    pub server: Option<ConnectionHandle>,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    /// When the application's own timer next wakes it (see [`Pair::wake_at`]).
    wake: Option<Instant>,
    /// The server's TLS configuration, its session store among it.
    pub server_tls: Arc<rustls::ServerConfig>,
    /// The server's configuration but for TLS.
    server_config: ServerConfig,
    server_seed: [u8; 32],
}

pub fn client_addr() -> SocketAddr {
    "10.0.0.1:5000".parse().unwrap()
}

pub fn server_addr() -> SocketAddr {
    "10.0.0.2:4433".parse().unwrap()
}

impl Pair {
    pub fn new(options: PairOptions) -> Self {
        let (cert, key) = certificate_with_names("qstream test", options.extra_names);
        let trusted = if options.untrusted {
            certificate().0
        } else {
            cert.clone()
        };
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&options.seed.to_le_bytes());
        let mut tls = server_tls(&cert, &key, options.server_alpn);
        let mut client_tls = client_tls(&trusted, ALPN);
        if options.early_data {
            tls.max_early_data_size = u32::MAX;
            client_tls.enable_early_data = true;
        }
        let server_tls = Arc::new(tls);
        let mut server_config = ServerConfig::new(server_tls.clone());
        server_config.transport = Arc::new(options.server_transport);
        server_config.retry = options.retry;
        server_config.versions = options.server_versions;
        server_config.preferred_address = options.server_preferred_address;
        let mut client_config = ClientConfig::new(Arc::new(client_tls));
        client_config.transport = Arc::new(options.client_transport);
        client_config.version = options.version;
        client_config.compatible_versions = options.client_compatible_versions;

        let mut sim = Simulator::new(options.seed, options.link);
        let mut client_seed = seed;
        client_seed[31] = 1;
        sim.add_endpoint(
            client_addr(),
            Endpoint::new(EndpointConfig::from_seed(client_seed), None),
        );
        let mut server_seed = seed;
        server_seed[31] = 2;
        sim.add_endpoint(
            server_addr(),
            Endpoint::new(
                EndpointConfig::from_seed(server_seed),
                Some(server_config.clone()),
            ),
        );
        if let Some(preferred) = options.server_preferred_address {
            sim.add_address(SERVER, preferred);
        }
        sim.endpoint(CLIENT).set_qlog(options.qlog);
        sim.endpoint(SERVER).set_qlog(options.qlog);
        let now = sim.now();
        let client = sim
            .endpoint(CLIENT)
            .connect(now, &client_config, server_addr(), "localhost")
            .unwrap();
        Self {
            sim,
            client_config,
            client,
            server: None,
            client_events: Vec::new(),
            server_events: Vec::new(),
            wake: None,
            server_tls,
            server_config,
            server_seed,
        }
    }

    /// A new connection from the same client endpoint and configuration (its session cache
    /// among it) to the server; the earlier connection's handles and events are forgotten.
    pub fn reconnect(&mut self) {
        let now = self.sim.now();
        self.client = self
            .sim
            .endpoint(CLIENT)
            .connect(now, &self.client_config, server_addr(), "localhost")
            .unwrap();
        self.server = None;
        self.client_events.clear();
        self.server_events.clear();
    }

    /// Replaces the server endpoint, at the same address, by a fresh one running `tls` (a
    /// changed copy of [`Pair::server_tls`] shares its session store) and `transport`.
    pub fn restart_server(&mut self, tls: rustls::ServerConfig, transport: TransportConfig) {
        let mut config = self.server_config.clone();
        config.tls = Arc::new(tls);
        config.transport = Arc::new(transport);
        self.server_tls = config.tls.clone();
        *self.sim.endpoint(SERVER) =
            Endpoint::new(EndpointConfig::from_seed(self.server_seed), Some(config));
        self.server = None;
        self.server_events.clear();
    }

    /// Collects events from both connections and accepts the server's.
    pub fn poll(&mut self) {
        if self.server.is_none() {
            self.server = self.sim.endpoint(SERVER).accept();
        }
        let client = self.client;
        while let Some(event) = self
            .sim
            .endpoint(CLIENT)
            .connection_mut(client)
            .and_then(|c| c.poll_event())
        {
            self.client_events.push(event);
        }
        if let Some(server) = self.server {
            while let Some(event) = self
                .sim
                .endpoint(SERVER)
                .connection_mut(server)
                .and_then(|c| c.poll_event())
            {
                self.server_events.push(event);
            }
        }
    }

    /// Runs until `done` or `timeout` of virtual time; polls events all along. `done` runs
    /// after every step, and at the instant it asked for with [`Pair::wake_at`].
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut Pair) -> bool,
    ) -> bool {
        let deadline = self.sim.now() + timeout;
        loop {
            self.poll();
            if done(self) {
                return true;
            }
            let wake = self.wake.take().filter(|&t| t > self.sim.now());
            let limit = wake.map_or(deadline, |t| t.min(deadline));
            if self.sim.now() >= deadline || (!self.sim.step_until(Some(limit)) && wake.is_none()) {
                self.poll();
                return done(self);
            }
        }
    }

    /// Asks [`Pair::run_until`] to run its closure at `at` even if nothing happens on the
    /// network then: the application's own timer, as a task that reads every few
    /// milliseconds has.
    pub fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    pub fn client_connected(&self) -> bool {
        self.client_events.contains(&Event::Connected)
    }

    pub fn server_connected(&self) -> bool {
        self.server_events.contains(&Event::Connected)
    }

    /// Runs until both sides report Connected and the client has its handshake confirmed.
    pub fn drive_handshake(&mut self, timeout: Duration) -> bool {
        self.run_until(timeout, |p| {
            p.client_connected()
                && p.server_connected()
                && p.client_conn().is_some_and(|c| c.is_handshake_confirmed())
        })
    }

    pub fn client_conn(&mut self) -> Option<&mut qstream_proto::Connection> {
        let client = self.client;
        self.sim.endpoint(CLIENT).connection_mut(client)
    }

    pub fn server_conn(&mut self) -> Option<&mut qstream_proto::Connection> {
        let server = self.server?;
        self.sim.endpoint(SERVER).connection_mut(server)
    }

    /// Takes every queued qlog record of both connections, checking the JSON-SEQ framing.
    pub fn take_qlog(
        &mut self,
        client: &mut Vec<serde_json::Value>,
        server: &mut Vec<serde_json::Value>,
    ) {
        let now = self.sim.now();
        let take = |connection: Option<&mut qstream_proto::Connection>, out: &mut Vec<_>| {
            let Some(connection) = connection else { return };
            while let Some(record) = connection.poll_qlog(now) {
                let json = record
                    .strip_prefix('\u{1e}')
                    .and_then(|r| r.strip_suffix('\n'))
                    .unwrap_or_else(|| panic!("not a JSON-SEQ record: {record:?}"));
                out.push(serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")));
            }
        };
        take(self.client_conn(), client);
        take(self.server_conn(), server);
    }

    pub fn closed_event(events: &[Event]) -> Option<&qstream_proto::ConnectionError> {
        events.iter().find_map(|e| match e {
            Event::Closed(reason) => Some(reason),
            _ => None,
        })
    }
}

/// Seeds to run a randomised test over: `QSTREAM_SEED` picks one, to reproduce a failure.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("QSTREAM_SEED") {
        Ok(seed) => vec![seed.parse().expect("QSTREAM_SEED is a number")],
        Err(_) => (1..=count).collect(),
    }
}

/// Reads what `id` has now into `out`; returns the end state when the stream ended.
pub fn drain(
    conn: &mut qstream_proto::Connection,
    id: qstream_proto::wire::StreamId,
    out: &mut Vec<u8>,
) -> Option<qstream_proto::streams::ReadOutcome> {
    use qstream_proto::streams::ReadOutcome;
    loop {
        match conn.read(id, 64 * 1024) {
            Ok(ReadOutcome::Data(bytes)) => out.extend_from_slice(&bytes),
            Ok(ReadOutcome::Blocked) => return None,
            Ok(end) => return Some(end),
            Err(_) => return None,
        }
    }
}

/// Deterministic test data: byte `i` of stream `seed` is a function of both.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7)) as u8
        })
        .collect()
}

/// The Source Connection ID of hand-made client packets.
pub const CLIENT_SCID: [u8; 8] = [0xcc; 8];

/// A 1200-byte QUIC v1 client Initial datagram from [`CLIENT_SCID`], packet number 0,
/// protected with the real Initial keys for `dcid`, carrying the frames `write` writes.
pub fn client_initial(dcid: &ConnectionId, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let header = Header::Initial {
        version: Version::V1,
        dcid: *dcid,
        scid: ConnectionId::from_slice(&CLIENT_SCID).unwrap(),
        token: &[],
    };
    let mut payload = Vec::new();
    write(&mut payload);
    let pn = TruncatedPacketNumber::encode(0, None);
    // Pad the payload so the datagram is exactly 1200 bytes.
    let header_len = {
        let mut probe = Vec::new();
        header.encode(pn, 1000, &mut probe)
    };
    payload.resize(1200 - header_len - pn.size() - 16, 0);
    let keys = initial_keys(Version::V1, dcid, Side::Client).unwrap();
    let packet = protected_packet(&header, 0, None, &payload, &keys);
    assert_eq!(packet.len(), 1200);
    packet
}

/// A packet with `header`, packet number `pn` (truncated as a sender would with
/// `largest_acked` acknowledged) and `payload`, protected with `keys`' local half.
pub fn protected_packet(
    header: &Header<'_>,
    pn: u64,
    largest_acked: Option<u64>,
    payload: &[u8],
    keys: &rustls::quic::Keys,
) -> Vec<u8> {
    let truncated = TruncatedPacketNumber::encode(pn, largest_acked);
    let mut packet = Vec::new();
    let pn_offset = header.encode(truncated, payload.len() + 16, &mut packet);
    packet.extend_from_slice(payload);
    packet.extend_from_slice(&[0; 16]);
    protect(
        &mut packet,
        pn_offset,
        pn,
        &*keys.local.header,
        &*keys.local.packet,
    )
    .unwrap();
    packet
}

/// One stream the test writes to its end: `len` bytes of `block` repeated, on each call as
/// much as the connection takes, then the FIN.
pub struct Upload {
    pub id: StreamId,
    block: Vec<u8>,
    len: usize,
    pub written: usize,
    finished: bool,
}

impl Upload {
    /// Writes `data` to `id`.
    pub fn new(id: StreamId, data: Vec<u8>) -> Self {
        let len = data.len();
        Self::repeating(id, data, len)
    }

    /// Writes `len` bytes of `block` over and over to `id`.
    pub fn repeating(id: StreamId, block: Vec<u8>, len: usize) -> Self {
        Self {
            id,
            block,
            len,
            written: 0,
            finished: false,
        }
    }

    /// Writes what `conn` takes now, and the FIN once everything is written; true once done.
    pub fn push(&mut self, conn: &mut qstream_proto::Connection) -> bool {
        while self.written < self.len {
            let offset = self.written % self.block.len();
            let end = self.block.len().min(offset + self.len - self.written);
            let n = conn
                .write(self.id, &self.block[offset..end])
                .expect("write");
            if n == 0 {
                return false;
            }
            self.written += n;
        }
        if !self.finished {
            conn.finish(self.id).expect("finish");
            self.finished = true;
        }
        true
    }
}

/// The reading end of the first stream of a direction the peer opens: accepted once it
/// appears, read as data comes; kept, only counted, or checked against a repeated block.
pub struct Download {
    dir: Dir,
    pub id: Option<StreamId>,
    /// What was read, unless the download only counts or checks.
    pub body: Vec<u8>,
    /// Bytes read.
    pub received: usize,
    /// How the stream ended, once it did.
    pub end: Option<qstream_proto::streams::ReadOutcome>,
    keep: bool,
    expected: Option<Vec<u8>>,
}

impl Download {
    /// Keeps what it reads in `body`.
    pub fn new(dir: Dir) -> Self {
        Self {
            dir,
            id: None,
            body: Vec::new(),
            received: 0,
            end: None,
            keep: true,
            expected: None,
        }
    }

    /// Only counts what it reads.
    pub fn counting(dir: Dir) -> Self {
        Self {
            keep: false,
            ..Self::new(dir)
        }
    }

    /// Checks every byte against `block` repeated (see [`Upload::repeating`]); panics at the
    /// first that differs.
    pub fn checking(dir: Dir, block: Vec<u8>) -> Self {
        Self {
            expected: Some(block),
            ..Self::counting(dir)
        }
    }

    /// Accepts the stream if not yet, and reads all it has now; true once it ended (normally
    /// or by a reset: see `end`).
    pub fn pull(&mut self, conn: &mut qstream_proto::Connection) -> bool {
        use qstream_proto::streams::ReadOutcome;
        if self.end.is_some() {
            return true;
        }
        self.id = self.id.or_else(|| conn.accept(self.dir));
        let Some(id) = self.id else {
            return false;
        };
        loop {
            match conn.read(id, 1 << 20) {
                Ok(ReadOutcome::Data(bytes)) => self.take(&bytes),
                Ok(ReadOutcome::Blocked) | Err(_) => return false,
                Ok(end) => {
                    self.end = Some(end);
                    return true;
                }
            }
        }
    }

    /// Whether the stream ended normally.
    pub fn finished(&self) -> bool {
        self.end == Some(qstream_proto::streams::ReadOutcome::Finished)
    }

    fn take(&mut self, bytes: &[u8]) {
        if let Some(block) = &self.expected {
            let mut checked = 0;
            while checked < bytes.len() {
                let at = (self.received + checked) % block.len();
                let n = (bytes.len() - checked).min(block.len() - at);
                assert!(
                    bytes[checked..checked + n] == block[at..at + n],
                    "corrupt bytes within {} of offset {}",
                    n,
                    self.received + checked
                );
                checked += n;
            }
        }
        if self.keep {
            self.body.extend_from_slice(bytes);
        }
        self.received += bytes.len();
    }
}

/// Sends `len` bytes from the client to the server over one unidirectional stream, reading
/// them as they come, and returns the virtual time from opening the stream until the server
/// read its end; `None` if that takes longer than `timeout`. Checks every byte.
pub fn bulk_transfer(pair: &mut Pair, len: usize, timeout: Duration) -> Option<Duration> {
    let start = pair.sim.now();
    let id = pair.client_conn()?.open(start, Dir::Uni).ok()?;
    let block = pattern(3, 1 << 20);
    let mut upload = Upload::repeating(id, block.clone(), len);
    let mut download = Download::checking(Dir::Uni, block);
    let done = pair.run_until(timeout, |p| {
        upload.push(p.client_conn().expect("client connection"));
        p.server_conn().is_some_and(|server| download.pull(server))
    });
    if let Some(qstream_proto::streams::ReadOutcome::Reset(code)) = download.end {
        panic!("reset {code}");
    }
    (done && download.finished() && download.received == len).then(|| pair.sim.now() - start)
}
