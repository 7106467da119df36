//! Connection migration as a server sees it (RFC 9000 §9.3): the client's address changes,
//! by NAT rebinding or on purpose. The server follows it to the address of the
//! highest-numbered non-probing packet, validates the new address with PATH_CHALLENGE
//! (§8.2) while the anti-amplification limit applies to it, and goes back to the last
//! validated address if validation fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::mtu::MtuDiscovery;
use super::{Connection, EndpointEvent, State};
use crate::Side;
use crate::recovery::RttEstimator;
use crate::recovery::pacing::Pacer;
use crate::recovery::reordering::Reordering;
use crate::wire::{ConnectionId, SpaceId};

/// Challenges kept for matching a response: one per probe timeout until validation succeeds
/// or is abandoned.
const MAX_CHALLENGES: usize = 4;

/// Records the data of a PATH_CHALLENGE just sent among those a response may echo, forgetting
/// the oldest beyond [`MAX_CHALLENGES`]. Every kind of path validation keeps its list this way.
pub(super) fn remember_challenge(sent: &mut Vec<[u8; 8]>, data: [u8; 8]) {
    if sent.len() == MAX_CHALLENGES {
        sent.remove(0);
    }
    sent.push(data);
}

/// The peer's address as it changes, and its validation.
#[derive(Debug)]
pub(super) struct Migration {
    rng: StdRng,
    validation: Option<Validation>,
    /// The last validated address, to go back to if validation of the current one fails
    /// (RFC 9000 §9.3.2, RFC9000-145).
    fallback: Option<SocketAddr>,
    /// The connection ID the peer's latest non-probing packet was sent to: a peer that moves
    /// on purpose uses a new one (RFC 9000 §9.5).
    pub(super) peer_dcid: Option<ConnectionId>,
    /// The challenge owed to the previously active path after an apparent migration
    /// (RFC 9000 §9.3.3, RFC9000-147): its address, the data, and whether it was sent.
    old_path: Option<(SocketAddr, [u8; 8], bool)>,
}

/// A path validation under way (RFC 9000 §8.2).
#[derive(Debug)]
struct Validation {
    /// The data of the challenges sent, oldest first: a response echoing any validates.
    sent: Vec<[u8; 8]>,
    /// The data of the challenge to write next, when one is due.
    due: Option<[u8; 8]>,
    /// When another challenge becomes due if no response came: a probe timeout after the
    /// last one.
    next_at: Option<Instant>,
    /// When validation is abandoned (RFC 9000 §8.2.4).
    deadline: Instant,
}

/// What a change of the peer's address asks of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AddressChange {
    /// Only the port changed (a NAT rebinding, most likely): the path's congestion state and
    /// RTT stay (RFC 9000 §9.4 allows it).
    Port,
    /// The IP address changed: congestion control, RTT and path MTU start over.
    Address,
    /// Back to the last validated address: no validation needed (§9.3).
    Return,
}

impl Migration {
    /// Challenge data comes from `seed`.
    pub(super) fn new(seed: [u8; 32]) -> Self {
        Self {
            rng: StdRng::from_seed(seed),
            validation: None,
            fallback: None,
            peer_dcid: None,
            old_path: None,
        }
    }

    /// The peer moved from `old` (validated when `old_validated`) to `new` at `now`, with a
    /// new connection ID when `new_cid`; `timeout` is how long validation may take. Returns
    /// what the change asks of the path.
    pub(super) fn on_peer_moved(
        &mut self,
        now: Instant,
        (old, old_validated): (SocketAddr, bool),
        new: SocketAddr,
        new_cid: bool,
        timeout: Duration,
    ) -> AddressChange {
        if self.fallback == Some(new) {
            self.fallback = None;
            self.validation = None;
            self.old_path = None;
            return AddressChange::Return;
        }
        if old_validated {
            self.fallback = Some(old);
        }
        if old_validated && !new_cid {
            // RFC9000-147: if the move was an attacker's copy of the peer's packets, the
            // peer answers on its real address with a non-probing packet, which moves the
            // connection back at once. A move to a new connection ID is the peer's own (a
            // copy cannot change the ID), and the old path's ID may not go to the new
            // address nor the new one to the old (§9.5): that path is not challenged.
            let data = self.challenge_data();
            self.old_path = Some((old, data, false));
        }
        let due = Some(self.challenge_data());
        self.validation = Some(Validation {
            sent: Vec::new(),
            due,
            next_at: None,
            deadline: now + timeout,
        });
        if old.ip() == new.ip() {
            AddressChange::Port
        } else {
            AddressChange::Address
        }
    }

    /// RFC9000-124: unpredictable data in every challenge.
    pub(super) fn challenge_data(&mut self) -> [u8; 8] {
        let mut data = [0u8; 8];
        self.rng.fill_bytes(&mut data);
        data
    }

    /// The address and data of the PATH_CHALLENGE owed to the previously active path, if not
    /// sent yet; counted as sent.
    pub(super) fn take_old_path_challenge(&mut self) -> Option<(SocketAddr, [u8; 8])> {
        match &mut self.old_path {
            Some((addr, data, sent)) if !*sent => {
                *sent = true;
                Some((*addr, *data))
            }
            _ => None,
        }
    }

    /// The data of the PATH_CHALLENGE to write now, if one is due.
    pub(super) fn challenge_due(&self) -> Option<[u8; 8]> {
        self.validation.as_ref().and_then(|v| v.due)
    }

    /// The challenge [`Self::challenge_due`] gave was written at `now`; if no response
    /// comes, another is due `pto` later.
    pub(super) fn on_challenge_written(&mut self, now: Instant, pto: Duration) {
        let Some(validation) = &mut self.validation else {
            return;
        };
        if let Some(data) = validation.due.take() {
            remember_challenge(&mut validation.sent, data);
            validation.next_at = Some(now + pto);
        }
    }

    /// A PATH_RESPONSE echoing `data`: returns whether it validated the peer's address (an
    /// answer from the previously active path only says that path still works).
    pub(super) fn on_response(&mut self, data: [u8; 8]) -> bool {
        if self.old_path.is_some_and(|(_, old, _)| old == data) {
            self.old_path = None;
            return false;
        }
        let matched = self
            .validation
            .as_ref()
            .is_some_and(|v| v.sent.contains(&data));
        if matched {
            self.validation = None;
            self.fallback = None;
        }
        matched
    }

    /// When the migration timer fires: the next challenge or giving up, while validating.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let validation = self.validation.as_ref()?;
        Some(
            validation
                .next_at
                .map_or(validation.deadline, |at| at.min(validation.deadline)),
        )
    }

    /// The migration timer fired at `now`. When validation is given up, returns the address
    /// to go back to (`Some(None)` if none is known, RFC9000-146: the connection is then
    /// discarded); otherwise another challenge may have become due.
    pub(super) fn on_timeout(&mut self, now: Instant) -> Option<Option<SocketAddr>> {
        let validation = self.validation.as_ref()?;
        if now >= validation.deadline {
            self.validation = None;
            return Some(self.fallback.take());
        }
        if validation.next_at.is_some_and(|at| now >= at) {
            let data = self.challenge_data();
            if let Some(validation) = &mut self.validation {
                validation.next_at = None;
                validation.due = Some(data);
            }
        }
        None
    }
}

impl Connection {
    /// A non-probing 1-RTT packet to `dcid`, the highest-numbered yet, came from `remote` in
    /// a datagram of `len` bytes. When that is not the address we send to, the server
    /// follows the client there (RFC 9000 §9.3, RFC9000-142) and validates the new address
    /// while the anti-amplification limit applies to it (RFC9000-143); a client that moved
    /// on purpose (a new connection ID) is answered with a new one too (§9.5). A client never
    /// follows: it talks to the server's address only (§9).
    pub(super) fn on_newest_packet(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        len: usize,
        dcid: ConnectionId,
    ) {
        let previous_dcid = self.migration.peer_dcid.replace(dcid);
        if self.side == Side::Client || !self.handshake.confirmed {
            return;
        }
        if remote == self.path.remote && self.arrived_on != self.path.local {
            // RFC 9000 §9.6.3: the client moved to our preferred address (or back). It probed
            // the path from its own, validated address and moved only once our PATH_RESPONSE
            // came back on it, so the path is known to work both ways: we send from there now.
            self.path.local = self.arrived_on;
            return;
        }
        if remote == self.path.remote {
            return;
        }
        let new_cid = previous_dcid.is_some_and(|previous| previous != dcid);
        if new_cid {
            if let Some(retire) = self.cids.use_next_remote() {
                self.spaces[SpaceId::Data as usize]
                    .pending
                    .retire_cids
                    .extend(retire);
            }
        }
        let timeout = self.path_validation_timeout();
        let old = self.path.remote;
        let from = (old, self.path.address_validated);
        let change = self
            .migration
            .on_peer_moved(now, from, remote, new_cid, timeout);
        self.path.remote = remote;
        self.stats.peer_migrations += 1;
        if let Some(qlog) = &mut self.qlog {
            qlog.tuple_assigned(now, remote);
        }
        if change == AddressChange::Return {
            self.path.address_validated = true;
            return;
        }
        self.path.address_validated = false;
        self.path.amplification_received = len as u64;
        self.path.amplification_sent = 0;
        if change == AddressChange::Address {
            self.start_new_path(now);
        }
    }

    /// How long a path validation may take before it is abandoned (RFC 9000 §8.2.4): three
    /// times the larger of the current PTO and one computed from the initial RTT, as the new
    /// path's would be.
    pub(super) fn path_validation_timeout(&self) -> Duration {
        let initial = RttEstimator::new(self.config.initial_rtt).pto_base();
        3 * self.pto_duration().max(initial)
    }

    /// The client now sends from a new local address (quinn's `Endpoint::rebind` does the
    /// same for its connections): it moves to another of the server's connection IDs, not to
    /// be linked to the old address (RFC 9000 §9.5), and sends a PING at once so that the
    /// server follows it even if nothing else is to be sent. A new IP address starts
    /// congestion control, RTT and path MTU over (§9.2, §9.4); a new port on the same IP
    /// keeps them. Only after the handshake is confirmed (§9): before, nothing changes here,
    /// and the server does not follow either; nor when the server disabled active migration
    /// (its disable_active_migration parameter): it takes nothing from the new address.
    pub fn on_local_address_changed(&mut self, now: Instant, new_ip: bool) {
        if self.side == Side::Server || !self.handshake.confirmed || self.is_closed() {
            return;
        }
        // RFC 9000 §9: a server that sent disable_active_migration takes no packets from
        // another address; the connection cannot follow the move.
        if self
            .peer_params
            .as_ref()
            .is_some_and(|p| p.disable_active_migration)
        {
            return;
        }
        if let Some(retire) = self.cids.use_next_remote() {
            self.spaces[SpaceId::Data as usize]
                .pending
                .retire_cids
                .extend(retire);
        }
        if new_ip {
            self.start_new_path(now);
        }
        self.ping_pending = true;
    }

    /// A new path (a new IP address) starts from initial values: congestion control, RTT
    /// and path MTU (RFC 9000 §9.4, RFC9000-150), and ECN is tried and validated afresh
    /// (§9.3: the new path may differ in ECN capability, §13.4); what was in flight on the
    /// old path no longer counts (RFC9000-149).
    pub(super) fn start_new_path(&mut self, now: Instant) {
        self.path.ecn_sending = self.config.ecn;
        let left = self.spaces[SpaceId::Data as usize].leave_path();
        self.path.bytes_in_flight -= left;
        let mut mtu = MtuDiscovery::new(self.config.max_udp_payload_size);
        if let Some(params) = &self.peer_params {
            mtu.limit_to_peer(params.max_udp_payload_size.into_inner());
        }
        let size = u64::from(mtu.current());
        self.path.mtu = mtu;
        self.path.rtt = RttEstimator::new(self.config.initial_rtt);
        let seed = self.stats.peer_migrations;
        self.path.cc = self.config.congestion_control.build(size, now, seed);
        self.path.reordering = Reordering::default();
        self.path.pacer = Pacer::new(size);
        self.path.pacing_until = None;
    }

    /// A PATH_RESPONSE echoing `data` (RFC 9000 §8.2.3): the peer's address is validated if
    /// it answers one of our challenges, and the client gets an address validation token for
    /// its new address (§9.3, RFC9000-144).
    pub(super) fn on_path_response(&mut self, now: Instant, data: [u8; 8]) {
        if self.on_preferred_address_response(now, data) || self.on_local_probe_response(data) {
            return;
        }
        if self.migration.on_response(data) {
            self.path.address_validated = true;
            self.endpoint_events.push_back(EndpointEvent::NeedToken);
        }
    }

    /// The migration timer fired: another challenge is due, or validation is given up and
    /// the connection goes back to the last validated address (RFC9000-145), or, with none,
    /// is discarded without a word (RFC9000-146).
    pub(super) fn on_migration_timeout(&mut self, now: Instant) {
        match self.migration.on_timeout(now) {
            None => {}
            Some(Some(fallback)) => {
                self.path.remote = fallback;
                self.path.address_validated = true;
                if let Some(qlog) = &mut self.qlog {
                    qlog.tuple_assigned(now, fallback);
                }
            }
            Some(None) => self.state = State::Drained,
        }
    }
}
