//! A client probing a new local path before it moves to it (RFC 9000 §9.1): PATH_CHALLENGE
//! from the new local address to the server, sent to the server's next unused connection ID
//! (§9.5: an ID is not used on two paths), repeated each probe timeout until a PATH_RESPONSE
//! answers or three timeouts pass (§8.2.4). Probing moves nothing: the connection goes on
//! where it is, and the application moves it once the path is validated
//! ([`Connection::on_local_address_changed`], which takes that same ID).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Connection;
use crate::Side;
use crate::wire::ConnectionId;

/// Where a probe of a new local path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProbe {
    /// Challenges are out; no answer yet.
    Probing,
    /// The server answered on the new path: moving there is safe.
    Validated,
    /// No answer within three probe timeouts: the new path does not reach the server.
    Failed,
}

/// Why a path cannot be probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// Only a client probes, and only once the handshake is confirmed (RFC 9000 §9).
    NotAllowedYet,
    /// The server sent disable_active_migration: it takes nothing from another address.
    MigrationDisabled,
    /// The server gave no connection ID besides the one in use (§9.5).
    NoSpareConnectionId,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAllowedYet => "only a client whose handshake is confirmed probes a path",
            Self::MigrationDisabled => "the server disabled active migration",
            Self::NoSpareConnectionId => "the server gave no spare connection ID for a new path",
        })
    }
}

impl std::error::Error for ProbeError {}

/// The probe under way or done.
#[derive(Debug)]
pub(super) struct LocalProbe {
    local: SocketAddr,
    cid: ConnectionId,
    sent: Vec<[u8; 8]>,
    next_at: Instant,
    deadline: Instant,
    outcome: PathProbe,
}

impl LocalProbe {
    /// When the next challenge is due or the probe is given up, while probing.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (self.outcome == PathProbe::Probing).then(|| self.next_at.min(self.deadline))
    }
}

impl Connection {
    /// Client: probes the path from `local`, another address of this endpoint (a second
    /// interface or socket), to the server (RFC 9000 §9.1). Datagrams arriving there are
    /// handed over with [`crate::Endpoint::handle_datagram_at`]; the challenges leave from there
    /// ([`crate::Transmit::source`]). See [`Self::path_probe`] for the outcome; a new probe
    /// replaces one under way.
    pub fn probe_path(&mut self, now: Instant, local: SocketAddr) -> Result<(), ProbeError> {
        if self.side != Side::Client || !self.handshake.confirmed || self.is_closed() {
            return Err(ProbeError::NotAllowedYet);
        }
        if self
            .peer_params
            .as_ref()
            .is_some_and(|p| p.disable_active_migration)
        {
            return Err(ProbeError::MigrationDisabled);
        }
        let cid = self
            .cids
            .next_unused_remote()
            .ok_or(ProbeError::NoSpareConnectionId)?;
        let timeout = self.path_validation_timeout();
        self.local_probe = Some(LocalProbe {
            local,
            cid,
            sent: Vec::new(),
            next_at: now,
            deadline: now + timeout,
            outcome: PathProbe::Probing,
        });
        Ok(())
    }

    /// What became of the last [`Self::probe_path`], if any.
    pub fn path_probe(&self) -> Option<PathProbe> {
        self.local_probe.as_ref().map(|p| p.outcome)
    }

    /// The next challenge of the local path probe, if one is due at `now`: the local address
    /// it leaves from, the connection ID it goes to, its data (RFC9000-124: unpredictable).
    pub(super) fn local_probe_challenge(
        &mut self,
        now: Instant,
    ) -> Option<(SocketAddr, ConnectionId, [u8; 8])> {
        let due = self
            .local_probe
            .as_ref()
            .is_some_and(|p| p.outcome == PathProbe::Probing && now >= p.next_at);
        if !due {
            return None;
        }
        let data = self.migration.challenge_data();
        let pto = self.pto_duration();
        let probe = self.local_probe.as_mut()?;
        super::migration::remember_challenge(&mut probe.sent, data);
        probe.next_at = now + pto.max(Duration::from_millis(1));
        Some((probe.local, probe.cid, data))
    }

    /// A PATH_RESPONSE: whether it answers the local path probe, which is then validated.
    pub(super) fn on_local_probe_response(&mut self, data: [u8; 8]) -> bool {
        match &mut self.local_probe {
            Some(probe) if probe.outcome == PathProbe::Probing && probe.sent.contains(&data) => {
                probe.outcome = PathProbe::Validated;
                true
            }
            _ => false,
        }
    }

    /// The path validation timer fired: a probe past its deadline failed.
    pub(super) fn on_local_probe_timeout(&mut self, now: Instant) {
        if let Some(probe) = &mut self.local_probe {
            if probe.outcome == PathProbe::Probing && now >= probe.deadline {
                probe.outcome = PathProbe::Failed;
            }
        }
    }
}
