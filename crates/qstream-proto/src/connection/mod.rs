//! A QUIC connection as a sans-IO state machine.
//!
//! Feed it datagrams ([`Connection::handle_datagram`]) and expired timers
//! ([`Connection::handle_timeout`]); ask it for datagrams to send ([`Connection::poll_transmit`]),
//! the next time it needs to be woken ([`Connection::poll_timeout`]) and what happened
//! ([`Connection::poll_event`]). Time is always a parameter. Connections are created and routed by
//! an [`crate::Endpoint`].

mod ack_frequency;
mod cids;
mod keys;
mod mtu;
mod recovery;
mod recv;
mod send;
mod sent;
mod space;
mod version;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{ACK_DELAY_EXPONENT, ACTIVE_CID_LIMIT, TransportConfig};
use crate::crypto::derived::{DerivedSecrets, SecretCapture};
pub use crate::error::TransportError;
use crate::qlog::Initiator;
use crate::recovery::pacing::Pacer;
use crate::recovery::{Controller, RttEstimator};
use crate::stateless_reset::StatelessResetToken;
use crate::streams::{
    OpenError, OpenTicket, ReadOutcome, StreamError, StreamEvent, StreamFrameRecord,
    StreamSnapshot, Streams, StreamsSnapshot,
};
use crate::wire::{
    ConnectionId, Dir, FrameType, SpaceId, StreamId, TransportParameters, VarInt, Version,
    VersionInformation,
};
use crate::{Side, TransportErrorCode};
use cids::CidState;
use keys::{OneRttKeys, UpdateSecrets};
use space::PacketSpace;
pub(crate) use version::{VersionChoice, compatible};

/// Key log labels of the handshake traffic secrets (client, server).
const HANDSHAKE_SECRETS: (&str, &str) = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
);
/// Key log labels of the first application traffic secrets (client, server).
const TRAFFIC_SECRETS: (&str, &str) = ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0");

/// The smallest datagram a client's Initial travels in, and that every endpoint can receive
/// (RFC 9000 §14.1).
pub(crate) const MIN_INITIAL_SIZE: usize = 1200;

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// This endpoint found a protocol error (or TLS failed) and closed the connection with it.
    TransportError(TransportError),
    /// The peer closed the connection with a transport error (CONNECTION_CLOSE type 0x1c).
    ConnectionClosed(TransportError),
    /// The peer's application closed the connection (CONNECTION_CLOSE type 0x1d).
    ApplicationClosed {
        /// The application's code.
        code: VarInt,
        /// The application's reason.
        reason: String,
    },
    /// This endpoint's application closed the connection.
    LocallyClosed,
    /// Nothing was heard from the peer for the idle timeout (RFC 9000 §10.1).
    TimedOut,
    /// The peer reset the connection with a stateless reset (RFC 9000 §10.3).
    Reset,
    /// The server speaks none of the versions this client offered (RFC 9000 §6).
    VersionMismatch,
}

impl ConnectionError {
    /// The TLS alert behind the error, when TLS failed on either side.
    pub fn tls_alert(&self) -> Option<u8> {
        match self {
            Self::TransportError(e) | Self::ConnectionClosed(e) => e.code.tls_alert(),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TransportError(e) => write!(f, "closed by us: {e}"),
            Self::ConnectionClosed(e) => write!(f, "closed by peer: {e}"),
            Self::ApplicationClosed { code, reason } => {
                write!(f, "closed by peer application: code {code}, {reason:?}")
            }
            Self::LocallyClosed => f.write_str("closed by this application"),
            Self::TimedOut => f.write_str("timed out: nothing heard from the peer"),
            Self::Reset => f.write_str("reset by the peer (stateless reset)"),
            Self::VersionMismatch => f.write_str("the peer speaks none of our QUIC versions"),
        }
    }
}

impl std::error::Error for ConnectionError {}

/// Something that happened on a connection, for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: application data can flow both ways.
    Connected,
    /// The connection ended. After this, only [`Connection::is_drained`] matters.
    Closed(ConnectionError),
    /// A DATAGRAM frame arrived (RFC 9221); read it with [`Connection::recv_datagram`].
    DatagramReceived,
    /// Something happened on a stream.
    Stream(StreamEvent),
}

/// The ECN codepoint of a datagram's IP header (RFC 3168).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcnCodepoint {
    /// ECT(0): ECN-capable transport.
    Ect0,
    /// ECT(1): ECN-capable transport.
    Ect1,
    /// CE: congestion experienced, set by a router instead of dropping.
    Ce,
}

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length in the caller's buffer.
    pub size: usize,
    /// The ECN codepoint to send it with, when ECN is in use.
    pub ecn: Option<EcnCodepoint>,
    /// A probe timeout's datagram (RFC 9002 §6.2.4): send it with a system call of its own,
    /// not batched with others (GSO), so that the loss of one batch cannot take every probe.
    pub probe: bool,
}

/// Why a DATAGRAM could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendDatagramError {
    /// The peer did not advertise max_datagram_frame_size (RFC 9221 §3, RFC9221-002).
    UnsupportedByPeer,
    /// The datagram is larger than the peer accepts or than fits in a packet; `max` is the
    /// largest that would be sent.
    TooLarge {
        /// The largest datagram payload that can be sent.
        max: usize,
    },
    /// The connection is not established or has closed.
    NotConnected,
}

impl fmt::Display for SendDatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedByPeer => f.write_str("the peer does not accept DATAGRAM frames"),
            Self::TooLarge { max } => write!(f, "datagram too large: at most {max} bytes"),
            Self::NotConnected => f.write_str("the connection is not established"),
        }
    }
}

impl std::error::Error for SendDatagramError {}

/// Counters of a connection's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent in UDP payloads.
    pub bytes_sent: u64,
    /// Datagrams received for this connection.
    pub datagrams_received: u64,
    /// Bytes received in UDP payloads.
    pub bytes_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets received and successfully decrypted.
    pub packets_received: u64,
    /// Of those, packets that elicit no acknowledgment: ACK-only (with PADDING), or carrying
    /// CONNECTION_CLOSE.
    pub non_eliciting_packets_received: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Bytes of the packets declared lost: what had to be sent again, headers included.
    pub bytes_lost: u64,
    /// Packets received that could not be decrypted or parsed, and were dropped.
    pub packets_dropped: u64,
    /// Probe timeouts that fired.
    pub pto_count: u64,
    /// Key updates, initiated by either side.
    pub key_updates: u64,
    /// Key updates this endpoint initiated.
    pub key_updates_initiated: u64,
    /// Acknowledgments that reported new ECN-CE marks: congestion signalled without loss.
    pub ecn_congestion_events: u64,
    /// Frames sent, by type.
    pub frames_sent: FrameCounts,
    /// Frames received in packets that decrypted, by type.
    pub frames_received: FrameCounts,
}

/// How many frames of each type (RFC 9000 §19, DATAGRAM, ACK_FREQUENCY and IMMEDIATE_ACK) went
/// one way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    /// Indexed by frame type for 0x00..=0x1f; DATAGRAM at 0x20, ACK_FREQUENCY at 0x21.
    counts: [u64; 34],
}

impl Default for FrameCounts {
    fn default() -> Self {
        Self { counts: [0; 34] }
    }
}

impl FrameCounts {
    fn index(ty: FrameType) -> Option<usize> {
        match ty {
            FrameType(0x00..=0x1f) => Some(ty.0 as usize),
            FrameType::DATAGRAM | FrameType::DATAGRAM_LEN => Some(0x20),
            FrameType::ACK_FREQUENCY => Some(0x21),
            _ => None,
        }
    }

    pub(crate) fn count(&mut self, ty: FrameType) {
        if let Some(i) = Self::index(ty) {
            self.counts[i] += 1;
        }
    }

    /// How many frames of `ty` were counted; every STREAM type (0x08..=0x0f) is counted
    /// under its own value, as are both ACK, MAX_STREAMS, STREAMS_BLOCKED and CONNECTION_CLOSE
    /// types.
    pub fn get(&self, ty: FrameType) -> u64 {
        Self::index(ty).map_or(0, |i| self.counts[i])
    }

    /// STREAM frames of every type.
    pub fn stream(&self) -> u64 {
        self.counts[0x08..=0x0f].iter().sum()
    }
}

impl fmt::Debug for FrameCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (i, &n) in self.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let ty = match i {
                0x20 => FrameType::DATAGRAM_LEN,
                0x21 => FrameType::ACK_FREQUENCY,
                _ => FrameType(i as u64),
            };
            map.entry(&format_args!("{ty:?}"), &n);
        }
        map.finish()
    }
}

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
    remote: SocketAddr,

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
    peer_params: Option<TransportParameters>,
    handshake_confirmed: bool,
    handshake_done_pending: bool,
    /// Client: whether a Handshake packet was sent, which discards Initial keys (RFC 9001 §4.9.1).
    sent_handshake: bool,
    /// Client: whether any packet from the server was processed (Retry and VN then are ignored).
    heard_from_peer: bool,
    /// Whether the handshake was sped up once already (RFC 9002 §6.2.3).
    handshake_sped_up: bool,

    rtt: RttEstimator,
    pto_count: u32,
    cc: Box<dyn Controller>,
    pacer: Pacer,
    /// Whether packets are sent with ECT(0); cleared when ECN validation fails (RFC 9000
    /// §13.4.2).
    ecn_sending: bool,
    /// When the pacer lets the next packet go, while it holds one back.
    pacing_until: Option<Instant>,
    bytes_in_flight: u64,
    /// How each side asks the other to acknowledge (draft-ietf-quic-ack-frequency), the peer's
    /// max_ack_delay among it, applied to our PTO once the handshake is confirmed.
    ack_frequency: ack_frequency::AckFrequency,
    peer_ack_delay_exponent: u8,

    /// Server: whether the client's address is validated; until then the anti-amplification
    /// limit applies (RFC 9000 §8.1).
    address_validated: bool,
    /// Bytes received and sent while the limit applies.
    amplification_received: u64,
    amplification_sent: u64,

    idle_timeout: Option<Duration>,
    idle_deadline: Option<Instant>,
    /// Whether an ack-eliciting packet was sent since the last packet was received (RFC 9000
    /// §10.1: only the first one restarts the idle timer).
    sent_eliciting_since_receive: bool,
    last_sent_eliciting: Option<Instant>,
    ping_pending: bool,
    /// A PATH_CHALLENGE's data to echo in PATH_RESPONSE (RFC 9000 §8.2.2).
    path_response: Option<[u8; 8]>,
    /// When the first RTT sample was taken: persistent congestion only counts losses after it
    /// (RFC 9002 §7.6.2).
    first_rtt_sample: Option<Instant>,
    /// When the last packet was sent, for the client's anti-deadlock PTO (RFC 9002 §6.2.2.1).
    last_sent: Option<Instant>,

    close: Option<CloseFrame>,
    /// Whether the close frame should be (re)sent.
    close_pending: bool,
    error: Option<ConnectionError>,

    datagrams_in: VecDeque<Bytes>,
    datagrams_out: VecDeque<Bytes>,
    peer_max_datagram: Option<u64>,
    /// The version of the client's first Initial (RFC 9368 "Original Version").
    original_version: Version,
    /// Server: the version is still to be chosen from the client's offer (RFC 9368 §2.3).
    version_choice: Option<version::VersionChoice>,
    /// Server, after switching versions: Initial keys of the original version, to read the
    /// client's Initials until it switched too (RFC9369-011).
    original_initial_keys: Option<rustls::quic::Keys>,
    /// The connection ID Initial keys derive from.
    initial_keys_cid: ConnectionId,
    /// The version TLS's QUIC key schedule was created for.
    tls_version: Version,
    /// Client: versions the server may switch this connection to (RFC 9368 §2.3).
    compatible_versions: Vec<Version>,
    /// Client offering other versions: TLS secrets as logged, to derive keys after a switch.
    secret_capture: Option<Arc<SecretCapture>>,
    /// Path MTU discovery (RFC 9000 §14.3).
    mtu: mtu::MtuDiscovery,
    /// Scratch space of `poll_transmit` for the packets of one datagram.
    built: Vec<send::Built>,

    events: VecDeque<Event>,
    /// What the endpoint must do for this connection: routing changes.
    endpoint_events: VecDeque<EndpointEvent>,
    stats: ConnectionStats,
}

/// A request from a connection to its endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EndpointEvent {
    /// Allocate this many connection IDs, route them here, and hand them over with
    /// [`Connection::issue_cids`].
    NeedCids(usize),
    /// This connection ID stopped routing here.
    RetiredCid(ConnectionId),
    /// Server: make a token for NEW_TOKEN and hand it over with [`Connection::send_new_token`].
    NeedToken,
    /// Client: the server sent this token for later connections.
    NewToken(Bytes),
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
    pub(crate) now: Instant,
    /// Whether to record a qlog trace.
    pub(crate) qlog: bool,
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
            remote: init.remote,
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
            peer_params: None,
            handshake_confirmed: false,
            handshake_done_pending: false,
            sent_handshake: false,
            heard_from_peer: false,
            handshake_sped_up: false,
            rtt: RttEstimator::new(init.config.initial_rtt),
            pto_count: 0,
            cc: init.config.congestion_control.build(
                max_datagram,
                init.now,
                init.local_cid
                    .iter()
                    .fold(0u64, |seed, &b| seed.rotate_left(8) ^ u64::from(b)),
            ),
            mtu: mtu::MtuDiscovery::new(init.config.max_udp_payload_size),
            built: Vec::with_capacity(3),
            pacer: Pacer::new(max_datagram),
            ecn_sending: init.config.ecn,
            pacing_until: None,
            bytes_in_flight: 0,
            ack_frequency: ack_frequency::AckFrequency::new(
                init.config.ack_frequency,
                init.config.max_ack_delay,
                init.config.ack_eliciting_threshold,
            ),
            peer_ack_delay_exponent: 3,
            address_validated: init.side == Side::Client || init.address_validated,
            amplification_received: 0,
            amplification_sent: 0,
            idle_timeout: init.config.max_idle_timeout,
            idle_deadline: None,
            sent_eliciting_since_receive: false,
            last_sent_eliciting: None,
            ping_pending: false,
            path_response: None,
            first_rtt_sample: None,
            last_sent: None,
            close: None,
            close_pending: false,
            error: None,
            datagrams_in: VecDeque::new(),
            datagrams_out: VecDeque::new(),
            peer_max_datagram: None,
            original_version: init.version,
            version_choice: init.version_choice,
            original_initial_keys: None,
            initial_keys_cid: init.initial_keys_cid,
            tls_version: init.version,
            compatible_versions: init.compatible_versions,
            secret_capture: init.secret_capture,
            events: VecDeque::new(),
            endpoint_events: VecDeque::new(),
            stats: ConnectionStats::default(),
            config: init.config,
        };
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
        self.mtu.current()
    }

    /// The QUIC version in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote
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
        self.handshake_confirmed
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
        &self.rtt
    }

    /// The congestion window in bytes.
    pub fn congestion_window(&self) -> u64 {
        self.cc.window()
    }

    /// Whether packets go out marked ECT(0): ECN is enabled and the path passed validation so
    /// far (RFC 9000 §13.4.2).
    pub fn ecn_sending(&self) -> bool {
        self.ecn_sending
    }

    /// Bytes sent and not yet acknowledged or declared lost.
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// Traffic counters.
    pub fn stats(&self) -> ConnectionStats {
        let mut stats = self.stats;
        stats.key_updates = self.one_rtt.as_ref().map_or(0, |k| k.updates);
        stats
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events
            .pop_front()
            .or_else(|| self.streams.poll_event().map(Event::Stream))
    }

    /// Opens a stream now, or fails at once with the peer's limit when there is no credit
    /// (then the peer is told we are blocked). See [`Streams::open`].
    pub fn open(&mut self, now: Instant, dir: Dir) -> Result<StreamId, OpenError> {
        self.streams.open(now, dir)
    }

    /// Opens a stream now if credit allows, or queues the request, granted first-come
    /// first-served with [`StreamEvent::OpenGranted`]. See [`Streams::request_open`].
    pub fn request_open(&mut self, now: Instant, dir: Dir) -> Result<StreamId, OpenTicket> {
        self.streams.request_open(now, dir)
    }

    /// Withdraws a queued open request without consuming a stream ID.
    pub fn cancel_open(&mut self, ticket: OpenTicket) -> bool {
        self.streams.cancel_open(ticket)
    }

    /// The next stream the peer opened. A peer's stream becomes visible when its first frame
    /// arrives, not when the peer opens it locally.
    pub fn accept(&mut self, dir: Dir) -> Option<StreamId> {
        self.streams.accept(dir)
    }

    /// Writes to a stream's send buffer; returns how much was taken.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        self.streams.write(id, data)
    }

    /// Finishes a stream's send half (quic-go Close).
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        self.streams.finish(id)
    }

    /// Resets a stream's send half with `code` (quic-go CancelWrite).
    pub fn reset_stream(&mut self, id: StreamId, code: VarInt) -> Result<(), StreamError> {
        self.streams.reset(id, code)
    }

    /// Reads up to `max` bytes from a stream.
    pub fn read(&mut self, id: StreamId, max: usize) -> Result<ReadOutcome, StreamError> {
        self.streams.read(id, max)
    }

    /// Whether [`Self::read`] of `id` would return data now. See [`Streams::has_data`].
    pub fn has_data(&self, id: StreamId) -> bool {
        self.streams.has_data(id)
    }

    /// Stops reading a stream with `code` (quic-go CancelRead).
    pub fn stop(&mut self, id: StreamId, code: VarInt) -> Result<(), StreamError> {
        self.streams.stop(id, code)
    }

    /// What dropping a stream handle does: resets an unfinished send half, stops an unread
    /// receive half. See [`Streams::release`].
    pub fn release(&mut self, id: StreamId) {
        self.streams.release(id)
    }

    /// What dropping a stream's send handle does: resets it if unfinished.
    pub fn release_send(&mut self, id: StreamId) {
        self.streams.release_send(id)
    }

    /// What dropping a stream's receive handle does: stops it if not read to the end.
    pub fn release_recv(&mut self, id: StreamId) {
        self.streams.release_recv(id)
    }

    /// Sets a stream's scheduling priority (higher first).
    pub fn set_priority(&mut self, id: StreamId, priority: i32) -> Result<(), StreamError> {
        self.streams.set_priority(id, priority)
    }

    /// Every stream's state and the stream credit in both directions, now.
    pub fn streams_snapshot(&self, now: Instant) -> StreamsSnapshot {
        self.streams.snapshot(now)
    }

    /// The state of one stream, as [`Self::streams_snapshot`] reports it, without looking at
    /// the others; `None` once it is released.
    pub fn stream_snapshot(&self, id: StreamId, now: Instant) -> Option<StreamSnapshot> {
        self.streams.stream(id, now)
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
            Some(keys) if self.handshake_confirmed && keys.phase_acked => {
                keys.update(next_pn, u64::MAX);
                self.stats.key_updates_initiated += 1;
                true
            }
            _ => false,
        }
    }

    /// Queues an unreliable datagram (RFC 9221). The oldest queued datagram is dropped when
    /// the send queue is full.
    pub fn send_datagram(&mut self, data: Bytes) -> Result<(), SendDatagramError> {
        if self.error.is_some() || !self.is_established() {
            return Err(SendDatagramError::NotConnected);
        }
        let max = self.max_datagram_size()?;
        if data.len() > max {
            return Err(SendDatagramError::TooLarge { max });
        }
        if self.datagrams_out.len() >= self.config.datagram_send_buffer {
            self.datagrams_out.pop_front();
        }
        self.datagrams_out.push_back(data);
        Ok(())
    }

    /// The largest datagram payload [`Self::send_datagram`] accepts now.
    pub fn max_datagram_size(&self) -> Result<usize, SendDatagramError> {
        let peer = self
            .peer_max_datagram
            .ok_or(SendDatagramError::UnsupportedByPeer)?;
        // A 1-RTT packet: first byte, connection ID, up to 4 bytes of packet number, the tag,
        // then the frame's type and length.
        let overhead = 1 + self.cids.remote().len() + 4 + crate::crypto::TAG_LEN + 1 + 2;
        let fits = usize::from(self.mtu.current()) - overhead;
        let frame_max = (peer as usize).saturating_sub(3);
        Ok(fits.min(frame_max))
    }

    /// The next received datagram.
    pub fn recv_datagram(&mut self) -> Option<Bytes> {
        self.datagrams_in.pop_front()
    }

    /// The earliest time [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closing { deadline } | State::Draining { deadline } => return Some(deadline),
            State::Drained => return None,
            _ => {}
        }
        let ack = self.spaces.iter().filter_map(|s| {
            if s.unacked_eliciting > 0 {
                s.ack_deadline
            } else {
                None
            }
        });
        let key_discard = self.one_rtt.as_ref().and_then(|k| k.prev_discard_at);
        let keep_alive = self.keep_alive_deadline();
        [
            self.loss_detection_timer(),
            self.idle_deadline,
            key_discard,
            keep_alive,
            // RFC 9002 §7.7: the pacer's next release.
            self.pacing_until,
        ]
        .into_iter()
        .flatten()
        .chain(ack)
        .min()
    }

    /// Handles every timer that expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closing { deadline } | State::Draining { deadline } => {
                if now >= deadline {
                    self.state = State::Drained;
                }
                return;
            }
            State::Drained => return,
            _ => {}
        }
        if self.idle_deadline.is_some_and(|d| now >= d) {
            // RFC 9000 §10.1: the connection is silently closed and its state discarded.
            self.error = Some(ConnectionError::TimedOut);
            self.events
                .push_back(Event::Closed(ConnectionError::TimedOut));
            self.state = State::Drained;
            return;
        }
        if self.pacing_until.is_some_and(|t| now >= t) {
            self.pacing_until = None;
        }
        if let Some(keys) = &mut self.one_rtt {
            if keys.prev_discard_at.is_some_and(|d| now >= d) {
                keys.discard_previous();
            }
        }
        if self.keep_alive_deadline().is_some_and(|d| now >= d) {
            self.ping_pending = true;
        }
        if self.loss_detection_timer().is_some_and(|t| now >= t) {
            self.on_loss_detection_timeout(now);
        }
    }

    fn keep_alive_deadline(&self) -> Option<Instant> {
        let interval = self.config.keep_alive_interval?;
        if !self.is_established() || self.ping_pending {
            return None;
        }
        Some(self.last_sent_eliciting? + interval)
    }

    /// How long an acknowledgment of a lone 1-RTT packet is held back: a quarter of the RTT,
    /// at least the timer granularity and at most our max_ack_delay (or what the peer asked
    /// for instead with ACK_FREQUENCY). RFC 9000 §13.2.1 bounds
    /// the delay by max_ack_delay and lets a receiver acknowledge sooner. On a path of a few
    /// hundred microseconds, holding a lone packet's ACK for the whole 25 ms stalls a sender
    /// whose window has one packet left for a hundred round trips.
    fn ack_delay(&self) -> Duration {
        (self.rtt.smoothed() / 4)
            .max(crate::recovery::GRANULARITY)
            .min(self.ack_frequency.policy().max_ack_delay)
    }

    fn pto_duration(&self) -> Duration {
        self.rtt.pto_base()
    }

    /// Restarts the idle timer (RFC 9000 §10.1): the effective timeout is the smaller of both
    /// sides' (zero meaning none), and never less than three PTOs.
    fn reset_idle_timer(&mut self, now: Instant) {
        let peer = self
            .peer_params
            .as_ref()
            .map(|p| p.max_idle_timeout.into_inner())
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        let timeout = match (self.idle_timeout, peer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.idle_deadline = timeout.map(|t| now + t.max(3 * self.pto_duration()));
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

    /// Passes received CRYPTO data to TLS, queues what TLS writes, installs new keys, and checks
    /// the handshake's progress.
    fn drive_tls(&mut self, now: Instant) {
        let mut level = if self.one_rtt.is_some() {
            SpaceId::Data
        } else if self.spaces[SpaceId::Handshake as usize].keys.is_some() {
            SpaceId::Handshake
        } else {
            SpaceId::Initial
        };
        loop {
            let mut out = Vec::new();
            let change = self.tls.write_hs(&mut out);
            if !out.is_empty() {
                self.spaces[level as usize].crypto_send.write(&out);
            }
            match change {
                None => break,
                Some(rustls::quic::KeyChange::Handshake { keys }) => {
                    let keys = match self.derived_secrets(HANDSHAKE_SECRETS) {
                        Ok(None) => keys,
                        Ok(Some(derived)) => derived.keys(),
                        Err(error) => return self.close_with_error(now, error),
                    };
                    self.spaces[SpaceId::Handshake as usize].keys = Some(keys);
                    level = SpaceId::Handshake;
                }
                Some(rustls::quic::KeyChange::OneRtt { keys, next }) => {
                    let (keys, next) = match self.derived_secrets(TRAFFIC_SECRETS) {
                        Ok(None) => (keys, UpdateSecrets::Tls(next)),
                        Ok(Some(mut derived)) => {
                            let keys = derived.keys();
                            derived.update();
                            (keys, UpdateSecrets::Derived(derived))
                        }
                        Err(error) => return self.close_with_error(now, error),
                    };
                    let next_pn = self.spaces[SpaceId::Data as usize].next_pn;
                    self.one_rtt = Some(OneRttKeys::new(keys, next, next_pn));
                    level = SpaceId::Data;
                }
            }
        }
        // On resumption rustls offers the previous session's parameters (kept for 0-RTT) from
        // the start; the client validates only this handshake's, which it has once the server's
        // Finished gave it 1-RTT keys (EncryptedExtensions come first).
        let params_from_this_handshake = self.side == Side::Server || self.one_rtt.is_some();
        if self.peer_params.is_none() && params_from_this_handshake {
            if let Some(raw) = self.tls.quic_transport_parameters() {
                let raw = raw.to_vec();
                if let Err(error) = self.apply_peer_params(now, &raw) {
                    self.close_with_error(now, error);
                    return;
                }
            }
        }
        if matches!(self.state, State::Handshaking) && !self.tls.is_handshaking() {
            if self.peer_params.is_none() {
                // RFC 9000 §7.3: transport parameters are mandatory.
                self.close_with_error(
                    now,
                    TransportError::new(
                        TransportErrorCode::TRANSPORT_PARAMETER_ERROR,
                        "peer sent no transport parameters",
                    ),
                );
                return;
            }
            self.state = State::Established;
            self.events.push_back(Event::Connected);
            if let (Some(qlog), Some(alpn)) = (&mut self.qlog, self.tls.alpn_protocol()) {
                qlog.alpn_information(now, alpn);
            }
            self.request_cids();
            if self.side == Side::Server {
                // RFC 9001 §4.1.2: the server's handshake is confirmed when it completes; it
                // tells the client with HANDSHAKE_DONE (RFC 9000 §19.20), and gives it a token
                // for its next connection (§8.1.3).
                self.handshake_done_pending = true;
                self.confirm_handshake();
                self.endpoint_events.push_back(EndpointEvent::NeedToken);
            }
        }
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

    /// RFC 9001 §4.9.2: Handshake keys are discarded once the handshake is confirmed.
    fn confirm_handshake(&mut self) {
        self.handshake_confirmed = true;
        self.discard_space(SpaceId::Handshake);
        // The first ACK_FREQUENCY goes out with what confirms the handshake, the server's
        // HANDSHAKE_DONE or the client's acknowledgment of it.
        if self.rtt.has_sample() {
            self.ack_frequency.on_rtt(self.rtt.smoothed());
        }
    }

    /// Forgets a space's keys and in-flight packets (RFC 9002 §6.4).
    fn discard_space(&mut self, id: SpaceId) {
        let space = &mut self.spaces[id as usize];
        if space.keys.is_none() && space.sent.is_empty() {
            return;
        }
        space.keys = None;
        self.bytes_in_flight -= space.forget_sent();
        space.pending = Default::default();
        space.probes = 0;
        space.unacked_eliciting = 0;
        space.ack_deadline = None;
        self.pto_count = 0;
    }

    /// Validates and applies the peer's transport parameters (RFC 9000 §7.3, §7.4).
    fn apply_peer_params(&mut self, now: Instant, raw: &[u8]) -> Result<(), TransportError> {
        let params = TransportParameters::decode(raw, self.side.peer())?;
        let mismatch = |what: &str| {
            TransportError::new(
                TransportErrorCode::TRANSPORT_PARAMETER_ERROR,
                format!("{what} does not match the connection IDs used"),
            )
        };
        // RFC 9000 §7.3: the connection IDs each side used must be authenticated by its
        // parameters.
        if params.initial_source_connection_id != self.peer_initial_scid {
            return Err(mismatch("initial_source_connection_id"));
        }
        if self.side == Side::Client {
            if params.original_destination_connection_id != Some(self.original_dcid) {
                return Err(mismatch("original_destination_connection_id"));
            }
            if params.retry_source_connection_id != self.retry_scid {
                return Err(mismatch("retry_source_connection_id"));
            }
            self.cids
                .set_initial_remote_token(params.stateless_reset_token);
        }
        self.check_version_information(params.version_information.as_ref())?;
        self.ack_frequency.on_peer_params(
            Duration::from_millis(params.max_ack_delay.into_inner()),
            params
                .min_ack_delay
                .map(|us| Duration::from_micros(us.into_inner())),
        );
        self.peer_ack_delay_exponent = params.ack_delay_exponent;
        self.streams.apply_peer_params(&params);
        self.mtu
            .limit_to_peer(params.max_udp_payload_size.into_inner());
        self.peer_max_datagram = params
            .max_datagram_frame_size
            .map(VarInt::into_inner)
            .filter(|&size| size > 0);
        if let Some(qlog) = &mut self.qlog {
            let cipher = self
                .tls
                .negotiated_cipher_suite()
                .map(|suite| format!("{:?}", suite.suite()));
            qlog.parameters_set(now, Initiator::Remote, &params, cipher.as_deref());
        }
        self.peer_params = Some(params);
        Ok(())
    }

    /// Logs, when recording qlog, the transport parameters this side announces and the
    /// versions it offers (client) or accepts (server), most preferred first.
    pub(crate) fn qlog_local_parameters(
        &mut self,
        now: Instant,
        params: &TransportParameters,
        versions: &[Version],
    ) {
        if let Some(qlog) = &mut self.qlog {
            qlog.parameters_set(now, Initiator::Local, params, None);
            qlog.version_information(now, self.side, versions, Some(self.version));
        }
    }

    /// After a version switch the TLS key schedule is the original version's: the secrets
    /// of a level, as TLS logged them, to derive the negotiated version's keys from; `None`
    /// when no switch happened.
    fn derived_secrets(
        &self,
        (client_label, server_label): (&str, &str),
    ) -> Result<Option<DerivedSecrets>, TransportError> {
        if self.version == self.tls_version {
            return Ok(None);
        }
        let missing = || {
            TransportError::new(
                TransportErrorCode::INTERNAL_ERROR,
                "TLS secrets for the negotiated version are unavailable",
            )
        };
        let capture = self.secret_capture.as_ref().ok_or_else(missing)?;
        let suite = self
            .tls
            .negotiated_cipher_suite()
            .ok_or_else(missing)?
            .suite();
        let (client, server) = (
            capture.get(client_label).ok_or_else(missing)?,
            capture.get(server_label).ok_or_else(missing)?,
        );
        DerivedSecrets::new(suite, self.version, self.side, client, server)
            .map(Some)
            .ok_or_else(missing)
    }

    /// Client: whether a server packet in `version` switches this connection to it (RFC 9369
    /// §4.1): a version this client offered, seen before anything from the server was
    /// processed.
    pub(crate) fn may_switch_to(&self, version: Version) -> bool {
        self.side == Side::Client
            && version != self.version
            && self.version == self.original_version
            && self.compatible_versions.contains(&version)
            && self.spaces[SpaceId::Initial as usize]
                .received
                .max()
                .is_none()
            && self.spaces[SpaceId::Handshake as usize].keys.is_none()
    }

    /// Client: the server answered in `version` (RFC 9369 §4.1): Initial packets use its keys
    /// from now on; Handshake and 1-RTT keys are derived for it.
    pub(crate) fn switch_version(
        &mut self,
        now: Instant,
        version: Version,
        initial_keys: rustls::quic::Keys,
    ) {
        self.spaces[SpaceId::Initial as usize].keys = Some(initial_keys);
        self.version = version;
        if let Some(qlog) = &mut self.qlog {
            let mut offered = self.compatible_versions.clone();
            offered.push(self.original_version);
            qlog.version_information(now, self.side, &offered, Some(version));
        }
    }

    /// Validates the peer's version_information (RFC 9368 §4), when it sent one.
    fn check_version_information(
        &self,
        info: Option<&VersionInformation>,
    ) -> Result<(), TransportError> {
        let Some(info) = info else {
            return Ok(());
        };
        let expected = match self.side {
            // RFC9368-024/025/026: the client's Chosen Version is the version its transport
            // parameters travelled in, the original one.
            Side::Server => self.original_version,
            // RFC9368-028/033: the server's Chosen Version is the version in use, which this
            // client offered.
            Side::Client => self.version,
        };
        if info.chosen != expected {
            return Err(TransportError::new(
                TransportErrorCode::VERSION_NEGOTIATION_ERROR,
                format!(
                    "peer's chosen version {:?} is not {:?}",
                    info.chosen, expected
                ),
            ));
        }
        Ok(())
    }

    /// Server: the ClientHello is complete; continues in the version the client offers that
    /// the server prefers (RFC 9368 §2.3), starting TLS anew in it before it read anything.
    fn choose_version(&mut self, now: Instant, hello: &[u8]) {
        let Some(choice) = self.version_choice.take() else {
            return;
        };
        let negotiated = choice.negotiate(self.version, hello);
        if negotiated == self.version {
            return;
        }
        let (Some(tls), Some(keys)) = (
            choice.tls_for(negotiated),
            crate::crypto::initial_keys(negotiated, &self.initial_keys_cid, self.side),
        ) else {
            return;
        };
        self.tls = tls;
        self.tls_version = negotiated;
        self.original_initial_keys = self.spaces[SpaceId::Initial as usize].keys.replace(keys);
        self.version = negotiated;
        if let Some(qlog) = &mut self.qlog {
            qlog.version_information(now, self.side, choice.versions(), Some(negotiated));
        }
    }

    /// Our transport parameters, for the TLS handshake.
    pub(crate) fn local_transport_parameters(
        config: &TransportConfig,
        side: Side,
        local_cid: ConnectionId,
        original_dcid: Option<ConnectionId>,
        retry_scid: Option<ConnectionId>,
        reset_token: Option<StatelessResetToken>,
        version_information: VersionInformation,
    ) -> TransportParameters {
        let mut params = config.transport_parameters();
        params.initial_source_connection_id = Some(local_cid);
        if side == Side::Server {
            params.original_destination_connection_id = original_dcid;
            params.retry_source_connection_id = retry_scid;
            params.stateless_reset_token = reset_token;
        }
        // RFC 9369 §4, RFC9369-004: an endpoint that supports v2 sends version_information.
        params.version_information = Some(version_information);
        params
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
