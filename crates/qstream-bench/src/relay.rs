//! A UDP relay that imitates a network path on loopback, for kernels without `netem`: a
//! one-way delay, random or bursty loss of single datagrams, reordering, and a bottleneck of a
//! given rate with a drop-tail queue.

use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often the receiving thread looks whether the relay was dropped.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Which datagrams a path loses, each direction on its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Loss {
    /// None.
    None,
    /// Each datagram independently with this probability.
    Random(f64),
    /// The Gilbert–Elliott model: a good and a bad state, each losing datagrams with its own
    /// probability, switching state before each datagram with the given probabilities. Losses
    /// come in bursts while the path is in the bad state.
    GilbertElliott {
        /// Probability of moving from good to bad.
        to_bad: f64,
        /// Probability of moving from bad to good.
        to_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

/// A path between one client and a server, the same in both directions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Path {
    /// Propagation delay each way.
    pub(crate) one_way: Duration,
    /// What is lost, each way.
    pub(crate) loss: Loss,
    /// Probability that a datagram is held back by up to `reorder_by` more, so that later ones
    /// overtake it.
    pub(crate) reorder: f64,
    /// The most a reordered datagram is held back.
    pub(crate) reorder_by: Duration,
    /// The bottleneck's rate in bits per second each way; `None` for as fast as loopback.
    pub(crate) rate: Option<u64>,
    /// The bottleneck queue in bytes: a datagram that finds it full is dropped. Ignored
    /// without a rate.
    pub(crate) queue: u64,
}

impl Path {
    /// A path that only delays, by `one_way` each way.
    pub(crate) fn delay(one_way: Duration) -> Self {
        Self {
            one_way,
            loss: Loss::None,
            reorder: 0.0,
            reorder_by: Duration::ZERO,
            rate: None,
            queue: 0,
        }
    }

    /// A bottleneck of `bits_per_second` with a queue of one bandwidth-delay product of the
    /// round trip `2 * one_way`, the size routers are classically given.
    pub(crate) fn bottleneck(self, bits_per_second: u64) -> Self {
        let rtt = 2 * self.one_way;
        Self {
            rate: Some(bits_per_second),
            queue: (bits_per_second as f64 / 8.0 * rtt.as_secs_f64()) as u64,
            ..self
        }
    }
}

/// What one direction of the path did.
#[derive(Debug, Default)]
struct DirectionStats {
    relayed: AtomicU64,
    lost: AtomicU64,
    queue_drops: AtomicU64,
    /// The largest time a datagram waited in the bottleneck queue, in microseconds.
    max_queueing_us: AtomicU64,
    /// Summed queueing time, in microseconds, to average over `relayed`.
    total_queueing_us: AtomicU64,
}

/// What the path did to the datagrams, both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PathStats {
    /// Datagrams that reached the other side.
    pub(crate) relayed: u64,
    /// Datagrams the loss model dropped.
    pub(crate) lost: u64,
    /// Datagrams dropped because the bottleneck queue was full.
    pub(crate) queue_drops: u64,
    /// The mean time a datagram waited in the bottleneck queue.
    pub(crate) mean_queueing: Duration,
    /// The longest time a datagram waited there.
    pub(crate) max_queueing: Duration,
}

/// A datagram held until it is due.
struct Held {
    due: Instant,
    /// Arrival order: datagrams due at the same time leave in the order they came.
    seq: u64,
    to: SocketAddr,
    datagram: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    /// Reversed, so that the heap's top is the earliest due.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// One direction's state: its loss model and bottleneck.
struct Direction {
    loss: Loss,
    bad_state: bool,
    /// When the bottleneck finishes sending what it already holds.
    busy_until: Instant,
}

impl Direction {
    fn new(loss: Loss) -> Self {
        Self {
            loss,
            bad_state: false,
            busy_until: Instant::now(),
        }
    }

    fn loses(&mut self, rng: &mut StdRng) -> bool {
        match self.loss {
            Loss::None => false,
            Loss::Random(p) => rng.random_bool(p),
            Loss::GilbertElliott {
                to_bad,
                to_good,
                loss_good,
                loss_bad,
            } => {
                let switch = if self.bad_state { to_good } else { to_bad };
                if rng.random_bool(switch) {
                    self.bad_state = !self.bad_state;
                }
                rng.random_bool(if self.bad_state { loss_bad } else { loss_good })
            }
        }
    }
}

/// Relays datagrams between one client and a server over a [`Path`]. The client is whoever
/// last sent from an address other than the server's. Runs on two threads of its own until
/// dropped; every random choice comes from `seed`.
pub(crate) struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<[DirectionStats; 2]>,
    threads: Vec<JoinHandle<()>>,
}

/// Datagrams due to leave, and whether the relay stops.
type Outbox = (Mutex<(BinaryHeap<Held>, bool)>, Condvar);

impl Relay {
    /// Starts relaying to `server` over `path`.
    pub(crate) fn start(server: SocketAddr, path: Path, seed: u64) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::new(server.ip(), 0))?;
        socket.set_read_timeout(Some(STOP_CHECK))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<[DirectionStats; 2]> = Arc::default();
        let outbox: Arc<Outbox> = Arc::default();
        let receiving = {
            let (socket, stop, stats, outbox) = (
                socket.try_clone()?,
                stop.clone(),
                stats.clone(),
                outbox.clone(),
            );
            thread::Builder::new()
                .name("bench-relay-in".into())
                .spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let mut directions = [Direction::new(path.loss), Direction::new(path.loss)];
                    let mut client = None;
                    let mut buffer = vec![0; u16::MAX as usize];
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Timeouts, and ICMP errors of a peer that has gone, are not datagrams.
                        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                            continue;
                        };
                        let now = Instant::now();
                        let (to, index) = if from == server {
                            let Some(client) = client else { continue };
                            (client, 1)
                        } else {
                            client = Some(from);
                            (server, 0)
                        };
                        let (direction, stats) = (&mut directions[index], &stats[index]);
                        if direction.loses(&mut rng) {
                            stats.lost.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let mut depart = now;
                        if let Some(rate) = path.rate {
                            let start = direction.busy_until.max(now);
                            let waiting = start - now;
                            let queued = (waiting.as_secs_f64() * rate as f64 / 8.0) as u64;
                            if queued + len as u64 > path.queue.max(len as u64) {
                                stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let serialisation =
                                Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
                            direction.busy_until = start + serialisation;
                            depart = direction.busy_until;
                            let us = waiting.as_micros() as u64;
                            stats.total_queueing_us.fetch_add(us, Ordering::Relaxed);
                            stats.max_queueing_us.fetch_max(us, Ordering::Relaxed);
                        }
                        let mut due = depart + path.one_way;
                        if path.reorder > 0.0 && rng.random_bool(path.reorder) {
                            due += path.reorder_by.mul_f64(rng.random::<f64>());
                        }
                        stats.relayed.fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                        let held = Held {
                            due,
                            seq,
                            to,
                            datagram: buffer[..len].to_vec(),
                        };
                        let (queue, ready) = &*outbox;
                        queue.lock().expect("relay queue").0.push(held);
                        ready.notify_one();
                    }
                    outbox.0.lock().expect("relay queue").1 = true;
                    outbox.1.notify_one();
                })?
        };
        let sending = thread::Builder::new()
            .name("bench-relay-out".into())
            .spawn(move || {
                let (queue, ready) = &*outbox;
                let mut state = queue.lock().expect("relay queue");
                loop {
                    let now = Instant::now();
                    match state.0.peek() {
                        Some(next) if next.due <= now => {
                            let held = state.0.pop().expect("peeked");
                            drop(state);
                            // A full socket buffer drops the datagram, as a congested path
                            // would.
                            let _ = socket.send_to(&held.datagram, held.to);
                            state = queue.lock().expect("relay queue");
                        }
                        Some(next) => {
                            let wait = next.due - now;
                            state = ready.wait_timeout(state, wait).expect("relay queue").0;
                        }
                        None if state.1 => return,
                        None => state = ready.wait(state).expect("relay queue"),
                    }
                }
            })?;
        Ok(Self {
            addr,
            stop,
            stats,
            threads: vec![receiving, sending],
        })
    }

    /// Where clients send to reach the server through the relay.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the path did so far.
    pub(crate) fn stats(&self) -> PathStats {
        let sum = |f: fn(&DirectionStats) -> &AtomicU64| {
            self.stats
                .iter()
                .map(|d| f(d).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let relayed = sum(|d| &d.relayed);
        let max_us = self
            .stats
            .iter()
            .map(|d| d.max_queueing_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        PathStats {
            relayed,
            lost: sum(|d| &d.lost),
            queue_drops: sum(|d| &d.queue_drops),
            mean_queueing: Duration::from_micros(sum(|d| &d.total_queueing_us) / relayed.max(1)),
            max_queueing: Duration::from_micros(max_us),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gilbert_elliott_loses_the_mean_of_its_states() {
        // Bad a tenth of the time, losing half of its datagrams there: 5 % in all.
        let loss = Loss::GilbertElliott {
            to_bad: 0.01,
            to_good: 0.09,
            loss_good: 0.0,
            loss_bad: 0.5,
        };
        let mut direction = Direction::new(loss);
        let mut rng = StdRng::seed_from_u64(7);
        let lost = (0..200_000).filter(|_| direction.loses(&mut rng)).count();
        assert!((9_000..11_000).contains(&lost), "{lost}");
    }

    #[test]
    fn a_bottleneck_queue_holds_one_bandwidth_delay_product() {
        let path = Path::delay(Duration::from_millis(10)).bottleneck(100_000_000);
        // 100 Mbit/s for 20 ms: 250 kB.
        assert_eq!(path.queue, 250_000);
    }
}
