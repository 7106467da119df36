//! Configuration: per-endpoint, per-side, and transport settings.

use std::sync::Arc;
use std::time::Duration;

use crate::recovery::CongestionControl;
use crate::streams::StreamConfig;
use crate::wire::{TransportParameters, VarInt, Version};

/// The ack_delay_exponent this implementation advertises (RFC 9000 §18.2 default).
pub(crate) const ACK_DELAY_EXPONENT: u8 = 3;
/// The active_connection_id_limit this implementation advertises.
pub(crate) const ACTIVE_CID_LIMIT: u32 = 4;

/// Transport settings shared by both sides of a connection.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Close the connection after this long without activity (RFC 9000 §10.1); `None` disables
    /// the local timeout (the peer's still applies).
    pub max_idle_timeout: Option<Duration>,
    /// Send a PING when nothing else was sent for this long, keeping an idle connection alive.
    pub keep_alive_interval: Option<Duration>,
    /// The RTT assumed before any sample (RFC 9002 §6.2.2: 333 ms).
    pub initial_rtt: Duration,
    /// The most this endpoint delays an acknowledgment (max_ack_delay, RFC 9000 §18.2).
    pub max_ack_delay: Duration,
    /// How many ack-eliciting packets arrive before an acknowledgment is sent at once
    /// (RFC 9000 §13.2.2 recommends 2).
    pub ack_eliciting_threshold: u32,
    /// Take part in the ACK frequency extension (draft-ietf-quic-ack-frequency): advertise
    /// min_ack_delay and honour the peer's ACK_FREQUENCY and IMMEDIATE_ACK, and ask a peer
    /// that advertises it to acknowledge within a quarter of the RTT, so that probe timeouts
    /// on fast paths do not wait for a 25 ms max_ack_delay.
    pub ack_frequency: bool,
    /// The largest UDP payload this endpoint sends. Until a larger path MTU is validated, packets
    /// never exceed 1200 bytes (RFC 9000 §14).
    pub max_udp_payload_size: u16,
    /// The congestion controller (RFC 9002 §7).
    pub congestion_control: CongestionControl,
    /// Mark packets ECT(0) and react to congestion marks (RFC 9000 §13.4); marking stops by
    /// itself on paths that fail validation.
    pub ecn: bool,
    /// The most out-of-order CRYPTO data buffered per encryption level; more is a
    /// CRYPTO_BUFFER_EXCEEDED error (RFC 9000 §7.5).
    pub crypto_buffer_size: usize,
    /// The largest DATAGRAM frame accepted (RFC 9221 §3); `None` refuses datagrams.
    pub max_datagram_frame_size: Option<u16>,
    /// How many received datagrams are buffered for the application before the oldest is dropped.
    pub datagram_receive_buffer: usize,
    /// How many datagrams wait to be sent before the oldest is dropped.
    pub datagram_send_buffer: usize,
    /// Streams: limits, windows, credit policy, and what releasing a stream sends.
    pub streams: StreamConfig,
    /// Initiate a key update after this many packets sent with the same keys (RFC 9001 §6);
    /// `None` never initiates one (the peer's are still answered).
    pub key_update_interval: Option<u64>,
    /// Server: let clients move to a new address on purpose (RFC 9000 §9). When off, the
    /// server advertises disable_active_migration and drops 1-RTT packets from any address
    /// but the one of the handshake (§9: without a stateless reset), so a client behind a NAT
    /// that rebinds loses the connection; quinn calls it `ServerConfig::migration`.
    pub active_migration: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_idle_timeout: Some(Duration::from_secs(30)),
            keep_alive_interval: None,
            initial_rtt: Duration::from_millis(333),
            max_ack_delay: Duration::from_millis(25),
            ack_eliciting_threshold: 2,
            ack_frequency: true,
            max_udp_payload_size: 1452,
            congestion_control: CongestionControl::default(),
            ecn: true,
            crypto_buffer_size: 64 * 1024,
            max_datagram_frame_size: Some(1200),
            datagram_receive_buffer: 1024,
            datagram_send_buffer: 1024,
            key_update_interval: None,
            active_migration: true,
            streams: StreamConfig::default(),
        }
    }
}

impl TransportConfig {
    /// The transport parameters this configuration advertises; connection IDs are filled in by
    /// the connection.
    pub(crate) fn transport_parameters(&self) -> TransportParameters {
        TransportParameters {
            max_idle_timeout: self.max_idle_timeout.map_or(VarInt::ZERO, |t| {
                VarInt::from_u64(t.as_millis() as u64).unwrap_or(VarInt::MAX)
            }),
            max_udp_payload_size: VarInt::from(self.max_udp_payload_size.max(1200)),
            initial_max_data: varint(self.streams.connection_window),
            initial_max_stream_data_bidi_local: varint(self.streams.stream_window),
            initial_max_stream_data_bidi_remote: varint(self.streams.stream_window),
            initial_max_stream_data_uni: varint(self.streams.stream_window),
            initial_max_streams_bidi: varint(self.streams.max_concurrent_bidi),
            initial_max_streams_uni: varint(self.streams.max_concurrent_uni),
            ack_delay_exponent: ACK_DELAY_EXPONENT,
            max_ack_delay: VarInt::from_u64(self.max_ack_delay.as_millis() as u64)
                .unwrap_or(VarInt::MAX),
            active_connection_id_limit: VarInt::from_u32(ACTIVE_CID_LIMIT),
            max_datagram_frame_size: self.max_datagram_frame_size.map(VarInt::from),
            disable_active_migration: !self.active_migration,
            min_ack_delay: self
                .ack_frequency
                .then(|| VarInt::from_u64(crate::recovery::GRANULARITY.as_micros() as u64))
                .and_then(Result::ok),
            ..TransportParameters::default()
        }
    }
}

/// What a client needs to open a connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TLS 1.3 settings, including ALPN and the roots that authenticate the server.
    pub tls: Arc<rustls::ClientConfig>,
    /// Transport settings.
    pub transport: Arc<TransportConfig>,
    /// The QUIC version of the first Initial.
    pub version: Version,
    /// Versions the server may switch the connection to during the handshake, announced in
    /// version_information (RFC 9368 compatible negotiation; v1 and v2 are compatible) as
    /// preferred to `version`, in this order. Empty, the default, keeps `version`.
    pub compatible_versions: Vec<Version>,
}

impl ClientConfig {
    /// A client with `tls` and default transport settings, speaking QUIC v1.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls,
            transport: Arc::new(TransportConfig::default()),
            version: Version::V1,
            compatible_versions: Vec::new(),
        }
    }
}

/// What a server needs to accept connections.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TLS 1.3 settings: certificate, key and ALPN.
    pub tls: Arc<rustls::ServerConfig>,
    /// Transport settings.
    pub transport: Arc<TransportConfig>,
    /// Validate every client's address with a Retry before creating any state for it
    /// (RFC 9000 §8.1.2): costs a round trip, defeats spoofed-source floods.
    pub retry: bool,
    /// How long a Retry token stays valid.
    pub retry_token_lifetime: Duration,
    /// How long a token sent in NEW_TOKEN for a later connection stays valid (RFC 9000
    /// §8.1.3). Such a token lets the client skip the Retry and the anti-amplification limit.
    pub new_token_lifetime: Duration,
    /// The QUIC versions this server accepts, most preferred first, announced in
    /// version_information. A client that starts in one version and offers a compatible one
    /// listed earlier is switched to it during the handshake (RFC 9368 compatible version
    /// negotiation; v1 and v2 are compatible). The default, v1 then v2, never switches.
    pub versions: Vec<Version>,
    /// An address of this server's that clients are to move to once their handshake is
    /// confirmed (RFC 9000 §9.6, the preferred_address transport parameter), with a connection
    /// ID of its own. Datagrams that arrive there are handed over with
    /// [`crate::Endpoint::handle_datagram_at`], and what is sent from there says so in
    /// [`crate::Transmit::source`]. Needs connection IDs of at least one byte.
    pub preferred_address: Option<std::net::SocketAddr>,
}

impl ServerConfig {
    /// A server with `tls`, default transport settings and no Retry.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tls,
            transport: Arc::new(TransportConfig::default()),
            retry: false,
            retry_token_lifetime: Duration::from_secs(10),
            new_token_lifetime: Duration::from_secs(24 * 3600),
            versions: vec![Version::V1, Version::V2],
            preferred_address: None,
        }
    }
}

/// Settings of an endpoint, whatever connections it has.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Length of the connection IDs this endpoint issues: 0 to 20. Zero-length IDs cannot be
    /// routed when several connections share the endpoint; the default is 8.
    pub local_cid_len: usize,
    /// Secret from which stateless reset tokens are derived (RFC 9000 §10.3.2).
    pub reset_key: [u8; 32],
    /// Seed of the endpoint's random source (connection IDs, unpredictable bits). Give a fresh
    /// random seed in production, a fixed one in tests.
    pub rng_seed: [u8; 32],
    /// Reply with stateless resets to packets for unknown connections (RFC 9000 §10.3).
    pub stateless_reset: bool,
}

impl EndpointConfig {
    /// An endpoint configuration with secrets derived from `seed`; 8-byte connection IDs.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut reset_key = seed;
        reset_key[0] ^= 0x5a;
        Self {
            local_cid_len: 8,
            reset_key,
            rng_seed: seed,
            stateless_reset: true,
        }
    }
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("local_cid_len", &self.local_cid_len)
            .field("stateless_reset", &self.stateless_reset)
            .finish_non_exhaustive()
    }
}

fn varint(value: u64) -> VarInt {
    VarInt::from_u64(value).unwrap_or(VarInt::MAX)
}
