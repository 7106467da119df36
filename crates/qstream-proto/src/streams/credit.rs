//! Stream credit (RFC 9000 §4.6): our openers waiting on the peer's MAX_STREAMS, and the
//! peer's streams under ours, with the accept queue. Both sides are [`crate::flow`] windows
//! that count streams.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::{StreamEvent, StreamFrameRecord, Streams, dir_index, varint};
use crate::flow::{RecvWindow, SendWindow};
use crate::wire::{Dir, Frame, MAX_STREAM_COUNT, Payload, StreamId};

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

/// Stream credit of one kind of stream.
#[derive(Debug)]
pub(super) struct Credit {
    /// The peer's limit on our streams, used by those we opened; STREAMS_BLOCKED.
    pub(super) local: SendWindow,
    /// Open requests waiting for credit, oldest first.
    pub(super) waiters: VecDeque<OpenTicket>,
    /// Our limit on the peer's streams: received counts those it opened, consumed those
    /// released.
    pub(super) remote: RecvWindow,
    /// Peer streams waiting for accept.
    pub(super) accept_queue: VecDeque<StreamId>,
}

impl Credit {
    /// Credit for `max_concurrent` peer streams at once, returned `batch` streams at a time.
    pub(super) fn new(max_concurrent: u64, batch: u64) -> Self {
        Self {
            local: SendWindow::new(0),
            waiters: VecDeque::new(),
            remote: RecvWindow::streams(max_concurrent, batch, MAX_STREAM_COUNT),
            accept_queue: VecDeque::new(),
        }
    }

    /// The index of a stream of ours opened now, or why none can be: no credit, or earlier
    /// requests wait (first-come first-served). A refusal makes STREAMS_BLOCKED due
    /// (RFC 9000 §4.6, RFC9000-031).
    fn try_open(&mut self) -> Result<u64, OpenError> {
        if !self.waiters.is_empty() || self.local.available() == 0 {
            self.local.on_blocked();
            return Err(OpenError::NoCredit {
                limit: self.local.limit(),
                waiting: self.waiters.len(),
            });
        }
        let index = self.local.used();
        self.local.consume(1);
        Ok(index)
    }

    /// The oldest waiting request, with the index of its stream, if credit allows one now.
    fn grant_next(&mut self) -> Option<(OpenTicket, u64)> {
        if self.local.available() == 0 {
            return None;
        }
        let ticket = self.waiters.pop_front()?;
        let index = self.local.used();
        self.local.consume(1);
        Some((ticket, index))
    }

    /// Whether we wait, or are about to: an opener waits, or we opened all we may.
    fn needs_credit(&self) -> bool {
        !self.waiters.is_empty() || (self.local.used() > 0 && self.local.available() == 0)
    }

    /// Writes MAX_STREAMS and STREAMS_BLOCKED when due and they fit.
    fn write(
        &mut self,
        dir: Dir,
        payload: &mut Payload<'_>,
        records: &mut Vec<StreamFrameRecord>,
        counters: &mut CreditCounters,
        now: Instant,
    ) {
        // Stream credit is not auto-tuned: no round trip matters.
        if let Some(limit) = self.remote.due_update(now, Duration::ZERO) {
            if payload.put(&Frame::MaxStreams {
                dir,
                count: varint(limit),
            }) {
                self.remote.on_update_written(now, Duration::ZERO);
                counters.max_streams_sent += 1;
                records.push(StreamFrameRecord::MaxStreams { dir, limit });
            }
        }
        if let Some(limit) = self.local.blocked_due() {
            if payload.put(&Frame::StreamsBlocked {
                dir,
                limit: varint(limit),
            }) {
                self.local.on_blocked_sent();
                counters.streams_blocked_sent += 1;
                records.push(StreamFrameRecord::StreamsBlocked { dir, limit });
            }
        }
    }
}

impl Streams {
    /// Opens a stream now, or fails with the limit when there is no credit or earlier requests
    /// wait (first-come first-served). A failed open leaves everything as it was, except that the
    /// peer is told we are blocked (STREAMS_BLOCKED, RFC 9000 §4.6, RFC9000-031).
    pub fn open(&mut self, now: Instant, dir: Dir) -> Result<StreamId, OpenError> {
        let index = self.credit[dir_index(dir)].try_open()?;
        Ok(self.insert_local(now, dir, index))
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
        self.credit.iter().any(Credit::needs_credit)
    }

    /// Whether stream credit waits to be sent that the peer has used up: it can open no
    /// stream in that direction until this MAX_STREAMS arrives.
    pub(crate) fn credit_awaited(&self) -> bool {
        self.credit.iter().any(|c| c.remote.peer_waits())
    }

    /// The next stream the peer opened.
    pub fn accept(&mut self, dir: Dir) -> Option<StreamId> {
        let id = self.credit[dir_index(dir)].accept_queue.pop_front()?;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.accepted = true;
        }
        Some(id)
    }

    /// MAX_STREAMS from the peer: waiting opens are granted, in order, as far as it allows.
    pub(crate) fn on_max_streams(&mut self, now: Instant, dir: Dir, count: u64) {
        self.counters.max_streams_received += 1;
        // RFC 9000 §19.11, RFC9000-362: a limit that does not grow is ignored.
        if self.credit[dir_index(dir)].local.raise(count) {
            self.grant_waiting_opens(now, dir);
        }
    }

    /// Opens the streams that waited for credit, in order, as far as the peer's limit allows.
    pub(super) fn grant_waiting_opens(&mut self, now: Instant, dir: Dir) {
        while let Some((ticket, index)) = self.credit[dir_index(dir)].grant_next() {
            let id = self.insert_local(now, dir, index);
            self.events
                .push_back(StreamEvent::OpenGranted { ticket, id });
        }
    }

    /// Writes the MAX_STREAMS and STREAMS_BLOCKED frames that are due.
    pub(super) fn write_credit(
        &mut self,
        payload: &mut Payload<'_>,
        records: &mut Vec<StreamFrameRecord>,
        now: Instant,
    ) {
        for dir in [Dir::Bi, Dir::Uni] {
            self.credit[dir_index(dir)].write(dir, payload, records, &mut self.counters, now);
        }
    }
}
