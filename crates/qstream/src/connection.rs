//! A connection and its streams, as seen by the application.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use qstream_proto::streams::{OpenTicket, ReadOutcome, StreamError, StreamsSnapshot};
use qstream_proto::wire::{Dir, StreamId, VarInt};
use qstream_proto::{ConnectionError, ConnectionHandle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::endpoint::Shared;

/// A QUIC connection. Cloning gives another handle to it. When the last handle (connection
/// or stream) is dropped, the connection is closed with application code 0 if still open, and
/// its state is freed once it has drained.
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handle: ConnectionHandle,
    /// Shared by every handle; the last one dropped abandons the connection.
    _owner: Arc<Owner>,
}

/// Abandons its connection when dropped: see [`Connection`].
struct Owner {
    shared: Arc<Shared>,
    handle: ConnectionHandle,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.lock().abandon(self.handle);
        self.shared.remove_user();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The one application handle to `handle`, from which every other is cloned.
    pub(crate) fn new(shared: Arc<Shared>, handle: ConnectionHandle) -> Self {
        shared.add_user();
        let owner = Arc::new(Owner {
            shared: shared.clone(),
            handle,
        });
        Self {
            shared,
            handle,
            _owner: owner,
        }
    }

    /// Runs `f` on the protocol connection, then wakes the driver to send what it queued.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut qstream_proto::Connection) -> T,
    ) -> Result<T, ConnectionError> {
        let mut state = self.shared.lock();
        let result = f(self.live(&mut state)?);
        drop(state);
        self.shared.wake_driver();
        Ok(result)
    }

    /// The protocol connection, or why it is gone.
    fn live<'a>(
        &self,
        state: &'a mut crate::endpoint::State,
    ) -> Result<&'a mut qstream_proto::Connection, ConnectionError> {
        if let Some(error) = state
            .connections
            .get(&self.handle)
            .and_then(|c| c.error.clone())
        {
            return Err(error);
        }
        state
            .proto
            .connection_mut(self.handle)
            .ok_or(ConnectionError::LocallyClosed)
    }

    /// Runs `f` like [`Self::with`]; when it returns `Pending`, registers the task to be woken
    /// at the connection's next event while still holding the lock, so no event between the
    /// check and the registration is missed.
    fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut qstream_proto::Connection) -> Poll<T>,
    ) -> Poll<Result<T, ConnectionError>> {
        self.poll_registering(f, |state| state.waiters.push(cx.waker().clone()))
    }

    /// Runs `f` like [`Self::poll_with`], but when it returns `Pending` the task is woken only
    /// by an event on stream `id` (or the connection's end), not by every event.
    fn poll_stream_with<T>(
        &self,
        cx: &mut Context<'_>,
        id: StreamId,
        f: impl FnOnce(&mut qstream_proto::Connection) -> Poll<T>,
    ) -> Poll<Result<T, ConnectionError>> {
        self.poll_registering(f, |state| {
            let waiters = state.stream_waiters.entry(id).or_default();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
        })
    }

    fn poll_registering<T>(
        &self,
        f: impl FnOnce(&mut qstream_proto::Connection) -> Poll<T>,
        register: impl FnOnce(&mut crate::endpoint::ConnectionState),
    ) -> Poll<Result<T, ConnectionError>> {
        let mut state = self.shared.lock();
        let result = match self.live(&mut state) {
            Ok(connection) => f(connection),
            Err(error) => return Poll::Ready(Err(error)),
        };
        if result.is_pending() {
            register(state.connections.entry(self.handle).or_default());
        }
        drop(state);
        self.shared.wake_driver();
        result.map(Ok)
    }

    /// The peer's address.
    pub fn remote_address(&self) -> Option<SocketAddr> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .map(|c| c.remote_address())
    }

    /// Opens a bidirectional stream, waiting for stream credit: waiters are served first-come
    /// first-served, and dropping the future (for example under `tokio::time::timeout`) consumes
    /// no stream ID. quic-go's OpenStreamSync.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        let id = self.open(Dir::Bi).await?;
        Ok((
            SendStream::new(self.clone(), id),
            RecvStream::new(self.clone(), id),
        ))
    }

    /// Opens a unidirectional stream, waiting for credit like [`Self::open_bi`] (quic-go's
    /// OpenUniStreamSync).
    pub async fn open_uni(&self) -> Result<SendStream, ConnectionError> {
        let id = self.open(Dir::Uni).await?;
        Ok(SendStream::new(self.clone(), id))
    }

    async fn open(&self, dir: Dir) -> Result<StreamId, ConnectionError> {
        let request = self.with(|c| c.request_open(Instant::now(), dir))?;
        let ticket = match request {
            Ok(id) => return Ok(id),
            Err(ticket) => ticket,
        };
        let mut guard = OpenGuard {
            connection: self,
            ticket: Some(ticket),
        };
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            let entry = state.connections.entry(self.handle).or_default();
            if let Some(id) = entry.granted.remove(&ticket.0) {
                guard.ticket = None;
                return Poll::Ready(Ok(id));
            }
            if let Some(error) = &entry.error {
                return Poll::Ready(Err(error.clone()));
            }
            entry.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Opens a bidirectional stream now, or fails at once when there is no credit (quic-go's
    /// OpenStream).
    pub fn try_open_bi(&self) -> Result<(SendStream, RecvStream), TryOpenError> {
        let id = self
            .with(|c| c.open(Instant::now(), Dir::Bi))?
            .map_err(TryOpenError::NoCredit)?;
        Ok((
            SendStream::new(self.clone(), id),
            RecvStream::new(self.clone(), id),
        ))
    }

    /// Opens a unidirectional stream now, or fails at once when there is no credit (quic-go's
    /// OpenUniStream).
    pub fn try_open_uni(&self) -> Result<SendStream, TryOpenError> {
        let id = self
            .with(|c| c.open(Instant::now(), Dir::Uni))?
            .map_err(TryOpenError::NoCredit)?;
        Ok(SendStream::new(self.clone(), id))
    }

    /// Sends an unreliable datagram (RFC 9221): it arrives once or not at all (quic-go's
    /// SendDatagram).
    pub fn send_datagram(&self, data: bytes::Bytes) -> Result<(), SendDatagramError> {
        self.with(|c| c.send_datagram(data))
            .map_err(SendDatagramError::Connection)?
            .map_err(SendDatagramError::Datagram)
    }

    /// The next datagram from the peer (quic-go's ReceiveDatagram).
    pub async fn read_datagram(&self) -> Result<bytes::Bytes, ConnectionError> {
        poll_fn(|cx| self.poll_with(cx, |c| c.recv_datagram().map_or(Poll::Pending, Poll::Ready)))
            .await
    }

    /// The round-trip time estimate: smoothed RTT.
    pub fn rtt(&self) -> Option<std::time::Duration> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .map(|c| c.rtt().smoothed())
    }

    /// The congestion window in bytes.
    pub fn congestion_window(&self) -> Option<u64> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .map(|c| c.congestion_window())
    }

    /// The largest UDP payload the connection sends on its path now: 1200 bytes until path
    /// MTU discovery validated more, and again after a black hole or a move to a new address.
    pub fn path_mtu(&self) -> Option<u16> {
        let state = self.shared.lock();
        state.proto.connection(self.handle).map(|c| c.path_mtu())
    }

    /// The ALPN protocol the handshake agreed on.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .and_then(|c| c.alpn_protocol().map(<[u8]>::to_vec))
    }

    /// The QUIC version in use: the one the connection started in, or the one the server
    /// switched it to during the handshake (RFC 9368); `None` once the connection is gone.
    pub fn version(&self) -> Option<qstream_proto::wire::Version> {
        let state = self.shared.lock();
        state.proto.connection(self.handle).map(|c| c.version())
    }

    /// Whether the handshake resumed an earlier TLS session (quic-go's
    /// ConnectionState().TLS.DidResume); `None` until it completes.
    pub fn handshake_resumed(&self) -> Option<bool> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .and_then(|c| c.handshake_resumed())
    }

    /// What became of early data (RFC 9001 §4.6): a 0-RTT client knows whether the server took
    /// it once the handshake completes (see [`crate::Connecting::into_0rtt`]); a server says
    /// whether it took the client's. `None` once the connection is gone.
    pub fn early_data(&self) -> Option<qstream_proto::EarlyData> {
        let state = self.shared.lock();
        state.proto.connection(self.handle).map(|c| c.early_data())
    }

    /// The peer's certificate chain, as it presented it.
    pub fn peer_certificates(&self) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .and_then(|c| c.peer_certificates().map(<[_]>::to_vec))
    }

    /// The next bidirectional stream the peer opened (quic-go's AcceptStream). The peer's stream
    /// appears when its first frame arrives, not when the peer opens it.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        let id = self.accept(Dir::Bi).await?;
        Ok((
            SendStream::new(self.clone(), id),
            RecvStream::new(self.clone(), id),
        ))
    }

    /// The next unidirectional stream the peer opened (quic-go's AcceptUniStream).
    pub async fn accept_uni(&self) -> Result<RecvStream, ConnectionError> {
        let id = self.accept(Dir::Uni).await?;
        Ok(RecvStream::new(self.clone(), id))
    }

    async fn accept(&self, dir: Dir) -> Result<StreamId, ConnectionError> {
        poll_fn(|cx| self.poll_with(cx, |c| c.accept(dir).map_or(Poll::Pending, Poll::Ready))).await
    }

    /// Closes the connection with an application `code` and `reason` the peer sees (quic-go's
    /// CloseWithError).
    pub fn close(&self, code: VarInt, reason: &[u8]) {
        let _ = self.with(|c| c.close(Instant::now(), code, reason));
    }

    /// Waits until the connection is closed, and says why (quic-go's Context().Done() with
    /// the close error).
    pub async fn closed(&self) -> ConnectionError {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            let entry = state.connections.entry(self.handle).or_default();
            if let Some(error) = &entry.error {
                return Poll::Ready(error.clone());
            }
            entry.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Every stream's state and the stream credit in both directions, now.
    pub fn streams(&self) -> Option<StreamsSnapshot> {
        let state = self.shared.lock();
        state
            .proto
            .connection(self.handle)
            .map(|c| c.streams_snapshot(Instant::now()))
    }

    /// Traffic counters.
    pub fn stats(&self) -> Option<qstream_proto::connection::ConnectionStats> {
        let state = self.shared.lock();
        state.proto.connection(self.handle).map(|c| c.stats())
    }
}

/// Cancels a pending open when its future is dropped: no stream ID is consumed, and a stream
/// granted in the meantime is released.
struct OpenGuard<'a> {
    connection: &'a Connection,
    ticket: Option<OpenTicket>,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let mut state = self.connection.shared.lock();
        let granted = state
            .connections
            .get_mut(&self.connection.handle)
            .and_then(|c| c.granted.remove(&ticket.0));
        if let Some(connection) = state.proto.connection_mut(self.connection.handle) {
            if !connection.cancel_open(ticket) {
                if let Some(id) = granted {
                    connection.release(id);
                }
            }
        }
        drop(state);
        self.connection.shared.wake_driver();
    }
}

/// The peer reset the stream (RESET_STREAM, quic-go's CancelWrite on its side) with this
/// application code. Reads fail with an `io::Error` of kind `ConnectionReset` carrying it:
/// `error.get_ref().and_then(|e| e.downcast_ref::<ResetByPeer>())`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetByPeer(pub VarInt);

impl std::fmt::Display for ResetByPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the peer reset the stream with code {}", self.0)
    }
}

impl std::error::Error for ResetByPeer {}

/// Why a datagram could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendDatagramError {
    /// The peer does not accept it, or it is too large; see the inner error.
    Datagram(qstream_proto::connection::SendDatagramError),
    /// The connection is closed.
    Connection(ConnectionError),
}

impl std::fmt::Display for SendDatagramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Datagram(e) => e.fmt(f),
            Self::Connection(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendDatagramError {}

/// Why a stream could not be opened at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryOpenError {
    /// No stream credit; [`Connection::open_bi`] waits for it.
    NoCredit(qstream_proto::streams::OpenError),
    /// The connection is closed.
    Connection(ConnectionError),
}

impl From<ConnectionError> for TryOpenError {
    fn from(error: ConnectionError) -> Self {
        Self::Connection(error)
    }
}

impl std::fmt::Display for TryOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCredit(e) => e.fmt(f),
            Self::Connection(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TryOpenError {}

fn io_error(error: StreamError) -> io::Error {
    let kind = match error {
        StreamError::Stopped(_) | StreamError::Closed => io::ErrorKind::BrokenPipe,
        StreamError::UnknownStream | StreamError::WrongDirection => io::ErrorKind::NotConnected,
    };
    io::Error::new(kind, error)
}

fn connection_io_error(error: ConnectionError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, error)
}

/// The sending half of a stream.
///
/// `finish` ends it normally (quic-go's Close); `reset` abandons it (CancelWrite). Dropping it
/// unfinished resets it, so a message cut short never looks complete to the peer; dropping it
/// finished lets every byte arrive.
#[derive(Debug)]
pub struct SendStream {
    connection: Connection,
    id: StreamId,
}

impl SendStream {
    fn new(connection: Connection, id: StreamId) -> Self {
        Self { connection, id }
    }

    /// The stream's ID.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Writes all of `data`, waiting for buffer space (quic-go's Write).
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, data).await
    }

    /// Ends the stream normally: everything written, then the end (quic-go's Close).
    pub fn finish(&mut self) -> io::Result<()> {
        self.connection
            .with(|c| c.finish(self.id))
            .map_err(connection_io_error)?
            .map_err(io_error)
    }

    /// Sets the stream's scheduling priority: higher goes first, round-robin among equals.
    pub fn set_priority(&mut self, priority: i32) -> io::Result<()> {
        self.connection
            .with(|c| c.set_priority(self.id, priority))
            .map_err(connection_io_error)?
            .map_err(io_error)
    }

    /// Waits until the peer stops the stream (STOP_SENDING, quic-go's CancelRead on its side)
    /// and returns its code, or `None`
    /// once everything written was acknowledged or the stream is gone.
    pub async fn stopped(&self) -> Result<Option<VarInt>, ConnectionError> {
        poll_fn(|cx| {
            self.connection.poll_stream_with(cx, self.id, |c| {
                match c
                    .stream_snapshot(self.id, Instant::now())
                    .and_then(|s| s.send)
                {
                    None => Poll::Ready(None),
                    Some(send) if send.stopped_by_peer.is_some() => {
                        Poll::Ready(send.stopped_by_peer)
                    }
                    Some(send) if send.state == qstream_proto::streams::SendState::DataRecvd => {
                        Poll::Ready(None)
                    }
                    Some(_) => Poll::Pending,
                }
            })
        })
        .await
    }

    /// Abandons the stream with `code` (RESET_STREAM; quic-go's CancelWrite).
    pub fn reset(&mut self, code: VarInt) -> io::Result<()> {
        self.connection
            .with(|c| c.reset_stream(self.id, code))
            .map_err(connection_io_error)?
            .map_err(io_error)
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written =
            this.connection
                .poll_stream_with(cx, this.id, |c| match c.write(this.id, buf) {
                    Ok(0) if !buf.is_empty() => Poll::Pending,
                    result => Poll::Ready(result),
                });
        match written {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(connection_io_error(error))),
            Poll::Ready(Ok(Err(error))) => Poll::Ready(Err(io_error(error))),
            Poll::Ready(Ok(Ok(n))) => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().finish())
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        let _ = self.connection.with(|c| c.release_send(self.id));
    }
}

/// The receiving half of a stream.
///
/// `stop` discards incoming data (STOP_SENDING; quic-go's CancelRead). Dropping it before the
/// end stops it, so the peer's credit comes back.
#[derive(Debug)]
pub struct RecvStream {
    connection: Connection,
    id: StreamId,
}

impl RecvStream {
    fn new(connection: Connection, id: StreamId) -> Self {
        Self { connection, id }
    }

    /// The stream's ID.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Server: whether the peer's data on this stream arrived as early data, in 0-RTT packets
    /// (quinn: `RecvStream::is_0rtt`). Early data can be replayed by an attacker: act on it only
    /// when doing so twice is harmless (an idempotent request).
    pub fn is_early(&self) -> bool {
        let state = self.connection.shared.lock();
        state
            .proto
            .connection(self.connection.handle)
            .and_then(|c| c.stream_is_early(self.id))
            .unwrap_or(false)
    }

    /// Reads to the end, failing with [`ReadError::TooLong`] if more than `limit` bytes arrive
    /// (quic-go: io.ReadAll on the stream, bounded; quinn: `read_to_end`).
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk(usize::MAX).await? {
            if out.len() + chunk.len() > limit {
                return Err(ReadError::TooLong { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The next bytes in order, at most `max`, without copying them: one received piece, or
    /// part of it; `None` at the end of the stream (quinn's `read_chunk`, in order).
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, ReadError> {
        poll_fn(|cx| self.poll_read_with(cx, |c, id| c.read(id, max).map(Into::into))).await
    }

    /// Fills `chunks` with the next pieces in order, as many as are received and fit, without
    /// copying them; returns how many, or `None` at the end of the stream (quinn's
    /// `read_chunks`).
    pub async fn read_chunks(
        &mut self,
        chunks: &mut [bytes::Bytes],
    ) -> Result<Option<usize>, ReadError> {
        if chunks.is_empty() {
            return Ok(Some(0));
        }
        poll_fn(|cx| {
            self.poll_read_with(cx, |c, id| {
                gather(c, id, chunks.len(), |i, bytes| chunks[i] = bytes)
            })
        })
        .await
    }

    /// Copies the next bytes in order into `buf`: everything received that fits, across
    /// pieces; returns how many, or `None` at the end of the stream (quinn's `read`).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        poll_fn(|cx| self.poll_copy(cx, buf)).await
    }

    /// Copies into `buf` everything received that fits, waiting while nothing is.
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<Option<usize>, ReadError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(Some(0)));
        }
        self.poll_read_with(cx, |c, id| {
            let mut filled = 0;
            loop {
                match c.read(id, buf.len() - filled)? {
                    ReadOutcome::Data(bytes) => {
                        buf[filled..filled + bytes.len()].copy_from_slice(&bytes);
                        filled += bytes.len();
                        // Only data is taken after data: the end (or a reset) is left for
                        // the next read to report.
                        if filled == buf.len() || !c.has_data(id) {
                            return Ok(Read::Data(filled));
                        }
                    }
                    _ if filled > 0 => return Ok(Read::Data(filled)),
                    ReadOutcome::Finished => return Ok(Read::End),
                    ReadOutcome::Reset(code) => return Ok(Read::Reset(code)),
                    ReadOutcome::Blocked => return Ok(Read::Blocked),
                }
            }
        })
    }

    /// Runs `read` on the stream under the connection's lock and maps its outcome: `Pending`
    /// (waker registered) when nothing is received, `None` at the end.
    fn poll_read_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        read: impl FnOnce(&mut qstream_proto::Connection, StreamId) -> Result<Read<T>, StreamError>,
    ) -> Poll<Result<Option<T>, ReadError>> {
        let id = self.id;
        let result = self
            .connection
            .poll_stream_with(cx, id, |c| match read(c, id) {
                Ok(Read::Blocked) => Poll::Pending,
                result => Poll::Ready(result),
            });
        let Poll::Ready(result) = result else {
            return Poll::Pending;
        };
        Poll::Ready(match result {
            Err(error) => Err(ReadError::ConnectionLost(error)),
            // A released stream has been read to its end.
            Ok(Err(StreamError::UnknownStream)) => Ok(None),
            Ok(Err(error)) => Err(ReadError::Stream(error)),
            Ok(Ok(Read::Data(value))) => Ok(Some(value)),
            Ok(Ok(Read::End)) => Ok(None),
            Ok(Ok(Read::Reset(code))) => Err(ReadError::Reset(code)),
            // `poll_stream_with` turned `Blocked` into `Pending` with the waker registered.
            Ok(Ok(Read::Blocked)) => return Poll::Pending,
        })
    }

    /// Stops reading with `code` (STOP_SENDING; quic-go's CancelRead).
    pub fn stop(&mut self, code: VarInt) -> io::Result<()> {
        self.connection
            .with(|c| c.stop(self.id, code))
            .map_err(connection_io_error)?
            .map_err(io_error)
    }
}

/// What one read under the lock found.
enum Read<T> {
    Data(T),
    End,
    Reset(VarInt),
    Blocked,
}

impl From<ReadOutcome> for Read<bytes::Bytes> {
    fn from(outcome: ReadOutcome) -> Self {
        match outcome {
            ReadOutcome::Data(bytes) => Self::Data(bytes),
            ReadOutcome::Finished => Self::End,
            ReadOutcome::Reset(code) => Self::Reset(code),
            ReadOutcome::Blocked => Self::Blocked,
        }
    }
}

/// Reads up to `max` received pieces of stream `id`, handing each to `put` with its index.
fn gather(
    c: &mut qstream_proto::Connection,
    id: StreamId,
    max: usize,
    mut put: impl FnMut(usize, bytes::Bytes),
) -> Result<Read<usize>, StreamError> {
    let mut taken = 0;
    while taken < max {
        match c.read(id, usize::MAX)? {
            ReadOutcome::Data(bytes) => {
                put(taken, bytes);
                taken += 1;
                // The end (or a reset) is left for the next read to report.
                if !c.has_data(id) {
                    break;
                }
            }
            _ if taken > 0 => break,
            ReadOutcome::Finished => return Ok(Read::End),
            ReadOutcome::Reset(code) => return Ok(Read::Reset(code)),
            ReadOutcome::Blocked => return Ok(Read::Blocked),
        }
    }
    Ok(Read::Data(taken))
}

/// Why a read of a [`RecvStream`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The peer reset the stream (RESET_STREAM, quic-go's CancelWrite on its side) with this
    /// application code; what it sent before may be lost.
    Reset(VarInt),
    /// The connection ended.
    ConnectionLost(ConnectionError),
    /// The stream cannot be read: this side stopped it, or it sends only.
    Stream(StreamError),
    /// [`RecvStream::read_to_end`]: more than its limit arrived.
    TooLong {
        /// The limit.
        limit: usize,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reset(code) => ResetByPeer(*code).fmt(f),
            Self::ConnectionLost(error) => write!(f, "the connection ended: {error}"),
            Self::Stream(error) => error.fmt(f),
            Self::TooLong { limit } => write!(f, "the stream is longer than {limit} bytes"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for io::Error {
    /// A reset has kind `ConnectionReset` and carries [`ResetByPeer`], a lost connection
    /// `ConnectionAborted`, a stream too long `InvalidData`.
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Reset(code) => {
                io::Error::new(io::ErrorKind::ConnectionReset, ResetByPeer(code))
            }
            ReadError::ConnectionLost(error) => connection_io_error(error),
            ReadError::Stream(error) => io_error(error),
            ReadError::TooLong { .. } => io::Error::new(io::ErrorKind::InvalidData, error),
        }
    }
}

impl AsyncRead for RecvStream {
    /// Fills the caller's buffer with everything received that fits, across pieces, so a
    /// large buffer takes many packets' data per call.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        let copied = std::task::ready!(self.get_mut().poll_copy(cx, unfilled))?;
        buf.advance(copied.unwrap_or(0));
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let _ = self.connection.with(|c| c.release_recv(self.id));
    }
}
