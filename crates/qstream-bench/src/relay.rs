//! A UDP relay that holds every datagram for a fixed time in each direction: a path with a
//! round-trip time on loopback, for kernels without `netem`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the receiving thread looks whether the relay was dropped.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// A datagram held until it is due.
struct Held {
    due: Instant,
    to: SocketAddr,
    datagram: Vec<u8>,
}

/// Relays datagrams between one client and a server, each held for the same one-way delay, in
/// order. The client is whoever last sent from an address other than the server's. Runs on two
/// threads of its own until dropped.
pub(crate) struct DelayRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayRelay {
    /// Starts relaying to `server`, holding every datagram `one_way` in both directions.
    pub(crate) fn start(server: SocketAddr, one_way: Duration) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::new(server.ip(), 0))?;
        socket.set_read_timeout(Some(STOP_CHECK))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (held_tx, held_rx) = mpsc::channel::<Held>();
        let receiving = {
            let (socket, stop) = (socket.try_clone()?, stop.clone());
            thread::Builder::new()
                .name("bench-relay-in".into())
                .spawn(move || {
                    let mut client = None;
                    let mut buffer = vec![0; u16::MAX as usize];
                    while !stop.load(Ordering::Relaxed) {
                        // Timeouts, and ICMP errors of a peer that has gone, are not datagrams.
                        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                            continue;
                        };
                        let to = if from == server {
                            let Some(client) = client else { continue };
                            client
                        } else {
                            client = Some(from);
                            server
                        };
                        let held = Held {
                            due: Instant::now() + one_way,
                            to,
                            datagram: buffer[..len].to_vec(),
                        };
                        if held_tx.send(held).is_err() {
                            break;
                        }
                    }
                })?
        };
        // Every datagram is held equally long, so they fall due in the order they came.
        let sending = thread::Builder::new()
            .name("bench-relay-out".into())
            .spawn(move || {
                while let Ok(held) = held_rx.recv() {
                    let wait = held.due.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        thread::sleep(wait);
                    }
                    // A full socket buffer drops the datagram, as a congested path would.
                    let _ = socket.send_to(&held.datagram, held.to);
                }
            })?;
        Ok(Self {
            addr,
            stop,
            threads: vec![receiving, sending],
        })
    }

    /// Where clients send to reach the server through the relay.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
