//! Streams (RFC 9000 §2-§4): the stream map and the release rule.
//!
//! The lifecycle rules qstream exists for live here (docs/design.md, "The stream lifecycle rules"):
//! a stream is released, and a peer-initiated one's credit returned with MAX_STREAMS, exactly
//! when both halves are finished; [`Streams::release`] (what dropping an application handle does)
//! resets an unfinished send half and stops an unread receive half; opens wait first-come
//! first-served and a cancelled one consumes no stream ID.
//!
//! - `credit`: stream credit, local openers and the peer's accept queue;
//! - `peer_frames`: what each stream frame from the peer does;
//! - `transmit`: the frames streams send, and what their acknowledgment or loss does;
//! - `schedule`: which stream sends next;
//! - `snapshot`: the state of every stream, and what holds a blocked peer;
//! - `send` and `recv`: the two halves of a stream, each a state enum carrying what its state
//!   knows; `signal`: whether a RESET_STREAM or STOP_SENDING is still owed. Flow control is
//!   `crate::flow`.

mod credit;
mod early_data;
mod peer_frames;
mod piece;
mod recv;
mod schedule;
mod send;
mod send_buffer;
mod signal;
mod snapshot;
mod transmit;

pub use credit::{CreditCounters, OpenError, OpenTicket};
pub use recv::{ReadOutcome, RecvState};
pub use send::SendState;
pub use snapshot::{
    CreditSnapshot, HeldReason, PeerBlockedReport, RecvSnapshot, SendSnapshot, StreamSnapshot,
    StreamsSnapshot,
};

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::error::TransportError;
use crate::flow::{RecvWindow, SendWindow};
use crate::wire::{Dir, FrameType, StreamId, VarInt};
use crate::{Side, TransportErrorCode};
use credit::Credit;
use piece::SharedPieces;
use recv::RecvHalf;
use schedule::Schedule;
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

/// What a sent packet carried for streams, to act on when it is acknowledged or lost. Limits
/// are recorded so that a lost frame is repeated only while its limit still applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamFrameRecord {
    Data {
        id: StreamId,
        range: Range<u64>,
        fin: bool,
    },
    Reset(StreamId),
    Stop(StreamId),
    MaxStreamData {
        id: StreamId,
        limit: u64,
    },
    StreamDataBlocked {
        id: StreamId,
        limit: u64,
    },
    MaxData(u64),
    DataBlocked(u64),
    MaxStreams {
        dir: Dir,
        limit: u64,
    },
    StreamsBlocked {
        dir: Dir,
        limit: u64,
    },
}

#[derive(Debug)]
struct StreamState {
    send: Option<SendHalf>,
    recv: Option<RecvHalf>,
    opened_at: Instant,
    /// Whether the application has it: accepted, or opened locally.
    accepted: bool,
    /// Whether it is in the schedule.
    queued: bool,
    /// Server: some of its data arrived in 0-RTT packets.
    early: bool,
}

impl StreamState {
    fn new(
        send: Option<SendHalf>,
        recv: Option<RecvHalf>,
        opened_at: Instant,
        accepted: bool,
    ) -> Self {
        Self {
            send,
            recv,
            opened_at,
            accepted,
            queued: false,
            early: false,
        }
    }

    /// Whether both halves are finished: the release rule (docs/design.md rule 1).
    fn is_done(&self) -> bool {
        self.send.as_ref().is_none_or(|s| s.state().is_terminal())
            && self.recv.as_ref().is_none_or(RecvHalf::is_finished)
    }
}

/// The initial stream data limits the peer gave (RFC 9000 §18.2), for streams opened later.
#[derive(Clone, Copy, Debug, Default)]
struct PeerStreamWindows {
    /// For bidirectional streams the peer opens.
    bidi_local: u64,
    /// For bidirectional streams we open.
    bidi_remote: u64,
    /// For unidirectional streams we open.
    uni: u64,
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
    /// Streams with data to send.
    schedule: Schedule,
    /// Streams with control frames to send.
    control: VecDeque<StreamId>,
    next_ticket: u64,
    /// The peer's connection limit on our data (MAX_DATA) and DATA_BLOCKED.
    conn_send: SendWindow,
    /// Our connection limit on the peer's data.
    conn_recv: RecvWindow,
    peer_windows: PeerStreamWindows,
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

fn varint(value: u64) -> VarInt {
    VarInt::from_u64(value).unwrap_or(VarInt::MAX)
}

impl Streams {
    pub(crate) fn new(side: Side, config: StreamConfig) -> Self {
        Self {
            side,
            credit: [
                Credit::new(config.max_concurrent_bidi, config.credit_batch),
                Credit::new(config.max_concurrent_uni, config.credit_batch),
            ],
            shared_pieces: SharedPieces::default(),
            conn_send: SendWindow::new(0),
            conn_recv: RecvWindow::data(config.connection_window, config.max_connection_window),
            config,
            streams: FxHashMap::default(),
            schedule: Schedule::default(),
            control: VecDeque::new(),
            next_ticket: 0,
            peer_windows: PeerStreamWindows::default(),
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
        self.conn_send = SendWindow::new(params.initial_max_data.into_inner());
        self.credit[0].local = SendWindow::new(params.initial_max_streams_bidi.into_inner());
        self.credit[1].local = SendWindow::new(params.initial_max_streams_uni.into_inner());
        self.set_peer_windows(params);
    }

    /// The initial stream data limits of the peer's parameters, for streams opened from now.
    fn set_peer_windows(&mut self, params: &crate::wire::TransportParameters) {
        self.peer_windows = PeerStreamWindows {
            bidi_local: params.initial_max_stream_data_bidi_local.into_inner(),
            bidi_remote: params.initial_max_stream_data_bidi_remote.into_inner(),
            uni: params.initial_max_stream_data_uni.into_inner(),
        };
    }

    /// The next event.
    pub(crate) fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Whether [`Self::poll_event`] has an event.
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Inserts the stream of ours with `index`, just opened.
    fn insert_local(&mut self, now: Instant, dir: Dir, index: u64) -> StreamId {
        let id = StreamId::new(self.side, dir, index).expect("below 2^60");
        let send_window = self.peer_window_for_local(dir);
        let recv = (dir == Dir::Bi).then(|| {
            RecvHalf::new(
                self.config.stream_window,
                self.config.max_stream_window,
                self.shared_pieces.clone(),
            )
        });
        let send = Some(SendHalf::new(send_window));
        self.streams
            .insert(id, StreamState::new(send, recv, now, true));
        id
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
            if send.blocked_by_stream_limit() && send.flow.on_blocked() {
                self.queue_control(id);
            }
            return;
        }
        if !stream.queued {
            stream.queued = true;
            self.schedule.push(id, send.priority);
        }
    }

    fn queue_control(&mut self, id: StreamId) {
        if !self.control.contains(&id) {
            self.control.push_back(id);
        }
    }

    /// Writes as much of `data` as the stream's send buffer takes; returns how much.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let send_buffer = self.config.send_buffer;
        let send = self.writable_half(id)?;
        let room = send_buffer.saturating_sub(send.buffered() as u64) as usize;
        let n = data.len().min(room);
        send.write(&data[..n]);
        send.writer_waiting |= n < data.len();
        self.schedule(id);
        Ok(n)
    }

    /// Ends the send half normally: the peer receives everything written, then the end
    /// (quic-go's Close). The only way to end a send half without a reset.
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        self.writable_half(id)?.finish();
        self.schedule(id);
        Ok(())
    }

    /// The send half of `id`, if the application may still write to it: not finished, reset
    /// or stopped by the peer.
    fn writable_half(&mut self, id: StreamId) -> Result<&mut SendHalf, StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream)?;
        let send = stream.send.as_mut().ok_or(StreamError::WrongDirection)?;
        if let Some(code) = send.stop_code {
            return Err(StreamError::Stopped(code));
        }
        if !send.is_open() {
            return Err(StreamError::Closed);
        }
        Ok(send)
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
        let window_update = recv.flow.update_due();
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
        let pending = recv.stop_due().is_some();
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
            .is_some_and(SendHalf::is_open);
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
                self.schedule.remove(id, old);
                stream.queued = false;
                self.schedule(id);
            }
        }
        Ok(())
    }

    /// Releases the stream if both halves are finished (docs/design.md rule 1); a peer-initiated
    /// stream's credit goes back to the peer.
    fn maybe_release(&mut self, id: StreamId) {
        if !self.streams.get(&id).is_some_and(StreamState::is_done) {
            return;
        }
        self.streams.remove(&id);
        self.control.retain(|s| *s != id);
        let credit = &mut self.credit[dir_index(id.dir())];
        credit.accept_queue.retain(|s| *s != id);
        if id.initiator() != self.side {
            // RFC 9000 §4.6, RFC9000-032: credit is not held back waiting for STREAMS_BLOCKED.
            credit.remote.on_consumed(1);
        }
        self.events.push_back(StreamEvent::Released(id));
    }

    /// The application consumed `bytes` of connection credit (read, stopped or reset).
    fn on_consumed(&mut self, bytes: u64) {
        self.conn_recv.on_consumed(bytes);
    }

    /// Whether a packet just processed completed a stream from the peer (FIN or RESET_STREAM),
    /// which the peer's credit may wait on.
    pub(crate) fn take_completed_in_packet(&mut self) -> bool {
        std::mem::take(&mut self.completed_in_packet)
    }
}

#[cfg(test)]
mod tests;
