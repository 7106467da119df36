//! The endpoint: one UDP socket, one driver task, every connection on it.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use qstream_proto::connection::Event;
use qstream_proto::transmit::{NextStep, ReceiveBatch, gso_batches};
use qstream_proto::{
    ClientConfig, ConnectError, ConnectionError, ConnectionHandle, EndpointConfig, ServerConfig,
};
use quinn_udp::RecvMeta;
use rand::TryRngCore;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::connection::Connection;
use crate::qlog::QlogFile;
use crate::socket::{IoStats, Socket, ecn};

/// What the application side of one connection waits on.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    pub(crate) connected: bool,
    pub(crate) error: Option<ConnectionError>,
    /// Futures of this connection waiting for anything about it to change: accepts, opens,
    /// datagrams, its end.
    pub(crate) waiters: Vec<Waker>,
    /// Stream handles waiting for an event on their stream (reading, writing, its end); the
    /// other streams' events do not wake them.
    pub(crate) stream_waiters: FxHashMap<qstream_proto::wire::StreamId, Vec<Waker>>,
    /// Open requests granted, by ticket.
    pub(crate) granted: FxHashMap<u64, qstream_proto::wire::StreamId>,
    /// Where its qlog records go, when the endpoint writes qlog.
    qlog: QlogFile,
    /// Every application handle to it is gone: forget it once drained.
    abandoned: bool,
}

/// Everything the driver and the handles share.
pub(crate) struct State {
    pub(crate) proto: qstream_proto::Endpoint,
    pub(crate) connections: FxHashMap<ConnectionHandle, ConnectionState>,
    incoming: VecDeque<ConnectionHandle>,
    accept_waiters: Vec<Waker>,
    closed: bool,
    /// The directory qlog files are written to, if any.
    qlog_dir: Option<PathBuf>,
}

/// Wakes every waiter in `waiters`; whether there was any.
fn wake_all(waiters: &mut Vec<Waker>) -> bool {
    let any = !waiters.is_empty();
    waiters.drain(..).for_each(Waker::wake);
    any
}

impl ConnectionState {
    /// Takes one event of `connection`; returns whether it woke a task.
    fn on_event(&mut self, connection: &qstream_proto::Connection, event: Event) -> bool {
        use qstream_proto::streams::StreamEvent;
        if let Event::Stream(stream_event) = &event
            && let Some(id) = stream_event.stream()
        {
            if matches!(stream_event, StreamEvent::Released(_)) {
                // The stream is gone: its entry goes too.
                return self
                    .stream_waiters
                    .remove(&id)
                    .is_some_and(|mut waiters| wake_all(&mut waiters));
            }
            return self.stream_waiters.get_mut(&id).is_some_and(wake_all);
        }
        match event {
            Event::Connected => {
                tracing::debug!(remote = %connection.remote_address(), "connected");
                self.connected = true;
            }
            Event::Closed(error) => {
                tracing::debug!(remote = %connection.remote_address(), %error, "closed");
                self.error = Some(error);
            }
            Event::Stream(StreamEvent::PeerBlocked(report)) => {
                let held: Vec<String> = report
                    .held
                    .iter()
                    .map(|(id, reason)| format!("stream {id}: {reason}"))
                    .collect();
                tracing::warn!(
                    remote = %connection.remote_address(),
                    limit = report.limit,
                    "the peer is blocked opening {:?} streams because this application \
                     holds its streams: {}",
                    report.dir,
                    held.join("; ")
                );
            }
            Event::Stream(StreamEvent::OpenGranted { ticket, id }) => {
                self.granted.insert(ticket.0, id);
            }
            _ => {}
        }
        wake_all(&mut self.waiters)
    }

    /// The connection's state changed: waiters that its end concerns are woken. Returns
    /// whether it woke a task.
    fn on_changed(&mut self, connection: &qstream_proto::Connection) -> bool {
        let drained = connection.is_drained();
        if drained {
            // Nothing more can happen on it; handles still see its error.
            if let Some(error) = connection.close_reason() {
                self.error.get_or_insert_with(|| error.clone());
            }
        }
        let mut woke = false;
        if self.error.is_some() || drained {
            // Every stream operation now fails with the connection's error.
            for (_, mut waiters) in self.stream_waiters.drain() {
                woke |= wake_all(&mut waiters);
            }
        }
        if drained {
            woke |= wake_all(&mut self.waiters);
        }
        woke
    }
}

impl State {
    /// Hands every event of every connection to the waiters it concerns.
    /// Returns whether it woke any task.
    fn dispatch_events(&mut self) -> bool {
        let mut woke = false;
        while let Some(handle) = self.proto.accept() {
            self.connections.entry(handle).or_default();
            self.incoming.push_back(handle);
            woke |= wake_all(&mut self.accept_waiters);
        }
        while let Some((handle, connection)) = self.proto.poll_changed() {
            let state = self.connections.entry(handle).or_default();
            if let Some(dir) = &self.qlog_dir {
                state.qlog.write_records(dir, connection);
            }
            while let Some(event) = connection.poll_event() {
                woke |= state.on_event(connection, event);
            }
            woke |= state.on_changed(connection);
            if connection.is_drained() {
                if state.abandoned {
                    self.connections.remove(&handle);
                }
                self.proto.remove(handle);
            }
        }
        woke
    }

    /// The last application handle to `handle` is gone: nobody can use the connection any
    /// more, so it is closed (code 0) if still open, and forgotten once drained.
    pub(crate) fn abandon(&mut self, handle: ConnectionHandle) {
        match self.proto.connection_mut(handle) {
            Some(connection) => {
                if !connection.is_closed() {
                    connection.close(Instant::now(), qstream_proto::wire::VarInt::ZERO, b"");
                }
                self.connections.entry(handle).or_default().abandoned = true;
            }
            None => {
                self.connections.remove(&handle);
            }
        }
    }
}

/// State shared between an endpoint's handles and its driver task.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the driver when an application call produced something to send.
    notify: Notify,
    /// The driver has been woken since it last looked at the state: waking it again is one
    /// atomic swap instead of a notification per application call.
    woken: std::sync::atomic::AtomicBool,
    /// The socket, replaced when the endpoint moves ([`Endpoint::rebind`]).
    socket: std::sync::RwLock<Arc<Socket>>,
    /// A second socket while the path from it is probed ([`Endpoint::probe_rebind`]).
    probe: std::sync::RwLock<Option<Arc<Socket>>>,
    /// A server's socket on its preferred address (RFC 9000 §9.6), if it has one.
    preferred: Option<Arc<Socket>>,
    /// Whether sends may batch datagrams with GSO.
    gso: std::sync::atomic::AtomicBool,
    /// Endpoint handles and connections with application handles. At zero, the driver closes
    /// what is left and stops once it has drained.
    users: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// The socket in use now.
    fn socket(&self) -> Arc<Socket> {
        self.socket
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The socket whose path is being probed, if any.
    fn probe_socket(&self) -> Option<Arc<Socket>> {
        self.probe
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The sockets besides the endpoint's own, with their addresses: what arrives on them is
    /// handed over with that address, and datagrams whose source is one leave from it.
    fn other_sockets(&self) -> Vec<(Arc<Socket>, SocketAddr)> {
        self.probe_socket()
            .into_iter()
            .chain(self.preferred.clone())
            .filter_map(|socket| socket.local_addr().ok().map(|addr| (socket, addr)))
            .collect()
    }

    fn set_probe_socket(&self, socket: Option<Arc<Socket>>) {
        *self
            .probe
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = socket;
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more user: an endpoint handle or a connection's handles.
    pub(crate) fn add_user(&self) {
        self.users.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Counts one user less, and wakes the driver so it notices when none is left.
    pub(crate) fn remove_user(&self) {
        self.users.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.wake_driver();
    }

    /// Makes the driver look at the state again: call after changing it.
    pub(crate) fn wake_driver(&self) {
        if !self.woken.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

/// A QUIC endpoint on one UDP socket, for clients, servers, or both. Cloning gives another
/// handle to the same endpoint. A driver task on the current tokio runtime does all I/O; when
/// the last endpoint handle and connection handle are gone, it closes the connections left
/// (code 0), waits for them to drain, and stops.
pub struct Endpoint {
    pub(crate) shared: Arc<Shared>,
}

impl Clone for Endpoint {
    fn clone(&self) -> Self {
        self.shared.add_user();
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.remove_user();
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

fn endpoint_config() -> EndpointConfig {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .expect("the OS random source");
    EndpointConfig::from_seed(seed)
}

impl Endpoint {
    /// An endpoint that accepts connections on `addr` (and can also connect out). With a
    /// `preferred_address` in `config` it binds a second socket there (port 0 picks one, and
    /// the port bound is what clients are told) and clients move to it once their handshake
    /// is confirmed (RFC 9000 §9.6); see [`Self::preferred_address`].
    pub fn server(mut config: ServerConfig, addr: SocketAddr) -> io::Result<Self> {
        let preferred = match config.preferred_address {
            Some(preferred) => {
                let socket = Arc::new(Socket::bind(preferred)?);
                config.preferred_address = Some(socket.local_addr()?);
                Some(socket)
            }
            None => None,
        };
        Self::new(addr, Some(config), preferred)
    }

    /// An endpoint for outgoing connections, bound to `addr` (use port 0 for any).
    pub fn client(addr: SocketAddr) -> io::Result<Self> {
        Self::new(addr, None, None)
    }

    /// The server's preferred address as bound, when it has one.
    pub fn preferred_address(&self) -> Option<SocketAddr> {
        self.shared
            .preferred
            .as_ref()
            .and_then(|s| s.local_addr().ok())
    }

    fn new(
        addr: SocketAddr,
        server: Option<ServerConfig>,
        preferred: Option<Arc<Socket>>,
    ) -> io::Result<Self> {
        let socket = Socket::bind(addr)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                proto: qstream_proto::Endpoint::new(endpoint_config(), server),
                connections: FxHashMap::default(),
                incoming: VecDeque::new(),
                accept_waiters: Vec::new(),
                closed: false,
                qlog_dir: None,
            }),
            notify: Notify::new(),
            woken: std::sync::atomic::AtomicBool::new(false),
            socket: std::sync::RwLock::new(Arc::new(socket)),
            probe: std::sync::RwLock::new(None),
            preferred,
            gso: std::sync::atomic::AtomicBool::new(true),
            users: std::sync::atomic::AtomicUsize::new(1),
        });
        tokio::spawn(drive(shared.clone()));
        Ok(Self { shared })
    }

    /// Turns batching of sends with generic segmentation offload on or off (it is on where the
    /// kernel supports it). Packet captures see one large buffer per batch, so turn it off to
    /// capture individual datagrams.
    pub fn set_gso(&self, enabled: bool) {
        self.shared
            .gso
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes a qlog trace (JSON-SEQ, draft-ietf-quic-qlog-main-schema-14) of every connection
    /// made from now on to `dir`, one file per connection named after its original Destination
    /// Connection ID and role, with every packet's frames and every stream state change
    /// (`stream_state_updated`). The directory is created if needed.
    pub fn set_qlog_dir(&self, dir: impl Into<PathBuf>) -> io::Result<()> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut state = self.shared.lock();
        state.qlog_dir = Some(dir);
        state.proto.set_qlog(true);
        Ok(())
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket().local_addr()
    }

    /// Moves the endpoint to a new UDP socket bound to `addr` (quinn calls it
    /// `Endpoint::rebind`), as a client does when its network changes. Every connection goes
    /// on from the new address with a new connection ID and a PING, and the servers follow it
    /// there (RFC 9000 §9); a new IP address starts congestion control over. A connection
    /// whose handshake is not confirmed yet does not move: its server may not follow. What
    /// arrives at the old socket from now on is lost, and [`Self::io_stats`] starts over.
    pub fn rebind(&self, addr: SocketAddr) -> io::Result<()> {
        self.move_to(Arc::new(Socket::bind(addr)?))
    }

    fn move_to(&self, socket: Arc<Socket>) -> io::Result<()> {
        let new = socket.local_addr()?;
        let old = self.local_addr()?;
        *self
            .shared
            .socket
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = socket;
        self.shared
            .lock()
            .proto
            .on_local_address_changed(Instant::now(), new.ip() != old.ip());
        self.shared.wake_driver();
        Ok(())
    }

    /// [`Self::rebind`] after probing the path from the new socket first (RFC 9000 §9.1): every
    /// connection sends PATH_CHALLENGE from a socket bound to `addr` (once its handshake is
    /// confirmed) while it goes on from the old one, and the endpoint moves only once every
    /// challenge was answered. If a path does not validate (no answer within three probe
    /// timeouts, a few seconds) or a connection may not move (its server disabled active
    /// migration, or gave no spare connection ID), nothing moves and the error says why.
    pub async fn probe_rebind(&self, addr: SocketAddr) -> io::Result<()> {
        let socket = Arc::new(Socket::bind(addr)?);
        let local = socket.local_addr()?;
        self.shared.set_probe_socket(Some(socket.clone()));
        let mut waiting = self.shared.lock().proto.connection_handles();
        let mut probed = Vec::new();
        let outcome = loop {
            match self.probe_step(local, &mut waiting, &mut probed) {
                Some(outcome) => break outcome,
                None => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            }
        };
        self.shared.set_probe_socket(None);
        outcome?;
        self.move_to(socket)
    }

    /// One look at a probe from `local`: connections in `waiting` are probed once their
    /// handshake is confirmed (then they join `probed`); `Some` once every open one answered
    /// or one cannot move.
    fn probe_step(
        &self,
        local: SocketAddr,
        waiting: &mut Vec<ConnectionHandle>,
        probed: &mut Vec<ConnectionHandle>,
    ) -> Option<io::Result<()>> {
        use qstream_proto::{PathProbe, ProbeError};
        let mut state = self.shared.lock();
        let now = Instant::now();
        let mut started = false;
        let mut error = None;
        waiting.retain(|&handle| {
            let Some(connection) = state.proto.connection_mut(handle) else {
                return false;
            };
            if connection.is_closed() {
                return false;
            }
            match connection.probe_path(now, local) {
                Ok(()) => {
                    probed.push(handle);
                    started = true;
                    false
                }
                Err(ProbeError::NotAllowedYet) => true,
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        });
        if started {
            self.shared.wake_driver();
        }
        if let Some(error) = error {
            let message = format!("cannot move to {local}: {error}");
            return Some(Err(io::Error::other(message)));
        }
        let outcomes: Vec<Option<PathProbe>> = probed
            .iter()
            .filter_map(|h| state.proto.connection(*h))
            .filter(|c| !c.is_closed())
            .map(|c| c.path_probe())
            .collect();
        if outcomes.contains(&Some(PathProbe::Failed)) {
            return Some(Err(io::Error::new(
                io::ErrorKind::HostUnreachable,
                format!("the path from {local} to a server did not validate"),
            )));
        }
        let done = waiting.is_empty() && outcomes.iter().all(|o| *o == Some(PathProbe::Validated));
        done.then_some(Ok(()))
    }

    /// How many connections this endpoint keeps state for: open, closing or draining ones, and
    /// drained ones an application handle still refers to. Connections whose handles are all
    /// dropped are forgotten once drained, so this does not grow with connections served.
    pub fn connection_count(&self) -> usize {
        let state = self.shared.lock();
        let gone_but_held = state
            .connections
            .keys()
            .filter(|h| state.proto.connection(**h).is_none())
            .count();
        state.proto.connection_handles().len() + gone_but_held
    }

    /// The system calls this endpoint's socket made and the datagrams they carried, since it
    /// was bound: datagrams per call show how well GSO and GRO batch.
    pub fn io_stats(&self) -> IoStats {
        self.shared.socket().io_stats()
    }

    /// Starts a connection to `addr`, authenticating the server as `server_name`. The
    /// returned future resolves when the handshake completes.
    pub fn connect(
        &self,
        config: &ClientConfig,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connecting, ConnectError> {
        let handle = {
            let mut state = self.shared.lock();
            let handle = state
                .proto
                .connect(Instant::now(), config, addr, server_name)?;
            state.connections.entry(handle).or_default();
            handle
        };
        self.shared.wake_driver();
        Ok(Connecting {
            connection: Some(Connection::new(self.shared.clone(), handle)),
        })
    }

    /// The next incoming connection, once its handshake completed; `None` after
    /// [`Endpoint::close`].
    pub async fn accept(&self) -> Option<Result<Connection, ConnectionError>> {
        Some(self.accept_connecting().await?.await)
    }

    /// The next incoming connection as soon as it arrives, its handshake under way (quinn:
    /// `Endpoint::accept` and `Incoming::accept`): await the [`Connecting`] for the handshake,
    /// or take the connection at once with [`Connecting::into_0rtt`] when the client's early
    /// data was accepted, to answer its 0-RTT requests before the handshake completes (in
    /// 0.5-RTT packets). `None` after [`Endpoint::close`].
    pub async fn accept_connecting(&self) -> Option<Connecting> {
        let handle = std::future::poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(handle) = state.incoming.pop_front() {
                return Poll::Ready(Some(handle));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            state.accept_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Some(Connecting {
            connection: Some(Connection::new(self.shared.clone(), handle)),
        })
    }

    /// Closes every connection with `code` and `reason`, and stops accepting.
    pub fn close(&self, code: qstream_proto::wire::VarInt, reason: &[u8]) {
        let mut state = self.shared.lock();
        state.closed = true;
        let now = Instant::now();
        for handle in state.proto.connection_handles() {
            if let Some(connection) = state.proto.connection_mut(handle) {
                connection.close(now, code, reason);
            }
        }
        state.accept_waiters.drain(..).for_each(Waker::wake);
        drop(state);
        self.shared.wake_driver();
    }

    /// Waits until every connection has finished closing.
    pub async fn wait_idle(&self) {
        loop {
            let busy = {
                let state = self.shared.lock();
                state
                    .proto
                    .connection_handles()
                    .iter()
                    .any(|h| state.proto.connection(*h).is_some_and(|c| !c.is_drained()))
            };
            if !busy {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// A connection being established.
#[derive(Debug)]
pub struct Connecting {
    connection: Option<Connection>,
}

impl Future for Connecting {
    type Output = Result<Connection, ConnectionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let connection = self.connection.as_ref().expect("polled after completion");
        let mut state = connection.shared.lock();
        let entry = state.connections.entry(connection.handle).or_default();
        if let Some(error) = &entry.error {
            return Poll::Ready(Err(error.clone()));
        }
        if entry.connected {
            drop(state);
            return Poll::Ready(Ok(self.connection.take().expect("present")));
        }
        entry.waiters.push(cx.waker().clone());
        Poll::Pending
    }
}

impl Connecting {
    /// The connection at once, before its handshake completes, when early data is under way
    /// (RFC 9001 §4.6); quinn calls it `Connecting::into_0rtt` too. `Err(self)` otherwise:
    /// await the handshake instead.
    ///
    /// Client: when it resumes a session whose server allows early data (the rustls
    /// `ClientConfig` has `enable_early_data`; tickets are kept by its resumption store, per
    /// server name), streams opened and data written now leave in 0-RTT packets with the first
    /// flight. Early data may reach the server twice (a replay): send in it only requests that
    /// are safe to repeat. If the server refuses it, what it carried is sent again in 1-RTT
    /// packets, without the application doing anything.
    ///
    /// Server (from [`Endpoint::accept_connecting`]): when TLS accepted the client's early data
    /// (the rustls `ServerConfig` has `max_early_data_size` `u32::MAX`), the streams it opened
    /// can be accepted and answered now, before the client's handshake is complete; see
    /// [`crate::RecvStream::is_early`].
    pub fn into_0rtt(mut self) -> Result<(Connection, ZeroRttAccepted), Self> {
        use qstream_proto::EarlyData;
        let connection = self.connection.as_ref().expect("polled after completion");
        let early = {
            let state = connection.shared.lock();
            state
                .proto
                .connection(connection.handle)
                .is_some_and(|c| match c.side() {
                    qstream_proto::Side::Client => c.early_data() == EarlyData::Pending,
                    qstream_proto::Side::Server => c.early_data() == EarlyData::Accepted,
                })
        };
        if !early {
            return Err(self);
        }
        let connection = self.connection.take().expect("present");
        let accepted = ZeroRttAccepted {
            shared: connection.shared.clone(),
            handle: connection.handle,
        };
        Ok((connection, accepted))
    }
}

/// Resolves when the handshake of a 0-RTT connection completes: `true` when the server took the
/// early data; `false` when it refused it (what it carried went again, nothing is lost) or the
/// connection failed. quinn's `ZeroRttAccepted`.
pub struct ZeroRttAccepted {
    shared: Arc<Shared>,
    handle: ConnectionHandle,
}

impl std::fmt::Debug for ZeroRttAccepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroRttAccepted")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Future for ZeroRttAccepted {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.shared.lock();
        let entry = state.connections.entry(self.handle).or_default();
        if entry.error.is_some() {
            return Poll::Ready(false);
        }
        if !entry.connected {
            entry.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let accepted = state
            .proto
            .connection(self.handle)
            .is_some_and(|c| c.early_data() == qstream_proto::EarlyData::Accepted);
        Poll::Ready(accepted)
    }
}

/// Datagrams received per system call at most.
const BATCH: usize = 32;

/// Datagrams that arrived from one address in one receive buffer (several of `stride` bytes
/// each with GRO), not yet handed to the protocol. They are copied out of the buffer once, into
/// one allocation that their packets' stream data then shares.
#[derive(Debug)]
struct Received {
    /// The address it arrived on, when not the endpoint's socket: the probe socket's.
    local: Option<SocketAddr>,
    from: SocketAddr,
    ecn: Option<qstream_proto::EcnCodepoint>,
    stride: usize,
    rest: BytesMut,
}

impl Received {
    fn new(meta: &RecvMeta, buffer: &[u8], local: Option<SocketAddr>) -> Self {
        Self {
            local,
            from: meta.addr,
            ecn: ecn(meta.ecn),
            stride: meta.stride.max(1),
            rest: BytesMut::from(&buffer[..meta.len]),
        }
    }

    /// The next datagram, sharing the batch's allocation.
    fn next_datagram(&mut self) -> BytesMut {
        if self.rest.len() <= self.stride {
            std::mem::take(&mut self.rest)
        } else {
            self.rest.split_to(self.stride)
        }
    }
}

/// What handling received datagrams left to do.
#[derive(Debug)]
struct Handled {
    /// What is now to be sent should go at once: a handshake reply, or what a peer is stalled
    /// on ([`qstream_proto::Connection::has_urgent_transmit`]).
    urgent: bool,
    /// Handling woke application tasks.
    woke: bool,
    /// Handling stopped after a datagram of this connection woke tasks, so that what they
    /// answer can go out before the rest is handled.
    answering: Option<ConnectionHandle>,
}

/// Hands the backlog's datagrams to the protocol endpoint in order, and their events to the
/// tasks waiting on them, stopping early where the protocol's send policy says
/// ([`ReceiveBatch::after_datagram`]): to send first, or to let the tasks a datagram woke
/// answer it before the rest is handled.
fn handle_received(
    state: &mut State,
    now: Instant,
    backlog: &mut VecDeque<Received>,
    policy: &mut ReceiveBatch,
) -> Handled {
    let mut urgent = false;
    while let Some(batch) = backlog.front_mut() {
        let (local, from, ecn) = (batch.local, batch.from, batch.ecn);
        let datagram = batch.next_datagram();
        if batch.rest.is_empty() {
            backlog.pop_front();
        }
        let receipt = state.proto.receive_at(now, local, from, ecn, datagram);
        urgent |= receipt.urgent;
        match policy.after_datagram(&receipt, !backlog.is_empty(), || state.dispatch_events()) {
            NextStep::SendNow => {
                return Handled {
                    urgent: true,
                    woke: state.dispatch_events(),
                    answering: None,
                };
            }
            NextStep::LetApplicationAnswer => {
                return Handled {
                    urgent,
                    woke: true,
                    answering: receipt.connection,
                };
            }
            NextStep::Continue => {}
        }
    }
    Handled {
        urgent,
        woke: state.dispatch_events(),
        answering: None,
    }
}

impl State {
    /// Handles expired timers and gathers every datagram waiting to be sent into `out`, back
    /// to back (so a GSO batch is one slice of it), described by `sends`. Once no handle is
    /// left, every connection is closed. Returns the next timer, or `None` when the driver is
    /// done: unused and every connection drained.
    fn poll_sends(
        &mut self,
        shared: &Shared,
        out: &mut Vec<u8>,
        sends: &mut Vec<qstream_proto::Transmit>,
    ) -> Option<Option<Instant>> {
        let now = Instant::now();
        let unused = shared.users.load(std::sync::atomic::Ordering::SeqCst) == 0;
        if unused {
            // Nobody can use a connection any more: close them all, stop once drained.
            self.closed = true;
            for handle in self.proto.connection_handles() {
                if let Some(connection) = self.proto.connection_mut(handle) {
                    if !connection.is_closed() {
                        connection.close(now, qstream_proto::wire::VarInt::ZERO, b"");
                    }
                }
            }
        }
        if self.proto.poll_timeout().is_some_and(|t| t <= now) {
            self.proto.handle_timeout(now);
        }
        out.clear();
        while let Some(transmit) = self.proto.poll_transmit(now, out) {
            sends.push(transmit);
        }
        self.dispatch_events();
        if unused && self.proto.connection_handles().is_empty() {
            None
        } else {
            Some(self.proto.poll_timeout())
        }
    }
}

impl Shared {
    /// Sends the gathered datagrams, in GSO batches where the socket allows.
    async fn send_all(&self, out: &[u8], sends: &[qstream_proto::Transmit]) {
        let (primary, others) = (self.socket(), self.other_sockets());
        let max_segments = if self.gso.load(std::sync::atomic::Ordering::Relaxed) {
            primary.max_gso_segments()
        } else {
            1
        };
        let mut start = 0;
        for batch in gso_batches(sends, max_segments) {
            let first = &sends[batch.start];
            let segment_size = (batch.len() > 1).then_some(first.size);
            let len: usize = sends[batch].iter().map(|t| t.size).sum();
            let contents = &out[start..start + len];
            start += len;
            // A probe of a new path leaves from the probe socket, what a server sends from its
            // preferred address from that socket; the rest from the endpoint's own.
            let socket = first
                .source
                .and_then(|source| others.iter().find(|(_, addr)| *addr == source))
                .map_or(&primary, |(socket, _)| socket);
            // A failed send is a lost datagram; recovery repairs it.
            if let Err(error) = socket
                .send(first.destination, first.ecn, contents, segment_size)
                .await
            {
                tracing::debug!(destination = %first.destination, %error, "send failed");
            }
        }
    }

    /// Handles received datagrams (see [`handle_received`]) and lets the tasks they woke run.
    /// True when the rest of the backlog is to be handled before anything is sent: the first
    /// answer had nothing to hurry.
    async fn handle_backlog(
        &self,
        backlog: &mut VecDeque<Received>,
        policy: &mut ReceiveBatch,
    ) -> bool {
        let handled = {
            let mut state = self.lock();
            handle_received(&mut state, Instant::now(), backlog, policy)
        };
        if handled.woke && !handled.urgent {
            // The tasks this woke run before anything is sent: their replies then share
            // packets with the ACKs and credit that arrived data called for, one packet
            // where there would be two. `yield_now` resumes this task once the runtime
            // has no other task ready.
            tokio::task::yield_now().await;
        }
        if let Some(handle) = handled.answering {
            let answered = self
                .lock()
                .proto
                .connection(handle)
                .is_some_and(ReceiveBatch::send_answer);
            if !answered {
                // The rest is handled first, and one packet acknowledges it all.
                return true;
            }
        }
        false
    }
}

/// Receive buffer per datagram: the largest UDP payload.
const DATAGRAM_BUFFER: usize = 65_536;

/// The driver: receives, handles timers, sends, and wakes waiters, until every handle is gone
/// and every connection drained.
async fn drive(shared: Arc<Shared>) {
    let mut buffers = vec![vec![0u8; DATAGRAM_BUFFER]; BATCH];
    let mut meta = vec![RecvMeta::default(); BATCH];
    let mut out = Vec::with_capacity(1500);
    let mut backlog = VecDeque::new();
    // The send policy over what one receive call gave.
    let mut policy = ReceiveBatch::default();
    let mut turn = 0usize;
    loop {
        if !backlog.is_empty() && shared.handle_backlog(&mut backlog, &mut policy).await {
            continue;
        }
        // Changes made from now on wake the driver again; those made before, it sees now.
        shared
            .woken
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut sends = Vec::new();
        let Some(deadline) = shared.lock().poll_sends(&shared, &mut out, &mut sends) else {
            return;
        };
        shared.send_all(&out, &sends).await;
        if !backlog.is_empty() {
            // The rest of what arrived waits its turn; tasks this woke may run first.
            tokio::task::yield_now().await;
            continue;
        }
        policy = ReceiveBatch::default();
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        // Every socket is read (a probe's, a preferred address's), each first in turn so that
        // a busy one does not starve the others.
        let (primary, others) = (shared.socket(), shared.other_sockets());
        turn = turn.wrapping_add(1);
        let received = std::future::poll_fn(|cx| {
            let count = 1 + others.len();
            for i in 0..count {
                let (socket, local) = match (i + turn) % count {
                    0 => (&primary, None),
                    k => (&others[k - 1].0, Some(others[k - 1].1)),
                };
                let mut slices: Vec<IoSliceMut<'_>> =
                    buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                if let Poll::Ready(result) = socket.poll_recv(cx, &mut slices, &mut meta) {
                    return Poll::Ready((result, local));
                }
            }
            Poll::Pending
        });
        tokio::select! {
            (result, local) = received => {
                let count = match result {
                    Ok(count) => count,
                    Err(error) => {
                        tracing::debug!(%error, "receive failed");
                        continue;
                    }
                };
                backlog.extend(
                    meta[..count]
                        .iter()
                        .zip(&buffers)
                        .map(|(meta, buffer)| Received::new(meta, buffer, local)),
                );
            }
            _ = sleep => {}
            _ = shared.notify.notified() => {}
        }
    }
}
