//! A deterministic network simulator for testing: endpoints exchange datagrams over a simulated
//! link under a virtual clock.
//!
//! The link has a one-way delay, an optional bandwidth, and random loss, reordering, duplication
//! and corruption, plus an MTU; every random choice comes from one seed, so a run is repeatable.
//! Time advances straight to the next event, so a minute of protocol time takes milliseconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::connection::EcnCodepoint;
use crate::transmit::{NextStep, ReceiveBatch};
use crate::{Connection, ConnectionHandle, Endpoint};

/// The simulated link between every pair of endpoints, the same in both directions.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bytes per second each direction carries; `None` for unlimited.
    pub bandwidth: Option<u64>,
    /// With a bandwidth, the bytes its queue holds: a datagram that finds it full is dropped
    /// (drop-tail). `None` for an unbounded queue.
    pub queue: Option<u64>,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is held back by up to `reorder_delay`, so later ones may
    /// overtake it.
    pub reorder: f64,
    /// The most a reordered datagram is held back.
    pub reorder_delay: Duration,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that one byte of a datagram is flipped.
    pub corrupt: f64,
    /// Datagrams larger than this are dropped.
    pub mtu: usize,
    /// Probability that an ECN-capable datagram is marked CE (congestion experienced) instead
    /// of being dropped.
    pub ce_mark: f64,
    /// Clear every datagram's ECN codepoint, as some middleboxes do.
    pub ecn_bleach: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(10),
            bandwidth: None,
            queue: None,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.0,
            corrupt: 0.0,
            mtu: 1500,
            ce_mark: 0.0,
            ecn_bleach: false,
        }
    }
}

/// Counters of what the link did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams handed to the link.
    pub sent: u64,
    /// Datagrams delivered (duplicates count twice).
    pub delivered: u64,
    /// Datagrams lost at random, over the MTU, refused by the filter, or dropped by a full
    /// queue.
    pub dropped: u64,
    /// The longest a datagram waited in a bandwidth-limited queue.
    pub max_queueing: Duration,
    /// The time datagrams waited in bandwidth-limited queues, summed.
    pub total_queueing: Duration,
    /// Datagrams that went through a bandwidth-limited queue.
    pub queued: u64,
    /// Datagrams held back so that later ones may overtake them.
    pub reordered: u64,
}

impl LinkStats {
    /// The mean time a datagram waited in a bandwidth-limited queue.
    pub fn mean_queueing(&self) -> Duration {
        self.total_queueing / u32::try_from(self.queued.max(1)).unwrap_or(u32::MAX)
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    ecn: Option<EcnCodepoint>,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A predicate on datagrams in flight: return false to drop one. Receives the source, the
/// destination and the bytes.
pub type DatagramFilter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

/// Endpoints on a simulated network, under a virtual clock.
pub struct Simulator {
    now: Instant,
    seed: u64,
    rng: StdRng,
    link: LinkConfig,
    endpoints: Vec<(SocketAddr, Endpoint)>,
    /// More addresses of endpoints, by index: a server's preferred address.
    aliases: Vec<(SocketAddr, usize)>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// When each direction's link finishes serialising what it already carries.
    busy_until: HashMap<(SocketAddr, SocketAddr), Instant>,
    filter: Option<DatagramFilter>,
    stats: LinkStats,
    bytes_by: HashMap<SocketAddr, u64>,
    buf: Vec<u8>,
    /// The send policy of each endpoint over the datagrams due at `batch_at`.
    batches: Vec<ReceiveBatch>,
    batch_at: Option<Instant>,
    /// The connection whose application was let answer a datagram before the rest of its
    /// batch: its endpoint's index and handle.
    answering: Option<(usize, ConnectionHandle)>,
}

impl Simulator {
    /// A simulator whose random choices all come from `seed`.
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        Self {
            now: Instant::now(),
            seed,
            rng: StdRng::seed_from_u64(seed),
            link,
            endpoints: Vec::new(),
            aliases: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            busy_until: HashMap::new(),
            filter: None,
            stats: LinkStats::default(),
            bytes_by: HashMap::new(),
            buf: Vec::with_capacity(1500),
            batches: Vec::new(),
            batch_at: None,
            answering: None,
        }
    }

    /// The seed this simulation runs from; print it when a test fails.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Changes the link from now on.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// Moves endpoint `index` to `addr`, as a NAT that rebinds does: it sends from there from
    /// now on, and datagrams still on their way to its old address are lost.
    pub fn rebind(&mut self, index: usize, addr: SocketAddr) {
        self.endpoints[index].0 = addr;
    }

    /// Drops datagrams for which `filter` returns false, in addition to random loss.
    pub fn set_filter(&mut self, filter: Option<DatagramFilter>) {
        self.filter = filter;
    }

    /// Adds an endpoint at `addr`; returns its index.
    pub fn add_endpoint(&mut self, addr: SocketAddr, endpoint: Endpoint) -> usize {
        self.endpoints.push((addr, endpoint));
        self.batches.push(ReceiveBatch::default());
        self.endpoints.len() - 1
    }

    /// Gives the endpoint at `index` another address, as a server with a preferred address
    /// has (RFC 9000 §9.6): what arrives there is handed over with
    /// [`Endpoint::receive_at`], and what it sends from there ([`crate::Transmit::source`])
    /// leaves from it.
    pub fn add_address(&mut self, index: usize, addr: SocketAddr) {
        self.aliases.push((addr, index));
    }

    /// The endpoint at `index`.
    pub fn endpoint(&mut self, index: usize) -> &mut Endpoint {
        &mut self.endpoints[index].1
    }

    /// The address of the endpoint at `index`.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.endpoints[index].0
    }

    /// What the link did so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Bytes that the endpoint at `addr` handed to the link.
    pub fn bytes_sent_by(&self, addr: SocketAddr) -> u64 {
        self.bytes_by.get(&addr).copied().unwrap_or(0)
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, ecn: Option<EcnCodepoint>, data: &[u8]) {
        self.stats.sent += 1;
        *self.bytes_by.entry(from).or_default() += data.len() as u64;
        if data.len() > self.link.mtu || self.rng.random_bool(self.link.loss) {
            self.stats.dropped += 1;
            return;
        }
        if let Some(filter) = &mut self.filter {
            if !filter(from, to, data) {
                self.stats.dropped += 1;
                return;
            }
        }
        let ecn = match ecn {
            _ if self.link.ecn_bleach => None,
            Some(EcnCodepoint::Ect0 | EcnCodepoint::Ect1)
                if self.rng.random_bool(self.link.ce_mark) =>
            {
                Some(EcnCodepoint::Ce)
            }
            other => other,
        };
        let mut data = data.to_vec();
        if !data.is_empty() && self.rng.random_bool(self.link.corrupt) {
            let i = self.rng.random_range(0..data.len());
            data[i] ^= 1 << self.rng.random_range(0..8);
        }
        // Bandwidth: each direction serialises one datagram after another.
        let mut depart = self.now;
        if let Some(rate) = self.link.bandwidth {
            let busy = self.busy_until.entry((from, to)).or_insert(self.now);
            let start = (*busy).max(self.now);
            let waiting = start - self.now;
            let queued = (waiting.as_secs_f64() * rate as f64) as u64;
            if self
                .link
                .queue
                .is_some_and(|queue| queued + data.len() as u64 > queue.max(data.len() as u64))
            {
                self.stats.dropped += 1;
                return;
            }
            self.stats.max_queueing = self.stats.max_queueing.max(waiting);
            self.stats.total_queueing += waiting;
            self.stats.queued += 1;
            let serialisation = Duration::from_secs_f64(data.len() as f64 / rate as f64);
            *busy = start + serialisation;
            depart = *busy;
        }
        let mut at = depart + self.link.delay;
        if self.rng.random_bool(self.link.reorder) {
            at += self.link.reorder_delay.mul_f64(self.rng.random::<f64>());
            self.stats.reordered += 1;
        }
        let copies = if self.rng.random_bool(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                ecn,
                data: data.clone(),
            }));
        }
    }

    /// Collects what every endpoint wants to send now, after running its expired timers (as a
    /// driver does before it sends).
    fn flush(&mut self) {
        self.run_expired_timers();
        for i in 0..self.endpoints.len() {
            loop {
                let (addr, endpoint) = &mut self.endpoints[i];
                let from = *addr;
                self.buf.clear();
                let Some(transmit) = endpoint.poll_transmit(self.now, &mut self.buf) else {
                    break;
                };
                let data = std::mem::take(&mut self.buf);
                self.send(
                    transmit.source.unwrap_or(from),
                    transmit.destination,
                    transmit.ecn,
                    &data[..transmit.size],
                );
                self.buf = data;
            }
        }
    }

    /// Advances to the next event (a delivery or a timer) and handles it. Returns false when
    /// nothing is pending at all.
    pub fn step(&mut self) -> bool {
        self.step_until(None)
    }

    /// Like [`Self::step`], but the clock never passes `limit`: when the next event is later,
    /// time advances to `limit` and nothing else happens.
    ///
    /// The datagrams due at one instant are one receive batch, handled with
    /// [`Endpoint::receive`] and the send policy a driver applies ([`ReceiveBatch`]): what a
    /// [`crate::transmit::Receipt`] says to send now goes before the next datagram; after the
    /// first datagram that gives the application work, the step ends there and the rest
    /// waits for the next step at the same instant; urgent sends go at the end of the step.
    /// Other sends wait for the start of the next step: whoever drives the simulator acts in
    /// between, as an application does when its driver lets it answer what arrived before
    /// sending, so its answers share packets with acknowledgments and credit.
    pub fn step_until(&mut self, limit: Option<Instant>) -> bool {
        // After an application's answer to one datagram of a batch: its answer goes out
        // before the rest only if the policy says so; otherwise all goes after the batch.
        let hold = self.answering.take().is_some_and(|(i, handle)| {
            !self.endpoints[i]
                .1
                .connection(handle)
                .is_some_and(ReceiveBatch::send_answer)
        });
        if !hold {
            self.flush();
        }
        let next_delivery = self.queue.peek().map(|Reverse(d)| d.at);
        let next_timer = self
            .endpoints
            .iter_mut()
            .filter_map(|(_, e)| e.poll_timeout())
            .min();
        let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
            if let Some(limit) = limit {
                self.now = self.now.max(limit);
            }
            return false;
        };
        if let Some(limit) = limit {
            if next > limit {
                self.now = self.now.max(limit);
                return true;
            }
        }
        self.now = self.now.max(next);
        if self.batch_at != Some(self.now) {
            self.batch_at = Some(self.now);
            self.batches.fill(ReceiveBatch::default());
        }
        let mut urgent = false;
        while self.queue.peek().is_some_and(|Reverse(d)| d.at <= self.now) {
            let Reverse(datagram) = self.queue.pop().expect("peeked");
            let primary = self.endpoints.iter().position(|(a, _)| *a == datagram.to);
            let alias = || {
                let alias = self.aliases.iter().find(|(a, _)| *a == datagram.to);
                alias.map(|&(a, i)| (i, Some(a)))
            };
            let Some((i, local)) = primary.map(|i| (i, None)).or_else(alias) else {
                continue;
            };
            self.stats.delivered += 1;
            let endpoint = &mut self.endpoints[i].1;
            let receipt = endpoint.receive_at(
                self.now,
                local,
                datagram.from,
                datagram.ecn,
                BytesMut::from(datagram.data.as_slice()),
            );
            urgent |= receipt.urgent;
            let more = self.queue.peek().is_some_and(|Reverse(d)| d.at <= self.now);
            let woke = || {
                receipt
                    .connection
                    .and_then(|h| endpoint.connection(h))
                    .is_some_and(Connection::has_events)
            };
            match self.batches[i].after_datagram(&receipt, more, woke) {
                NextStep::SendNow => self.flush(),
                NextStep::LetApplicationAnswer => {
                    // The rest waits, due now, until whoever drives the simulator acted.
                    self.answering = receipt.connection.map(|h| (i, h));
                    break;
                }
                NextStep::Continue => {}
            }
        }
        self.run_expired_timers();
        if urgent {
            self.flush();
        }
        true
    }

    fn run_expired_timers(&mut self) {
        for (_, endpoint) in &mut self.endpoints {
            if endpoint.poll_timeout().is_some_and(|t| t <= self.now) {
                endpoint.handle_timeout(self.now);
            }
        }
    }

    /// Steps until `done` holds (returns true) or the virtual clock passes `timeout` from now
    /// (returns false).
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let deadline = self.now + timeout;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= deadline || !self.step_until(Some(deadline)) {
                return done(self);
            }
        }
    }
}
