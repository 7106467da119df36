//! The send policy a driver applies, decided here so that it is one rule for every driver and
//! testable without sockets: when to send before handling the rest of a receive batch
//! ([`Endpoint::receive`] and [`ReceiveBatch`]), and how the datagrams
//! [`Endpoint::poll_transmit`] gives are grouped into system calls ([`gso_batches`]).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use bytes::BytesMut;

use crate::connection::{Connection, EcnCodepoint, Transmit};
use crate::endpoint::{ConnectionHandle, Endpoint};
use crate::wire::is_long_header;

/// What became of a datagram handed over with [`Endpoint::receive`], and what the driver does
/// before the next datagram of its receive batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The connection it was for, if any.
    pub connection: Option<ConnectionHandle>,
    /// Send what is pending before handling the rest of the batch: the datagram had a long
    /// header (handshake work that produced a flight or a Finished the peer waits on, so the
    /// peer works on one handshake while we work on the next), or its connection has an
    /// acknowledgment reporting a gap (the sender learns of its loss a batch earlier).
    pub send_now: bool,
    /// What is now to be sent should go at once, without letting the application answer
    /// first ([`crate::Connection::has_urgent_transmit`]).
    pub urgent: bool,
}

impl Endpoint {
    /// Handles one datagram of a receive batch, as [`Endpoint::handle_datagram`] does, and
    /// says whether to send before handling the next.
    pub fn receive(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ecn: Option<EcnCodepoint>,
        datagram: BytesMut,
    ) -> Receipt {
        self.receive_at(now, None, remote, ecn, datagram)
    }

    /// [`Self::receive`] for a datagram that arrived on `local`, an address of this endpoint
    /// other than its own (see [`Endpoint::handle_datagram_at`]).
    pub fn receive_at(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        ecn: Option<EcnCodepoint>,
        datagram: BytesMut,
    ) -> Receipt {
        let long_header = is_long_header(&datagram);
        let connection = self.handle_datagram_at(now, local, remote, ecn, datagram);
        let state = connection.and_then(|h| self.connection(h));
        let gap = state.is_some_and(|c| c.has_gap_report());
        Receipt {
            connection,
            send_now: long_header || gap,
            urgent: long_header || gap || state.is_some_and(|c| c.has_urgent_transmit()),
        }
    }
}

/// What a driver does after a datagram of a receive batch ([`ReceiveBatch::after_datagram`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Handle the next datagram of the batch.
    Continue,
    /// Send what is pending, then handle the rest ([`Receipt::send_now`]).
    SendNow,
    /// Let the application answer what this datagram gave it, then ask
    /// [`ReceiveBatch::send_answer`] whether its answer goes out before the rest is handled.
    LetApplicationAnswer,
}

/// The send policy over one receive batch, beyond each datagram's [`Receipt`]. The answers
/// to the first datagram that gives waiting application tasks work go out before the rest of
/// the batch is handled, when the application answered with stream data: under
/// request/response load the peer then works on them meanwhile, instead of both sides taking
/// turns over whole batches, each idle while the other works. Only the first: answering every
/// datagram on its own would cost a packet each. A batch is what one receive call gave; a
/// new batch starts with [`ReceiveBatch::default`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceiveBatch {
    answered_first: bool,
}

impl ReceiveBatch {
    /// What to do after the datagram `receipt` describes, with `more` datagrams of the batch
    /// left; `woke` says (asked only when it matters) whether the datagram gave waiting
    /// application tasks work, and may hand them that work as it answers.
    pub fn after_datagram(
        &mut self,
        receipt: &Receipt,
        more: bool,
        woke: impl FnOnce() -> bool,
    ) -> NextStep {
        if receipt.send_now {
            return NextStep::SendNow;
        }
        if !self.answered_first && more && woke() {
            self.answered_first = true;
            return NextStep::LetApplicationAnswer;
        }
        NextStep::Continue
    }

    /// After the application's turn ([`NextStep::LetApplicationAnswer`]): whether what
    /// `connection` now has to send goes out before the rest of the batch. Only if the
    /// application answered with stream data: a bulk reader's credit or a bare ACK is better
    /// sent once, after the whole batch.
    pub fn send_answer(connection: &Connection) -> bool {
        connection.has_stream_data_to_send()
    }
}

/// The most bytes one GSO send may carry: a UDP payload over IPv4 (65 535 bytes less the IP
/// and UDP headers). The kernel refuses a larger send whole, which loses every datagram in it.
pub const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;

/// Splits datagrams, gathered back to back in one buffer, into runs that one GSO send can
/// carry: same source, destination and ECN codepoint, all the size of the first except possibly the
/// last, at most `max_segments` datagrams and [`MAX_GSO_BYTES`] in all. A probe
/// ([`Transmit::probe`]) is a run of its own, so that the loss of one batch cannot take every
/// probe. Returns index ranges into `transmits`.
pub fn gso_batches(transmits: &[Transmit], max_segments: usize) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    while start < transmits.len() {
        let first = &transmits[start];
        let mut end = start + 1;
        let mut bytes = first.size;
        while !first.probe
            && end < transmits.len()
            && end - start < max_segments
            && !transmits[end].probe
            && bytes + transmits[end].size <= MAX_GSO_BYTES
            && transmits[end].destination == first.destination
            && transmits[end].source == first.source
            && transmits[end].ecn == first.ecn
            && transmits[end].size <= first.size
            && transmits[end - 1].size == first.size
        {
            bytes += transmits[end].size;
            end += 1;
        }
        batches.push(start..end);
        start = end;
    }
    batches
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn transmit(destination: SocketAddr, size: usize, probe: bool) -> Transmit {
        Transmit {
            destination,
            source: None,
            size,
            ecn: None,
            probe,
        }
    }

    #[test]
    fn gso_batches_group_equal_sizes_to_one_destination() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let sends: Vec<_> = [
            (a, 1200),
            (a, 1200),
            (a, 500),
            (a, 1200),
            (b, 1200),
            (b, 1200),
        ]
        .into_iter()
        .map(|(addr, len)| transmit(addr, len, false))
        .collect();
        assert_eq!(gso_batches(&sends, 10), vec![0..3, 3..4, 4..6]);
        assert_eq!(
            gso_batches(&sends, 1),
            (0..6).map(|i| i..i + 1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn gso_batches_fit_in_one_udp_payload() {
        // 64 datagrams of 1452 bytes are 92 928 bytes: a send the kernel refuses whole.
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let sends: Vec<_> = (0..64).map(|_| transmit(a, 1452, false)).collect();
        let batches = gso_batches(&sends, 64);
        assert_eq!(batches, vec![0..45, 45..64]);
        for batch in batches {
            let bytes: usize = sends[batch].iter().map(|t| t.size).sum();
            assert!(bytes <= MAX_GSO_BYTES);
        }
    }

    #[test]
    fn gso_batches_send_probes_alone() {
        // Two probe datagrams among others: one loss of a batch must not take both.
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let sends: Vec<_> = [false, true, true, false, false]
            .into_iter()
            .map(|probe| transmit(a, 1200, probe))
            .collect();
        assert_eq!(gso_batches(&sends, 64), vec![0..1, 1..2, 2..3, 3..5]);
    }
}
