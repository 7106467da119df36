//! qlog: a connection's events as the JSON-SEQ records of draft-ietf-quic-qlog-main-schema-14
//! (QlogFileSeq) with the QUIC events of draft-ietf-quic-qlog-quic-events-13.
//!
//! Nothing here does I/O: the connection queues finished records, each starting with the
//! RFC 7464 record separator and ending with a newline, and the caller writes them out.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::Side;
use crate::streams::{RecvState, SendState, StreamSnapshot, StreamsSnapshot};
use crate::wire::{
    Ack, ConnectionClose, ConnectionId, Dir, Frame, Frames, PacketType, PreferredAddress, SpaceId,
    StreamId, TransportParameters, Version,
};

/// The RFC 7464 record separator that starts every JSON-SEQ record.
const RECORD_SEPARATOR: char = '\u{1e}';

/// The event schema of this trace: a draft's URI carries its number (quic-events §2.1).
const EVENT_SCHEMA: &str = "urn:ietf:params:qlog:events:quic-13";

/// The qlog trace of one connection, recorded while it runs.
#[derive(Debug)]
pub(crate) struct Qlog {
    start: Instant,
    /// The latest event time so far: no event is stamped earlier, so times never go back
    /// (the trace's clock is "monotonic", main-schema §7.1).
    latest: Duration,
    /// This end of the connection: who opened a stream says who created its halves.
    side: Side,
    records: VecDeque<String>,
    /// The last logged state of each half of each stream not yet released.
    streams: BTreeMap<StreamId, (Option<SendState>, Option<RecvState>)>,
    /// The recovery metrics last logged.
    metrics: RecoveryMetrics,
}

/// What `recovery_metrics_updated` reports (quic-events §7.2).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RecoveryMetrics {
    pub(crate) min_rtt: Duration,
    pub(crate) smoothed_rtt: Duration,
    pub(crate) latest_rtt: Duration,
    pub(crate) rtt_variance: Duration,
    pub(crate) pto_count: u32,
    pub(crate) congestion_window: u64,
    pub(crate) bytes_in_flight: u64,
    pub(crate) ssthresh: Option<u64>,
    /// Bits per second.
    pub(crate) pacing_rate: u64,
}

/// Which side a `parameters_set` event reports (quic-events §8.3, Initiator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Initiator {
    Local,
    Remote,
}

/// Why a packet was declared lost (quic-events §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LossTrigger {
    /// Packets far enough after it were acknowledged (RFC 9002 §6.1.1).
    ReorderingThreshold,
    /// It was sent long enough before an acknowledged packet (RFC 9002 §6.1.2).
    TimeThreshold,
}

impl Qlog {
    /// A trace starting at `now`, with its header record queued.
    pub(crate) fn new(now: Instant, side: Side, original_dcid: &ConnectionId) -> Self {
        let vantage = match side {
            Side::Client => "client",
            Side::Server => "server",
        };
        let header = format!(
            "{{\"file_schema\":\"urn:ietf:params:qlog:file:sequential\",\
             \"serialization_format\":\"application/qlog+json-seq\",\"title\":\"qstream\",\
             \"trace\":{{\"common_fields\":{{\"group_id\":\"{original_dcid}\",\
             \"time_format\":\"relative_to_epoch\",\"reference_time\":{{\"clock_type\":\
             \"monotonic\",\"epoch\":\"unknown\"}}}},\"vantage_point\":{{\"type\":\"{vantage}\"}},\
             \"event_schemas\":[\"{EVENT_SCHEMA}\"]}}}}"
        );
        let mut qlog = Self {
            start: now,
            latest: Duration::ZERO,
            side,
            records: VecDeque::new(),
            streams: BTreeMap::new(),
            metrics: RecoveryMetrics::default(),
        };
        qlog.push(header);
        qlog
    }

    /// The next record to write, if any.
    pub(crate) fn pop(&mut self) -> Option<String> {
        self.records.pop_front()
    }

    fn push(&mut self, json: String) {
        let mut record = String::with_capacity(json.len() + 2);
        record.push(RECORD_SEPARATOR);
        record.push_str(&json);
        record.push('\n');
        self.records.push_back(record);
    }

    fn event(&mut self, now: Instant, name: &str, data: &str) {
        self.latest = self.latest.max(now.saturating_duration_since(self.start));
        let time = self.latest.as_secs_f64() * 1e3;
        self.push(format!(
            "{{\"time\":{time:.3},\"name\":\"quic:{name}\",\"data\":{data}}}"
        ));
    }

    /// `packet_sent` or `packet_received` (quic-events §5.5, §5.6), with every frame of the
    /// decrypted `payload`; ACK delays are scaled by the sender's `ack_delay_exponent`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn packet(
        &mut self,
        now: Instant,
        sent: bool,
        ty: PacketType,
        pn: u64,
        length: usize,
        payload: &[u8],
        ack_delay_exponent: u8,
    ) {
        let name = match ty {
            PacketType::Initial => "initial",
            PacketType::Handshake => "handshake",
            PacketType::ZeroRtt => "0RTT",
            PacketType::OneRtt => "1RTT",
        };
        let mut data = format!(
            "{{\"header\":{{\"packet_type\":\"{name}\",\"packet_number\":{pn}}},\
             \"raw\":{{\"length\":{length}}},\"frames\":["
        );
        for (i, frame) in Frames::new(payload).map_while(Result::ok).enumerate() {
            if i > 0 {
                data.push(',');
            }
            write_frame(&frame, ack_delay_exponent, &mut data);
        }
        data.push_str("]}");
        let name = if sent {
            "packet_sent"
        } else {
            "packet_received"
        };
        self.event(now, name, &data);
    }

    /// `packet_lost` (quic-events §7.4), one event per packet.
    pub(crate) fn packet_lost(
        &mut self,
        now: Instant,
        space: SpaceId,
        pn: u64,
        trigger: LossTrigger,
    ) {
        let trigger = match trigger {
            LossTrigger::ReorderingThreshold => "reordering_threshold",
            LossTrigger::TimeThreshold => "time_threshold",
        };
        let data = format!(
            "{{\"header\":{{\"packet_type\":\"{}\",\"packet_number\":{pn}}},\
             \"trigger\":\"{trigger}\"}}",
            packet_type(space)
        );
        self.event(now, "packet_lost", &data);
    }

    /// `parameters_set` (quic-events §5.3): the transport parameters one side announced, and
    /// the TLS cipher suite once it is known.
    pub(crate) fn parameters_set(
        &mut self,
        now: Instant,
        initiator: Initiator,
        params: &TransportParameters,
        tls_cipher: Option<&str>,
    ) {
        let initiator = match initiator {
            Initiator::Local => "local",
            Initiator::Remote => "remote",
        };
        let mut data = format!("{{\"initiator\":\"{initiator}\"");
        if let Some(cipher) = tls_cipher {
            data.push_str(",\"tls_cipher\":");
            write_json_string(cipher, &mut data);
        }
        let cids = [
            (
                "original_destination_connection_id",
                params.original_destination_connection_id,
            ),
            (
                "initial_source_connection_id",
                params.initial_source_connection_id,
            ),
            (
                "retry_source_connection_id",
                params.retry_source_connection_id,
            ),
        ];
        for (name, cid) in cids {
            if let Some(cid) = cid {
                let _ = write!(data, ",\"{name}\":\"{cid}\"");
            }
        }
        if let Some(token) = &params.stateless_reset_token {
            let _ = write!(
                data,
                ",\"stateless_reset_token\":\"{}\"",
                hex(token.as_ref())
            );
        }
        let _ = write!(
            data,
            ",\"disable_active_migration\":{},\"max_idle_timeout\":{},\
             \"max_udp_payload_size\":{},\"ack_delay_exponent\":{},\"max_ack_delay\":{},\
             \"active_connection_id_limit\":{},\"initial_max_data\":{},\
             \"initial_max_stream_data_bidi_local\":{},\
             \"initial_max_stream_data_bidi_remote\":{},\"initial_max_stream_data_uni\":{},\
             \"initial_max_streams_bidi\":{},\"initial_max_streams_uni\":{}",
            params.disable_active_migration,
            params.max_idle_timeout.into_inner(),
            params.max_udp_payload_size.into_inner(),
            params.ack_delay_exponent,
            params.max_ack_delay.into_inner(),
            params.active_connection_id_limit.into_inner(),
            params.initial_max_data.into_inner(),
            params.initial_max_stream_data_bidi_local.into_inner(),
            params.initial_max_stream_data_bidi_remote.into_inner(),
            params.initial_max_stream_data_uni.into_inner(),
            params.initial_max_streams_bidi.into_inner(),
            params.initial_max_streams_uni.into_inner(),
        );
        if let Some(preferred) = &params.preferred_address {
            write_preferred_address(preferred, &mut data);
        }
        if let Some(size) = params.max_datagram_frame_size {
            let _ = write!(data, ",\"max_datagram_frame_size\":{}", size.into_inner());
        }
        let _ = write!(data, ",\"grease_quic_bit\":{}}}", params.grease_quic_bit);
        self.event(now, "parameters_set", &data);
    }

    /// `version_information` (quic-events §5.1): a client logs the versions it offers, a
    /// server the versions it supports; both the version chosen, when there is one.
    pub(crate) fn version_information(
        &mut self,
        now: Instant,
        side: Side,
        versions: &[Version],
        chosen: Option<Version>,
    ) {
        let field = match side {
            Side::Client => "client_versions",
            Side::Server => "server_versions",
        };
        let mut data = format!("{{\"{field}\":[");
        for (i, version) in versions.iter().enumerate() {
            let _ = write!(
                data,
                "{}\"{:08x}\"",
                if i > 0 { "," } else { "" },
                version.0
            );
        }
        data.push(']');
        if let Some(chosen) = chosen {
            let _ = write!(data, ",\"chosen_version\":\"{:08x}\"", chosen.0);
        }
        data.push('}');
        self.event(now, "version_information", &data);
    }

    /// `tuple_assigned` (quic-events §4.7): the connection now sends to `remote` (a
    /// migration followed or undone). The tuple is named by that address.
    pub(crate) fn tuple_assigned(&mut self, now: Instant, remote: std::net::SocketAddr) {
        let family = if remote.is_ipv4() { "v4" } else { "v6" };
        let data = format!(
            "{{\"tuple_id\":\"{remote}\",\"tuple_remote\":{{\"ip_{family}\":\"{}\",\"port_{family}\":{}}}}}",
            remote.ip(),
            remote.port()
        );
        self.event(now, "tuple_assigned", &data);
    }

    /// `alpn_information` (quic-events §5.2): the protocol the handshake chose.
    pub(crate) fn alpn_information(&mut self, now: Instant, chosen: &[u8]) {
        let mut data = format!("{{\"chosen_alpn\":{{\"byte_value\":\"{}\"", hex(chosen));
        if let Ok(text) = std::str::from_utf8(chosen) {
            data.push_str(",\"string_value\":");
            write_json_string(text, &mut data);
        }
        data.push_str("}}");
        self.event(now, "alpn_information", &data);
    }

    /// `recovery_metrics_updated` (quic-events §7.2) with the metrics that changed since the
    /// last one; nothing when none did.
    pub(crate) fn recovery_metrics(&mut self, now: Instant, metrics: RecoveryMetrics) {
        let old = std::mem::replace(&mut self.metrics, metrics);
        let mut data = String::from("{");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut field = |name: &str, value: String| {
            if data.len() > 1 {
                data.push(',');
            }
            let _ = write!(data, "\"{name}\":{value}");
        };
        let rtts = [
            ("min_rtt", old.min_rtt, metrics.min_rtt),
            ("smoothed_rtt", old.smoothed_rtt, metrics.smoothed_rtt),
            ("latest_rtt", old.latest_rtt, metrics.latest_rtt),
            ("rtt_variance", old.rtt_variance, metrics.rtt_variance),
        ];
        for (name, old, new) in rtts {
            if old != new {
                field(name, format!("{:.3}", ms(new)));
            }
        }
        let counts = [
            (
                "pto_count",
                u64::from(old.pto_count),
                u64::from(metrics.pto_count),
            ),
            (
                "congestion_window",
                old.congestion_window,
                metrics.congestion_window,
            ),
            (
                "bytes_in_flight",
                old.bytes_in_flight,
                metrics.bytes_in_flight,
            ),
            ("pacing_rate", old.pacing_rate, metrics.pacing_rate),
        ];
        for (name, old, new) in counts {
            if old != new {
                field(name, new.to_string());
            }
        }
        if let Some(ssthresh) = metrics
            .ssthresh
            .filter(|_| old.ssthresh != metrics.ssthresh)
        {
            field("ssthresh", ssthresh.to_string());
        }
        if data.len() > 1 {
            data.push('}');
            self.event(now, "recovery_metrics_updated", &data);
        }
    }

    /// `stream_state_updated` (quic-events §5.13) for every half whose state changed since the
    /// last call, through every state it passed on the way, and `destroyed` for streams
    /// released since.
    pub(crate) fn stream_states(&mut self, now: Instant, snapshot: &StreamsSnapshot) {
        let mut seen = BTreeMap::new();
        for stream in &snapshot.streams {
            let send = stream.send.as_ref().map(|s| s.state);
            let recv = stream.recv.as_ref().map(|r| r.state);
            let (old_send, old_recv) = self.streams.get(&stream.id).copied().unwrap_or_default();
            // A half appears when its stream is opened: by this side or by the peer.
            let opened_by = if stream.id.initiator() == self.side {
                Trigger::Local
            } else {
                Trigger::Remote
            };
            if let Some(new) = send.filter(|new| Some(*new) != old_send) {
                let mut old = old_send;
                for state in send_path(old_send, new) {
                    let trigger = match old {
                        None => opened_by,
                        Some(_) => send_trigger(state, stream),
                    };
                    let from = old.map(send_state_name);
                    self.stream_event(
                        now,
                        stream.id,
                        "sending",
                        from,
                        send_state_name(state),
                        trigger,
                    );
                    old = Some(state);
                }
            }
            if let Some(new) = recv.filter(|new| Some(*new) != old_recv) {
                let mut old = old_recv;
                for state in recv_path(old_recv, new) {
                    let from = old.map(recv_state_name);
                    let trigger = match old {
                        None => opened_by,
                        Some(_) => recv_trigger(state),
                    };
                    self.stream_event(
                        now,
                        stream.id,
                        "receiving",
                        from,
                        recv_state_name(state),
                        trigger,
                    );
                    old = Some(state);
                }
            }
            seen.insert(stream.id, (send, recv));
        }
        self.log_released(now, &seen);
        self.streams = seen;
    }

    /// Streams of the last snapshot missing from `seen` were released: their halves are
    /// destroyed.
    fn log_released(
        &mut self,
        now: Instant,
        seen: &BTreeMap<StreamId, (Option<SendState>, Option<RecvState>)>,
    ) {
        let released: Vec<_> = self
            .streams
            .iter()
            .filter(|(id, _)| !seen.contains_key(id))
            .map(|(id, states)| (*id, *states))
            .collect();
        for (id, (send, recv)) in released {
            if let Some(old) = send {
                self.stream_event(
                    now,
                    id,
                    "sending",
                    Some(send_state_name(old)),
                    "destroyed",
                    Trigger::Local,
                );
            }
            if let Some(old) = recv {
                self.stream_event(
                    now,
                    id,
                    "receiving",
                    Some(recv_state_name(old)),
                    "destroyed",
                    Trigger::Local,
                );
            }
        }
    }

    fn stream_event(
        &mut self,
        now: Instant,
        id: StreamId,
        side: &str,
        old: Option<&str>,
        new: &str,
        trigger: Trigger,
    ) {
        let mut data = format!(
            "{{\"stream_id\":{},\"stream_type\":\"{}\",",
            u64::from(id),
            stream_type(id.dir())
        );
        if let Some(old) = old {
            let _ = write!(data, "\"old\":\"{old}\",");
        }
        let trigger = match trigger {
            Trigger::Local => "local",
            Trigger::Remote => "remote",
        };
        let _ = write!(
            data,
            "\"new\":\"{new}\",\"stream_side\":\"{side}\",\"trigger\":\"{trigger}\"}}"
        );
        self.event(now, "stream_state_updated", &data);
    }
}

/// Who caused a stream state change (quic-events §5.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Local,
    Remote,
}

/// The states a sending half passed through from `old` (none: newly seen) to `new`, `new`
/// included: RFC 9000 §3.1 allows only Send → Data Sent → Data Recvd and a reset from Send or
/// Data Sent to Reset Sent → Reset Recvd, so what a snapshot skipped is known.
fn send_path(old: Option<SendState>, new: SendState) -> Vec<SendState> {
    use SendState::*;
    let path: &[SendState] = match new {
        Send | DataSent | DataRecvd => &[Send, DataSent, DataRecvd],
        ResetSent | ResetRecvd => match old {
            Some(DataSent) => &[DataSent, ResetSent, ResetRecvd],
            _ => &[Send, ResetSent, ResetRecvd],
        },
    };
    states_between(path, old, new)
}

/// The states a receiving half passed through from `old` to `new` (RFC 9000 §3.2): Recv →
/// Size Known → Data Recvd → Data Read, or to Reset Recvd → Reset Read from Recv or Size
/// Known.
fn recv_path(old: Option<RecvState>, new: RecvState) -> Vec<RecvState> {
    use RecvState::*;
    let path: &[RecvState] = match new {
        Recv | SizeKnown | DataRecvd | DataRead => &[Recv, SizeKnown, DataRecvd, DataRead],
        ResetRecvd | ResetRead => match old {
            Some(SizeKnown) => &[SizeKnown, ResetRecvd, ResetRead],
            _ => &[Recv, ResetRecvd, ResetRead],
        },
    };
    states_between(path, old, new)
}

/// The states of `path` after `old` up to and including `new`; from the start of the path
/// when `old` is not on it. Only `new` when `new` is not after `old` on it.
fn states_between<S: Copy + PartialEq>(path: &[S], old: Option<S>, new: S) -> Vec<S> {
    let end = path.iter().position(|s| *s == new);
    let start = old
        .and_then(|old| path.iter().position(|s| *s == old))
        .map_or(0, |i| i + 1);
    match end {
        Some(end) if start <= end => path[start..=end].to_vec(),
        _ => vec![new],
    }
}

/// A sending half moves on by what this side does (writing, finishing, resetting), except
/// when the peer acknowledges (Data Recvd, Reset Recvd) or asked for the reset (STOP_SENDING).
fn send_trigger(state: SendState, stream: &StreamSnapshot) -> Trigger {
    match state {
        SendState::DataRecvd | SendState::ResetRecvd => Trigger::Remote,
        SendState::ResetSent
            if stream
                .send
                .as_ref()
                .is_some_and(|s| s.stopped_by_peer.is_some()) =>
        {
            Trigger::Remote
        }
        _ => Trigger::Local,
    }
}

/// A receiving half moves on by what the peer sends, except when the application reads (Data
/// Read, Reset Read).
fn recv_trigger(state: RecvState) -> Trigger {
    match state {
        RecvState::DataRead | RecvState::ResetRead => Trigger::Local,
        _ => Trigger::Remote,
    }
}

fn packet_type(space: SpaceId) -> &'static str {
    match space {
        SpaceId::Initial => "initial",
        SpaceId::Handshake => "handshake",
        SpaceId::Data => "1RTT",
    }
}

fn stream_type(dir: Dir) -> &'static str {
    match dir {
        Dir::Bi => "bidirectional",
        Dir::Uni => "unidirectional",
    }
}

/// The quic-events §5.13 granular name of a sending half's RFC 9000 §3.1 state.
fn send_state_name(state: SendState) -> &'static str {
    match state {
        SendState::Send => "send",
        SendState::DataSent => "data_sent",
        SendState::DataRecvd => "data_received",
        SendState::ResetSent => "reset_sent",
        SendState::ResetRecvd => "reset_received",
    }
}

/// The quic-events §5.13 granular name of a receiving half's RFC 9000 §3.2 state.
fn recv_state_name(state: RecvState) -> &'static str {
    match state {
        RecvState::Recv => "receive",
        RecvState::SizeKnown => "size_known",
        RecvState::DataRecvd => "data_received",
        RecvState::DataRead => "data_read",
        RecvState::ResetRecvd => "reset_received",
        RecvState::ResetRead => "reset_read",
    }
}

/// A frame as quic-events §8.13 (QuicFrame) describes it; an ACK's delay is scaled by
/// `ack_delay_exponent` into milliseconds.
fn write_frame(frame: &Frame<'_>, ack_delay_exponent: u8, out: &mut String) {
    let _ = match frame {
        Frame::Padding(n) => write!(
            out,
            "{{\"frame_type\":\"padding\",\"raw\":{{\"length\":{n},\"payload_length\":{n}}}}}"
        ),
        Frame::Ping => write!(out, "{{\"frame_type\":\"ping\"}}"),
        // quic-events-13 defines no ACK_FREQUENCY or IMMEDIATE_ACK: UnknownFrame (§8.13.22).
        Frame::AckFrequency(_) | Frame::ImmediateAck => write!(
            out,
            "{{\"frame_type\":\"unknown\",\"frame_type_bytes\":{}}}",
            frame.ty().0
        ),
        Frame::Ack(ack) => write_ack(ack, ack_delay_exponent, out),
        Frame::Crypto { offset, data } => write!(
            out,
            "{{\"frame_type\":\"crypto\",\"offset\":{},\"raw\":{{\"payload_length\":{}}}}}",
            offset.into_inner(),
            data.len()
        ),
        Frame::NewToken(token) => write!(
            out,
            "{{\"frame_type\":\"new_token\",\"token\":{{\"raw\":{{\"length\":{}}}}}}}",
            token.len()
        ),
        Frame::NewConnectionId(new) => write!(
            out,
            "{{\"frame_type\":\"new_connection_id\",\"sequence_number\":{},\
             \"retire_prior_to\":{},\"connection_id_length\":{},\"connection_id\":\"{}\"}}",
            new.sequence.into_inner(),
            new.retire_prior_to.into_inner(),
            new.id.len(),
            new.id
        ),
        Frame::RetireConnectionId { sequence } => write!(
            out,
            "{{\"frame_type\":\"retire_connection_id\",\"sequence_number\":{}}}",
            sequence.into_inner()
        ),
        Frame::PathChallenge(data) => write!(
            out,
            "{{\"frame_type\":\"path_challenge\",\"data\":\"{}\"}}",
            hex(data)
        ),
        Frame::PathResponse(data) => write!(
            out,
            "{{\"frame_type\":\"path_response\",\"data\":\"{}\"}}",
            hex(data)
        ),
        Frame::ConnectionClose(close) => write_close(close, out),
        Frame::HandshakeDone => write!(out, "{{\"frame_type\":\"handshake_done\"}}"),
        Frame::Datagram(data) => write!(
            out,
            "{{\"frame_type\":\"datagram\",\"raw\":{{\"payload_length\":{}}}}}",
            data.len()
        ),
        Frame::ResetStream { .. }
        | Frame::StopSending { .. }
        | Frame::Stream(_)
        | Frame::MaxData(_)
        | Frame::MaxStreamData { .. }
        | Frame::MaxStreams { .. }
        | Frame::DataBlocked(_)
        | Frame::StreamDataBlocked { .. }
        | Frame::StreamsBlocked { .. } => write_stream_frame(frame, out),
    };
}

/// A stream or flow-control frame (quic-events §8.13.5-§8.13.16).
fn write_stream_frame(frame: &Frame<'_>, out: &mut String) -> std::fmt::Result {
    match frame {
        Frame::ResetStream {
            id,
            error_code,
            final_size,
        } => write!(
            out,
            "{{\"frame_type\":\"reset_stream\",\"stream_id\":{},\"error\":\"unknown\",\
             \"error_code\":{},\"final_size\":{}}}",
            u64::from(*id),
            error_code.into_inner(),
            final_size.into_inner()
        ),
        Frame::StopSending { id, error_code } => write!(
            out,
            "{{\"frame_type\":\"stop_sending\",\"stream_id\":{},\"error\":\"unknown\",\
             \"error_code\":{}}}",
            u64::from(*id),
            error_code.into_inner()
        ),
        Frame::Stream(stream) => write!(
            out,
            "{{\"frame_type\":\"stream\",\"stream_id\":{},\"offset\":{},\"fin\":{},\
             \"raw\":{{\"payload_length\":{}}}}}",
            u64::from(stream.id),
            stream.offset.into_inner(),
            stream.fin,
            stream.data.len()
        ),
        Frame::MaxData(max) => write!(
            out,
            "{{\"frame_type\":\"max_data\",\"maximum\":{}}}",
            max.into_inner()
        ),
        Frame::MaxStreamData { id, max } => write!(
            out,
            "{{\"frame_type\":\"max_stream_data\",\"stream_id\":{},\"maximum\":{}}}",
            u64::from(*id),
            max.into_inner()
        ),
        Frame::MaxStreams { dir, count } => write!(
            out,
            "{{\"frame_type\":\"max_streams\",\"stream_type\":\"{}\",\"maximum\":{}}}",
            stream_type(*dir),
            count.into_inner()
        ),
        Frame::DataBlocked(limit) => write!(
            out,
            "{{\"frame_type\":\"data_blocked\",\"limit\":{}}}",
            limit.into_inner()
        ),
        Frame::StreamDataBlocked { id, limit } => write!(
            out,
            "{{\"frame_type\":\"stream_data_blocked\",\"stream_id\":{},\"limit\":{}}}",
            u64::from(*id),
            limit.into_inner()
        ),
        Frame::StreamsBlocked { dir, limit } => write!(
            out,
            "{{\"frame_type\":\"streams_blocked\",\"stream_type\":\"{}\",\"limit\":{}}}",
            stream_type(*dir),
            limit.into_inner()
        ),
        // write_frame passes only the frames above.
        _ => Ok(()),
    }
}

/// A preferred_address transport parameter (quic-events §8.13.8).
fn write_preferred_address(preferred: &PreferredAddress, out: &mut String) {
    out.push_str(",\"preferred_address\":{");
    if let Some(v4) = preferred.ipv4 {
        let _ = write!(out, "\"ip_v4\":\"{}\",\"port_v4\":{},", v4.ip(), v4.port());
    }
    if let Some(v6) = preferred.ipv6 {
        let _ = write!(out, "\"ip_v6\":\"{}\",\"port_v6\":{},", v6.ip(), v6.port());
    }
    let _ = write!(
        out,
        "\"connection_id\":\"{}\",\"stateless_reset_token\":\"{}\"}}",
        preferred.connection_id,
        hex(preferred.stateless_reset_token.as_ref())
    );
}

/// An ACK frame (quic-events §8.13.3), its delay in milliseconds.
fn write_ack(ack: &Ack<'_>, ack_delay_exponent: u8, out: &mut String) -> std::fmt::Result {
    // RFC 9000 §19.3: the field counts units of 2^ack_delay_exponent microseconds.
    let micros = ack
        .delay
        .into_inner()
        .saturating_mul(1 << ack_delay_exponent.min(20));
    let _ = write!(
        out,
        "{{\"frame_type\":\"ack\",\"ack_delay\":{:.3},\"acked_ranges\":[",
        micros as f64 / 1e3
    );
    for (i, range) in ack.ranges().enumerate() {
        let _ = write!(
            out,
            "{}[{},{}]",
            if i > 0 { "," } else { "" },
            range.start(),
            range.end()
        );
    }
    out.push(']');
    if let Some(ecn) = &ack.ecn {
        let _ = write!(
            out,
            ",\"ect0\":{},\"ect1\":{},\"ce\":{}",
            ecn.ect0.into_inner(),
            ecn.ect1.into_inner(),
            ecn.ce.into_inner()
        );
    }
    write!(out, "}}")
}

/// A CONNECTION_CLOSE frame (quic-events §8.13.21): the error by name where it has one.
fn write_close(close: &ConnectionClose<'_>, out: &mut String) -> std::fmt::Result {
    let code = close.error_code.into_inner();
    let _ = match close.frame_type {
        Some(_) => write!(
            out,
            "{{\"frame_type\":\"connection_close\",\"error_space\":\"transport\",\
             \"error\":\"{}\"",
            transport_error_name(code)
        ),
        None => write!(
            out,
            "{{\"frame_type\":\"connection_close\",\"error_space\":\"application\",\
             \"error\":\"unknown\""
        ),
    };
    if close.frame_type.is_none() || transport_error_name(code) == "unknown" {
        let _ = write!(out, ",\"error_code\":{code}");
    }
    out.push_str(",\"reason\":");
    write_json_string(&String::from_utf8_lossy(close.reason), out);
    if let Some(ty) = close.frame_type {
        let _ = write!(out, ",\"trigger_frame_type\":{}", ty.into_inner());
    }
    write!(out, "}}")
}

/// The quic-events §8.13.24 name of a transport error code, or a §8.13.26 crypto error
/// (`crypto_error_0x1XX`), or "unknown".
fn transport_error_name(code: u64) -> String {
    const NAMES: [&str; 17] = [
        "no_error",
        "internal_error",
        "connection_refused",
        "flow_control_error",
        "stream_limit_error",
        "stream_state_error",
        "final_size_error",
        "frame_encoding_error",
        "transport_parameter_error",
        "connection_id_limit_error",
        "protocol_violation",
        "invalid_token",
        "application_error",
        "crypto_buffer_exceeded",
        "key_update_error",
        "aead_limit_reached",
        "no_viable_path",
    ];
    match code {
        0..=0x10 => NAMES[code as usize].to_owned(),
        0x100..=0x1ff => format!("crypto_error_{code:#05x}"),
        _ => "unknown".to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` as a JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7).
fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
