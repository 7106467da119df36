//! What the application calls on a connection for its streams and datagrams; the stream
//! rules themselves live in [`crate::streams`].

use std::time::Instant;

use bytes::Bytes;

use super::{Connection, SendDatagramError};
use crate::streams::{
    OpenError, OpenTicket, ReadOutcome, StreamError, StreamSnapshot, StreamsSnapshot,
};
use crate::wire::{Dir, StreamId, VarInt};

impl Connection {
    /// Opens a stream now, or fails at once with the peer's limit when there is no credit
    /// (then the peer is told we are blocked). See [`crate::streams::Streams::open`].
    pub fn open(&mut self, now: Instant, dir: Dir) -> Result<StreamId, OpenError> {
        self.streams.open(now, dir)
    }

    /// Opens a stream now if credit allows, or queues the request, granted first-come
    /// first-served with [`crate::streams::StreamEvent::OpenGranted`]. See [`crate::streams::Streams::request_open`].
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

    /// Server: whether data of the peer's stream `id` arrived as early data, in 0-RTT packets.
    /// Early data may be a replay (see [`super::EarlyData`]): act on it only when repeating it
    /// is harmless. `None` for a stream not known.
    pub fn stream_is_early(&self, id: StreamId) -> Option<bool> {
        self.streams.is_early(id)
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

    /// Whether [`Self::read`] of `id` would return data now. See [`crate::streams::Streams::has_data`].
    pub fn has_data(&self, id: StreamId) -> bool {
        self.streams.has_data(id)
    }

    /// Stops reading a stream with `code` (quic-go CancelRead).
    pub fn stop(&mut self, id: StreamId, code: VarInt) -> Result<(), StreamError> {
        self.streams.stop(id, code)
    }

    /// What dropping a stream handle does: resets an unfinished send half, stops an unread
    /// receive half. See [`crate::streams::Streams::release`].
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
        self.datagrams
            .queue_outgoing(data, self.config.datagram_send_buffer);
        Ok(())
    }

    /// The largest datagram payload [`Self::send_datagram`] accepts now.
    pub fn max_datagram_size(&self) -> Result<usize, SendDatagramError> {
        let peer = self
            .datagrams
            .peer_max_frame
            .ok_or(SendDatagramError::UnsupportedByPeer)?;
        // A 1-RTT packet: first byte, connection ID, up to 4 bytes of packet number, the tag,
        // then the frame's type and length.
        let overhead = 1 + self.cids.remote().len() + 4 + crate::crypto::TAG_LEN + 1 + 2;
        let fits = usize::from(self.path.mtu.current()) - overhead;
        let frame_max = (peer as usize).saturating_sub(3);
        Ok(fits.min(frame_max))
    }

    /// The next received datagram.
    pub fn recv_datagram(&mut self) -> Option<Bytes> {
        self.datagrams.next_incoming()
    }
}
