//! Unreliable datagrams (RFC 9221): what waits to be sent, what waits to be read.

use std::collections::VecDeque;

use bytes::Bytes;

/// The connection's DATAGRAM queues, each bounded (the oldest is dropped when full), and the
/// largest frame the peer takes.
#[derive(Debug, Default)]
pub(super) struct Datagrams {
    incoming: VecDeque<Bytes>,
    pub(super) outgoing: VecDeque<Bytes>,
    /// The peer's max_datagram_frame_size; `None` when it takes none.
    pub(super) peer_max_frame: Option<u64>,
}

impl Datagrams {
    /// Queues `data` to send, dropping the oldest queued beyond `bound`.
    pub(super) fn queue_outgoing(&mut self, data: Bytes, bound: usize) {
        push_bounded(&mut self.outgoing, data, bound);
    }

    /// Keeps a received datagram for the application, dropping the oldest beyond `bound`.
    pub(super) fn on_received(&mut self, data: Bytes, bound: usize) {
        push_bounded(&mut self.incoming, data, bound);
    }

    /// The oldest received datagram not yet read.
    pub(super) fn next_incoming(&mut self) -> Option<Bytes> {
        self.incoming.pop_front()
    }
}

fn push_bounded(queue: &mut VecDeque<Bytes>, data: Bytes, bound: usize) {
    if queue.len() >= bound {
        queue.pop_front();
    }
    queue.push_back(data);
}
