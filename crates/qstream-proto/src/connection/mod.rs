//! A QUIC connection as a sans-IO state machine.
//!
//! Feed it datagrams ([`Connection::handle_datagram`]) and expired timers
//! ([`Connection::handle_timeout`]); ask it for datagrams to send ([`Connection::poll_transmit`]),
//! the next time it needs to be woken ([`Connection::poll_timeout`]) and what happened
//! ([`Connection::poll_event`]). Time is always a parameter. Connections are created and routed by
//! an [`crate::Endpoint`].

mod ack_frequency;
mod application;
mod cids;
mod datagrams;
mod events;
mod handshake;
mod idle;
mod keys;
mod migration;
mod mtu;
mod negotiation;
mod path;
mod path_probe;
mod preferred_address;
mod recovery;
mod recv;
mod send;
mod sent;
mod space;
mod stats;
mod timers;
mod version;
mod zero_rtt;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::Side;
use crate::config::{ACK_DELAY_EXPONENT, ACTIVE_CID_LIMIT, TransportConfig};
use crate::crypto::derived::SecretCapture;
pub use crate::error::TransportError;
use crate::recovery::RttEstimator;
use crate::recovery::pacing::Pacer;
use crate::stateless_reset::StatelessResetToken;
use crate::streams::{StreamFrameRecord, Streams};
use crate::wire::{ConnectionId, SpaceId, TransportParameters, VarInt, Version};
use cids::CidState;
use datagrams::Datagrams;
pub(crate) use events::EndpointEvent;
pub use events::{ConnectionError, EcnCodepoint, Event, SendDatagramError, Transmit};
use idle::IdleTimer;
use keys::OneRttKeys;
use migration::Migration;
use path::Path;
pub use path_probe::{PathProbe, ProbeError};
use space::PacketSpace;
pub use stats::{ConnectionStats, FrameCounts};
pub(crate) use version::{VersionChoice, Versions, compatible};
pub use zero_rtt::EarlyData;
use zero_rtt::ZeroRtt;

/// The smallest datagram a client's Initial travels in, and that every endpoint can receive
/// (RFC 9000 §14.1).
pub(crate) const MIN_INITIAL_SIZE: usize = 1200;

#[derive(Debug)]
enum State {
    Handshaking,
    Established,
    /// We sent CONNECTION_CLOSE; we answer further packets with it until the deadline
    /// (RFC 9000 §10.2.1).
    Closing {
        deadline: Instant,
    },
    /// We received CONNECTION_CLOSE or a stateless reset; we send nothing until the deadline
    /// (RFC 9000 §10.2.2).
    Draining {
        deadline: Instant,
    },
    Drained,
}

/// The CONNECTION_CLOSE this endpoint sends.
#[derive(Clone, Debug)]
enum CloseFrame {
    Transport(TransportError),
    Application { code: VarInt, reason: Bytes },
}

/// A QUIC connection. See the module documentation for how to drive it.
pub struct Connection {
    side: Side,
    version: Version,
    config: Arc<TransportConfig>,
    tls: rustls::quic::Connection,
    state: State,
    /// The network path: address, RTT, congestion control, pacing, ECN, MTU, amplification.
    path: Path,

    /// The connection ID we issued in our first packets (sequence number 0).
    local_cid: ConnectionId,
    /// Connection IDs issued by each side.
    cids: CidState,
    /// Connection IDs asked of the endpoint and not yet handed over: they count as issued, so
    /// several retirements in one datagram do not over-issue (RFC 9000 §5.1.1).
    cids_requested: usize,
    streams: Streams,
    /// Emptied stream-frame lists of acknowledged packets, reused by the next packets sent:
    /// sending then allocates nothing per packet.
    spare_stream_records: Vec<Vec<StreamFrameRecord>>,
    /// The Destination Connection ID of the client's first Initial: it derives Initial keys and
    /// is echoed in original_destination_connection_id.
    original_dcid: ConnectionId,
    /// The Source Connection ID of the peer's first Initial, to check against its transport
    /// parameters (RFC 9000 §7.3).
    peer_initial_scid: Option<ConnectionId>,
    /// The Source Connection ID of the Retry the client followed.
    retry_scid: Option<ConnectionId>,
    /// The qlog trace, when recording.
    qlog: Option<crate::qlog::Qlog>,
    /// The token the client sends in its Initials: from a Retry, or from an earlier
    /// connection's NEW_TOKEN (RFC 9000 §8.1.3).
    initial_token: Bytes,
    local_cid_len: usize,

    spaces: [PacketSpace; 3],
    one_rtt: Option<OneRttKeys>,
    /// 0-RTT keys and what became of early data (RFC 9001 §4.6).
    zero_rtt: ZeroRtt,
    peer_params: Option<TransportParameters>,
    /// How far the handshake got.
    handshake: handshake::Progress,

    pto_count: u32,
    /// How each side asks the other to acknowledge (draft-ietf-quic-ack-frequency), the peer's
    /// max_ack_delay among it, applied to our PTO once the handshake is confirmed.
    ack_frequency: ack_frequency::AckFrequency,
    peer_ack_delay_exponent: u8,

    idle: IdleTimer,
    last_sent_eliciting: Option<Instant>,
    ping_pending: bool,
    /// A PATH_CHALLENGE to answer with PATH_RESPONSE on the path it came on (RFC 9000
    /// §8.2.2).
    path_response: Option<PathResponse>,
    /// The connection ID of the off-path packet being built, when not the one in use (the
    /// probe of a preferred address).
    off_path_dcid: Option<ConnectionId>,
    /// Server: the client's address changes and their validation (RFC 9000 §9.3).
    migration: Migration,
    /// Client: the server's preferred address, its validation and the move there (RFC 9000
    /// §9.6).
    preferred: preferred_address::PreferredPath,
    /// Client: the probe of a new local path (RFC 9000 §9.1).
    local_probe: Option<path_probe::LocalProbe>,
    /// The local address the datagram being handled arrived on, when not the endpoint's own
    /// (set by the endpoint around [`Connection::handle_datagram`]).
    pub(crate) arrived_on: Option<SocketAddr>,
    /// When the first RTT sample was taken: persistent congestion only counts losses after it
    /// (RFC 9002 §7.6.2).
    first_rtt_sample: Option<Instant>,
    /// When the last packet was sent, for the client's anti-deadlock PTO (RFC 9002 §6.2.2.1).
    last_sent: Option<Instant>,

    close: Option<CloseFrame>,
    /// Whether the close frame should be (re)sent.
    close_pending: bool,
    error: Option<ConnectionError>,

    datagrams: Datagrams,
    /// Version negotiation: the original version, a server's pending choice, what a switch
    /// needs (RFC 9368, RFC 9369).
    versions: Versions,
    /// Scratch space of `poll_transmit` for the packets of one datagram.
    built: Vec<send::Built>,

    events: VecDeque<Event>,
    /// What the endpoint must do for this connection: routing changes.
    endpoint_events: VecDeque<EndpointEvent>,
    stats: ConnectionStats,
}

/// A PATH_CHALLENGE received: its data, and the path it came on (the peer's address and our
/// local one).
#[derive(Clone, Copy, Debug)]
struct PathResponse {
    data: [u8; 8],
    remote: SocketAddr,
    local: Option<SocketAddr>,
}

/// The parameters a connection is created with, gathered by the endpoint.
pub(crate) struct ConnectionInit {
    pub(crate) side: Side,
    pub(crate) version: Version,
    pub(crate) config: Arc<TransportConfig>,
    pub(crate) tls: rustls::quic::Connection,
    pub(crate) remote: SocketAddr,
    pub(crate) local_cid: ConnectionId,
    pub(crate) remote_cid: ConnectionId,
    pub(crate) original_dcid: ConnectionId,
    /// The connection ID Initial keys derive from: the original one, or after a Retry the
    /// Retry's Source Connection ID (RFC 9001 §5.2).
    pub(crate) initial_keys_cid: ConnectionId,
    /// Server: the choice of version to make once the ClientHello is complete, when the
    /// server prefers a version compatible with the client's.
    pub(crate) version_choice: Option<version::VersionChoice>,
    /// Client: versions the server may switch the connection to.
    pub(crate) compatible_versions: Vec<Version>,
    /// Client offering other versions: where TLS logs its secrets.
    pub(crate) secret_capture: Option<Arc<SecretCapture>>,
    pub(crate) local_cid_len: usize,
    /// Client: the token for the first Initial, from an earlier connection's NEW_TOKEN.
    pub(crate) initial_token: Bytes,
    /// Server: whether the client's address is already validated (by a token).
    pub(crate) address_validated: bool,
    /// Server: the connection ID of its preferred address (sequence number 1, RFC 9000 §9.6).
    pub(crate) preferred_cid: Option<ConnectionId>,
    pub(crate) now: Instant,
    /// Whether to record a qlog trace.
    pub(crate) qlog: bool,
    /// Where the connection's own random choices (PATH_CHALLENGE data) come from.
    pub(crate) rng_seed: [u8; 32],
}

impl Connection {
    pub(crate) fn new(init: ConnectionInit) -> Self {
        let mut spaces = [PacketSpace::new(), PacketSpace::new(), PacketSpace::new()];
        spaces[SpaceId::Initial as usize].keys =
            crate::crypto::initial_keys(init.version, &init.initial_keys_cid, init.side);
        let max_datagram = MIN_INITIAL_SIZE as u64;
        let mut conn = Self {
            side: init.side,
            version: init.version,
            tls: init.tls,
            state: State::Handshaking,
            path: Path {
                remote: init.remote,
                local: None,
                rtt: RttEstimator::new(init.config.initial_rtt),
                cc: init.config.congestion_control.build(
                    max_datagram,
                    init.now,
                    init.local_cid
                        .iter()
                        .fold(0u64, |seed, &b| seed.rotate_left(8) ^ u64::from(b)),
                ),
                pacer: Pacer::new(max_datagram),
                pacing_until: None,
                bytes_in_flight: 0,
                ecn_sending: init.config.ecn,
                mtu: mtu::MtuDiscovery::new(init.config.max_udp_payload_size),
                reordering: crate::recovery::reordering::Reordering::default(),
                address_validated: init.side == Side::Client || init.address_validated,
                amplification_received: 0,
                amplification_sent: 0,
            },
            local_cid: init.local_cid,
            cids: CidState::new(
                init.local_cid,
                init.remote_cid,
                None,
                u64::from(ACTIVE_CID_LIMIT),
            ),
            cids_requested: 0,
            streams: Streams::new(init.side, init.config.streams.clone()),
            spare_stream_records: Vec::new(),
            original_dcid: init.original_dcid,
            peer_initial_scid: (init.side == Side::Server).then_some(init.remote_cid),
            retry_scid: None,
            qlog: init
                .qlog
                .then(|| crate::qlog::Qlog::new(init.now, init.side, &init.original_dcid)),
            initial_token: init.initial_token,
            local_cid_len: init.local_cid_len,
            spaces,
            one_rtt: None,
            zero_rtt: ZeroRtt::default(),
            peer_params: None,
            handshake: handshake::Progress::default(),
            pto_count: 0,
            built: Vec::with_capacity(3),
            ack_frequency: ack_frequency::AckFrequency::new(
                init.config.ack_frequency,
                init.config.max_ack_delay,
                init.config.ack_eliciting_threshold,
            ),
            peer_ack_delay_exponent: 3,
            idle: IdleTimer::new(init.config.max_idle_timeout),
            last_sent_eliciting: None,
            ping_pending: false,
            path_response: None,
            off_path_dcid: None,
            migration: Migration::new(init.rng_seed),
            preferred: Default::default(),
            local_probe: None,
            arrived_on: None,
            first_rtt_sample: None,
            last_sent: None,
            close: None,
            close_pending: false,
            error: None,
            datagrams: Datagrams::default(),
            versions: Versions {
                original_version: init.version,
                version_choice: init.version_choice,
                original_initial_keys: None,
                initial_keys_cid: init.initial_keys_cid,
                tls_version: init.version,
                compatible_versions: init.compatible_versions,
                secret_capture: init.secret_capture,
            },
            events: VecDeque::new(),
            endpoint_events: VecDeque::new(),
            stats: ConnectionStats::default(),
            config: init.config,
        };
        if let Some(cid) = init.preferred_cid {
            conn.cids.issue_preferred(cid);
        }
        conn.reset_idle_timer(init.now);
        if conn.side == Side::Client {
            // The ClientHello goes out in the first Initial.
            conn.drive_tls(init.now);
        }
        conn
    }

    /// Which side of the connection this endpoint is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The largest UDP payload this connection sends: 1200 bytes until path MTU discovery
    /// (RFC 9000 §14.3) validated a larger size, at most both sides' max_udp_payload_size.
    pub fn path_mtu(&self) -> u16 {
        self.path.mtu.current()
    }

    /// The QUIC version in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.path.remote
    }

    /// The connection ID this endpoint issued at the start of the connection.
    pub fn local_cid(&self) -> ConnectionId {
        self.local_cid
    }

    /// Whether the handshake completed.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
            || (self.error.is_none() && self.one_rtt.is_some() && !self.tls.is_handshaking())
    }

    /// Whether the handshake is confirmed (RFC 9001 §4.1.2): the server completed it, or the
    /// client received HANDSHAKE_DONE.
    pub fn is_handshake_confirmed(&self) -> bool {
        self.handshake.confirmed
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<&ConnectionError> {
        self.error.as_ref()
    }

    /// Whether the connection ended and its closing or draining period is over: the endpoint
    /// may forget it.
    pub fn is_drained(&self) -> bool {
        matches!(self.state, State::Drained)
    }

    /// Whether the connection has ended (closing, draining or drained).
    pub fn is_closed(&self) -> bool {
        self.error.is_some()
    }

    /// Whether what waits to be sent holds up the peer: stream credit it has used up, or, while
    /// we wait (or are about to wait) for stream credit, an acknowledgment that lets it release
    /// streams (docs/design.md rule 1). A driver that lets the application answer before it
    /// sends, so that the answers share packets with ACKs and credit, sends at once instead
    /// when this holds.
    pub fn has_urgent_transmit(&self) -> bool {
        self.streams.credit_awaited()
            || (self.streams.needs_credit() && self.spaces[SpaceId::Data as usize].ack_immediately)
    }

    /// Whether an acknowledgment that reports a gap (an out-of-order packet, RFC 9000 §13.2.1)
    /// is due: the peer detects its loss from it, so it is worth sending before the rest of a
    /// receive batch is handled.
    pub fn has_gap_report(&self) -> bool {
        let space = &self.spaces[SpaceId::Data as usize];
        space.ack_reports_gap && space.ack_immediately
    }

    /// Whether stream data (or a FIN, or data to send again) is queued that flow control lets
    /// go out; congestion control and pacing may still hold it back. After the application
    /// had its turn with what arrived, this says whether it answered.
    pub fn has_stream_data_to_send(&self) -> bool {
        self.streams.has_data_to_send()
    }

    /// The negotiated ALPN protocol, once the handshake has it.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// Whether the TLS handshake resumed an earlier session with a ticket (no certificate
    /// exchanged); `None` until the handshake completes.
    pub fn handshake_resumed(&self) -> Option<bool> {
        self.tls
            .handshake_kind()
            .map(|kind| kind == rustls::HandshakeKind::Resumed)
    }

    /// What became of early data (RFC 9001 §4.6): a client knows whether the server took it
    /// once the handshake completes.
    pub fn early_data(&self) -> EarlyData {
        self.zero_rtt.status
    }

    /// The peer's certificate chain, once the handshake has it.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.tls.peer_certificates()
    }

    /// The peer's transport parameters, once received.
    pub fn peer_transport_parameters(&self) -> Option<&TransportParameters> {
        self.peer_params.as_ref()
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.path.rtt
    }

    /// The congestion window in bytes.
    pub fn congestion_window(&self) -> u64 {
        self.path.cc.window()
    }

    /// Whether packets go out marked ECT(0): ECN is enabled and the path passed validation so
    /// far (RFC 9000 §13.4.2).
    pub fn ecn_sending(&self) -> bool {
        self.path.ecn_sending
    }

    /// Bytes sent and not yet acknowledged or declared lost.
    pub fn bytes_in_flight(&self) -> u64 {
        self.path.bytes_in_flight
    }

    /// Traffic counters.
    pub fn stats(&self) -> ConnectionStats {
        let mut stats = self.stats;
        stats.key_updates = self.one_rtt.as_ref().map_or(0, |k| k.updates);
        stats
    }

    /// Whether [`Self::poll_event`] has an event for the application.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.streams.has_events()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events
            .pop_front()
            .or_else(|| self.streams.poll_event().map(Event::Stream))
    }

    /// The next qlog record (JSON-SEQ: a record separator, one JSON object, a newline) when
    /// the endpoint records qlog traces ([`crate::Endpoint::set_qlog`]). The first record is the
    /// file header. Stream state changes are observed when the queue runs empty, so take
    /// every record after each batch of input and output. Records queue until taken.
    pub fn poll_qlog(&mut self, now: Instant) -> Option<String> {
        let qlog = self.qlog.as_mut()?;
        if let Some(record) = qlog.pop() {
            return Some(record);
        }
        qlog.stream_states(now, &self.streams.snapshot(now));
        qlog.pop()
    }

    /// The Destination Connection ID of the client's first Initial: both ends know it, so it
    /// names the connection in logs and qlog file names.
    pub fn original_destination_cid(&self) -> ConnectionId {
        self.original_dcid
    }

    /// Closes the connection on behalf of the application with `code` and `reason`, which the
    /// peer sees (RFC 9000 §10.2). The connection then sends CONNECTION_CLOSE and waits out the
    /// closing period.
    pub fn close(&mut self, now: Instant, code: VarInt, reason: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.enter_closing(
            now,
            CloseFrame::Application {
                code,
                reason: Bytes::copy_from_slice(reason),
            },
            ConnectionError::LocallyClosed,
        );
    }

    /// Sends a PING, eliciting an acknowledgment.
    pub fn ping(&mut self) {
        self.ping_pending = true;
    }

    /// Starts a key update now, if one may start (RFC 9001 §6.1: the handshake is confirmed and
    /// a packet under the current keys was acknowledged). Returns whether it started.
    pub fn initiate_key_update(&mut self) -> bool {
        let next_pn = self.spaces[SpaceId::Data as usize].next_pn;
        match &mut self.one_rtt {
            Some(keys) if self.handshake.confirmed && keys.phase_acked => {
                keys.update(next_pn, u64::MAX);
                self.stats.key_updates_initiated += 1;
                true
            }
            _ => false,
        }
    }

    /// Enters the closing period after sending `frame` (RFC 9000 §10.2.1).
    fn enter_closing(&mut self, now: Instant, frame: CloseFrame, error: ConnectionError) {
        self.close = Some(frame);
        self.close_pending = true;
        self.events.push_back(Event::Closed(error.clone()));
        self.error = Some(error);
        self.state = State::Closing {
            deadline: now + 3 * self.pto_duration(),
        };
    }

    /// Closes the connection because of a protocol error this endpoint detected.
    pub(crate) fn close_with_error(&mut self, now: Instant, error: TransportError) {
        if self.error.is_some() {
            return;
        }
        self.enter_closing(
            now,
            CloseFrame::Transport(error.clone()),
            ConnectionError::TransportError(error),
        );
    }

    /// Enters the draining period (RFC 9000 §10.2.2): the peer closed, or reset the connection.
    fn enter_draining(&mut self, now: Instant, error: ConnectionError) {
        if self.error.is_none() {
            self.events.push_back(Event::Closed(error.clone()));
            self.error = Some(error);
        }
        self.close_pending = false;
        self.state = State::Draining {
            deadline: now + 3 * self.pto_duration(),
        };
    }

    /// The stateless reset token of the peer's connection ID in use, which a datagram that
    /// routes nowhere is checked against (RFC9000-198).
    pub(crate) fn remote_reset_token(&self) -> Option<StatelessResetToken> {
        self.cids.remote_reset_token()
    }

    /// Whether `datagram` is a stateless reset for this connection (RFC 9000 §10.3.1); if so the
    /// connection drains. Checked for datagrams routed here that did not decrypt.
    fn check_stateless_reset(&mut self, now: Instant, datagram: &[u8]) -> bool {
        let matched = self
            .remote_reset_token()
            .is_some_and(|token| token.matches_datagram(datagram));
        if matched {
            self.on_stateless_reset(now);
        }
        matched
    }

    /// The endpoint received a stateless reset carrying our token (RFC 9000 §10.3.1): the
    /// connection drains at once, sending nothing (RFC9000-200).
    pub(crate) fn on_stateless_reset(&mut self, now: Instant) {
        self.enter_draining(now, ConnectionError::Reset);
    }

    /// Asks the endpoint for connection IDs to issue to the peer: as many as the peer's
    /// active_connection_id_limit allows (RFC 9000 §5.1.1), at most our own cap. None with
    /// zero-length IDs (RFC9000-371).
    fn request_cids(&mut self) {
        if self.local_cid.is_empty() {
            return;
        }
        let peer_limit = self
            .peer_params
            .as_ref()
            .map_or(2, |p| p.active_connection_id_limit.into_inner());
        let wanted = peer_limit.min(u64::from(ACTIVE_CID_LIMIT)) as usize;
        let missing = wanted.saturating_sub(self.cids.local_count() + self.cids_requested);
        if missing > 0 {
            self.cids_requested += missing;
            self.endpoint_events
                .push_back(EndpointEvent::NeedCids(missing));
        }
    }

    /// The next request for the endpoint.
    pub(crate) fn poll_endpoint_event(&mut self) -> Option<EndpointEvent> {
        self.endpoint_events.pop_front()
    }

    /// Connection IDs the endpoint allocated and routes here, with their reset tokens; they are
    /// sent to the peer in NEW_CONNECTION_ID frames.
    pub(crate) fn issue_cids(&mut self, ids: Vec<(ConnectionId, StatelessResetToken)>) {
        self.cids_requested = self.cids_requested.saturating_sub(ids.len());
        let issued = self.cids.issue(ids);
        self.spaces[SpaceId::Data as usize]
            .pending
            .new_cids
            .extend(issued);
    }

    /// Queues a NEW_TOKEN frame carrying `token` (RFC 9000 §19.7).
    pub(crate) fn send_new_token(&mut self, token: Bytes) {
        self.spaces[SpaceId::Data as usize].pending.new_token = Some(token);
    }

    /// How many of our connection IDs the peer may use.
    pub fn active_local_cids(&self) -> usize {
        self.cids.local_count()
    }

    /// How many of the peer's connection IDs we hold.
    pub fn active_remote_cids(&self) -> usize {
        self.cids.remote_count()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.side)
            .field("state", &self.state)
            .field("local_cid", &self.local_cid)
            .field("remote_cid", &self.cids.remote())
            .finish_non_exhaustive()
    }
}
