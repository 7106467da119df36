//! Connection ID management (RFC 9000 §5.1): the IDs this endpoint issued to the peer, and the
//! IDs the peer issued to it.

use std::collections::{BTreeMap, BTreeSet};

use crate::TransportErrorCode;
use crate::range_set::RangeSet;
use crate::stateless_reset::StatelessResetToken;
use crate::wire::{ConnectionId, FrameType, NewConnectionId, VarInt};

use super::TransportError;

/// A connection ID issued to the peer with NEW_CONNECTION_ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IssuedCid {
    pub(crate) sequence: u64,
    pub(crate) id: ConnectionId,
    pub(crate) reset_token: StatelessResetToken,
}

impl IssuedCid {
    pub(crate) fn frame(&self) -> NewConnectionId {
        NewConnectionId {
            sequence: VarInt::from_u64(self.sequence).expect("small"),
            retire_prior_to: VarInt::ZERO,
            id: self.id,
            reset_token: self.reset_token,
        }
    }
}

/// One of our IDs the peer may use.
#[derive(Clone, Copy, Debug)]
struct LocalCid {
    id: ConnectionId,
    /// Whether the peer acknowledged the NEW_CONNECTION_ID that issued it: a lost copy is not
    /// sent again.
    acknowledged: bool,
}

/// Both directions' connection IDs.
#[derive(Debug)]
pub(crate) struct CidState {
    /// IDs we issued that the peer has not retired, by sequence number.
    local: BTreeMap<u64, LocalCid>,
    next_local_sequence: u64,
    /// Whether our IDs are zero-length, which cannot be retired (RFC9000-380).
    local_zero_length: bool,
    /// IDs the peer issued and we have not retired.
    remote: BTreeMap<u64, (ConnectionId, Option<StatelessResetToken>)>,
    /// The sequence number of the remote ID in use.
    remote_active: u64,
    /// The largest Retire Prior To the peer sent.
    remote_retire_prior_to: u64,
    /// Our active_connection_id_limit: how many of the peer's IDs we keep.
    limit: u64,
    /// The peer's IDs we retired whose RETIRE_CONNECTION_ID is not acknowledged yet: one
    /// frame each is queued or in flight (RFC 9000 §13.3).
    retiring: BTreeSet<u64>,
    /// The peer's IDs whose retirement it acknowledged: a repeated NEW_CONNECTION_ID for one
    /// is not answered again.
    retired: RangeSet,
}

impl CidState {
    pub(crate) fn new(
        local: ConnectionId,
        remote: ConnectionId,
        remote_token: Option<StatelessResetToken>,
        limit: u64,
    ) -> Self {
        let local = LocalCid {
            id: local,
            acknowledged: true,
        };
        Self {
            local: BTreeMap::from([(0, local)]),
            next_local_sequence: 1,
            local_zero_length: local.id.is_empty(),
            remote: BTreeMap::from([(0, (remote, remote_token))]),
            remote_active: 0,
            remote_retire_prior_to: 0,
            limit,
            retiring: BTreeSet::new(),
            retired: RangeSet::default(),
        }
    }

    /// The ID to send to.
    pub(crate) fn remote(&self) -> ConnectionId {
        self.remote[&self.remote_active].0
    }

    /// The stateless reset token of the ID in use (RFC9000-198: only IDs we used).
    pub(crate) fn remote_reset_token(&self) -> Option<StatelessResetToken> {
        self.remote[&self.remote_active].1
    }

    /// Replaces the ID in use before the peer issued any other: the client learns the server's
    /// chosen ID from its first Initial or a Retry (RFC 9000 §7.2), and the server's reset token
    /// for it from the transport parameters.
    pub(crate) fn set_initial_remote(
        &mut self,
        id: ConnectionId,
        token: Option<StatelessResetToken>,
    ) {
        self.remote.insert(0, (id, token));
    }

    pub(crate) fn set_initial_remote_token(&mut self, token: Option<StatelessResetToken>) {
        if let Some(entry) = self.remote.get_mut(&0) {
            entry.1 = token;
        }
    }

    /// Our IDs the peer may still use.
    pub(crate) fn local_count(&self) -> usize {
        self.local.len()
    }

    /// The peer's IDs we hold.
    pub(crate) fn remote_count(&self) -> usize {
        self.remote.len()
    }

    /// Records IDs the endpoint allocated; returns the NEW_CONNECTION_ID frames to send.
    pub(crate) fn issue(
        &mut self,
        ids: Vec<(ConnectionId, StatelessResetToken)>,
    ) -> Vec<IssuedCid> {
        ids.into_iter()
            .map(|(id, reset_token)| {
                let sequence = self.next_local_sequence;
                self.next_local_sequence += 1;
                let acknowledged = false;
                self.local.insert(sequence, LocalCid { id, acknowledged });
                IssuedCid {
                    sequence,
                    id,
                    reset_token,
                }
            })
            .collect()
    }

    /// Whether the NEW_CONNECTION_ID of an issued ID still needs sending: the ID is active and
    /// the peer has not acknowledged it (a lost copy for a retired or acknowledged one is not
    /// sent again, RFC 9000 §13.3).
    pub(crate) fn new_cid_needed(&self, sequence: u64) -> bool {
        self.local.get(&sequence).is_some_and(|c| !c.acknowledged)
    }

    /// The peer acknowledged the NEW_CONNECTION_ID of `sequence`.
    pub(crate) fn on_new_cid_acked(&mut self, sequence: u64) {
        if let Some(cid) = self.local.get_mut(&sequence) {
            cid.acknowledged = true;
        }
    }

    /// Whether the RETIRE_CONNECTION_ID of `sequence` still needs sending: it is not
    /// acknowledged yet.
    pub(crate) fn retire_needed(&self, sequence: u64) -> bool {
        self.retiring.contains(&sequence)
    }

    /// The peer acknowledged the RETIRE_CONNECTION_ID of `sequence`.
    pub(crate) fn on_retire_acked(&mut self, sequence: u64) {
        if self.retiring.remove(&sequence) {
            self.retired.insert(sequence);
        }
    }

    /// Retires the peer's IDs of `sequences`; returns those that need a RETIRE_CONNECTION_ID
    /// queued: not already queued, in flight or acknowledged.
    fn retire(&mut self, sequences: impl IntoIterator<Item = u64>) -> Vec<u64> {
        sequences
            .into_iter()
            .filter(|&s| !self.retired.contains(s) && self.retiring.insert(s))
            .collect()
    }

    /// Adds an ID the peer gave outside NEW_CONNECTION_ID: the one of a server's preferred
    /// address, sequence number 1 (RFC 9000 §5.1.1).
    pub(crate) fn add_remote(
        &mut self,
        sequence: u64,
        id: ConnectionId,
        token: StatelessResetToken,
    ) {
        self.remote.entry(sequence).or_insert((id, Some(token)));
    }

    /// Server: records the ID of its preferred address as sequence number 1, given in the
    /// transport parameters rather than a NEW_CONNECTION_ID (RFC 9000 §5.1.1).
    pub(crate) fn issue_preferred(&mut self, id: ConnectionId) {
        debug_assert_eq!(self.next_local_sequence, 1);
        let acknowledged = true;
        self.local.insert(1, LocalCid { id, acknowledged });
        self.next_local_sequence = 2;
    }

    /// Moves to the peer's ID of `sequence`, retiring the one in use; returns the sequence
    /// numbers to retire. `None` when the peer has no such ID.
    pub(crate) fn use_remote(&mut self, sequence: u64) -> Option<Vec<u64>> {
        if !self.remote.contains_key(&sequence) || sequence == self.remote_active {
            return None;
        }
        let old = self.remote_active;
        self.remote_active = sequence;
        self.remote.remove(&old);
        Some(self.retire([old]))
    }

    /// The peer's ID that [`Self::use_next_remote`] would move to, if any: the one to probe a
    /// new path with.
    pub(crate) fn next_unused_remote(&self) -> Option<ConnectionId> {
        if self.remote().is_empty() {
            return None;
        }
        let next = self.remote.range(self.remote_active + 1..).next()?;
        Some(next.1.0)
    }

    /// Moves to the next of the peer's IDs not used yet, for a new path (RFC 9000 §9.5: an ID
    /// is not used towards two addresses); returns the sequence numbers to retire, the old
    /// ID's. `None` when the peer issued no other ID: the current one stays.
    pub(crate) fn use_next_remote(&mut self) -> Option<Vec<u64>> {
        if self.remote().is_empty() {
            return None;
        }
        let old = self.remote_active;
        let next = *self.remote.range(old + 1..).next()?.0;
        self.remote_active = next;
        self.remote.remove(&old);
        Some(self.retire([old]))
    }

    /// A NEW_CONNECTION_ID from the peer (RFC 9000 §19.15); returns the sequence numbers to
    /// retire with RETIRE_CONNECTION_ID.
    pub(crate) fn on_new_connection_id(
        &mut self,
        frame: &NewConnectionId,
    ) -> Result<Vec<u64>, TransportError> {
        let error = |code, reason: &str| TransportError {
            code,
            frame_type: Some(FrameType::NEW_CONNECTION_ID.0),
            reason: reason.into(),
        };
        // RFC9000-372: we send to a zero-length ID, so the peer may not issue others.
        if self.remote().is_empty() {
            return Err(error(
                TransportErrorCode::PROTOCOL_VIOLATION,
                "NEW_CONNECTION_ID while using a zero-length connection ID",
            ));
        }
        let sequence = frame.sequence.into_inner();
        if let Some((known, token)) = self.remote.get(&sequence) {
            // RFC9000-373: a repeated frame is fine; a different ID for a known number is not.
            if *known != frame.id || *token != Some(frame.reset_token) && sequence != 0 {
                return Err(error(
                    TransportErrorCode::PROTOCOL_VIOLATION,
                    "sequence number reused for another connection ID",
                ));
            }
            return Ok(Vec::new());
        }
        if sequence < self.remote_retire_prior_to {
            // RFC9000-377: already retired by an earlier Retire Prior To. A repeat of the
            // frame is answered by the retirement already queued, in flight or acknowledged.
            return Ok(self.retire([sequence]));
        }
        self.remote
            .insert(sequence, (frame.id, Some(frame.reset_token)));
        let retire_prior_to = frame.retire_prior_to.into_inner();
        let mut retired = Vec::new();
        // RFC9000-376: only an increase counts.
        if retire_prior_to > self.remote_retire_prior_to {
            self.remote_retire_prior_to = retire_prior_to;
            retired = self
                .remote
                .range(..retire_prior_to)
                .map(|(s, _)| *s)
                .collect();
            for sequence in &retired {
                self.remote.remove(sequence);
            }
            retired = self.retire(retired);
            if !self.remote.contains_key(&self.remote_active) {
                self.remote_active = *self.remote.keys().next().expect("the new one remains");
            }
        }
        // RFC 9000 §5.1.1: more active IDs than our limit is a CONNECTION_ID_LIMIT_ERROR.
        if self.remote.len() as u64 > self.limit {
            return Err(error(
                TransportErrorCode::CONNECTION_ID_LIMIT_ERROR,
                "more connection IDs than active_connection_id_limit",
            ));
        }
        Ok(retired)
    }

    /// A RETIRE_CONNECTION_ID from the peer (RFC 9000 §19.16), received in a packet sent to
    /// `packet_dcid`; returns the ID that stops routing, if it was still active.
    pub(crate) fn on_retire_connection_id(
        &mut self,
        sequence: u64,
        packet_dcid: &ConnectionId,
    ) -> Result<Option<ConnectionId>, TransportError> {
        let violation = |reason: &str| TransportError {
            code: TransportErrorCode::PROTOCOL_VIOLATION,
            frame_type: Some(FrameType::RETIRE_CONNECTION_ID.0),
            reason: reason.into(),
        };
        // RFC9000-380 (zero-length IDs cannot be retired) and RFC9000-378.
        if self.local_zero_length || sequence >= self.next_local_sequence {
            return Err(violation("retired a connection ID never issued"));
        }
        let Some(LocalCid { id, .. }) = self.local.get(&sequence).copied() else {
            return Ok(None);
        };
        // RFC9000-379: not the ID the packet itself was sent to.
        if id == *packet_dcid {
            return Err(violation(
                "retired the connection ID the packet was sent to",
            ));
        }
        self.local.remove(&sequence);
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(b: u8) -> ConnectionId {
        ConnectionId::from_slice(&[b; 8]).unwrap()
    }

    fn new_cid(sequence: u64, retire_prior_to: u64, b: u8) -> NewConnectionId {
        NewConnectionId {
            sequence: VarInt::from_u64(sequence).unwrap(),
            retire_prior_to: VarInt::from_u64(retire_prior_to).unwrap(),
            id: cid(b),
            reset_token: StatelessResetToken::from([b; 16]),
        }
    }

    #[test]
    fn peer_ids_respect_the_limit_and_retire_prior_to() {
        let mut state = CidState::new(cid(1), cid(2), None, 3);
        assert_eq!(state.on_new_connection_id(&new_cid(1, 0, 3)), Ok(vec![]));
        // A repeated frame is not an error (RFC9000-373); a changed one is.
        assert_eq!(state.on_new_connection_id(&new_cid(1, 0, 3)), Ok(vec![]));
        assert_eq!(
            state
                .on_new_connection_id(&new_cid(1, 0, 4))
                .unwrap_err()
                .code,
            TransportErrorCode::PROTOCOL_VIOLATION
        );
        assert_eq!(state.on_new_connection_id(&new_cid(2, 0, 5)), Ok(vec![]));
        // A fourth active ID exceeds our limit of three.
        assert_eq!(
            state
                .on_new_connection_id(&new_cid(3, 0, 6))
                .unwrap_err()
                .code,
            TransportErrorCode::CONNECTION_ID_LIMIT_ERROR
        );
        // Retire Prior To 2 retires 0 and 1 and moves us off the ID in use.
        let mut state = CidState::new(cid(1), cid(2), None, 3);
        state.on_new_connection_id(&new_cid(1, 0, 3)).unwrap();
        assert_eq!(
            state.on_new_connection_id(&new_cid(2, 2, 4)),
            Ok(vec![0, 1])
        );
        assert_eq!(state.remote(), cid(4));
        assert_eq!(
            state.remote_reset_token(),
            Some(StatelessResetToken::from([4; 16]))
        );
        // An ID below an earlier Retire Prior To is retired at once (RFC9000-377), by the
        // retirement already queued.
        assert_eq!(state.on_new_connection_id(&new_cid(1, 0, 3)), Ok(vec![]));
        assert!(state.retire_needed(1));
    }

    #[test]
    fn retiring_our_ids() {
        let mut state = CidState::new(cid(1), cid(2), None, 3);
        let issued = state.issue(vec![(cid(7), StatelessResetToken::from([7; 16]))]);
        assert_eq!(issued[0].sequence, 1);
        // Not the ID the packet arrived on (RFC9000-379), not one never issued (RFC9000-378).
        assert!(state.on_retire_connection_id(1, &cid(7)).is_err());
        assert!(state.on_retire_connection_id(5, &cid(1)).is_err());
        assert_eq!(state.on_retire_connection_id(1, &cid(1)), Ok(Some(cid(7))));
        assert_eq!(state.on_retire_connection_id(1, &cid(1)), Ok(None));
        assert!(!state.new_cid_needed(1));
    }

    #[test]
    fn a_frame_repeated_or_acknowledged_is_not_queued_again() {
        let mut state = CidState::new(cid(1), cid(2), None, 3);
        let issued = state.issue(vec![(cid(7), StatelessResetToken::from([7; 16]))]);
        assert!(state.new_cid_needed(issued[0].sequence));
        state.on_new_cid_acked(issued[0].sequence);
        assert!(!state.new_cid_needed(issued[0].sequence));
        // The peer retires 0 and 1 with Retire Prior To 2 and repeats the frame: one
        // retirement each, however often it comes, and none once acknowledged.
        state.on_new_connection_id(&new_cid(1, 0, 3)).unwrap();
        assert_eq!(
            state.on_new_connection_id(&new_cid(2, 2, 4)),
            Ok(vec![0, 1])
        );
        assert_eq!(state.on_new_connection_id(&new_cid(1, 0, 3)), Ok(vec![]));
        assert!(state.retire_needed(1));
        state.on_retire_acked(1);
        assert!(!state.retire_needed(1) && state.retire_needed(0));
        assert_eq!(state.on_new_connection_id(&new_cid(1, 0, 3)), Ok(vec![]));
    }
}
