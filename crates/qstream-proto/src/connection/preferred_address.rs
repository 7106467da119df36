//! The server's preferred address, as the client uses it (RFC 9000 §9.6): once the handshake
//! is confirmed the client probes the address with PATH_CHALLENGE, sent to the connection ID
//! that came with it (sequence number 1), and moves there when a PATH_RESPONSE answers. If no
//! answer comes within three probe timeouts the client stays where it is: an unreachable
//! preferred address costs nothing but the probes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Connection;
use crate::wire::{ConnectionId, PreferredAddress, SpaceId};

/// Where the client is with the server's preferred address.
#[derive(Debug, Default)]
pub(super) struct PreferredPath {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// The server gave none, or none of the client's address family, or the client does not
    /// migrate (its `active_migration` is off).
    #[default]
    None,
    /// Known; probing starts once the handshake is confirmed (RFC 9000 §9.6.1).
    Known {
        remote: SocketAddr,
        cid: ConnectionId,
    },
    /// Probing: the data of the challenges sent, when the next is due, and when to give up.
    Probing {
        remote: SocketAddr,
        cid: ConnectionId,
        sent: Vec<[u8; 8]>,
        next_at: Instant,
        deadline: Instant,
    },
    /// The client moved there, or gave up; either way nothing more happens.
    Done,
}

impl PreferredPath {
    /// When the next probe is due or probing is given up, while probing.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Probing {
                next_at, deadline, ..
            } => Some((*next_at).min(*deadline)),
            _ => None,
        }
    }

    /// Whether `remote` is the preferred address being probed.
    pub(super) fn is_probing(&self, remote: SocketAddr) -> bool {
        matches!(&self.state, State::Probing { remote: probed, .. } if *probed == remote)
    }

    /// Whether a PATH_RESPONSE echoing `data` answers one of the probes; the address and
    /// connection ID to move to if so.
    fn answered(&mut self, data: [u8; 8]) -> Option<(SocketAddr, ConnectionId)> {
        match &self.state {
            State::Probing {
                remote, cid, sent, ..
            } if sent.contains(&data) => {
                let target = (*remote, *cid);
                self.state = State::Done;
                Some(target)
            }
            _ => None,
        }
    }
}

impl Connection {
    /// Client, with the server's transport parameters: remembers a preferred address of the
    /// family the client uses, whose connection ID (sequence number 1, RFC 9000 §5.1.1) and
    /// reset token join the server's others.
    pub(super) fn on_preferred_address(&mut self, preferred: &PreferredAddress) {
        if !self.config.active_migration {
            return;
        }
        let remote = match self.path.remote {
            SocketAddr::V4(_) => preferred.ipv4.map(SocketAddr::V4),
            SocketAddr::V6(_) => preferred.ipv6.map(SocketAddr::V6),
        };
        let Some(remote) = remote else {
            return;
        };
        if remote == self.path.remote {
            return;
        }
        let (cid, token) = (preferred.connection_id, preferred.stateless_reset_token);
        self.cids.add_remote(1, cid, token);
        self.preferred.state = State::Known { remote, cid };
    }

    /// The next probe of the preferred address to send, if one is due at `now`: its address,
    /// the connection ID it goes to, and its challenge data (RFC9000-124: unpredictable).
    pub(super) fn preferred_address_probe(
        &mut self,
        now: Instant,
    ) -> Option<(SocketAddr, ConnectionId, [u8; 8])> {
        if matches!(self.preferred.state, State::None | State::Done) || !self.handshake.confirmed {
            return None;
        }
        if let State::Known { remote, cid } = self.preferred.state {
            let timeout = self.path_validation_timeout();
            self.preferred.state = State::Probing {
                remote,
                cid,
                sent: Vec::new(),
                next_at: now,
                deadline: now + timeout,
            };
        }
        let due =
            matches!(&self.preferred.state, State::Probing { next_at, .. } if now >= *next_at);
        if !due {
            return None;
        }
        let pto = self.pto_duration();
        let data = self.migration.challenge_data();
        let State::Probing {
            remote,
            cid,
            sent,
            next_at,
            ..
        } = &mut self.preferred.state
        else {
            return None;
        };
        super::migration::remember_challenge(sent, data);
        *next_at = now + pto.max(Duration::from_millis(1));
        Some((*remote, *cid, data))
    }

    /// A PATH_RESPONSE that answers a probe of the preferred address: the client moves there,
    /// to the connection ID that came with it (RFC 9000 §9.6.1), retiring the one it used;
    /// a new IP address starts congestion control, RTT and path MTU over (§9.4). Returns
    /// whether the response was for such a probe.
    pub(super) fn on_preferred_address_response(&mut self, now: Instant, data: [u8; 8]) -> bool {
        let Some((remote, cid)) = self.preferred.answered(data) else {
            return false;
        };
        let new_ip = remote.ip() != self.path.remote.ip();
        self.path.remote = remote;
        if let Some(retire) = self.cids.use_remote(1) {
            self.spaces[SpaceId::Data as usize]
                .pending
                .retire_cids
                .extend(retire);
        }
        debug_assert_eq!(self.cids.remote(), cid);
        if new_ip {
            self.start_new_path(now);
        }
        self.stats.moved_to_preferred_address = true;
        if let Some(qlog) = &mut self.qlog {
            qlog.tuple_assigned(now, remote);
        }
        // A non-probing packet at once: the server answers from the new address only after
        // one (RFC 9000 §9.6.3).
        self.ping_pending = true;
        true
    }

    /// The path validation timer fired: the next probe becomes due, or the preferred address
    /// is given up and the connection stays where it is.
    pub(super) fn on_preferred_address_timeout(&mut self, now: Instant) {
        if let State::Probing { deadline, .. } = self.preferred.state {
            if now >= deadline {
                self.preferred.state = State::Done;
                self.stats.preferred_address_abandoned = true;
            }
        }
    }
}
