//! What each stream frame from the peer does: one method per frame type (RFC 9000 §19.4-§19.14).

use std::time::Instant;

use bytes::Bytes;

use super::recv::RecvHalf;
use super::send::SendHalf;
use super::{RecvState, StreamEvent, StreamState, Streams, dir_index, stream_error};
use crate::error::{TransportError, TransportErrorCode};
use crate::wire::{Dir, Frame, FrameType, Stream as StreamFrame, StreamId, VarInt};

fn violation(ty: FrameType, reason: &str) -> TransportError {
    stream_error(TransportErrorCode::STREAM_STATE_ERROR, ty, reason)
}

impl Streams {
    /// Hands a stream or flow-control frame from the peer to the method for its type; the
    /// connection passes no other frames.
    pub(crate) fn on_frame(
        &mut self,
        now: Instant,
        frame: &Frame<'_>,
        payload: &Bytes,
    ) -> Result<(), TransportError> {
        match *frame {
            Frame::Stream(ref stream) => self.on_stream(now, stream, payload)?,
            Frame::ResetStream {
                id,
                error_code,
                final_size,
            } => self.on_reset_stream(now, id, error_code, final_size.into_inner())?,
            Frame::StopSending { id, error_code } => self.on_stop_sending(now, id, error_code)?,
            Frame::MaxStreamData { id, max } => {
                self.on_max_stream_data(now, id, max.into_inner())?;
            }
            Frame::StreamDataBlocked { id, limit } => {
                self.on_stream_data_blocked(now, id, limit.into_inner())?;
            }
            Frame::MaxData(max) => self.on_max_data(max.into_inner()),
            Frame::DataBlocked(limit) => self.on_data_blocked(limit.into_inner()),
            Frame::MaxStreams { dir, count } => self.on_max_streams(now, dir, count.into_inner()),
            Frame::StreamsBlocked { dir, limit } => {
                self.on_streams_blocked(dir, limit.into_inner());
            }
            _ => {}
        }
        Ok(())
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
            if id.index() >= credit.local.used() {
                return Err(violation(ty, "frame for a stream we never opened"));
            }
            return Ok(self.streams.get_mut(&id));
        }
        // RFC 9000 §4.6, RFC9000-029.
        let Some(opened) = credit.remote.receive_up_to(id.index() + 1) else {
            return Err(stream_error(
                TransportErrorCode::STREAM_LIMIT_ERROR,
                ty,
                "stream beyond the advertised limit",
            ));
        };
        let first = id.index() + 1 - opened;
        for index in first..=id.index() {
            let new = StreamId::new(id.initiator(), dir, index).expect("below limit");
            self.credit[dir_index(dir)].accept_queue.push_back(new);
            let send = (dir == Dir::Bi).then(|| SendHalf::new(self.peer_windows.bidi_local));
            let recv = RecvHalf::new(
                self.config.stream_window,
                self.config.max_stream_window,
                self.shared_pieces.clone(),
            );
            self.streams
                .insert(new, StreamState::new(send, Some(recv), now, false));
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

    /// STREAM: data for a receive half; `payload` holds the frame, so its data can be kept
    /// uncopied.
    pub(crate) fn on_stream(
        &mut self,
        now: Instant,
        frame: &StreamFrame<'_>,
        payload: &Bytes,
    ) -> Result<(), TransportError> {
        let ty = frame.ty();
        let id = frame.id;
        // RFC 9000 §19.8, RFC9000-353.
        if self.send_only(id) {
            return Err(violation(ty, "STREAM frame on a send-only stream"));
        }
        let Some(stream) = self.stream_for_frame(now, id, ty)? else {
            return Ok(());
        };
        let accepted = stream.accepted;
        let recv = stream.recv.as_mut().expect("receivable");
        let was_readable = recv.is_readable();
        let discarding = recv.is_discarding();
        let grew = recv.on_data(frame.offset.into_inner(), frame.data, frame.fin, payload)?;
        let readable = !was_readable && recv.is_readable();
        self.on_received(grew, ty)?;
        if discarding {
            self.on_consumed(grew);
        }
        self.completed_in_packet |= frame.fin;
        if readable && accepted {
            self.events.push_back(StreamEvent::Readable(id));
        }
        self.maybe_release(id);
        Ok(())
    }

    /// RESET_STREAM: the peer abandoned its send half.
    pub(crate) fn on_reset_stream(
        &mut self,
        now: Instant,
        id: StreamId,
        code: VarInt,
        final_size: u64,
    ) -> Result<(), TransportError> {
        let ty = FrameType::RESET_STREAM;
        // RFC 9000 §19.4, RFC9000-345.
        if self.send_only(id) {
            return Err(violation(ty, "RESET_STREAM on a send-only stream"));
        }
        let Some(stream) = self.stream_for_frame(now, id, ty)? else {
            return Ok(());
        };
        let accepted = stream.accepted;
        let recv = stream.recv.as_mut().expect("receivable");
        let (grew, unread) = recv.on_reset(code, final_size)?;
        let readable = recv.state() == RecvState::ResetRecvd;
        self.on_received(grew, ty)?;
        self.on_consumed(unread);
        self.completed_in_packet = true;
        if readable && accepted {
            self.events.push_back(StreamEvent::Readable(id));
        }
        self.maybe_release(id);
        Ok(())
    }

    /// STOP_SENDING: the peer will not read; our send half is reset with its code.
    pub(crate) fn on_stop_sending(
        &mut self,
        now: Instant,
        id: StreamId,
        code: VarInt,
    ) -> Result<(), TransportError> {
        let ty = FrameType::STOP_SENDING;
        // RFC 9000 §19.5, RFC9000-347 (and RFC9000-346 in stream_for_frame).
        if self.receive_only(id) {
            return Err(violation(ty, "STOP_SENDING on a receive-only stream"));
        }
        let Some(stream) = self.stream_for_frame(now, id, ty)? else {
            return Ok(());
        };
        let send = stream.send.as_mut().expect("sendable");
        if send.stop_code.is_none() {
            send.stop_code = Some(code);
            // RFC 9000 §3.5: answer with RESET_STREAM, carrying the peer's code.
            if send.reset(code).is_some() {
                self.queue_control(id);
            }
            self.events.push_back(StreamEvent::Stopped { id, code });
        }
        self.maybe_release(id);
        Ok(())
    }

    /// MAX_STREAM_DATA: more credit for one send half.
    pub(crate) fn on_max_stream_data(
        &mut self,
        now: Instant,
        id: StreamId,
        max: u64,
    ) -> Result<(), TransportError> {
        let ty = FrameType::MAX_STREAM_DATA;
        // RFC 9000 §19.10, RFC9000-358 (and RFC9000-357 in stream_for_frame).
        if self.receive_only(id) {
            return Err(violation(ty, "MAX_STREAM_DATA on a receive-only stream"));
        }
        if let Some(stream) = self.stream_for_frame(now, id, ty)? {
            let send = stream.send.as_mut().expect("sendable");
            if send.flow.raise(max) {
                self.schedule(id);
            }
        }
        Ok(())
    }

    /// STREAM_DATA_BLOCKED: the peer waits on our limit for one stream; it hears the limit
    /// again, and the window counts as too small.
    pub(crate) fn on_stream_data_blocked(
        &mut self,
        now: Instant,
        id: StreamId,
        limit: u64,
    ) -> Result<(), TransportError> {
        let ty = FrameType::STREAM_DATA_BLOCKED;
        // RFC 9000 §19.13, RFC9000-367.
        if self.send_only(id) {
            return Err(violation(ty, "STREAM_DATA_BLOCKED on a send-only stream"));
        }
        if let Some(stream) = self.stream_for_frame(now, id, ty)? {
            // A half with its final size known sends no update (its window is closed).
            if let Some(recv) = stream.recv.as_mut() {
                recv.flow.on_peer_blocked(limit);
                if recv.flow.update_due() {
                    self.queue_control(id);
                }
            }
        }
        Ok(())
    }

    /// MAX_DATA: more connection credit; streams that waited on it are scheduled.
    pub(crate) fn on_max_data(&mut self, max: u64) {
        if !self.conn_send.raise(max) {
            return;
        }
        let waiting: Vec<StreamId> = self.waiting_for_credit().collect();
        for id in waiting {
            self.schedule(id);
        }
    }

    /// DATA_BLOCKED at `limit`: the peer waits for connection credit, so the window is the
    /// limit.
    pub(crate) fn on_data_blocked(&mut self, limit: u64) {
        self.conn_recv.on_peer_blocked(limit);
    }

    /// Counts received stream data against the connection limit (RFC 9000 §4.1, RFC9000-356).
    fn on_received(&mut self, grew: u64, ty: FrameType) -> Result<(), TransportError> {
        let total = self.conn_recv.received().saturating_add(grew);
        if self.conn_recv.receive_up_to(total).is_none() {
            return Err(stream_error(
                TransportErrorCode::FLOW_CONTROL_ERROR,
                ty,
                "connection data beyond MAX_DATA",
            ));
        }
        Ok(())
    }
}
