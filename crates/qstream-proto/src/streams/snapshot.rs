//! What a connection's streams look like at one moment (docs/design.md rule 5), and the
//! report of what holds a peer that says it is blocked opening streams.

use std::fmt;
use std::time::{Duration, Instant};

use super::{CreditCounters, RecvState, SendState, StreamEvent, StreamState, Streams, dir_index};
use crate::Side;
use crate::wire::{Dir, StreamId, VarInt};

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

impl Streams {
    /// The peer says it is blocked at `limit`: name the streams our application holds.
    pub(crate) fn on_streams_blocked(&mut self, dir: Dir, limit: u64) {
        self.counters.streams_blocked_received += 1;
        if limit < self.credit[dir_index(dir)].remote.limit() {
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
                opened_total: c.local.used(),
                limit: c.local.limit(),
                available: c.local.available(),
                waiting: c.waiters.len(),
            });
            credit.push(CreditSnapshot {
                initiator: self.side.peer(),
                dir,
                open: c.remote.received() - c.remote.consumed(),
                opened_total: c.remote.received(),
                limit: c.remote.limit(),
                available: c.remote.limit().saturating_sub(c.remote.received()),
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
            max_data_sent: self.conn_recv.limit(),
            connection_window: self.conn_recv.window(),
            max_data_received: self.conn_send.limit(),
            data_sent: self.conn_send.used(),
            data_received: self.conn_recv.received(),
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
                state: h.state(),
                written: h.written(),
                sent: h.sent_bytes(),
                acked: h.acked_bytes(),
                buffered: h.buffered() as u64,
                stopped_by_peer: h.stop_code,
            }),
            recv: s.recv.as_ref().map(|h| RecvSnapshot {
                state: h.state(),
                received: h.received_bytes,
                read: h.read_bytes(),
                buffered: h.buffered() as u64,
                stopped: h.is_stopped(),
                window: h.flow.window(),
            }),
            held: (!s.is_done()).then(|| held_reason(s)),
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
    match stream.send.as_ref().map(|s| s.state()) {
        Some(SendState::Send) => HeldReason::SendNotFinished,
        _ => HeldReason::SendUnacknowledged,
    }
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
