//! The UDP socket: tokio readiness with quinn-udp's system calls (ECN, batching).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use qstream_proto::EcnCodepoint;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

/// A non-blocking UDP socket registered with tokio.
#[derive(Debug)]
pub(crate) struct Socket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    counters: IoCounters,
}

/// System calls made on an endpoint's socket and the datagrams they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Send system calls that succeeded.
    pub send_calls: u64,
    /// Datagrams those calls carried (more than the calls when GSO batches them).
    pub datagrams_sent: u64,
    /// Receive system calls that returned datagrams.
    pub recv_calls: u64,
    /// Datagrams those calls returned (more than the calls with recvmmsg and GRO).
    pub datagrams_received: u64,
}

#[derive(Debug, Default)]
struct IoCounters {
    send_calls: AtomicU64,
    datagrams_sent: AtomicU64,
    recv_calls: AtomicU64,
    datagrams_received: AtomicU64,
}

impl Socket {
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)?;
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
            counters: IoCounters::default(),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The system calls made so far and the datagrams they carried.
    pub(crate) fn io_stats(&self) -> IoStats {
        let c = &self.counters;
        IoStats {
            send_calls: c.send_calls.load(Ordering::Relaxed),
            datagrams_sent: c.datagrams_sent.load(Ordering::Relaxed),
            recv_calls: c.recv_calls.load(Ordering::Relaxed),
            datagrams_received: c.datagrams_received.load(Ordering::Relaxed),
        }
    }

    /// Receives a batch of datagrams when any are ready.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(count) => {
                    let datagrams: usize = meta[..count]
                        .iter()
                        .map(|m| m.len.div_ceil(m.stride.max(1)))
                        .sum();
                    self.counters.recv_calls.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .datagrams_received
                        .fetch_add(datagrams as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(count));
                }
                result => return Poll::Ready(result),
            }
        }
    }

    /// How many equal-sized datagrams one send may carry with GSO; 1 without it.
    pub(crate) fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends one datagram, or with `segment_size` several of that size (the last may be shorter)
    /// in one system call (GSO), waiting for the socket to be writable if needed.
    pub(crate) async fn send(
        &self,
        destination: SocketAddr,
        ecn: Option<EcnCodepoint>,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: ecn.map(|e| match e {
                EcnCodepoint::Ect0 => quinn_udp::EcnCodepoint::Ect0,
                EcnCodepoint::Ect1 => quinn_udp::EcnCodepoint::Ect1,
                EcnCodepoint::Ce => quinn_udp::EcnCodepoint::Ce,
            }),
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.send((&self.io).into(), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(()) => {
                    let datagrams = segment_size.map_or(1, |size| contents.len().div_ceil(size));
                    self.counters.send_calls.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .datagrams_sent
                        .fetch_add(datagrams as u64, Ordering::Relaxed);
                    return Ok(());
                }
                result => return result,
            }
        }
    }
}

/// The codepoint quinn-udp reports, in the core's terms.
pub(crate) fn ecn(codepoint: Option<quinn_udp::EcnCodepoint>) -> Option<EcnCodepoint> {
    codepoint.map(|e| match e {
        quinn_udp::EcnCodepoint::Ect0 => EcnCodepoint::Ect0,
        quinn_udp::EcnCodepoint::Ect1 => EcnCodepoint::Ect1,
        quinn_udp::EcnCodepoint::Ce => EcnCodepoint::Ce,
    })
}
