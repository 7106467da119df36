//! The sending half of a stream (RFC 9000 §3.1).

use std::ops::Range;

use super::send_buffer::SendBuffer;
use super::signal::Signal;
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

/// Where a sending half is, with what each state knows (RFC 9000 §3.1, Figure 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Ready or Send: the application may write.
    Open,
    /// The application finished writing; the FIN follows the last byte.
    Finished(Fin),
    /// Everything, the FIN included, was acknowledged.
    DataRecvd,
    /// Abandoned with `code`; `frame` says whether RESET_STREAM must be written (again).
    ResetSent { code: VarInt, frame: Signal },
    /// The peer acknowledged the RESET_STREAM carrying `code`.
    ResetRecvd { code: VarInt },
}

/// The FIN of a finished half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fin {
    /// Never sent: data before it is still to go.
    Unsent,
    /// In flight.
    Sent,
    /// The packet that carried it was lost: it goes again, and the half stays in Data Sent.
    Lost,
    /// Acknowledged; data before it may still be outstanding.
    Acked,
}

impl Fin {
    /// Whether the FIN is to be sent (first time or again).
    fn is_due(self) -> bool {
        matches!(self, Self::Unsent | Self::Lost)
    }
}

/// The sending half: buffered data until acknowledged, what to send or send again, the peer's
/// flow control limit.
#[derive(Debug)]
pub(crate) struct SendHalf {
    phase: Phase,
    /// Written data not yet acknowledged, starting at stream offset `base`.
    buffer: SendBuffer,
    base: u64,
    /// Ranges to send again (lost), never overlapping `acked`.
    retransmit: RangeSet,
    /// Acknowledged ranges above `base`.
    acked: RangeSet,
    /// The peer's limit on our offsets (MAX_STREAM_DATA) and STREAM_DATA_BLOCKED
    /// (RFC 9000 §19.13, RFC9000-366); what it counts as used is the offset of the next byte
    /// never sent.
    pub(crate) flow: SendWindow,
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
            phase: Phase::Open,
            buffer: SendBuffer::default(),
            base: 0,
            retransmit: RangeSet::default(),
            acked: RangeSet::default(),
            flow: SendWindow::new(max_data),
            stop_code: None,
            priority: 0,
            writer_waiting: false,
        }
    }

    /// The RFC state of the half.
    pub(crate) fn state(&self) -> SendState {
        match self.phase {
            Phase::Open | Phase::Finished(Fin::Unsent) => SendState::Send,
            Phase::Finished(_) => SendState::DataSent,
            Phase::DataRecvd => SendState::DataRecvd,
            Phase::ResetSent { .. } => SendState::ResetSent,
            Phase::ResetRecvd { .. } => SendState::ResetRecvd,
        }
    }

    /// Whether the application may still write: not finished and not reset.
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The application finished writing (quic-go's Close); false when it already had, or the
    /// half was reset.
    pub(crate) fn finish(&mut self) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        self.phase = Phase::Finished(Fin::Unsent);
        true
    }

    /// Whether the data is still sent or sent again: open or finished, not reset.
    fn is_sending(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Finished(_))
    }

    /// Whether the FIN is to be sent (first time or again).
    fn fin_due(&self) -> bool {
        matches!(self.phase, Phase::Finished(fin) if fin.is_due())
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
        if !self.is_sending() {
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
            || (self.fin_due() && self.flow.used() == self.written())
    }

    /// Whether new data waits only for the stream's flow control limit.
    pub(crate) fn blocked_by_stream_limit(&self) -> bool {
        self.state() == SendState::Send
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
        if !self.is_sending() {
            return None;
        }
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
            let fin = self.fin_due() && end == self.written() && self.flow.used() == self.written();
            if fin {
                self.phase = Phase::Finished(Fin::Sent);
            }
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
        let fin = self.fin_due() && end == self.written();
        if end == start && !fin {
            return None;
        }
        *conn_credit -= end - start;
        self.flow.consume(end - start);
        if fin {
            self.phase = Phase::Finished(Fin::Sent);
        }
        Some((start, data, fin))
    }

    /// 0-RTT was rejected: nothing sent reached the peer, so everything written goes again from
    /// the first byte, the FIN or RESET_STREAM too, under the new `limit` (RFC 9001 §4.6.2).
    /// Nothing was acknowledged before: acknowledgments come only in 1-RTT packets.
    pub(crate) fn restart(&mut self, limit: u64) {
        self.retransmit = RangeSet::default();
        self.acked = RangeSet::default();
        self.flow = SendWindow::new(limit);
        self.phase = match self.phase {
            Phase::Finished(_) => Phase::Finished(Fin::Unsent),
            Phase::ResetSent { code, .. } => Phase::ResetSent {
                code,
                frame: Signal::Due,
            },
            other => other,
        };
    }

    /// A STREAM frame carrying `range` (and FIN when `fin`) was lost.
    pub(crate) fn on_lost(&mut self, range: Range<u64>, fin: bool) {
        if !self.is_sending() {
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
        if fin && self.phase == Phase::Finished(Fin::Sent) {
            // The FIN goes again, with the data at the end or alone; the state stays Data Sent.
            self.phase = Phase::Finished(Fin::Lost);
        }
    }

    /// A STREAM frame carrying `range` (and FIN when `fin`) was acknowledged; returns whether the
    /// half just reached Data Recvd.
    pub(crate) fn on_acked(&mut self, range: Range<u64>, fin: bool) -> bool {
        if !self.is_sending() {
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
        if fin {
            self.phase = Phase::Finished(Fin::Acked);
        }
        if self.phase == Phase::Finished(Fin::Acked) && self.base == self.written() {
            self.phase = Phase::DataRecvd;
            return true;
        }
        false
    }

    /// Abandons the stream with `code` (RFC 9000 §3.1: from Send or Data Sent to Reset Sent);
    /// returns the final size, or `None` when there is nothing to reset.
    pub(crate) fn reset(&mut self, code: VarInt) -> Option<u64> {
        if !self.is_sending() {
            return None;
        }
        self.phase = Phase::ResetSent {
            code,
            frame: Signal::Due,
        };
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

    /// The code of the RESET_STREAM to write now, if one is due.
    pub(crate) fn reset_due(&self) -> Option<VarInt> {
        match self.phase {
            Phase::ResetSent { code, frame } if frame.is_due() => Some(code),
            _ => None,
        }
    }

    /// The RESET_STREAM [`Self::reset_due`] gave was written.
    pub(crate) fn on_reset_written(&mut self) {
        if let Phase::ResetSent { frame, .. } = &mut self.phase {
            *frame = Signal::Sent;
        }
    }

    /// A packet carrying our RESET_STREAM was lost; returns whether it is due again (it is
    /// until acknowledged, RFC 9000 §13.3).
    pub(crate) fn on_reset_lost(&mut self) -> bool {
        match &mut self.phase {
            Phase::ResetSent { frame, .. } => {
                *frame = Signal::Due;
                true
            }
            _ => false,
        }
    }

    /// The peer acknowledged our RESET_STREAM; returns whether the half just became terminal.
    pub(crate) fn on_reset_acked(&mut self) -> bool {
        if let Phase::ResetSent { code, .. } = self.phase {
            self.phase = Phase::ResetRecvd { code };
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
        assert!(half.finish());
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
        assert_eq!(half.state(), SendState::DataSent);
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
        assert_eq!(half.state(), SendState::DataRecvd);
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
        assert!(half.finish());
        let mut credit = 100;
        assert!(half.next_chunk(100, &mut credit).unwrap().2);
        half.on_lost(0..3, true);
        assert_eq!(half.state(), SendState::DataSent);
        let (offset, data, fin) = half.next_chunk(100, &mut credit).unwrap();
        assert_eq!((offset, data, fin), (0, &b"abc"[..], true));
        assert!(half.next_chunk(100, &mut credit).is_none());
        assert!(half.on_acked(0..3, true));
    }

    #[test]
    fn streams_reset_stream_goes_again_until_acknowledged() {
        let mut half = SendHalf::new(100);
        half.write(b"abc");
        let mut credit = 100;
        half.next_chunk(100, &mut credit).unwrap();
        assert_eq!(half.reset(VarInt::from_u32(9)), Some(3));
        assert_eq!(half.reset(VarInt::from_u32(1)), None, "one reset only");
        assert!(!half.finish() && !half.is_open());
        // Due, written, lost (RFC 9000 §13.3: sent again), written, acknowledged.
        assert_eq!(half.reset_due(), Some(VarInt::from_u32(9)));
        half.on_reset_written();
        assert_eq!(half.reset_due(), None);
        assert!(half.on_reset_lost());
        assert_eq!(half.reset_due(), Some(VarInt::from_u32(9)));
        half.on_reset_written();
        assert!(half.on_reset_acked());
        assert_eq!(half.state(), SendState::ResetRecvd);
        assert!(
            !half.on_reset_lost(),
            "an acknowledged reset is not repeated"
        );
        assert_eq!(half.reset_due(), None);
        // Data of the reset stream is neither sent nor sent again.
        half.on_lost(0..3, false);
        assert!(half.next_chunk(100, &mut credit).is_none());
    }
}
