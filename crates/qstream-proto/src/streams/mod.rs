//! Streams (RFC 9000 §2-§4): the stream map, stream credit in both directions, and flow control.
//!
//! The lifecycle rules qstream exists for live here (docs/design.md, "The stream lifecycle rules"):
//! a stream is released, and a peer-initiated one's credit returned with MAX_STREAMS, exactly
//! when both halves are finished; [`Streams::release`] (what dropping an application handle does)
//! resets an unfinished send half and stops an unread receive half; opens wait first-come
//! first-served and a cancelled one consumes no stream ID.

mod piece;
mod recv;
mod send;
mod send_buffer;
mod window;

pub use recv::{ReadOutcome, RecvState};
pub use send::SendState;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::{Bound, Range};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::connection::TransportError;
use crate::wire::{
    Dir, Frame, FrameType, MAX_STREAM_COUNT, Stream as StreamFrame, StreamId, VarInt,
};
use crate::{Side, TransportErrorCode};
use piece::SharedPieces;
use recv::RecvHalf;
use send::SendHalf;

/// Stream and flow-control settings of one endpoint.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// How many bidirectional streams the peer may have open at once.
    pub max_concurrent_bidi: u64,
    /// How many unidirectional streams the peer may have open at once.
    pub max_concurrent_uni: u64,
    /// Per-stream receive window.
    pub stream_window: u64,
    /// Connection receive window at the start.
    pub connection_window: u64,
    /// The largest a stream's receive window grows to by auto-tuning.
    pub max_stream_window: u64,
    /// The largest the connection receive window grows to by auto-tuning.
    pub max_connection_window: u64,
    /// How much written data a stream buffers before `write` accepts no more.
    pub send_buffer: u64,
    /// How many released streams are batched into one MAX_STREAMS. The default, 1, returns
    /// credit at once; larger values send fewer frames but make peers wait.
    pub credit_batch: u64,
    /// The code of the RESET_STREAM that releasing an unfinished send half sends.
    pub release_reset_code: VarInt,
    /// The code of the STOP_SENDING that releasing an unread receive half sends.
    pub release_stop_code: VarInt,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_concurrent_bidi: 100,
            max_concurrent_uni: 100,
            stream_window: 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_stream_window: 16 * 1024 * 1024,
            max_connection_window: 64 * 1024 * 1024,
            send_buffer: 1024 * 1024,
            credit_batch: 1,
            release_reset_code: VarInt::ZERO,
            release_stop_code: VarInt::ZERO,
        }
    }
}

/// A stream event for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The peer opened a stream: [`Streams::accept`] returns it.
    Opened(Dir),
    /// A queued open request was granted the stream `id`.
    OpenGranted {
        /// The request.
        ticket: OpenTicket,
        /// The new stream.
        id: StreamId,
    },
    /// Data (or the end, or a reset) can be read.
    Readable(StreamId),
    /// More data can be written.
    Writable(StreamId),
    /// Everything written, and the FIN, were acknowledged.
    Finished(StreamId),
    /// The peer asked us to stop sending (STOP_SENDING, quic-go's CancelRead on its side).
    Stopped {
        /// The stream.
        id: StreamId,
        /// The peer's code.
        code: VarInt,
    },
    /// The stream is released: both halves finished. A peer-initiated stream's credit went
    /// back to the peer.
    Released(StreamId),
    /// The peer is blocked opening streams (STREAMS_BLOCKED) while our application holds these
    /// peer-initiated streams not released: the cause of the peer's wait.
    PeerBlocked(PeerBlockedReport),
}

impl StreamEvent {
    /// The one stream this event concerns, if it concerns one: what waits on that stream
    /// (reading, writing, its end) may go on. `None` for events about streams in general.
    pub fn stream(&self) -> Option<StreamId> {
        match *self {
            Self::Readable(id)
            | Self::Writable(id)
            | Self::Finished(id)
            | Self::Stopped { id, .. }
            | Self::Released(id) => Some(id),
            Self::Opened(_) | Self::OpenGranted { .. } | Self::PeerBlocked(_) => None,
        }
    }
}

/// Why a peer cannot open streams: the streams it opened that our application holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerBlockedReport {
    /// Which kind of stream the peer cannot open.
    pub dir: Dir,
    /// The limit the peer says it is blocked at.
    pub limit: u64,
    /// Each stream the peer opened that is not released, and what holds it.
    pub held: Vec<(StreamId, HeldReason)>,
}

/// What keeps a stream from being released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldReason {
    /// The receive half is not read to the end and not stopped.
    ReceiveNotReadOrStopped,
    /// The send half is not finished or reset.
    SendNotFinished,
    /// The send half is finished; the peer has not acknowledged all of it yet.
    SendUnacknowledged,
    /// The peer's stream is waiting in the accept queue.
    NotAccepted,
}

impl fmt::Display for HeldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReceiveNotReadOrStopped => "receive half not read to the end and not stopped",
            Self::SendNotFinished => "send half neither finished nor reset",
            Self::SendUnacknowledged => "send half finished, waiting for acknowledgment",
            Self::NotAccepted => "opened by the peer, never accepted",
        })
    }
}

/// A pending open request, served first-come first-served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenTicket(pub u64);

/// Why a stream could not be opened now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The peer's stream limit is reached (or earlier requests are waiting for credit). Wait
    /// with an open request, which sends STREAMS_BLOCKED and is granted in order.
    NoCredit {
        /// The peer's current limit on streams of this kind.
        limit: u64,
        /// Open requests already waiting.
        waiting: usize,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCredit { limit, waiting } => write!(
                f,
                "no stream credit: the peer allows {limit} streams of this kind and {waiting} \
                 opens are already waiting; wait for credit (a blocking open) instead"
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why a stream operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// No such stream: never opened, or already released.
    UnknownStream,
    /// The operation needs a half this stream does not have (a unidirectional stream's other
    /// direction).
    WrongDirection,
    /// The send half was finished or reset already.
    Closed,
    /// The peer sent STOP_SENDING with this code; the send half was reset.
    Stopped(VarInt),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownStream => f.write_str("unknown or released stream"),
            Self::WrongDirection => f.write_str("the stream has no half in that direction"),
            Self::Closed => f.write_str("the send half is already finished or reset"),
            Self::Stopped(code) => write!(f, "the peer stopped the stream with code {code}"),
        }
    }
}

impl std::error::Error for StreamError {}

/// What a sent packet carried for streams, to act on when it is acknowledged or lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamFrameRecord {
    Data {
        id: StreamId,
        range: Range<u64>,
        fin: bool,
    },
    Reset(StreamId),
    Stop(StreamId),
    MaxStreamData(StreamId),
    StreamDataBlocked(StreamId),
    MaxData,
    DataBlocked,
    MaxStreams(Dir),
    StreamsBlocked(Dir),
}

#[derive(Debug)]
struct StreamState {
    send: Option<SendHalf>,
    recv: Option<RecvHalf>,
    opened_at: Instant,
    /// Whether the application has it: accepted, or opened locally.
    accepted: bool,
    /// Whether it is in a scheduling queue.
    queued: bool,
}

/// Per-direction stream credit (RFC 9000 §4.6).
#[derive(Debug, Default)]
struct Credit {
    /// Streams of ours opened so far (the next index).
    local_opened: u64,
    /// The peer's limit on our streams (MAX_STREAMS).
    local_limit: u64,
    /// Open requests waiting for credit, oldest first.
    waiters: VecDeque<OpenTicket>,
    /// The limit at which STREAMS_BLOCKED is due, if one is.
    blocked_pending: Option<u64>,
    /// The limit at which STREAMS_BLOCKED was last sent.
    blocked_sent: Option<u64>,
    /// Peer streams opened so far (implicitly or not).
    remote_opened: u64,
    /// Peer streams released.
    remote_released: u64,
    /// The limit we advertised on peer streams.
    remote_limit: u64,
    /// The limit in the last MAX_STREAMS sent (or the transport parameter): what the peer
    /// knows of `remote_limit`.
    remote_limit_sent: u64,
    max_concurrent: u64,
    max_streams_pending: bool,
    /// Peer streams waiting for accept.
    accept_queue: VecDeque<StreamId>,
}

/// Counters of stream credit, for the snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreditCounters {
    /// MAX_STREAMS frames sent.
    pub max_streams_sent: u64,
    /// MAX_STREAMS frames received.
    pub max_streams_received: u64,
    /// STREAMS_BLOCKED frames sent.
    pub streams_blocked_sent: u64,
    /// STREAMS_BLOCKED frames received.
    pub streams_blocked_received: u64,
}

/// The streams of one connection.
#[derive(Debug)]
pub struct Streams {
    side: Side,
    config: StreamConfig,
    /// Keyed with a fast non-keyed hash: the peer picks IDs only below its stream limits.
    streams: FxHashMap<StreamId, StreamState>,
    credit: [Credit; 2],
    /// How many kept received pieces share their datagram batch, across the streams.
    shared_pieces: SharedPieces,
    /// Streams with data to send, by priority (highest first), round-robin within a level.
    schedule: BTreeMap<std::cmp::Reverse<i32>, VecDeque<StreamId>>,
    /// Streams with control frames to send.
    control: VecDeque<StreamId>,
    next_ticket: u64,
    // Connection-level flow control, sending side.
    peer_max_data: u64,
    data_sent: u64,
    /// The limit at which DATA_BLOCKED was last sent.
    data_blocked_sent_at: Option<u64>,
    // Receiving side.
    max_data: u64,
    /// The connection receive window now; grows by auto-tuning.
    connection_window: u64,
    connection_tuner: window::WindowTuner,
    data_received: u64,
    data_consumed: u64,
    max_data_pending: bool,
    /// Initial limits the peer gave, for streams opened later.
    peer_stream_window_bidi_local: u64,
    peer_stream_window_bidi_remote: u64,
    peer_stream_window_uni: u64,
    events: VecDeque<StreamEvent>,
    counters: CreditCounters,
    /// Streams that carried a FIN or RESET_STREAM in the packet being processed.
    completed_in_packet: bool,
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

fn stream_error(code: TransportErrorCode, ty: FrameType, reason: &str) -> TransportError {
    TransportError {
        code,
        frame_type: Some(ty.0),
        reason: reason.into(),
    }
}

impl Streams {
    pub(crate) fn new(side: Side, config: StreamConfig) -> Self {
        let credit = |max_concurrent| Credit {
            remote_limit: max_concurrent,
            remote_limit_sent: max_concurrent,
            max_concurrent,
            ..Credit::default()
        };
        Self {
            side,
            credit: [
                credit(config.max_concurrent_bidi),
                credit(config.max_concurrent_uni),
            ],
            shared_pieces: SharedPieces::default(),
            max_data: config.connection_window,
            connection_window: config.connection_window,
            connection_tuner: window::WindowTuner::default(),
            config,
            streams: FxHashMap::default(),
            schedule: BTreeMap::new(),
            control: VecDeque::new(),
            next_ticket: 0,
            peer_max_data: 0,
            data_sent: 0,
            data_blocked_sent_at: None,
            data_received: 0,
            data_consumed: 0,
            max_data_pending: false,
            peer_stream_window_bidi_local: 0,
            peer_stream_window_bidi_remote: 0,
            peer_stream_window_uni: 0,
            events: VecDeque::new(),
            counters: CreditCounters::default(),
            completed_in_packet: false,
        }
    }

    /// The settings these streams run with.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Takes the peer's initial limits from its transport parameters (RFC 9000 §18.2).
    pub(crate) fn apply_peer_params(&mut self, params: &crate::wire::TransportParameters) {
        self.peer_max_data = params.initial_max_data.into_inner();
        self.credit[0].local_limit = params.initial_max_streams_bidi.into_inner();
        self.credit[1].local_limit = params.initial_max_streams_uni.into_inner();
        self.peer_stream_window_bidi_local = params.initial_max_stream_data_bidi_local.into_inner();
        self.peer_stream_window_bidi_remote =
            params.initial_max_stream_data_bidi_remote.into_inner();
        self.peer_stream_window_uni = params.initial_max_stream_data_uni.into_inner();
    }

    /// The next event.
    pub(crate) fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Opens a stream now, or fails with the limit when there is no credit or earlier requests
    /// wait (first-come first-served). A failed open leaves everything as it was, except that the
    /// peer is told we are blocked (STREAMS_BLOCKED, RFC 9000 §4.6, RFC9000-031).
    pub fn open(&mut self, now: Instant, dir: Dir) -> Result<StreamId, OpenError> {
        let credit = &mut self.credit[dir_index(dir)];
        if !credit.waiters.is_empty() || credit.local_opened >= credit.local_limit {
            let limit = credit.local_limit;
            if credit.blocked_sent != Some(limit) {
                credit.blocked_pending = Some(limit);
            }
            return Err(OpenError::NoCredit {
                limit,
                waiting: credit.waiters.len(),
            });
        }
        Ok(self.open_now(now, dir))
    }

    /// Opens a stream now if possible, or queues the request: it is granted, in order, with
    /// [`StreamEvent::OpenGranted`] when credit arrives. Cancelling it with
    /// [`Self::cancel_open`] before then consumes no stream ID.
    pub fn request_open(&mut self, now: Instant, dir: Dir) -> Result<StreamId, OpenTicket> {
        match self.open(now, dir) {
            Ok(id) => Ok(id),
            Err(OpenError::NoCredit { .. }) => {
                let ticket = OpenTicket(self.next_ticket);
                self.next_ticket += 1;
                self.credit[dir_index(dir)].waiters.push_back(ticket);
                Err(ticket)
            }
        }
    }

    /// Withdraws a queued open request; false when it was already granted (then the stream in
    /// its [`StreamEvent::OpenGranted`] is the caller's to release).
    pub fn cancel_open(&mut self, ticket: OpenTicket) -> bool {
        for credit in &mut self.credit {
            if let Some(i) = credit.waiters.iter().position(|t| *t == ticket) {
                credit.waiters.remove(i);
                return true;
            }
        }
        false
    }

    /// Whether we wait, or are about to wait, for the peer's stream credit: an opener is
    /// waiting, or we have opened every stream the peer allows us in a direction we use, so
    /// the next open there will wait.
    pub(crate) fn needs_credit(&self) -> bool {
        self.credit.iter().any(|c| {
            !c.waiters.is_empty() || (c.local_opened > 0 && c.local_opened >= c.local_limit)
        })
    }

    /// Whether stream credit waits to be sent that the peer has used up: it can open no
    /// stream in that direction until this MAX_STREAMS arrives.
    pub(crate) fn credit_awaited(&self) -> bool {
        self.credit
            .iter()
            .any(|c| c.max_streams_pending && c.remote_opened >= c.remote_limit_sent)
    }

    fn open_now(&mut self, now: Instant, dir: Dir) -> StreamId {
        let credit = &mut self.credit[dir_index(dir)];
        let id = StreamId::new(self.side, dir, credit.local_opened).expect("below 2^60");
        credit.local_opened += 1;
        let send_window = match dir {
            Dir::Bi => self.peer_stream_window_bidi_remote,
            Dir::Uni => self.peer_stream_window_uni,
        };
        let recv = (dir == Dir::Bi)
            .then(|| RecvHalf::new(self.config.stream_window, self.shared_pieces.clone()));
        self.streams.insert(
            id,
            StreamState {
                send: Some(SendHalf::new(send_window)),
                recv,
                opened_at: now,
                accepted: true,
                queued: false,
            },
        );
        id
    }

    fn serve_waiters(&mut self, now: Instant, dir: Dir) {
        loop {
            let credit = &mut self.credit[dir_index(dir)];
            if credit.local_opened >= credit.local_limit {
                break;
            }
            let Some(ticket) = credit.waiters.pop_front() else {
                break;
            };
            let id = self.open_now(now, dir);
            self.events
                .push_back(StreamEvent::OpenGranted { ticket, id });
        }
    }

    /// The next stream the peer opened.
    pub fn accept(&mut self, dir: Dir) -> Option<StreamId> {
        let id = self.credit[dir_index(dir)].accept_queue.pop_front()?;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.accepted = true;
        }
        Some(id)
    }

    /// Queues a stream to send, if it has anything that flow control lets go out now apart
    /// from connection credit. One blocked by its own limit is not queued, so that it does not
    /// make packets that carry nothing of it; it says it is blocked instead (RFC 9000 §4.1).
    fn schedule(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(send) = stream.send.as_mut() else {
            return;
        };
        if !send.has_sendable(u64::MAX) {
            if send.blocked_by_stream_limit() && send.blocked_sent_at != Some(send.max_data) {
                send.blocked_sent_at = Some(send.max_data);
                send.blocked_pending = true;
                self.queue_control(id);
            }
            return;
        }
        if !stream.queued {
            stream.queued = true;
            self.schedule
                .entry(std::cmp::Reverse(send.priority))
                .or_default()
                .push_back(id);
        }
    }

    fn queue_control(&mut self, id: StreamId) {
        if !self.control.contains(&id) {
            self.control.push_back(id);
        }
    }

    /// Writes as much of `data` as the stream's send buffer takes; returns how much.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let send = stream.send.as_mut().ok_or(StreamError::WrongDirection)?;
        if let Some(code) = send.stop_code {
            return Err(StreamError::Stopped(code));
        }
        if send.state != SendState::Send || send.fin_pending {
            return Err(StreamError::Closed);
        }
        let room = self
            .config
            .send_buffer
            .saturating_sub(send.buffered() as u64) as usize;
        let n = data.len().min(room);
        send.write(&data[..n]);
        send.writer_waiting |= n < data.len();
        self.schedule(id);
        Ok(n)
    }

    /// Ends the send half normally: the peer receives everything written, then the end
    /// (quic-go's Close). The only way to end a send half without a reset.
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let send = stream.send.as_mut().ok_or(StreamError::WrongDirection)?;
        if let Some(code) = send.stop_code {
            return Err(StreamError::Stopped(code));
        }
        if send.state != SendState::Send || send.fin_pending {
            return Err(StreamError::Closed);
        }
        send.fin_pending = true;
        self.schedule(id);
        Ok(())
    }

    /// Abandons the send half with `code` (RESET_STREAM; quic-go's CancelWrite). Data not yet
    /// acknowledged may never arrive.
    pub fn reset(&mut self, id: StreamId, code: VarInt) -> Result<(), StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let send = stream.send.as_mut().ok_or(StreamError::WrongDirection)?;
        if send.reset(code).is_none() {
            return Err(StreamError::Closed);
        }
        self.queue_control(id);
        Ok(())
    }

    /// Reads up to `max` bytes in order.
    pub fn read(&mut self, id: StreamId, max: usize) -> Result<ReadOutcome, StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let recv = stream.recv.as_mut().ok_or(StreamError::WrongDirection)?;
        let (outcome, consumed) = recv.read(max);
        let window_update = recv.max_data_pending;
        self.on_consumed(consumed);
        if window_update {
            self.queue_control(id);
        }
        self.maybe_release(id);
        Ok(outcome)
    }

    /// Whether [`Self::read`] of `id` would return data now: a reader that gathers several
    /// pieces asks before each, so that it does not consume the end of the stream (or a
    /// reset) without reporting it.
    pub fn has_data(&self, id: StreamId) -> bool {
        self.streams
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .is_some_and(RecvHalf::has_data)
    }

    /// Stops reading with `code` (STOP_SENDING; quic-go's CancelRead): buffered and future data
    /// is discarded and its connection credit returned.
    pub fn stop(&mut self, id: StreamId, code: VarInt) -> Result<(), StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let recv = stream.recv.as_mut().ok_or(StreamError::WrongDirection)?;
        let discarded = recv.stop(code);
        let pending = recv.stop_pending;
        self.on_consumed(discarded);
        if pending {
            self.queue_control(id);
        }
        self.maybe_release(id);
        Ok(())
    }

    /// What dropping an application handle does (docs/design.md rule 2): an unfinished send half
    /// is reset (a message cut short must not look complete), an unread receive half is stopped,
    /// with the configured codes. A finished send half is never reset, so unacknowledged data
    /// still arrives (the quic-go CancelWrite-after-Close problem, PR #4419).
    pub fn release(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.accepted = true;
        self.reset_if_unfinished(id);
        self.stop_if_unread(id);
        self.maybe_release(id);
    }

    /// Releases only the send half, as dropping a send-only handle of a bidirectional stream
    /// does: reset if unfinished, never after [`Self::finish`].
    pub fn release_send(&mut self, id: StreamId) {
        self.reset_if_unfinished(id);
        self.maybe_release(id);
    }

    /// Releases only the receive half, as dropping a receive-only handle of a bidirectional
    /// stream does: stop it if not read to the end.
    pub fn release_recv(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.accepted = true;
        }
        self.stop_if_unread(id);
        self.maybe_release(id);
    }

    /// Resets the send half with the release code unless the application finished it.
    fn reset_if_unfinished(&mut self, id: StreamId) {
        let unfinished = self
            .streams
            .get(&id)
            .and_then(|s| s.send.as_ref())
            .is_some_and(|s| s.state == SendState::Send && !s.fin_pending);
        if unfinished {
            let code = self.config.release_reset_code;
            let _ = self.reset(id, code);
        }
    }

    /// Stops the receive half with the release code unless it was read to the end.
    fn stop_if_unread(&mut self, id: StreamId) {
        let unread = self
            .streams
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .is_some_and(|r| !r.is_finished());
        if unread {
            let code = self.config.release_stop_code;
            let _ = self.stop(id, code);
        }
    }

    /// Sets a stream's scheduling priority: higher first, round-robin among equals.
    pub fn set_priority(&mut self, id: StreamId, priority: i32) -> Result<(), StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let send = stream.send.as_mut().ok_or(StreamError::WrongDirection)?;
        if send.priority != priority {
            let old = send.priority;
            send.priority = priority;
            if stream.queued {
                if let Some(queue) = self.schedule.get_mut(&std::cmp::Reverse(old)) {
                    queue.retain(|s| *s != id);
                }
                stream.queued = false;
                self.schedule(id);
            }
        }
        Ok(())
    }

    /// Releases the stream if both halves are finished (docs/design.md rule 1); a peer-initiated
    /// stream's credit goes back to the peer.
    fn maybe_release(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let send_done = stream.send.as_ref().is_none_or(|s| s.state.is_terminal());
        let recv_done = stream.recv.as_ref().is_none_or(RecvHalf::is_finished);
        if !(send_done && recv_done) {
            return;
        }
        self.streams.remove(&id);
        self.control.retain(|s| *s != id);
        let credit = &mut self.credit[dir_index(id.dir())];
        credit.accept_queue.retain(|s| *s != id);
        if id.initiator() != self.side {
            credit.remote_released += 1;
            let new_limit = (credit.remote_released + credit.max_concurrent).min(MAX_STREAM_COUNT);
            // RFC 9000 §4.6, RFC9000-032: credit is not held back waiting for STREAMS_BLOCKED.
            if new_limit >= credit.remote_limit + self.config.credit_batch {
                credit.remote_limit = new_limit;
                credit.max_streams_pending = true;
            }
        }
        self.events.push_back(StreamEvent::Released(id));
    }

    fn on_consumed(&mut self, bytes: u64) {
        self.data_consumed += bytes;
        let window = self.connection_window;
        // Saturating: after a peer overran the window (a connection error), the application may
        // still stop or release streams, consuming more than was allowed.
        if self.max_data.saturating_sub(self.data_consumed) < window / 2 {
            self.max_data = self.data_consumed + window;
            self.max_data_pending = true;
        }
    }

    /// Whether a packet just processed completed a stream from the peer (FIN or RESET_STREAM),
    /// which the peer's credit may wait on.
    pub(crate) fn take_completed_in_packet(&mut self) -> bool {
        std::mem::take(&mut self.completed_in_packet)
    }

    /// Finds a stream a frame names, opening peer streams up to it implicitly (RFC 9000 §3.2).
    /// `None` for a stream already released.
    fn stream_for_frame(
        &mut self,
        now: Instant,
        id: StreamId,
        ty: FrameType,
    ) -> Result<Option<&mut StreamState>, TransportError> {
        let dir = id.dir();
        let credit = &mut self.credit[dir_index(dir)];
        if id.initiator() == self.side {
            if id.index() >= credit.local_opened {
                return Err(stream_error(
                    TransportErrorCode::STREAM_STATE_ERROR,
                    ty,
                    "frame for a stream we never opened",
                ));
            }
            return Ok(self.streams.get_mut(&id));
        }
        // RFC 9000 §4.6, RFC9000-029.
        if id.index() >= credit.remote_limit {
            return Err(stream_error(
                TransportErrorCode::STREAM_LIMIT_ERROR,
                ty,
                "stream beyond the advertised limit",
            ));
        }
        while credit.remote_opened <= id.index() {
            let new =
                StreamId::new(id.initiator(), dir, credit.remote_opened).expect("below limit");
            credit.remote_opened += 1;
            credit.accept_queue.push_back(new);
            let send = (dir == Dir::Bi).then(|| SendHalf::new(self.peer_stream_window_bidi_local));
            self.streams.insert(
                new,
                StreamState {
                    send,
                    recv: Some(RecvHalf::new(
                        self.config.stream_window,
                        self.shared_pieces.clone(),
                    )),
                    opened_at: now,
                    accepted: false,
                    queued: false,
                },
            );
            self.events.push_back(StreamEvent::Opened(dir));
        }
        Ok(self.streams.get_mut(&id))
    }

    /// Whether `id` is a stream we only send on (our unidirectional stream).
    fn send_only(&self, id: StreamId) -> bool {
        id.dir() == Dir::Uni && id.initiator() == self.side
    }

    /// Whether `id` is a stream we only receive on (the peer's unidirectional stream).
    fn receive_only(&self, id: StreamId) -> bool {
        id.dir() == Dir::Uni && id.initiator() != self.side
    }

    /// Handles a stream-related frame from the peer.
    pub(crate) fn on_frame(
        &mut self,
        now: Instant,
        frame: &Frame<'_>,
        payload: &Bytes,
    ) -> Result<(), TransportError> {
        let ty = frame.ty();
        let violation = |reason| stream_error(TransportErrorCode::STREAM_STATE_ERROR, ty, reason);
        match *frame {
            Frame::Stream(StreamFrame {
                id,
                offset,
                fin,
                data,
            }) => {
                // RFC 9000 §19.8, RFC9000-353.
                if self.send_only(id) {
                    return Err(violation("STREAM frame on a send-only stream"));
                }
                let Some(stream) = self.stream_for_frame(now, id, ty)? else {
                    return Ok(());
                };
                let accepted = stream.accepted;
                let recv = stream.recv.as_mut().expect("receivable");
                let was_readable = recv.is_readable();
                let discarding = recv.stop_code.is_some() || recv.reset_code.is_some();
                let grew = recv.on_data(offset.into_inner(), data, fin, payload)?;
                let readable = !was_readable && recv.is_readable();
                self.on_received(grew, ty)?;
                if discarding {
                    self.on_consumed(grew);
                }
                self.completed_in_packet |= fin;
                if readable && accepted {
                    self.events.push_back(StreamEvent::Readable(id));
                }
                self.maybe_release(id);
            }
            Frame::ResetStream {
                id,
                error_code,
                final_size,
            } => {
                // RFC 9000 §19.4, RFC9000-345.
                if self.send_only(id) {
                    return Err(violation("RESET_STREAM on a send-only stream"));
                }
                let Some(stream) = self.stream_for_frame(now, id, ty)? else {
                    return Ok(());
                };
                let accepted = stream.accepted;
                let recv = stream.recv.as_mut().expect("receivable");
                let (grew, unread) = recv.on_reset(error_code, final_size.into_inner())?;
                let readable = recv.state == RecvState::ResetRecvd;
                self.on_received(grew, ty)?;
                self.on_consumed(unread);
                self.completed_in_packet = true;
                if readable && accepted {
                    self.events.push_back(StreamEvent::Readable(id));
                }
                self.maybe_release(id);
            }
            Frame::StopSending { id, error_code } => {
                // RFC 9000 §19.5, RFC9000-347 (and RFC9000-346 in stream_for_frame).
                if self.receive_only(id) {
                    return Err(violation("STOP_SENDING on a receive-only stream"));
                }
                let Some(stream) = self.stream_for_frame(now, id, ty)? else {
                    return Ok(());
                };
                let send = stream.send.as_mut().expect("sendable");
                if send.stop_code.is_none() {
                    send.stop_code = Some(error_code);
                    // RFC 9000 §3.5: answer with RESET_STREAM, carrying the peer's code.
                    if send.reset(error_code).is_some() {
                        self.queue_control(id);
                    }
                    self.events.push_back(StreamEvent::Stopped {
                        id,
                        code: error_code,
                    });
                }
                self.maybe_release(id);
            }
            Frame::MaxStreamData { id, max } => {
                // RFC 9000 §19.10, RFC9000-358 (and RFC9000-357 in stream_for_frame).
                if self.receive_only(id) {
                    return Err(violation("MAX_STREAM_DATA on a receive-only stream"));
                }
                if let Some(stream) = self.stream_for_frame(now, id, ty)? {
                    let send = stream.send.as_mut().expect("sendable");
                    if max.into_inner() > send.max_data {
                        send.max_data = max.into_inner();
                        self.schedule(id);
                    }
                }
            }
            Frame::StreamDataBlocked { id, .. } => {
                // RFC 9000 §19.13, RFC9000-367.
                if self.send_only(id) {
                    return Err(violation("STREAM_DATA_BLOCKED on a send-only stream"));
                }
                if let Some(stream) = self.stream_for_frame(now, id, ty)? {
                    if let Some(recv) = stream.recv.as_mut() {
                        if !recv.is_finished() {
                            recv.tuner.on_peer_blocked();
                            recv.max_data_pending = true;
                            self.queue_control(id);
                        }
                    }
                }
            }
            Frame::MaxData(max) => {
                if max.into_inner() > self.peer_max_data {
                    self.peer_max_data = max.into_inner();
                    let waiting: Vec<StreamId> = self
                        .streams
                        .iter()
                        .filter(|(_, s)| s.send.as_ref().is_some_and(|h| h.has_sendable(u64::MAX)))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in waiting {
                        self.schedule(id);
                    }
                }
            }
            Frame::MaxStreams { dir, count } => {
                self.counters.max_streams_received += 1;
                let credit = &mut self.credit[dir_index(dir)];
                // RFC 9000 §19.11, RFC9000-362: a limit that does not grow is ignored.
                if count.into_inner() > credit.local_limit {
                    credit.local_limit = count.into_inner();
                    self.serve_waiters(now, dir);
                }
            }
            Frame::StreamsBlocked { dir, limit } => {
                self.counters.streams_blocked_received += 1;
                self.report_peer_blocked(dir, limit.into_inner());
            }
            Frame::DataBlocked(_) => {
                // The peer waits for connection credit: the window is the limit.
                self.connection_tuner.on_peer_blocked();
                self.max_data_pending = true;
            }
            _ => unreachable!("only stream frames are passed here"),
        }
        Ok(())
    }

    /// Counts received stream data against the connection limit (RFC 9000 §4.1, RFC9000-356).
    fn on_received(&mut self, grew: u64, ty: FrameType) -> Result<(), TransportError> {
        self.data_received += grew;
        if self.data_received > self.max_data {
            return Err(stream_error(
                TransportErrorCode::FLOW_CONTROL_ERROR,
                ty,
                "connection data beyond MAX_DATA",
            ));
        }
        Ok(())
    }

    /// The peer says it is blocked at `limit`: name the streams our application holds.
    fn report_peer_blocked(&mut self, dir: Dir, limit: u64) {
        if limit < self.credit[dir_index(dir)].remote_limit {
            // Stale: we raised the limit since.
            return;
        }
        let mut held: Vec<(StreamId, HeldReason)> = self
            .streams
            .iter()
            .filter(|(id, _)| id.initiator() != self.side && id.dir() == dir)
            .map(|(id, stream)| (*id, held_reason(stream)))
            .collect();
        held.sort_by_key(|(id, _)| *id);
        if !held.is_empty() {
            self.events
                .push_back(StreamEvent::PeerBlocked(PeerBlockedReport {
                    dir,
                    limit,
                    held,
                }));
        }
    }
}

fn held_reason(stream: &StreamState) -> HeldReason {
    if !stream.accepted {
        return HeldReason::NotAccepted;
    }
    if stream.recv.as_ref().is_some_and(|r| !r.is_finished()) {
        return HeldReason::ReceiveNotReadOrStopped;
    }
    match stream.send.as_ref().map(|s| s.state) {
        Some(SendState::Send) => HeldReason::SendNotFinished,
        _ => HeldReason::SendUnacknowledged,
    }
}

/// The largest STREAM frame header: type, 8-byte stream ID, 8-byte offset, 2-byte length.
const STREAM_HEADER_MAX: usize = 1 + 8 + 8 + 2;
/// The largest control frame this module writes (RESET_STREAM: type and three 8-byte varints).
const CONTROL_FRAME_MAX: usize = 1 + 8 + 8 + 8;

impl Streams {
    /// Whether anything waits to be sent.
    pub(crate) fn wants_to_send(&self) -> bool {
        self.max_data_pending
            || !self.control.is_empty()
            || self
                .credit
                .iter()
                .any(|c| c.max_streams_pending || c.blocked_pending.is_some())
            || (self.peer_max_data > self.data_sent && !self.schedule.is_empty())
            || self.any_sendable(0)
    }

    /// Whether stream data, a FIN or data to send again is queued and flow control lets it
    /// go out.
    pub(crate) fn has_data_to_send(&self) -> bool {
        self.any_sendable(self.peer_max_data.saturating_sub(self.data_sent))
    }

    /// Whether a scheduled stream has something to send with `conn_credit` bytes of new data
    /// allowed on the connection.
    fn any_sendable(&self, conn_credit: u64) -> bool {
        self.schedule.values().flatten().any(|id| {
            self.streams
                .get(id)
                .and_then(|s| s.send.as_ref())
                .is_some_and(|s| s.has_sendable(conn_credit))
        })
    }

    /// Writes stream frames into `buf` up to `max_end`: flow control and credit first, then
    /// data by priority, round-robin within a priority. Returns whether anything was written.
    /// `now` and the smoothed `rtt` drive receive-window auto-tuning.
    pub(crate) fn write_frames(
        &mut self,
        buf: &mut Vec<u8>,
        max_end: usize,
        records: &mut Vec<StreamFrameRecord>,
        now: Instant,
        rtt: Duration,
    ) -> bool {
        let before = buf.len();
        let put = |frame: Frame<'_>, buf: &mut Vec<u8>| frame.encode(buf);
        let room = |len: usize| max_end.saturating_sub(len);
        if self.max_data_pending && room(buf.len()) >= 9 {
            self.max_data_pending = false;
            self.connection_window = self.connection_tuner.on_update(
                now,
                rtt,
                self.data_consumed,
                self.connection_window,
                self.config.max_connection_window,
            );
            self.max_data = self
                .max_data
                .max(self.data_consumed + self.connection_window);
            put(Frame::MaxData(varint(self.max_data)), buf);
            records.push(StreamFrameRecord::MaxData);
        }
        for dir in [Dir::Bi, Dir::Uni] {
            let credit = &mut self.credit[dir_index(dir)];
            if credit.max_streams_pending && room(buf.len()) >= 9 {
                credit.max_streams_pending = false;
                credit.remote_limit_sent = credit.remote_limit;
                self.counters.max_streams_sent += 1;
                put(
                    Frame::MaxStreams {
                        dir,
                        count: varint(credit.remote_limit),
                    },
                    buf,
                );
                records.push(StreamFrameRecord::MaxStreams(dir));
            }
            if let Some(limit) = credit.blocked_pending {
                if room(buf.len()) >= 9 {
                    credit.blocked_pending = None;
                    credit.blocked_sent = Some(limit);
                    self.counters.streams_blocked_sent += 1;
                    put(
                        Frame::StreamsBlocked {
                            dir,
                            limit: varint(limit),
                        },
                        buf,
                    );
                    records.push(StreamFrameRecord::StreamsBlocked(dir));
                }
            }
        }
        while let Some(id) = self.control.pop_front() {
            if room(buf.len()) < 3 * CONTROL_FRAME_MAX {
                self.control.push_front(id);
                break;
            }
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            if let Some(send) = stream.send.as_mut() {
                if send.blocked_pending && send.state == SendState::Send {
                    send.blocked_pending = false;
                    put(
                        Frame::StreamDataBlocked {
                            id,
                            limit: varint(send.max_data),
                        },
                        buf,
                    );
                    records.push(StreamFrameRecord::StreamDataBlocked(id));
                }
                if send.reset_pending {
                    send.reset_pending = false;
                    put(
                        Frame::ResetStream {
                            id,
                            error_code: send.reset_code.unwrap_or_default(),
                            final_size: varint(send.final_size()),
                        },
                        buf,
                    );
                    records.push(StreamFrameRecord::Reset(id));
                }
            }
            if let Some(recv) = stream.recv.as_mut() {
                if recv.stop_pending {
                    recv.stop_pending = false;
                    put(
                        Frame::StopSending {
                            id,
                            error_code: recv.stop_code.unwrap_or_default(),
                        },
                        buf,
                    );
                    records.push(StreamFrameRecord::Stop(id));
                }
                if recv.max_data_pending {
                    recv.max_data_pending = false;
                    if !recv.is_finished() && recv.final_size.is_none() {
                        recv.autotune(now, rtt, self.config.max_stream_window);
                        put(
                            Frame::MaxStreamData {
                                id,
                                max: varint(recv.max_data),
                            },
                            buf,
                        );
                        records.push(StreamFrameRecord::MaxStreamData(id));
                    }
                }
            }
        }
        self.write_data(buf, max_end, records);
        buf.len() > before
    }

    fn write_data(
        &mut self,
        buf: &mut Vec<u8>,
        max_end: usize,
        records: &mut Vec<StreamFrameRecord>,
    ) {
        let mut conn_credit = self.peer_max_data.saturating_sub(self.data_sent);
        // Priority levels in order, without collecting them: this runs for every packet.
        let mut next_level = self.schedule.keys().next().copied();
        'levels: while let Some(level) = next_level {
            next_level = self
                .schedule
                .range((Bound::Excluded(level), Bound::Unbounded))
                .next()
                .map(|(level, _)| *level);
            let Some(queue) = self.schedule.get_mut(&level) else {
                continue;
            };
            let mut visits = queue.len();
            while visits > 0 {
                visits -= 1;
                let Some(id) = queue.pop_front() else {
                    break;
                };
                let Some(stream) = self.streams.get_mut(&id) else {
                    continue;
                };
                let Some(send) = stream.send.as_mut() else {
                    stream.queued = false;
                    continue;
                };
                if !send.has_sendable(conn_credit) {
                    stream.queued = false;
                    if send.blocked_by_stream_limit() && send.blocked_sent_at != Some(send.max_data)
                    {
                        send.blocked_sent_at = Some(send.max_data);
                        send.blocked_pending = true;
                        if !self.control.contains(&id) {
                            self.control.push_back(id);
                        }
                    }
                    continue;
                }
                let room = max_end
                    .saturating_sub(buf.len())
                    .saturating_sub(STREAM_HEADER_MAX);
                if room == 0 {
                    queue.push_front(id);
                    break 'levels;
                }
                let credit_before = conn_credit;
                let Some((offset, data, fin)) = send.next_chunk(room, &mut conn_credit) else {
                    stream.queued = false;
                    continue;
                };
                let range = offset..offset + data.len() as u64;
                Frame::Stream(StreamFrame {
                    id,
                    offset: varint(offset),
                    fin,
                    data,
                })
                .encode(buf);
                self.data_sent += credit_before - conn_credit;
                records.push(StreamFrameRecord::Data { id, range, fin });
                if send.has_sendable(conn_credit) {
                    queue.push_back(id);
                } else {
                    stream.queued = false;
                }
            }
        }
        self.schedule.retain(|_, queue| !queue.is_empty());
        // RFC 9000 §4.1, RFC9000-365: blocked by the connection limit with data waiting.
        if conn_credit == 0 && self.data_blocked_sent_at != Some(self.peer_max_data) {
            let waiting = self
                .streams
                .values()
                .any(|s| s.send.as_ref().is_some_and(|h| h.has_sendable(u64::MAX)));
            if waiting {
                self.data_blocked_sent_at = Some(self.peer_max_data);
                if buf.len() + 9 <= max_end {
                    Frame::DataBlocked(varint(self.peer_max_data)).encode(buf);
                    records.push(StreamFrameRecord::DataBlocked);
                }
            }
        }
    }

    /// Frames of a packet that was acknowledged.
    pub(crate) fn on_acked(&mut self, records: &[StreamFrameRecord]) {
        for record in records {
            match record {
                StreamFrameRecord::Data { id, range, fin } => {
                    let send_buffer = self.config.send_buffer;
                    let Some(send) = self.streams.get_mut(id).and_then(|s| s.send.as_mut()) else {
                        continue;
                    };
                    let finished = send.on_acked(range.clone(), *fin);
                    // A waiting writer is woken once half the buffer is free, not per
                    // acknowledged packet: it then writes a large piece at once.
                    if send.writer_waiting && send.buffered() as u64 <= send_buffer / 2 {
                        send.writer_waiting = false;
                        self.events.push_back(StreamEvent::Writable(*id));
                    }
                    if finished {
                        self.events.push_back(StreamEvent::Finished(*id));
                        self.maybe_release(*id);
                    }
                }
                StreamFrameRecord::Reset(id) => {
                    let done = self
                        .streams
                        .get_mut(id)
                        .and_then(|s| s.send.as_mut())
                        .is_some_and(SendHalf::on_reset_acked);
                    if done {
                        self.maybe_release(*id);
                    }
                }
                _ => {}
            }
        }
    }

    /// Frames of a packet that was lost: queued again where still needed (RFC 9000 §13.3).
    pub(crate) fn on_lost(&mut self, records: &[StreamFrameRecord]) {
        for record in records {
            match record {
                StreamFrameRecord::Data { id, range, fin } => {
                    if let Some(send) = self.streams.get_mut(id).and_then(|s| s.send.as_mut()) {
                        send.on_lost(range.clone(), *fin);
                        self.schedule(*id);
                    }
                }
                StreamFrameRecord::Reset(id) => {
                    if let Some(send) = self.streams.get_mut(id).and_then(|s| s.send.as_mut()) {
                        if send.state == SendState::ResetSent {
                            send.reset_pending = true;
                            self.queue_control(*id);
                        }
                    }
                }
                StreamFrameRecord::Stop(id) => {
                    if let Some(recv) = self.streams.get_mut(id).and_then(|s| s.recv.as_mut()) {
                        if recv.final_size.is_none() {
                            recv.stop_pending = true;
                            self.queue_control(*id);
                        }
                    }
                }
                StreamFrameRecord::MaxStreamData(id) => {
                    if let Some(recv) = self.streams.get_mut(id).and_then(|s| s.recv.as_mut()) {
                        recv.max_data_pending = true;
                        self.queue_control(*id);
                    }
                }
                StreamFrameRecord::MaxData => self.max_data_pending = true,
                StreamFrameRecord::MaxStreams(dir) => {
                    self.credit[dir_index(*dir)].max_streams_pending = true;
                }
                StreamFrameRecord::StreamsBlocked(dir) => {
                    let credit = &mut self.credit[dir_index(*dir)];
                    if !credit.waiters.is_empty() || credit.blocked_sent == Some(credit.local_limit)
                    {
                        credit.blocked_pending = Some(credit.local_limit);
                    }
                }
                StreamFrameRecord::StreamDataBlocked(_) | StreamFrameRecord::DataBlocked => {}
            }
        }
    }

    /// The state of every stream and of stream credit, for observability (docs/design.md rule 5).
    pub fn snapshot(&self, now: Instant) -> StreamsSnapshot {
        let mut credit = Vec::with_capacity(4);
        for dir in [Dir::Bi, Dir::Uni] {
            let c = &self.credit[dir_index(dir)];
            let open_local = self
                .streams
                .keys()
                .filter(|id| id.initiator() == self.side && id.dir() == dir)
                .count() as u64;
            credit.push(CreditSnapshot {
                initiator: self.side,
                dir,
                open: open_local,
                opened_total: c.local_opened,
                limit: c.local_limit,
                available: c.local_limit.saturating_sub(c.local_opened),
                waiting: c.waiters.len(),
            });
            credit.push(CreditSnapshot {
                initiator: self.side.peer(),
                dir,
                open: c.remote_opened - c.remote_released,
                opened_total: c.remote_opened,
                limit: c.remote_limit,
                available: c.remote_limit.saturating_sub(c.remote_opened),
                waiting: 0,
            });
        }
        let mut streams: Vec<StreamSnapshot> = self
            .streams
            .iter()
            .map(|(id, s)| self.stream_snapshot(*id, s, now))
            .collect();
        streams.sort_by_key(|s| s.id);
        StreamsSnapshot {
            credit,
            streams,
            counters: self.counters,
            max_data_sent: self.max_data,
            connection_window: self.connection_window,
            max_data_received: self.peer_max_data,
            data_sent: self.data_sent,
            data_received: self.data_received,
            shared_pieces: self.shared_pieces.held(),
        }
    }

    /// The state of stream `id`, if it is open (not released).
    pub fn stream(&self, id: StreamId, now: Instant) -> Option<StreamSnapshot> {
        self.streams
            .get(&id)
            .map(|s| self.stream_snapshot(id, s, now))
    }

    fn stream_snapshot(&self, id: StreamId, s: &StreamState, now: Instant) -> StreamSnapshot {
        StreamSnapshot {
            id,
            accepted: s.accepted,
            age: now.saturating_duration_since(s.opened_at),
            send: s.send.as_ref().map(|h| SendSnapshot {
                state: h.state,
                written: h.written(),
                sent: h.sent_bytes(),
                acked: h.acked_bytes(),
                buffered: h.buffered() as u64,
                stopped_by_peer: h.stop_code,
            }),
            recv: s.recv.as_ref().map(|h| RecvSnapshot {
                state: h.state,
                received: h.received_bytes,
                read: h.read_bytes(),
                buffered: h.buffered() as u64,
                stopped: h.stop_code.is_some(),
                window: h.window,
            }),
            held: (!self.is_released_candidate(s)).then(|| held_reason(s)),
        }
    }

    fn is_released_candidate(&self, stream: &StreamState) -> bool {
        stream.send.as_ref().is_none_or(|s| s.state.is_terminal())
            && stream.recv.as_ref().is_none_or(RecvHalf::is_finished)
    }
}

fn varint(value: u64) -> VarInt {
    VarInt::from_u64(value).unwrap_or(VarInt::MAX)
}

/// Stream credit of one kind of stream, as one initiator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditSnapshot {
    /// Who opens these streams.
    pub initiator: Side,
    /// Which kind.
    pub dir: Dir,
    /// Streams of this kind open now (not released).
    pub open: u64,
    /// Streams of this kind opened since the connection started.
    pub opened_total: u64,
    /// The limit (MAX_STREAMS) on them.
    pub limit: u64,
    /// Streams that can still be opened under the limit.
    pub available: u64,
    /// Open requests waiting for credit (our own streams only).
    pub waiting: usize,
}

/// One stream's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// The stream.
    pub id: StreamId,
    /// Whether the application has it (opened locally or accepted).
    pub accepted: bool,
    /// Time since it was opened.
    pub age: Duration,
    /// The send half, when the stream has one.
    pub send: Option<SendSnapshot>,
    /// The receive half, when the stream has one.
    pub recv: Option<RecvSnapshot>,
    /// What keeps it from being released, if anything.
    pub held: Option<HeldReason>,
}

/// A send half's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendSnapshot {
    /// RFC 9000 §3.1 state.
    pub state: SendState,
    /// Bytes the application wrote.
    pub written: u64,
    /// Bytes sent at least once.
    pub sent: u64,
    /// Bytes acknowledged.
    pub acked: u64,
    /// Bytes buffered (written, not acknowledged).
    pub buffered: u64,
    /// The peer's STOP_SENDING code, if it stopped the stream.
    pub stopped_by_peer: Option<VarInt>,
}

/// A receive half's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecvSnapshot {
    /// RFC 9000 §3.2 state.
    pub state: RecvState,
    /// Bytes received.
    pub received: u64,
    /// Bytes the application read.
    pub read: u64,
    /// Bytes waiting to be read.
    pub buffered: u64,
    /// Whether the application stopped reading.
    pub stopped: bool,
    /// The receive window, as auto-tuned so far.
    pub window: u64,
}

/// Streams and stream credit of a connection at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamsSnapshot {
    /// Per kind of stream and initiator.
    pub credit: Vec<CreditSnapshot>,
    /// Every stream not yet released.
    pub streams: Vec<StreamSnapshot>,
    /// MAX_STREAMS and STREAMS_BLOCKED counters.
    pub counters: CreditCounters,
    /// The connection flow control limit we advertised.
    pub max_data_sent: u64,
    /// The connection receive window, as auto-tuned so far.
    pub connection_window: u64,
    /// The connection flow control limit the peer advertised.
    pub max_data_received: u64,
    /// Stream bytes sent (new data).
    pub data_sent: u64,
    /// Stream bytes received (highest offsets).
    pub data_received: u64,
    /// Unread received pieces that share the storage of the datagram batch they arrived in,
    /// keeping it in memory; at most 256 per connection, further ones are copied.
    pub shared_pieces: usize,
}

impl StreamsSnapshot {
    /// The credit entry for streams of `dir` opened by `initiator`.
    pub fn credit(&self, initiator: Side, dir: Dir) -> &CreditSnapshot {
        self.credit
            .iter()
            .find(|c| c.initiator == initiator && c.dir == dir)
            .expect("all four kinds are listed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TransportParameters;

    fn server() -> (Streams, Instant) {
        let config = StreamConfig {
            max_concurrent_bidi: 2,
            stream_window: 1000,
            connection_window: 1500,
            ..StreamConfig::default()
        };
        let mut streams = Streams::new(Side::Server, config);
        let params = TransportParameters {
            initial_max_data: VarInt::from_u32(10_000),
            initial_max_streams_bidi: VarInt::from_u32(5),
            initial_max_streams_uni: VarInt::from_u32(5),
            initial_max_stream_data_bidi_local: VarInt::from_u32(10_000),
            initial_max_stream_data_bidi_remote: VarInt::from_u32(10_000),
            ..TransportParameters::default()
        };
        streams.apply_peer_params(&params);
        (streams, Instant::now())
    }

    fn client_bidi(index: u64) -> StreamId {
        StreamId::new(Side::Client, Dir::Bi, index).unwrap()
    }

    fn data(
        streams: &mut Streams,
        now: Instant,
        id: StreamId,
        offset: u64,
        len: usize,
        fin: bool,
    ) -> Result<(), TransportError> {
        let payload = Bytes::from(vec![7u8; len]);
        let frame = Frame::Stream(StreamFrame {
            id,
            offset: varint(offset),
            fin,
            data: &payload,
        });
        streams.on_frame(now, &frame, &payload)
    }

    #[test]
    fn credit_peer_opening_beyond_the_limit_is_a_stream_limit_error() {
        let (mut streams, now) = server();
        assert!(data(&mut streams, now, client_bidi(1), 0, 1, false).is_ok());
        // RFC 9000 §4.6, RFC9000-029: index 2 with a limit of 2.
        let error = data(&mut streams, now, client_bidi(2), 0, 1, false).unwrap_err();
        assert_eq!(error.code, TransportErrorCode::STREAM_LIMIT_ERROR);
    }

    #[test]
    fn streams_opened_implicitly_by_a_higher_id() {
        let (mut streams, now) = server();
        data(&mut streams, now, client_bidi(1), 0, 1, false).unwrap();
        // RFC 9000 §3.2: stream 0 opened too, and is accepted first.
        assert_eq!(streams.accept(Dir::Bi), Some(client_bidi(0)));
        assert_eq!(streams.accept(Dir::Bi), Some(client_bidi(1)));
        assert_eq!(streams.accept(Dir::Bi), None);
        let opened = std::iter::from_fn(|| streams.poll_event())
            .filter(|e| matches!(e, StreamEvent::Opened(Dir::Bi)))
            .count();
        assert_eq!(opened, 2);
    }

    #[test]
    fn streams_frames_on_the_wrong_direction_or_unopened_streams() {
        let (mut streams, now) = server();
        let ours_uni = StreamId::new(Side::Server, Dir::Uni, 0).unwrap();
        let theirs_uni = StreamId::new(Side::Client, Dir::Uni, 0).unwrap();
        let ours_unopened = StreamId::new(Side::Server, Dir::Bi, 3).unwrap();
        let state_error = |r: Result<(), TransportError>| {
            r.unwrap_err().code == TransportErrorCode::STREAM_STATE_ERROR
        };
        streams.open(now, Dir::Uni).unwrap();
        let payload = Bytes::new();
        // RFC9000-353, RFC9000-345, RFC9000-347, RFC9000-358, RFC9000-367, RFC9000-346/357.
        assert!(state_error(data(&mut streams, now, ours_uni, 0, 1, false)));
        let reset = Frame::ResetStream {
            id: ours_uni,
            error_code: VarInt::ZERO,
            final_size: VarInt::ZERO,
        };
        assert!(state_error(streams.on_frame(now, &reset, &payload)));
        let stop = Frame::StopSending {
            id: theirs_uni,
            error_code: VarInt::ZERO,
        };
        assert!(state_error(streams.on_frame(now, &stop, &payload)));
        let max = Frame::MaxStreamData {
            id: theirs_uni,
            max: VarInt::ZERO,
        };
        assert!(state_error(streams.on_frame(now, &max, &payload)));
        let blocked = Frame::StreamDataBlocked {
            id: ours_uni,
            limit: VarInt::ZERO,
        };
        assert!(state_error(streams.on_frame(now, &blocked, &payload)));
        let stop = Frame::StopSending {
            id: ours_unopened,
            error_code: VarInt::ZERO,
        };
        assert!(state_error(streams.on_frame(now, &stop, &payload)));
    }

    #[test]
    fn flow_peer_exceeding_the_windows_is_a_flow_control_error() {
        let (mut streams, now) = server();
        // Stream window 1000 (RFC9000-360).
        let error = data(&mut streams, now, client_bidi(0), 500, 501, false).unwrap_err();
        assert_eq!(error.code, TransportErrorCode::FLOW_CONTROL_ERROR);
        // Connection window 1500 across streams (RFC9000-356).
        let (mut streams, now) = server();
        data(&mut streams, now, client_bidi(0), 0, 1000, false).unwrap();
        let error = data(&mut streams, now, client_bidi(1), 0, 501, false).unwrap_err();
        assert_eq!(error.code, TransportErrorCode::FLOW_CONTROL_ERROR);
    }

    #[test]
    fn flow_reset_and_stop_return_connection_credit() {
        let (mut streams, now) = server();
        data(&mut streams, now, client_bidi(0), 0, 1000, false).unwrap();
        let id = streams.accept(Dir::Bi).unwrap();
        // Stopping discards 1000 unread bytes: the connection window moves on.
        streams.stop(id, VarInt::ZERO).unwrap();
        assert!(streams.max_data >= 2500, "max_data {}", streams.max_data);
        // A reset's unread bytes count too.
        let (mut streams, now) = server();
        data(&mut streams, now, client_bidi(0), 0, 100, false).unwrap();
        let reset = Frame::ResetStream {
            id: client_bidi(0),
            error_code: VarInt::from_u32(3),
            final_size: VarInt::from_u32(900),
        };
        streams.on_frame(now, &reset, &Bytes::new()).unwrap();
        assert!(streams.max_data >= 2400, "max_data {}", streams.max_data);
    }

    /// Sends what is pending; returns the records of the packet.
    fn send(streams: &mut Streams, now: Instant) -> Vec<StreamFrameRecord> {
        let (mut buf, mut records) = (Vec::new(), Vec::new());
        streams.write_frames(&mut buf, 1200, &mut records, now, Duration::from_millis(20));
        records
    }

    #[test]
    fn streams_one_stream_snapshot_is_its_entry_in_the_whole() {
        let (mut streams, now) = server();
        data(&mut streams, now, client_bidi(1), 0, 10, true).unwrap();
        let ours = streams.open(now, Dir::Uni).unwrap();
        streams.write(ours, b"abc").unwrap();
        let whole = streams.snapshot(now);
        assert_eq!(whole.streams.len(), 3);
        for entry in &whole.streams {
            assert_eq!(streams.stream(entry.id, now).as_ref(), Some(entry));
        }
        assert_eq!(streams.stream(client_bidi(4), now), None);
    }

    #[test]
    fn flow_data_to_send_is_what_was_written_and_flow_control_allows() {
        let (mut streams, now) = server();
        assert!(!streams.has_data_to_send());
        let id = streams.open(now, Dir::Bi).unwrap();
        streams.write(id, &[1; 600]).unwrap();
        assert!(streams.has_data_to_send());
        while !send(&mut streams, now).is_empty() {}
        assert!(!streams.has_data_to_send());
        // A FIN alone is something to send.
        streams.finish(id).unwrap();
        assert!(streams.has_data_to_send());
        send(&mut streams, now);
        assert!(!streams.has_data_to_send());
        // Data beyond the connection window (10,000 bytes, 600 used) waits for credit: it
        // is not something to send now.
        let id = streams.open(now, Dir::Bi).unwrap();
        streams.write(id, &[1; 10_000]).unwrap();
        while !send(&mut streams, now).is_empty() {}
        assert_eq!(streams.data_sent, 10_000);
        assert!(!streams.has_data_to_send());
    }

    /// Answers a peer stream and finishes both halves: reads its data to the end, writes and
    /// finishes, and has what it sent acknowledged.
    fn answer_and_acknowledge(streams: &mut Streams, now: Instant, id: StreamId) {
        while let Ok(ReadOutcome::Data(_)) = streams.read(id, usize::MAX) {}
        streams.write(id, b"ok").unwrap();
        streams.finish(id).unwrap();
        let records = send(streams, now);
        streams.on_acked(&records);
    }

    #[test]
    fn credit_the_peer_has_used_up_is_awaited_until_sent() {
        // Limit 2. The peer opens one stream; once it is released the peer still has credit,
        // so the MAX_STREAMS due is not awaited.
        let (mut streams, now) = server();
        data(&mut streams, now, client_bidi(0), 0, 1, true).unwrap();
        let first = streams.accept(Dir::Bi).unwrap();
        answer_and_acknowledge(&mut streams, now, first);
        assert!(!streams.credit_awaited(), "the peer still had credit");
        let sent = send(&mut streams, now);
        assert!(sent.contains(&StreamFrameRecord::MaxStreams(Dir::Bi)));
        // Limit 3, and the peer opens both streams it still may: once one is released, the
        // peer waits for the MAX_STREAMS, until it is sent.
        for index in 1..3 {
            data(&mut streams, now, client_bidi(index), 0, 1, true).unwrap();
        }
        let second = streams.accept(Dir::Bi).unwrap();
        answer_and_acknowledge(&mut streams, now, second);
        assert!(
            streams.credit_awaited(),
            "released at the limit the peer knows"
        );
        let sent = send(&mut streams, now);
        assert!(sent.contains(&StreamFrameRecord::MaxStreams(Dir::Bi)));
        assert!(!streams.credit_awaited(), "sent");
    }

    #[test]
    fn credit_needed_once_all_is_used_before_anyone_waits() {
        let (mut streams, now) = server();
        // No credit in a direction never used is no reason to hurry.
        streams.apply_peer_params(&TransportParameters {
            initial_max_streams_uni: VarInt::ZERO,
            initial_max_streams_bidi: VarInt::from_u32(5),
            ..TransportParameters::default()
        });
        assert!(!streams.needs_credit());
        // The client's limit on our bidirectional streams is 5.
        for _ in 0..5 {
            streams.open(now, Dir::Bi).unwrap();
        }
        assert!(streams.needs_credit(), "the next open will wait");
    }

    /// Random peer frames interleaved with application calls and with the fate of what we
    /// send: typed errors at most, never a panic, whatever the peer does.
    mod adversarial {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Step {
            Peer(u8, u8, u64, usize, bool, u64),
            App(u8, u8, usize),
            Send(bool),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (
                    0u8..9,
                    0u8..12,
                    0u64..70_000,
                    0usize..3000,
                    any::<bool>(),
                    0u64..(1 << 62)
                )
                    .prop_map(|(k, s, o, l, f, v)| Step::Peer(k, s, o, l, f, v)),
                (0u8..9, 0u8..12, 0usize..5000).prop_map(|(k, s, n)| Step::App(k, s, n)),
                any::<bool>().prop_map(Step::Send),
            ]
        }

        fn id(selector: u8) -> StreamId {
            let side = if selector & 1 == 0 {
                Side::Client
            } else {
                Side::Server
            };
            let dir = if selector & 2 == 0 { Dir::Bi } else { Dir::Uni };
            StreamId::new(side, dir, u64::from(selector >> 2)).unwrap()
        }

        proptest! {
            #[test]
            fn streams_random_peer_frames_never_panic(steps in prop::collection::vec(step(), 1..200)) {
                let (mut streams, now) = server();
                let mut in_flight: Vec<Vec<StreamFrameRecord>> = Vec::new();
                for step in steps {
                    match step {
                        Step::Peer(kind, selector, offset, len, fin, value) => {
                            let id = id(selector);
                            let value = VarInt::from_u64(value).unwrap();
                            let payload = Bytes::from(vec![1u8; len]);
                            let frame = match kind {
                                0 | 1 => Frame::Stream(StreamFrame { id, offset: varint(offset), fin, data: &payload }),
                                2 => Frame::ResetStream { id, error_code: value, final_size: varint(offset) },
                                3 => Frame::StopSending { id, error_code: value },
                                4 => Frame::MaxStreamData { id, max: value },
                                5 => Frame::StreamDataBlocked { id, limit: value },
                                6 => Frame::MaxData(value),
                                7 => Frame::MaxStreams { dir: id.dir(), count: varint(value.into_inner() % (MAX_STREAM_COUNT + 1)) },
                                _ => Frame::StreamsBlocked { dir: id.dir(), limit: varint(value.into_inner() % (MAX_STREAM_COUNT + 1)) },
                            };
                            let _ = streams.on_frame(now, &frame, &payload);
                        }
                        Step::App(kind, selector, n) => {
                            let id = id(selector);
                            let _ = match kind {
                                0 => streams.open(now, id.dir()).map(drop).map_err(drop),
                                1 => streams.write(id, &vec![2u8; n]).map(drop).map_err(drop),
                                2 => streams.finish(id).map_err(drop),
                                3 => streams.reset(id, VarInt::from_u32(1)).map_err(drop),
                                4 => streams.read(id, n).map(drop).map_err(drop),
                                5 => streams.stop(id, VarInt::from_u32(2)).map_err(drop),
                                6 => { streams.release(id); Ok(()) }
                                7 => streams.accept(id.dir()).map(drop).ok_or(()),
                                _ => streams.request_open(now, id.dir()).map(drop).map_err(drop),
                            };
                        }
                        Step::Send(acked) => {
                            let mut buf = Vec::new();
                            let mut records = Vec::new();
                            streams.write_frames(&mut buf, 1200, &mut records, now, Duration::from_millis(20));
                            prop_assert!(buf.len() <= 1200);
                            in_flight.push(records);
                            if let Some(records) = in_flight.first().cloned() {
                                in_flight.remove(0);
                                if acked {
                                    streams.on_acked(&records);
                                } else {
                                    streams.on_lost(&records);
                                }
                            }
                        }
                    }
                    let _ = streams.snapshot(now);
                    while streams.poll_event().is_some() {}
                }
            }
        }
    }
}
