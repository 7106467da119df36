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

/// The socket buffers asked for at bind time: several bandwidth-delay products of a fast
/// path (1 Gbit/s over 30 ms is 3.75 MB), so that a burst of datagrams is not dropped while the
/// endpoint is busy. The kernel grants at most its limits (on Linux, net.core.rmem_max and
/// wmem_max; raise them for more).
pub(crate) const SOCKET_BUFFER: usize = 8 << 20;

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
    /// Datagrams the kernel dropped because the socket's receive buffer was full, where the
    /// system tells (Linux: /proc/net/udp); `None` elsewhere.
    pub receive_buffer_drops: Option<u64>,
    /// The receive buffer the kernel granted, in bytes.
    pub receive_buffer: usize,
    /// The send buffer the kernel granted, in bytes.
    pub send_buffer: usize,
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
        // Best effort: a kernel that grants less still works, with smaller bursts absorbed.
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
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

    /// The system calls made so far and the datagrams they carried, the buffers and the
    /// kernel's drops.
    pub(crate) fn io_stats(&self) -> IoStats {
        let c = &self.counters;
        IoStats {
            send_calls: c.send_calls.load(Ordering::Relaxed),
            datagrams_sent: c.datagrams_sent.load(Ordering::Relaxed),
            recv_calls: c.recv_calls.load(Ordering::Relaxed),
            datagrams_received: c.datagrams_received.load(Ordering::Relaxed),
            receive_buffer_drops: self.receive_buffer_drops(),
            receive_buffer: self.state.recv_buffer_size((&self.io).into()).unwrap_or(0),
            send_buffer: self.state.send_buffer_size((&self.io).into()).unwrap_or(0),
        }
    }

    /// The kernel's count of datagrams dropped on this socket, from the `drops` column of
    /// /proc/net/udp (or udp6), found by the socket's inode.
    fn receive_buffer_drops(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.io.as_raw_fd())).ok()?;
        let inode = link
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .to_owned();
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .find_map(|table| {
                let text = std::fs::read_to_string(table).ok()?;
                text.lines().skip(1).find_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields.get(9) == Some(&inode.as_str()))
                        .then(|| fields.last()?.parse().ok())
                        .flatten()
                })
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_receive_buffer_is_counted_as_drops() {
        let socket = Socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let stats = socket.io_stats();
        assert!(
            stats.receive_buffer > 0 && stats.send_buffer > 0,
            "{stats:?}"
        );
        if !cfg!(target_os = "linux") {
            return;
        }
        assert_eq!(stats.receive_buffer_drops, Some(0));
        // Nobody reads: far more than the buffer holds is dropped by the kernel.
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = [7u8; 1200];
        for _ in 0..(SOCKET_BUFFER / 1200 * 2) {
            let _ = sender.send_to(&datagram, socket.local_addr().unwrap());
        }
        let drops = socket.io_stats().receive_buffer_drops.unwrap();
        assert!(drops > 0, "{:?}", socket.io_stats());
    }
}
