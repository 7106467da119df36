//! The sending half of a stream (RFC 9000 §3.1).

use std::ops::Range;

use super::send_buffer::SendBuffer;
use crate::flow::SendWindow;
use crate::range_set::RangeSet;
use crate::wire::VarInt;

/// Sending-half states (RFC 9000 §3.1, Figure 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendState {
    /// Open; data may be written. Covers the RFC's Ready and Send states.
    Send,
    /// Everything including FIN was sent; waiting for acknowledgments.
    DataSent,
    /// Everything was acknowledged. Terminal.
    DataRecvd,
    /// RESET_STREAM was sent; waiting for its acknowledgment.
    ResetSent,
    /// The peer acknowledged RESET_STREAM. Terminal.
    ResetRecvd,
}

impl SendState {
    /// Whether no further transition can happen (RFC 9000 §3.1).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::DataRecvd | Self::ResetRecvd)
    }
}

/// The sending half: buffered data until acknowledged, what to send or send again, the peer's
/// flow control limit.
#[derive(Debug)]
pub(crate) struct SendHalf {
    pub(crate) state: SendState,
    /// Written data not yet acknowledged, starting at stream offset `base`.
    buffer: SendBuffer,
    base: u64,
    /// Ranges to send again (lost), never overlapping `acked`.
    retransmit: RangeSet,
    /// Acknowledged ranges above `base`.
    acked: RangeSet,
    /// Whether the application finished the stream.
    pub(crate) fin_pending: bool,
    /// Whether a FIN is in flight or acknowledged; whether it must be sent again.
    fin_sent: bool,
    fin_acked: bool,
    /// The peer's limit on our offsets (MAX_STREAM_DATA) and STREAM_DATA_BLOCKED
    /// (RFC 9000 §19.13, RFC9000-366); what it counts as used is the offset of the next byte
    /// never sent.
    pub(crate) flow: SendWindow,
    /// Application error code of the RESET_STREAM, once reset.
    pub(crate) reset_code: Option<VarInt>,
    /// RESET_STREAM must be (re)sent.
    pub(crate) reset_pending: bool,
    /// The peer asked us to stop with this code (STOP_SENDING).
    pub(crate) stop_code: Option<VarInt>,
    /// Scheduling priority: higher goes first.
    pub(crate) priority: i32,
    /// A write found the buffer full: the writer waits for [`super::StreamEvent::Writable`].
    pub(crate) writer_waiting: bool,
}

impl SendHalf {
    pub(crate) fn new(max_data: u64) -> Self {
        Self {
            state: SendState::Send,
            buffer: SendBuffer::default(),
            base: 0,
            retransmit: RangeSet::default(),
            acked: RangeSet::default(),
            fin_pending: false,
            fin_sent: false,
            fin_acked: false,
            flow: SendWindow::new(max_data),
            reset_code: None,
            reset_pending: false,
            stop_code: None,
            priority: 0,
            writer_waiting: false,
        }
    }

    /// Bytes written so far: the offset the next write starts at.
    pub(crate) fn written(&self) -> u64 {
        self.base + self.buffer.len() as u64
    }

    /// Bytes acknowledged so far, counted from the start.
    pub(crate) fn acked_bytes(&self) -> u64 {
        self.base + self.acked.iter().map(|r| r.end - r.start).sum::<u64>()
    }

    /// Bytes sent at least once.
    pub(crate) fn sent_bytes(&self) -> u64 {
        self.flow.used()
    }

    /// Buffered bytes: written and not yet acknowledged.
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    pub(crate) fn write(&mut self, data: &[u8]) {
        self.buffer.push(data);
    }

    /// Whether there is anything to send now: data under the flow control limit, a FIN, or data
    /// to send again. `conn_credit` is what connection-level flow control still allows for new
    /// data.
    pub(crate) fn has_sendable(&self, conn_credit: u64) -> bool {
        if self.state != SendState::Send && self.state != SendState::DataSent {
            return false;
        }
        if !self.retransmit.is_empty() {
            return true;
        }
        let new_limit = self
            .flow
            .limit()
            .min(self.flow.used().saturating_add(conn_credit));
        (self.flow.used() < self.written() && self.flow.used() < new_limit)
            || (self.fin_pending && !self.fin_sent && self.flow.used() == self.written())
    }

    /// Whether new data waits only for the stream's flow control limit.
    pub(crate) fn blocked_by_stream_limit(&self) -> bool {
        self.state == SendState::Send
            && self.flow.used() < self.written()
            && self.flow.used() >= self.flow.limit()
    }

    /// The next chunk to send, at most `max` bytes, and whether it carries FIN. Lost data goes
    /// first. New data counts against `conn_credit`, reduced by what is taken.
    pub(crate) fn next_chunk(
        &mut self,
        max: usize,
        conn_credit: &mut u64,
    ) -> Option<(u64, &[u8], bool)> {
        if let Some(range) = self.retransmit.pop_lowest() {
            let wanted = range.end.min(range.start + max as u64);
            let data = self.buffer.contiguous(
                (range.start - self.base) as usize,
                (wanted - self.base) as usize,
            );
            let end = range.start + data.len() as u64;
            if end < range.end {
                self.retransmit.insert_range(end..range.end);
            }
            // A lost FIN travels again with the stream's last bytes.
            let fin = self.fin_pending
                && !self.fin_sent
                && end == self.written()
                && self.flow.used() == self.written();
            self.fin_sent |= fin;
            return Some((range.start, data, fin));
        }
        let limit = self
            .flow
            .limit()
            .min(self.flow.used().saturating_add(*conn_credit))
            .min(self.written());
        let start = self.flow.used();
        let data = self.buffer.contiguous(
            (start - self.base) as usize,
            (limit.min(start + max as u64) - self.base) as usize,
        );
        let end = start + data.len() as u64;
        let fin = self.fin_pending && end == self.written() && !self.fin_sent;
        if end == start && !fin {
            return None;
        }
        *conn_credit -= end - start;
        self.flow.consume(end - start);
        if fin {
            self.fin_sent = true;
            self.state = SendState::DataSent;
        }
        Some((start, data, fin))
    }

    /// A STREAM frame carrying `range` (and FIN when `fin`) was lost.
    pub(crate) fn on_lost(&mut self, range: Range<u64>, fin: bool) {
        if matches!(self.state, SendState::ResetSent | SendState::ResetRecvd) {
            return;
        }
        // Bytes below `base` were acknowledged (by another copy) and are gone from the buffer.
        let range = range.start.max(self.base)..range.end;
        if !range.is_empty() {
            self.retransmit.insert_range(range.clone());
            for acked in self.acked.iter().collect::<Vec<_>>() {
                if acked.start < range.end && range.start < acked.end {
                    self.retransmit.remove_range(acked);
                }
            }
        }
        if fin && !self.fin_acked {
            // The FIN goes again, with the data at the end or alone; the state stays Data Sent.
            self.fin_sent = false;
        }
    }

    /// A STREAM frame carrying `range` (and FIN when `fin`) was acknowledged; returns whether the
    /// half just reached Data Recvd.
    pub(crate) fn on_acked(&mut self, range: Range<u64>, fin: bool) -> bool {
        if matches!(self.state, SendState::ResetSent | SendState::ResetRecvd) {
            return false;
        }
        if range.end > self.base {
            let range = range.start.max(self.base)..range.end;
            self.retransmit.remove_range(range.clone());
            self.acked.insert_range(range);
        }
        // Drop the acknowledged prefix.
        let first = self.acked.iter().next();
        if let Some(first) = first {
            if first.start == self.base {
                self.buffer.advance((first.end - self.base) as usize);
                self.base = first.end;
                self.acked.remove_range(first);
            }
        }
        self.fin_acked |= fin;
        if self.fin_acked && self.base == self.written() && self.state == SendState::DataSent {
            self.state = SendState::DataRecvd;
            return true;
        }
        false
    }

    /// Abandons the stream with `code` (RFC 9000 §3.1: from Send or Data Sent to Reset Sent);
    /// returns the final size, or `None` when there is nothing to reset.
    pub(crate) fn reset(&mut self, code: VarInt) -> Option<u64> {
        if !matches!(self.state, SendState::Send | SendState::DataSent) {
            return None;
        }
        self.state = SendState::ResetSent;
        self.reset_code = Some(code);
        self.reset_pending = true;
        self.flow.stop_blocking();
        self.retransmit = RangeSet::default();
        self.buffer.clear();
        // The final size is what was sent: nothing more goes out (RFC 9000 §4.5).
        Some(self.flow.used())
    }

    /// The final size a RESET_STREAM reports.
    pub(crate) fn final_size(&self) -> u64 {
        self.flow.used()
    }

    /// The peer acknowledged our RESET_STREAM; returns whether the half just became terminal.
    pub(crate) fn on_reset_acked(&mut self) -> bool {
        if self.state == SendState::ResetSent {
            self.state = SendState::ResetRecvd;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_send_half_sends_retransmits_and_completes() {
        let mut half = SendHalf::new(10);
        half.write(b"hello world!");
        half.fin_pending = true;
        let mut credit = 100;
        // Flow control stops at 10 bytes.
        let (offset, data, fin) = half.next_chunk(100, &mut credit).unwrap();
        assert_eq!((offset, data, fin), (0, &b"hello worl"[..], false));
        assert_eq!(credit, 90);
        assert!(half.next_chunk(100, &mut credit).is_none());
        assert!(half.blocked_by_stream_limit());
        half.flow.raise(12);
        let (offset, data, fin) = half.next_chunk(100, &mut credit).unwrap();
        assert_eq!((offset, data, fin), (10, &b"d!"[..], true));
        assert_eq!(half.state, SendState::DataSent);
        // The first frame is lost and sent again, without spending connection credit.
        half.on_lost(0..10, false);
        let (offset, data, _) = half.next_chunk(4, &mut credit).unwrap();
        assert_eq!((offset, data), (0, &b"hell"[..]));
        assert_eq!(credit, 88);
        assert!(!half.on_acked(10..12, true));
        assert!(!half.on_acked(0..4, false));
        let (offset, data, _) = half.next_chunk(100, &mut credit).unwrap();
        assert_eq!((offset, data), (4, &b"o worl"[..]));
        assert!(half.on_acked(4..10, false));
        assert_eq!(half.state, SendState::DataRecvd);
        assert_eq!(half.buffered(), 0);
    }

    #[test]
    fn streams_loss_of_a_frame_straddling_acknowledged_bytes_resends_only_the_rest() {
        let mut half = SendHalf::new(100);
        half.write(b"0123456789");
        let mut credit = 100;
        half.next_chunk(100, &mut credit).unwrap();
        // A retransmitted copy of 0..4 is acknowledged; the frame that carried 0..10 is lost.
        assert!(!half.on_acked(0..4, false));
        half.on_lost(0..10, false);
        let (offset, data, _) = half.next_chunk(100, &mut credit).unwrap();
        assert_eq!((offset, data), (4, &b"456789"[..]));
        assert!(half.next_chunk(100, &mut credit).is_none());
    }

    #[test]
    fn streams_lost_fin_goes_again() {
        let mut half = SendHalf::new(100);
        half.write(b"abc");
        half.fin_pending = true;
        let mut credit = 100;
        assert!(half.next_chunk(100, &mut credit).unwrap().2);
        half.on_lost(0..3, true);
        assert_eq!(half.state, SendState::DataSent);
        let (offset, data, fin) = half.next_chunk(100, &mut credit).unwrap();
        assert_eq!((offset, data, fin), (0, &b"abc"[..], true));
        assert!(half.next_chunk(100, &mut credit).is_none());
        assert!(half.on_acked(0..3, true));
    }
}
