//! qlog: a connection's events as the JSON-SEQ records of draft-ietf-quic-qlog-main-schema-14
//! (QlogFileSeq) with the QUIC events of draft-ietf-quic-qlog-quic-events-13.
//!
//! Nothing here does I/O: the connection queues finished records, each starting with the
//! RFC 7464 record separator and ending with a newline, and the caller writes them out.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::Side;
use crate::connection::SpaceId;
use crate::streams::{RecvState, SendState, StreamsSnapshot};
use crate::wire::{ConnectionId, Dir, Frame, Frames, StreamId};

/// The RFC 7464 record separator that starts every JSON-SEQ record.
const RECORD_SEPARATOR: char = '\u{1e}';

/// The qlog trace of one connection, recorded while it runs.
#[derive(Debug)]
pub(crate) struct Qlog {
    start: Instant,
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
             \"event_schemas\":[\"urn:ietf:params:qlog:events:quic\"]}}}}"
        );
        let mut qlog = Self {
            start: now,
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
        let time = now.saturating_duration_since(self.start).as_secs_f64() * 1e3;
        self.push(format!(
            "{{\"time\":{time:.3},\"name\":\"quic:{name}\",\"data\":{data}}}"
        ));
    }

    /// `packet_sent` or `packet_received` (quic-events §5.5, §5.6), with every frame of the
    /// decrypted `payload`.
    pub(crate) fn packet(
        &mut self,
        now: Instant,
        sent: bool,
        space: SpaceId,
        pn: u64,
        length: usize,
        payload: &[u8],
    ) {
        let mut data = format!(
            "{{\"header\":{{\"packet_type\":\"{}\",\"packet_number\":{pn}}},\
             \"raw\":{{\"length\":{length}}},\"frames\":[",
            packet_type(space)
        );
        for (i, frame) in Frames::new(payload).map_while(Result::ok).enumerate() {
            if i > 0 {
                data.push(',');
            }
            write_frame(&frame, &mut data);
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
    /// last call, and `destroyed` for streams released since.
    pub(crate) fn stream_states(&mut self, now: Instant, snapshot: &StreamsSnapshot) {
        let mut seen = BTreeMap::new();
        for stream in &snapshot.streams {
            let send = stream.send.as_ref().map(|s| s.state);
            let recv = stream.recv.as_ref().map(|r| r.state);
            let (old_send, old_recv) = self.streams.get(&stream.id).copied().unwrap_or_default();
            if send != old_send {
                if let Some(new) = send {
                    let old = old_send.map(send_state_name);
                    self.stream_event(now, stream.id, "sending", old, send_state_name(new));
                }
            }
            if recv != old_recv {
                if let Some(new) = recv {
                    let old = old_recv.map(recv_state_name);
                    self.stream_event(now, stream.id, "receiving", old, recv_state_name(new));
                }
            }
            seen.insert(stream.id, (send, recv));
        }
        let released: Vec<_> = self
            .streams
            .iter()
            .filter(|(id, _)| !seen.contains_key(id))
            .map(|(id, states)| (*id, *states))
            .collect();
        for (id, (send, recv)) in released {
            if let Some(old) = send {
                self.stream_event(now, id, "sending", Some(send_state_name(old)), "destroyed");
            }
            if let Some(old) = recv {
                self.stream_event(
                    now,
                    id,
                    "receiving",
                    Some(recv_state_name(old)),
                    "destroyed",
                );
            }
        }
        self.streams = seen;
    }

    fn stream_event(
        &mut self,
        now: Instant,
        id: StreamId,
        side: &str,
        old: Option<&str>,
        new: &str,
    ) {
        let mut data = format!(
            "{{\"stream_id\":{},\"stream_type\":\"{}\",",
            u64::from(id),
            stream_type(id.dir())
        );
        if let Some(old) = old {
            let _ = write!(data, "\"old\":\"{old}\",");
        }
        let _ = write!(data, "\"new\":\"{new}\",\"stream_side\":\"{side}\"}}");
        self.event(now, "stream_state_updated", &data);
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

/// A frame as quic-events §8 (QuicFrame) describes it.
fn write_frame(frame: &Frame<'_>, out: &mut String) {
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
        Frame::Ack(ack) => {
            let _ = write!(
                out,
                "{{\"frame_type\":\"ack\",\"ack_delay\":{},\"acked_ranges\":[",
                ack.delay.into_inner()
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
        Frame::ResetStream {
            id,
            error_code,
            final_size,
        } => write!(
            out,
            "{{\"frame_type\":\"reset_stream\",\"stream_id\":{},\"error_code\":{},\
             \"final_size\":{}}}",
            u64::from(*id),
            error_code.into_inner(),
            final_size.into_inner()
        ),
        Frame::StopSending { id, error_code } => write!(
            out,
            "{{\"frame_type\":\"stop_sending\",\"stream_id\":{},\"error_code\":{}}}",
            u64::from(*id),
            error_code.into_inner()
        ),
        Frame::Crypto { offset, data } => write!(
            out,
            "{{\"frame_type\":\"crypto\",\"offset\":{},\"length\":{}}}",
            offset.into_inner(),
            data.len()
        ),
        Frame::NewToken(token) => write!(
            out,
            "{{\"frame_type\":\"new_token\",\"token\":{{\"raw\":{{\"length\":{}}}}}}}",
            token.len()
        ),
        Frame::Stream(stream) => write!(
            out,
            "{{\"frame_type\":\"stream\",\"stream_id\":{},\"offset\":{},\"length\":{},\
             \"fin\":{}}}",
            u64::from(stream.id),
            stream.offset.into_inner(),
            stream.data.len(),
            stream.fin
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
        Frame::ConnectionClose(close) => {
            let space = if close.frame_type.is_some() {
                "transport"
            } else {
                "application"
            };
            let _ = write!(
                out,
                "{{\"frame_type\":\"connection_close\",\"error_space\":\"{space}\",\
                 \"raw_error_code\":{},\"reason\":",
                close.error_code.into_inner()
            );
            write_json_string(&String::from_utf8_lossy(close.reason), out);
            if let Some(ty) = close.frame_type {
                let _ = write!(out, ",\"trigger_frame_type\":{}", ty.into_inner());
            }
            write!(out, "}}")
        }
        Frame::HandshakeDone => write!(out, "{{\"frame_type\":\"handshake_done\"}}"),
        Frame::Datagram(data) => write!(
            out,
            "{{\"frame_type\":\"datagram\",\"length\":{}}}",
            data.len()
        ),
    };
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
