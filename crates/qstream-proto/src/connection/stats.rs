//! Counters of what a connection sent and received.

use std::fmt;

use crate::wire::FrameType;

/// Counters of a connection's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent in UDP payloads.
    pub bytes_sent: u64,
    /// Datagrams received for this connection.
    pub datagrams_received: u64,
    /// Bytes received in UDP payloads.
    pub bytes_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets received and successfully decrypted.
    pub packets_received: u64,
    /// Client: 0-RTT packets sent (RFC 9001 §4.6).
    pub zero_rtt_packets_sent: u64,
    /// Server: 0-RTT packets received and decrypted.
    pub zero_rtt_packets_received: u64,
    /// Of those, packets that elicit no acknowledgment: ACK-only (with PADDING), or carrying
    /// CONNECTION_CLOSE.
    pub non_eliciting_packets_received: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Bytes of the packets declared lost: what had to be sent again, headers included.
    pub bytes_lost: u64,
    /// Packets declared lost that the peer acknowledged later: reordered, not lost. Each one
    /// makes loss detection more tolerant of reordering on the path (RFC 9002 §6.1).
    pub spurious_losses: u64,
    /// Packets received that could not be decrypted or parsed, and were dropped.
    pub packets_dropped: u64,
    /// Probe timeouts that fired.
    pub pto_count: u64,
    /// Key updates, initiated by either side.
    pub key_updates: u64,
    /// Key updates this endpoint initiated.
    pub key_updates_initiated: u64,
    /// Acknowledgments that reported new ECN-CE marks: congestion signalled without loss.
    pub ecn_congestion_events: u64,
    /// Times the path stopped carrying the datagram size path MTU discovery had found (a
    /// black hole), and the size fell back to 1200 bytes.
    pub mtu_black_holes: u64,
    /// Times the peer's address changed and the connection followed it (RFC 9000 §9.3).
    pub peer_migrations: u64,
    /// Client: it moved to the server's preferred address after validating it (RFC 9000
    /// §9.6).
    pub moved_to_preferred_address: bool,
    /// Client: the server's preferred address never answered its probes, so the connection
    /// stayed on the address it started with.
    pub preferred_address_abandoned: bool,
    /// Frames sent, by type.
    pub frames_sent: FrameCounts,
    /// Frames received in packets that decrypted, by type.
    pub frames_received: FrameCounts,
}

/// How many frames of each type (RFC 9000 §19, DATAGRAM, ACK_FREQUENCY and IMMEDIATE_ACK) went
/// one way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    /// Indexed by frame type for 0x00..=0x1f; DATAGRAM at 0x20, ACK_FREQUENCY at 0x21.
    counts: [u64; 34],
}

impl Default for FrameCounts {
    fn default() -> Self {
        Self { counts: [0; 34] }
    }
}

impl FrameCounts {
    fn index(ty: FrameType) -> Option<usize> {
        match ty {
            FrameType(0x00..=0x1f) => Some(ty.0 as usize),
            FrameType::DATAGRAM | FrameType::DATAGRAM_LEN => Some(0x20),
            FrameType::ACK_FREQUENCY => Some(0x21),
            _ => None,
        }
    }

    pub(crate) fn count(&mut self, ty: FrameType) {
        if let Some(i) = Self::index(ty) {
            self.counts[i] += 1;
        }
    }

    /// How many frames of `ty` were counted; every STREAM type (0x08..=0x0f) is counted
    /// under its own value, as are both ACK, MAX_STREAMS, STREAMS_BLOCKED and CONNECTION_CLOSE
    /// types.
    pub fn get(&self, ty: FrameType) -> u64 {
        Self::index(ty).map_or(0, |i| self.counts[i])
    }

    /// STREAM frames of every type.
    pub fn stream(&self) -> u64 {
        self.counts[0x08..=0x0f].iter().sum()
    }
}

impl fmt::Debug for FrameCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (i, &n) in self.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let ty = match i {
                0x20 => FrameType::DATAGRAM_LEN,
                0x21 => FrameType::ACK_FREQUENCY,
                _ => FrameType(i as u64),
            };
            map.entry(&format_args!("{ty:?}"), &n);
        }
        map.finish()
    }
}
