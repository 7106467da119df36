//! 1-RTT packet protection keys and key update (RFC 9001 §6).

use std::time::{Duration, Instant};

use rustls::quic::{HeaderProtectionKey, Keys, PacketKey, PacketKeySet, Secrets};

use crate::crypto::derived::DerivedSecrets;

/// Where the next generations of 1-RTT keys come from.
pub(crate) enum UpdateSecrets {
    /// TLS's own key schedule, in the version it was created for.
    Tls(Secrets),
    /// Secrets qstream derives in another version, after a version switch.
    Derived(DerivedSecrets),
}

impl UpdateSecrets {
    fn next_packet_keys(&mut self) -> PacketKeySet {
        match self {
            Self::Tls(secrets) => secrets.next_packet_keys(),
            Self::Derived(secrets) => secrets.next_packet_keys(),
        }
    }
}

/// The 1-RTT keys of a connection: the current generation, the next one (precomputed so a peer's
/// update can be recognised), and the previous receive key for a while after an update, so that
/// reordered packets still decrypt.
pub(crate) struct OneRttKeys {
    pub(crate) local_header: Box<dyn HeaderProtectionKey>,
    pub(crate) remote_header: Box<dyn HeaderProtectionKey>,
    pub(crate) local: Box<dyn PacketKey>,
    pub(crate) remote: Box<dyn PacketKey>,
    next: PacketKeySet,
    secrets: UpdateSecrets,
    /// The Key Phase bit of the current generation.
    pub(crate) key_phase: bool,
    /// The previous generation's receive key, with the first packet number received under the
    /// current one: older packets with the other key phase use it.
    prev_remote: Option<(Box<dyn PacketKey>, u64)>,
    /// When to drop the previous receive key.
    pub(crate) prev_discard_at: Option<Instant>,
    /// Our first packet number under the current keys.
    pub(crate) phase_first_pn: u64,
    /// Whether the peer acknowledged a packet sent under the current keys; a new update may not
    /// start before (RFC 9001 §6.1).
    pub(crate) phase_acked: bool,
    /// Packets sent under the current keys.
    pub(crate) packets_in_phase: u64,
    /// How many key updates happened.
    pub(crate) updates: u64,
}

impl OneRttKeys {
    /// The keys of the first generation, and the secrets of the next.
    pub(crate) fn new(keys: Keys, mut secrets: UpdateSecrets, next_pn: u64) -> Self {
        let next = secrets.next_packet_keys();
        Self {
            local_header: keys.local.header,
            remote_header: keys.remote.header,
            local: keys.local.packet,
            remote: keys.remote.packet,
            next,
            secrets,
            key_phase: false,
            prev_remote: None,
            prev_discard_at: None,
            phase_first_pn: next_pn,
            phase_acked: false,
            packets_in_phase: 0,
            updates: 0,
        }
    }

    /// Moves to the next generation (RFC 9001 §6.1, §6.2). `first_rx_pn` is the first packet
    /// number the peer protects with the new keys, as far as we know.
    pub(crate) fn update(&mut self, next_pn: u64, first_rx_pn: u64) {
        let next = std::mem::replace(&mut self.next, self.secrets.next_packet_keys());
        let old_remote = std::mem::replace(&mut self.remote, next.remote);
        self.local = next.local;
        self.prev_remote = Some((old_remote, first_rx_pn));
        // The previous generation's discard timer does not apply to this one.
        self.prev_discard_at = None;
        self.key_phase = !self.key_phase;
        self.phase_first_pn = next_pn;
        self.phase_acked = false;
        self.packets_in_phase = 0;
        self.updates += 1;
    }

    /// The key that should open a packet with `key_phase` and number `pn`, and whether opening
    /// it means the peer started a key update.
    pub(crate) fn remote_for(&self, key_phase: bool, pn: u64) -> (&dyn PacketKey, bool) {
        if key_phase == self.key_phase {
            return (&*self.remote, false);
        }
        match &self.prev_remote {
            Some((prev, first_new)) if pn < *first_new => (&**prev, false),
            _ => (&*self.next.remote, true),
        }
    }

    pub(crate) fn discard_previous(&mut self) {
        self.prev_remote = None;
        self.prev_discard_at = None;
    }

    /// A packet under the current keys arrived: older packets use the previous key, which is
    /// kept for `retention` more (RFC 9001 §6.5: three PTOs after the first packet under the
    /// new keys).
    pub(crate) fn on_current_phase_packet(&mut self, pn: u64, now: Instant, retention: Duration) {
        if let Some((_, first_new)) = &mut self.prev_remote {
            *first_new = (*first_new).min(pn);
            self.prev_discard_at.get_or_insert(now + retention);
        }
    }
}

impl std::fmt::Debug for OneRttKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneRttKeys")
            .field("key_phase", &self.key_phase)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}
