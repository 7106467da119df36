//! The endpoint: owns connections, routes datagrams to them by connection ID, accepts new ones,
//! and answers what no connection can (RFC 9000 §5.2, §6, §10.3).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rustc_hash::FxHashMap;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::Side;
use crate::config::{ClientConfig, EndpointConfig, ServerConfig};
use crate::connection::{
    Connection, ConnectionInit, EcnCodepoint, EndpointEvent, MIN_INITIAL_SIZE, Transmit,
    VersionChoice, compatible,
};
use crate::crypto::derived::SecretCapture;
use crate::crypto::{retry_tag, rustls_version};
use crate::stateless_reset::{StatelessResetKey, encode_stateless_reset, stateless_reset_len};
use crate::token::{PresentedToken, TokenKey};
use crate::wire::{
    ConnectionId, Packet, PacketType, RetryPacket, Version, VersionInformation, VersionNegotiation,
    parse_packet,
};

mod reset_tokens;
mod routes;
mod timers;

use reset_tokens::ResetTokens;
use routes::Routes;
use timers::TimerIndex;

/// Identifies a connection within its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub usize);

/// Why a connection could not be started.
#[derive(Debug)]
pub enum ConnectError {
    /// The server name is not a valid DNS name or IP address.
    InvalidServerName(String),
    /// The configured QUIC version is not one this implementation speaks.
    UnsupportedVersion(Version),
    /// rustls refused the TLS configuration (for example, no TLS 1.3 support).
    Tls(rustls::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidServerName(name) => write!(f, "invalid server name {name:?}"),
            Self::UnsupportedVersion(v) => write!(f, "QUIC version {v:?} is not supported"),
            Self::Tls(e) => write!(f, "TLS configuration rejected: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Stateless resets sent per handle_timeout period at most, so that a flood of stray packets
/// cannot make us a traffic source (RFC 9000 §10.3: rate limiting is allowed).
const MAX_RESETS_PER_BURST: usize = 64;

/// A QUIC endpoint: one UDP socket's worth of connections, client or server or both.
pub struct Endpoint {
    config: Arc<EndpointConfig>,
    server: Option<Arc<ServerConfig>>,
    connections: FxHashMap<ConnectionHandle, Connection>,
    next_handle: usize,
    routes: Routes,
    /// The peer's stateless reset tokens, for datagrams that route nowhere.
    reset_tokens: ResetTokens,
    /// Connections that may have something to send: touched since they last had nothing.
    /// Polling only these keeps sending independent of how many connections sit idle.
    sendable: BTreeSet<ConnectionHandle>,
    /// Connections that may have new events or state since [`Self::poll_changed`] last
    /// returned them.
    changed: BTreeSet<ConnectionHandle>,
    /// Every connection's next timer, kept current for the connections touched.
    timers: TimerIndex,
    /// The connection touched last, while it is still in `sendable` and `changed`: a busy
    /// connection is touched for every datagram and every application call, and touching it
    /// again then changes nothing.
    touched_last: Option<ConnectionHandle>,
    incoming: VecDeque<ConnectionHandle>,
    /// Datagrams sent on no connection's behalf: Version Negotiation and stateless resets.
    stateless: VecDeque<(SocketAddr, Vec<u8>)>,
    resets_sent: usize,
    /// Client: the server name of each connection, to file the tokens it receives.
    server_names: FxHashMap<ConnectionHandle, String>,
    /// Client: the latest NEW_TOKEN token from each server, by name and by the version of the
    /// connection that gave it (RFC 9000 §8.1.3; RFC 9369 §5, RFC9369-015: a token is used
    /// only in that version).
    tokens: HashMap<(String, Version), bytes::Bytes>,
    reset_key: StatelessResetKey,
    token_key: TokenKey,
    /// Whether new connections record a qlog trace.
    qlog: bool,
    /// The time tokens are dated from: the first time this endpoint was given.
    epoch: Option<Instant>,
    rng: StdRng,
    /// Round-robin position for poll_transmit fairness.
    cursor: usize,
}

impl Endpoint {
    /// An endpoint that accepts connections when `server` is given, and can always connect.
    pub fn new(config: EndpointConfig, server: Option<ServerConfig>) -> Self {
        Self {
            reset_key: StatelessResetKey::new(&config.reset_key),
            token_key: TokenKey::new(&[&config.reset_key[..], b"retry tokens"].concat()),
            qlog: false,
            epoch: None,
            rng: StdRng::from_seed(config.rng_seed),
            config: Arc::new(config),
            server: server.map(Arc::new),
            connections: FxHashMap::default(),
            next_handle: 0,
            routes: Routes::default(),
            reset_tokens: ResetTokens::default(),
            sendable: BTreeSet::new(),
            changed: BTreeSet::new(),
            timers: TimerIndex::default(),
            touched_last: None,
            incoming: VecDeque::new(),
            stateless: VecDeque::new(),
            resets_sent: 0,
            server_names: FxHashMap::default(),
            tokens: HashMap::new(),
            cursor: 0,
        }
    }

    /// Starts a connection to `remote`, authenticating it as `server_name`. The first Initial
    /// goes out with the next [`Self::poll_transmit`].
    pub fn connect(
        &mut self,
        now: Instant,
        config: &ClientConfig,
        remote: SocketAddr,
        server_name: &str,
    ) -> Result<ConnectionHandle, ConnectError> {
        let version = config.version;
        let tls_version =
            rustls_version(version).ok_or(ConnectError::UnsupportedVersion(version))?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|_| ConnectError::InvalidServerName(server_name.to_owned()))?;
        let local_cid = self.new_cid();
        // RFC 9000 §7.2: the client's first Destination Connection ID is at least 8
        // unpredictable bytes.
        let original_dcid = self.random_cid(16);
        // RFC 9368 §3, RFC9368-016: the versions of this first flight in descending preference,
        // the chosen one included. Offering a version to switch to says the client prefers it, so those
        // come first, in the configured order, and the version it starts in last.
        let compatible_versions: Vec<Version> = config
            .compatible_versions
            .iter()
            .copied()
            .filter(|v| *v != version && compatible(version, *v))
            .collect();
        let mut available = compatible_versions.clone();
        available.push(version);
        let params = Connection::local_transport_parameters(
            &config.transport,
            Side::Client,
            local_cid,
            None,
            None,
            None,
            VersionInformation {
                chosen: version,
                available,
            },
        );
        let mut encoded = Vec::new();
        params.encode(&mut encoded);
        let (tls_config, secret_capture) = client_tls(config, !compatible_versions.is_empty());
        let tls = rustls::quic::ClientConnection::new(tls_config, tls_version, name, encoded)
            .map_err(ConnectError::Tls)?;
        let mut connection = Connection::new(ConnectionInit {
            side: Side::Client,
            version,
            config: config.transport.clone(),
            tls: tls.into(),
            remote,
            local_cid,
            remote_cid: original_dcid,
            original_dcid,
            initial_keys_cid: original_dcid,
            version_choice: None,
            compatible_versions,
            secret_capture,
            local_cid_len: self.config.local_cid_len,
            initial_token: self
                .tokens
                .get(&(server_name.to_owned(), version))
                .cloned()
                .unwrap_or_default(),
            address_validated: true,
            preferred_cid: None,
            qlog: self.qlog,
            rng_seed: self.rng.random(),
            now,
        });
        let offered = params
            .version_information
            .as_ref()
            .map(|info| info.available.clone())
            .unwrap_or_default();
        connection.qlog_local_parameters(now, &params, &offered);
        let handle = self.insert(connection, &[local_cid]);
        self.server_names.insert(handle, server_name.to_owned());
        Ok(handle)
    }

    fn insert(&mut self, connection: Connection, cids: &[ConnectionId]) -> ConnectionHandle {
        let handle = ConnectionHandle(self.next_handle);
        self.next_handle += 1;
        for cid in cids {
            self.routes.add(*cid, handle);
        }
        self.connections.insert(handle, connection);
        self.touch(handle);
        handle
    }

    /// Notes that `handle` may have something to send, new events and new timers.
    fn touch(&mut self, handle: ConnectionHandle) {
        self.timers.mark_stale(handle);
        if self.touched_last == Some(handle) {
            return;
        }
        self.touched_last = Some(handle);
        self.sendable.insert(handle);
        self.changed.insert(handle);
    }

    /// `handle` left `sendable` or `changed`: touching it must put it back.
    fn untouch(&mut self, handle: ConnectionHandle) {
        if self.touched_last == Some(handle) {
            self.touched_last = None;
        }
    }

    fn random_cid(&mut self, len: usize) -> ConnectionId {
        let mut bytes = [0; ConnectionId::MAX_LEN];
        self.rng.fill_bytes(&mut bytes[..len]);
        ConnectionId::from_slice(&bytes[..len]).expect("at most 20 bytes")
    }

    /// A fresh local connection ID not routing anywhere yet.
    fn new_cid(&mut self) -> ConnectionId {
        loop {
            let cid = self.random_cid(self.config.local_cid_len);
            if !self.routes.contains(&cid) {
                return cid;
            }
        }
    }

    /// Processes a datagram from `remote` that arrived with ECN codepoint `ecn`, returning the
    /// connection it was for, if any. Received stream data keeps sharing `datagram`'s storage.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ecn: Option<EcnCodepoint>,
        datagram: BytesMut,
    ) -> Option<ConnectionHandle> {
        self.handle_datagram_at(now, None, remote, ecn, datagram)
    }

    /// [`Self::handle_datagram`] for a datagram that arrived on `local`, an address of this
    /// endpoint other than its own (`None`): a server's preferred address (RFC 9000 §9.6). What
    /// a connection sends from there says so in [`Transmit::source`].
    pub fn handle_datagram_at(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        ecn: Option<EcnCodepoint>,
        datagram: BytesMut,
    ) -> Option<ConnectionHandle> {
        let first = parse_packet(&datagram, self.config.local_cid_len).ok()?;
        let (dcid, long_initial) = match &first {
            Packet::Protected(p) => (Some(p.dcid), p.ty == PacketType::Initial),
            Packet::Retry(r) => (Some(r.dcid), false),
            Packet::VersionNegotiation(vn) => (ConnectionId::from_slice(vn.dcid), false),
            Packet::UnsupportedVersion { dcid, scid, .. } => {
                // RFC 9000 §6.1 and §14.1: answer only datagrams large enough to be a client's
                // first flight, with one Version Negotiation packet (RFC9000-306).
                if self.server.is_some() && datagram.len() >= MIN_INITIAL_SIZE {
                    let mut reply = Vec::new();
                    let unused = self.rng.random::<u8>() & 0x3f;
                    VersionNegotiation::encode(dcid, scid, &Version::SUPPORTED, unused, &mut reply);
                    self.stateless.push_back((remote, reply));
                }
                return None;
            }
        };
        let first_ty_initial = long_initial;
        let first_version = match &first {
            Packet::Protected(p) => p.version,
            _ => None,
        };
        let scid = match &first {
            Packet::Protected(p) => p.scid,
            _ => ConnectionId::EMPTY,
        };
        let token = match &first {
            Packet::Protected(p) => datagram[p.token.clone()].to_vec(),
            _ => Vec::new(),
        };
        if let Some(handle) = dcid.and_then(|cid| self.routes.get(&cid)) {
            let connection = self.connections.get_mut(&handle)?;
            connection.arrived_on = local;
            connection.handle_datagram(now, remote, ecn, datagram);
            connection.arrived_on = None;
            self.touch(handle);
            self.process_endpoint_events(now, handle);
            return Some(handle);
        }
        if first_ty_initial {
            return self.accept_initial(
                now,
                remote,
                ecn,
                datagram,
                dcid?,
                scid,
                first_version?,
                &token,
            );
        }
        // RFC 9000 §10.3.1: a stateless reset carries a random connection ID, so it routes
        // nowhere; it is recognised by its trailing token (RFC9000-196: whatever its form),
        // found with one lookup however many connections there are.
        if let Some(handle) = self.reset_tokens.find(&datagram) {
            if let Some(connection) = self.connections.get_mut(&handle) {
                connection.on_stateless_reset(now);
                self.touch(handle);
                return Some(handle);
            }
        }
        if matches!(first, Packet::Protected(ref p) if p.ty == PacketType::OneRtt) {
            self.stateless_reset(remote, dcid?, datagram.len());
        }
        None
    }

    /// A client's first Initial: a new server connection (RFC 9000 §7), or first a Retry when
    /// the server validates addresses that way (RFC 9000 §8.1.2).
    #[allow(clippy::too_many_arguments)]
    fn accept_initial(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ecn: Option<EcnCodepoint>,
        datagram: BytesMut,
        dcid: ConnectionId,
        client_scid: ConnectionId,
        version: Version,
        token: &[u8],
    ) -> Option<ConnectionHandle> {
        let server = self.server.clone()?;
        // RFC 9000 §14.1: a server drops an Initial in a datagram smaller than 1200 bytes.
        if datagram.len() < MIN_INITIAL_SIZE {
            return None;
        }
        let tls_version = rustls_version(version)?;
        let (original_dcid, retry_scid, validated) =
            self.check_address(now, &server, remote, version, dcid, client_scid, token)?;
        // RFC 9000 §7.2: the client's first Destination Connection ID is at least 8 bytes.
        if original_dcid.len() < 8 {
            return None;
        }
        let local_cid = self.new_cid();
        let mut params = Connection::local_transport_parameters(
            &server.transport,
            Side::Server,
            local_cid,
            Some(original_dcid),
            retry_scid,
            Some(self.reset_key.token(&local_cid)),
            VersionInformation {
                chosen: version,
                available: server.versions.clone(),
            },
        );
        let preferred = server
            .preferred_address
            .and_then(|address| self.preferred_address(address, &mut params));
        let mut encoded = Vec::new();
        params.encode(&mut encoded);
        // Kept only when the server may switch versions (usually not).
        let logged = self.qlog.then(|| params.clone());
        let version_choice =
            VersionChoice::new(version, &server.versions, server.tls.clone(), params);
        let tls =
            rustls::quic::ServerConnection::new(server.tls.clone(), tls_version, encoded).ok()?;
        let mut connection = Connection::new(ConnectionInit {
            side: Side::Server,
            version,
            config: server.transport.clone(),
            tls: tls.into(),
            remote,
            local_cid,
            remote_cid: client_scid,
            original_dcid,
            initial_keys_cid: dcid,
            version_choice,
            compatible_versions: Vec::new(),
            secret_capture: None,
            local_cid_len: self.config.local_cid_len,
            initial_token: bytes::Bytes::new(),
            address_validated: validated,
            preferred_cid: preferred,
            qlog: self.qlog,
            rng_seed: self.rng.random(),
            now,
        });
        if let Some(params) = logged {
            connection.qlog_local_parameters(now, &params, &server.versions);
        }
        connection.handle_datagram(now, remote, ecn, datagram);
        let routed: Vec<_> = [local_cid, dcid].into_iter().chain(preferred).collect();
        let handle = self.insert(connection, &routed);
        self.process_endpoint_events(now, handle);
        self.incoming.push_back(handle);
        Some(handle)
    }

    /// RFC 9000 §9.6, §18.2: the server's preferred address goes into its transport
    /// parameters with a connection ID of its own (sequence number 1), never a zero-length one;
    /// returns that ID.
    fn preferred_address(
        &mut self,
        address: SocketAddr,
        params: &mut crate::wire::TransportParameters,
    ) -> Option<ConnectionId> {
        if self.config.local_cid_len == 0 {
            return None;
        }
        let cid = self.new_cid();
        let (ipv4, ipv6) = match address {
            SocketAddr::V4(a) => (Some(a), None),
            SocketAddr::V6(a) => (None, Some(a)),
        };
        params.preferred_address = Some(crate::wire::PreferredAddress {
            ipv4,
            ipv6,
            connection_id: cid,
            stateless_reset_token: self.reset_key.token(&cid),
        });
        Some(cid)
    }

    /// Address validation of a client's first Initial (RFC 9000 §8.1): the connection's
    /// original Destination Connection ID, the Retry's Source Connection ID if there was a
    /// Retry, and whether the address is validated; `None` when the Initial is dropped (an
    /// invalid Retry token) or answered with a Retry.
    #[allow(clippy::too_many_arguments)]
    fn check_address(
        &mut self,
        now: Instant,
        server: &ServerConfig,
        remote: SocketAddr,
        version: Version,
        dcid: ConnectionId,
        client_scid: ConnectionId,
        token: &[u8],
    ) -> Option<(ConnectionId, Option<ConnectionId>, bool)> {
        let since_epoch = now.saturating_duration_since(*self.epoch.get_or_insert(now));
        let presented = if token.is_empty() {
            PresentedToken::Unusable
        } else {
            self.token_key.check(
                remote,
                token,
                version,
                since_epoch,
                server.retry_token_lifetime,
                server.new_token_lifetime,
            )
        };
        Some(match presented {
            // The Initial must go to the connection ID the Retry chose.
            PresentedToken::Retry(valid) if valid.retry_scid == dcid => {
                (valid.original_dcid, Some(dcid), true)
            }
            // RFC 9000 §8.1.3: an Initial with a Retry token that does not validate is dropped;
            // the client times out rather than learn what a valid token looks like.
            PresentedToken::Retry(_) | PresentedToken::InvalidRetry => return None,
            PresentedToken::NewToken => (dcid, None, true),
            PresentedToken::Unusable if server.retry => {
                self.send_retry(remote, version, dcid, client_scid, since_epoch);
                return None;
            }
            PresentedToken::Unusable => (dcid, None, false),
        })
    }

    /// Sends a Retry (RFC 9000 §17.2.5) in reply to an Initial without a token; no state is
    /// kept, everything needed later is in the token.
    fn send_retry(
        &mut self,
        remote: SocketAddr,
        version: Version,
        original_dcid: ConnectionId,
        client_scid: ConnectionId,
        since_epoch: std::time::Duration,
    ) {
        // RFC9000-315: the Retry's Source Connection ID differs from the client's DCID.
        let retry_scid = loop {
            let cid = self.new_cid();
            if cid != original_dcid {
                break cid;
            }
        };
        let token = self
            .token_key
            .issue(remote, &original_dcid, &retry_scid, since_epoch);
        let mut packet = Vec::new();
        let unused = self.rng.random::<u8>();
        RetryPacket::encode_without_tag(
            version,
            &client_scid,
            &retry_scid,
            &token,
            unused,
            &mut packet,
        );
        let Some(tag) = retry_tag(version, &original_dcid, &packet) else {
            return;
        };
        packet.extend_from_slice(&tag);
        self.stateless.push_back((remote, packet));
    }

    /// Answers a short header packet for an unknown connection with a stateless reset
    /// (RFC 9000 §10.3), when its size allows one.
    fn stateless_reset(&mut self, remote: SocketAddr, dcid: ConnectionId, received_len: usize) {
        if !self.config.stateless_reset || self.resets_sent >= MAX_RESETS_PER_BURST {
            return;
        }
        let Some(len) = stateless_reset_len(received_len) else {
            return;
        };
        let mut packet = vec![0; len];
        self.rng.fill_bytes(&mut packet);
        encode_stateless_reset(&self.reset_key.token(&dcid), &mut packet);
        self.resets_sent += 1;
        self.stateless.push_back((remote, packet));
    }

    /// The next datagram to send, from any connection, appended to `buf`: its last
    /// [`Transmit::size`] bytes. `buf` is unchanged when there is nothing to send.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((destination, packet)) = self.stateless.pop_front() {
            buf.extend_from_slice(&packet);
            return Some(Transmit {
                destination,
                source: None,
                size: packet.len(),
                ecn: None,
                probe: false,
            });
        }
        // Round robin over the connections that may have something to send, from the one
        // after the last that sent; those with nothing leave the set until touched again.
        let cursor = ConnectionHandle(self.cursor);
        let mut idle = Vec::new();
        let mut sent = None;
        for &handle in self
            .sendable
            .range(cursor..)
            .chain(self.sendable.range(..cursor))
        {
            let transmit = self
                .connections
                .get_mut(&handle)
                .and_then(|c| c.poll_transmit(now, buf));
            // Sending arms loss and probe timers; pacing may have set one.
            self.timers.mark_stale(handle);
            match transmit {
                Some(transmit) => {
                    sent = Some((handle, transmit));
                    break;
                }
                None => idle.push(handle),
            }
        }
        for handle in idle {
            self.sendable.remove(&handle);
            self.untouch(handle);
        }
        let (handle, transmit) = sent?;
        self.cursor = handle.0 + 1;
        Some(transmit)
    }

    /// The earliest time [`Self::handle_timeout`] must be called. Costs a look at the
    /// connections touched since the last call, not at every connection.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.refresh_timers();
        self.timers.earliest()
    }

    /// Handles the expired timers of every connection.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.resets_sent = 0;
        self.refresh_timers();
        for handle in self.timers.take_due(now) {
            if let Some(connection) = self.connections.get_mut(&handle) {
                connection.handle_timeout(now);
                self.touch(handle);
                self.process_endpoint_events(now, handle);
            }
        }
    }

    /// Reads again the timers of the connections touched since the last refresh.
    fn refresh_timers(&mut self) {
        let connections = &self.connections;
        self.timers
            .refresh(|handle| connections.get(&handle).and_then(Connection::poll_timeout));
    }

    /// Carries out what a connection asked of the endpoint: connection IDs to route to it, or
    /// to stop routing.
    fn process_endpoint_events(&mut self, now: Instant, handle: ConnectionHandle) {
        let mut events = Vec::new();
        if let Some(connection) = self.connections.get_mut(&handle) {
            while let Some(event) = connection.poll_endpoint_event() {
                events.push(event);
            }
            self.reset_tokens
                .set(handle, connection.remote_reset_token());
        }
        for event in events {
            match event {
                EndpointEvent::NeedCids(count) => {
                    let ids: Vec<_> = (0..count)
                        .map(|_| {
                            let cid = self.new_cid();
                            self.routes.add(cid, handle);
                            (cid, self.reset_key.token(&cid))
                        })
                        .collect();
                    if let Some(connection) = self.connections.get_mut(&handle) {
                        connection.issue_cids(ids);
                    }
                }
                EndpointEvent::RetiredCid(cid) => self.routes.retire(handle, &cid),
                EndpointEvent::NeedToken => {
                    let Some(connection) = self.connections.get_mut(&handle) else {
                        continue;
                    };
                    let since_epoch = now.saturating_duration_since(*self.epoch.get_or_insert(now));
                    // RFC 9369 §5: after compatible version negotiation the token is the
                    // negotiated version's.
                    let token = self.token_key.issue_new_token(
                        connection.remote_address(),
                        connection.version(),
                        since_epoch,
                    );
                    connection.send_new_token(token.into());
                }
                EndpointEvent::NewToken(token) => {
                    let version = self.connections.get(&handle).map(|c| c.version());
                    if let (Some(name), Some(version)) = (self.server_names.get(&handle), version) {
                        self.tokens.insert((name.clone(), version), token);
                    }
                }
            }
        }
    }

    /// Forgets a connection, drained or not. Its connection IDs stop routing.
    pub fn remove(&mut self, handle: ConnectionHandle) -> Option<Connection> {
        self.routes.remove_connection(handle);
        self.reset_tokens.remove(handle);
        self.server_names.remove(&handle);
        self.sendable.remove(&handle);
        self.changed.remove(&handle);
        self.timers.remove(handle);
        self.untouch(handle);
        self.connections.remove(&handle)
    }

    /// The next connection a client opened to this server.
    pub fn accept(&mut self) -> Option<ConnectionHandle> {
        self.incoming.pop_front()
    }

    /// A connection.
    pub fn connection(&self, handle: ConnectionHandle) -> Option<&Connection> {
        self.connections.get(&handle)
    }

    /// A connection, to act on it. It counts as touched: [`Self::poll_transmit`] looks at it
    /// again and [`Self::poll_changed`] returns it.
    pub fn connection_mut(&mut self, handle: ConnectionHandle) -> Option<&mut Connection> {
        if self.connections.contains_key(&handle) {
            self.touch(handle);
        }
        self.connections.get_mut(&handle)
    }

    /// The next connection that may have new events or a new state (received a datagram, had
    /// a timer fire, or was acted on) since it was last returned, to take its events; each is
    /// returned once however many changes came in between, and taking it does not count as a
    /// change.
    pub fn poll_changed(&mut self) -> Option<(ConnectionHandle, &mut Connection)> {
        while let Some(handle) = self.changed.pop_first() {
            self.untouch(handle);
            if self.connections.contains_key(&handle) {
                return self.connections.get_mut(&handle).map(|c| (handle, c));
            }
        }
        None
    }

    /// Makes connections created from now on record a qlog trace, taken with
    /// [`Connection::poll_qlog`].
    pub fn set_qlog(&mut self, enabled: bool) {
        self.qlog = enabled;
    }

    /// The endpoint now sends from a new local address, on a new IP when `new_ip`: every
    /// connection moves there ([`Connection::on_local_address_changed`]).
    pub fn on_local_address_changed(&mut self, now: Instant, new_ip: bool) {
        for handle in self.connection_handles() {
            if let Some(connection) = self.connection_mut(handle) {
                connection.on_local_address_changed(now, new_ip);
            }
        }
    }

    /// Handles of every connection the endpoint holds.
    pub fn connection_handles(&self) -> Vec<ConnectionHandle> {
        let mut handles: Vec<_> = self.connections.keys().copied().collect();
        handles.sort_unstable();
        handles
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.connections.len())
            .field("server", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

/// The TLS configuration a client connection starts with. Offering other versions, the client
/// keeps TLS's secrets: after a switch it derives the negotiated version's keys from them
/// itself.
fn client_tls(
    config: &ClientConfig,
    offers_versions: bool,
) -> (Arc<rustls::ClientConfig>, Option<Arc<SecretCapture>>) {
    if !offers_versions {
        return (config.tls.clone(), None);
    }
    let capture = Arc::new(SecretCapture::new(config.tls.key_log.clone()));
    let mut tls = (*config.tls).clone();
    tls.key_log = capture.clone();
    (Arc::new(tls), Some(capture))
}
