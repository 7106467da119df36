//! The receiving half of a stream (RFC 9000 §3.2), with reassembly and flow control.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::piece::{Piece, SharedPieces};
use super::signal::Signal;
use crate::TransportErrorCode;
use crate::error::TransportError;
use crate::flow::RecvWindow;
use crate::wire::{FrameType, VarInt};

/// Receiving-half states (RFC 9000 §3.2, Figure 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvState {
    /// Receiving; the final size is not known yet.
    Recv,
    /// The FIN arrived: the final size is known, some data is missing.
    SizeKnown,
    /// All data arrived; the application has not read all of it.
    DataRecvd,
    /// The application read everything. Terminal.
    DataRead,
    /// The peer reset the stream; the application has not been told.
    ResetRecvd,
    /// The application learned of the reset. Terminal.
    ResetRead,
}

impl RecvState {
    /// Whether no further transition can happen (RFC 9000 §3.2).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::DataRead | Self::ResetRead)
    }
}

/// What reading a stream gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes, in order.
    Data(Bytes),
    /// The stream ended normally; everything was read.
    Finished,
    /// The peer reset the stream with this code (RFC 9000 §3.2, RESET_STREAM).
    Reset(VarInt),
    /// Nothing to read now; more may come.
    Blocked,
}

/// Where a receiving half is, with what each state knows (RFC 9000 §3.2, Figure 3): every
/// state after Recv knows the final size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Recv,
    SizeKnown { final_size: u64 },
    DataRecvd { final_size: u64 },
    DataRead { final_size: u64 },
    ResetRecvd { final_size: u64, code: VarInt },
    ResetRead { final_size: u64, code: VarInt },
}

/// The application stopped reading (STOP_SENDING; quic-go's CancelRead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stop {
    code: VarInt,
    frame: Signal,
}

/// The receiving half.
#[derive(Debug)]
pub(crate) struct RecvHalf {
    phase: Phase,
    /// Unread data in order from `read`: what arrives in order goes here, with no allocation
    /// per chunk once the queue has grown.
    ready: VecDeque<Piece>,
    /// Bytes in `ready`.
    ready_len: u64,
    /// Data that arrived out of order, by offset; never overlapping, all above what `ready`
    /// holds and not adjacent to it.
    chunks: BTreeMap<u64, Piece>,
    /// The connection's count of kept pieces that share their datagram batch.
    shared: SharedPieces,
    /// Offset of the next byte the application reads.
    read: u64,
    /// Our limit on the peer's offsets (MAX_STREAM_DATA), kept a window ahead of what is read;
    /// what it counts as received is the highest offset received.
    pub(crate) flow: RecvWindow,
    /// Set once the application stopped reading.
    stop: Option<Stop>,
    /// Bytes received in total (duplicates excluded), for the snapshot.
    pub(crate) received_bytes: u64,
}

fn error(code: TransportErrorCode, ty: FrameType, reason: &str) -> TransportError {
    TransportError {
        code,
        frame_type: Some(ty.0),
        reason: reason.into(),
    }
}

impl RecvHalf {
    /// A receiving half with a `window` of flow-control credit that auto-tuning grows up to
    /// `max_window`, counting its kept pieces in the connection's `shared`.
    pub(crate) fn new(window: u64, max_window: u64, shared: SharedPieces) -> Self {
        Self {
            phase: Phase::Recv,
            ready: VecDeque::new(),
            ready_len: 0,
            chunks: BTreeMap::new(),
            shared,
            read: 0,
            flow: RecvWindow::data(window, max_window),
            stop: None,
            received_bytes: 0,
        }
    }

    /// The RFC state of the half.
    pub(crate) fn state(&self) -> RecvState {
        match self.phase {
            Phase::Recv => RecvState::Recv,
            Phase::SizeKnown { .. } => RecvState::SizeKnown,
            Phase::DataRecvd { .. } => RecvState::DataRecvd,
            Phase::DataRead { .. } => RecvState::DataRead,
            Phase::ResetRecvd { .. } => RecvState::ResetRecvd,
            Phase::ResetRead { .. } => RecvState::ResetRead,
        }
    }

    /// The final size, once a FIN or RESET_STREAM told it (RFC 9000 §4.5).
    pub(crate) fn final_size(&self) -> Option<u64> {
        match self.phase {
            Phase::Recv => None,
            Phase::SizeKnown { final_size }
            | Phase::DataRecvd { final_size }
            | Phase::DataRead { final_size }
            | Phase::ResetRecvd { final_size, .. }
            | Phase::ResetRead { final_size, .. } => Some(final_size),
        }
    }

    /// Whether the application stopped reading.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// Whether arriving data is thrown away: the application stopped, or the peer reset.
    pub(crate) fn is_discarding(&self) -> bool {
        self.is_stopped()
            || matches!(
                self.phase,
                Phase::ResetRecvd { .. } | Phase::ResetRead { .. }
            )
    }

    /// Bytes the application read.
    pub(crate) fn read_bytes(&self) -> u64 {
        self.read
    }

    /// Bytes buffered, waiting for the application.
    pub(crate) fn buffered(&self) -> usize {
        self.ready_len as usize + self.chunks.values().map(|p| p.bytes.len()).sum::<usize>()
    }

    /// The offset just past the in-order data held.
    fn ready_end(&self) -> u64 {
        self.read + self.ready_len
    }

    /// Forgets every unread byte.
    fn discard_buffered(&mut self) {
        self.shared
            .release(self.ready.iter().chain(self.chunks.values()));
        self.ready.clear();
        self.ready_len = 0;
        self.chunks.clear();
    }

    /// Whether the half counts as closed for stream credit (docs/design.md rule 1): everything
    /// read, the reset seen, or stopped with the final size known.
    pub(crate) fn is_finished(&self) -> bool {
        self.state().is_terminal() || (self.is_stopped() && self.final_size().is_some())
    }

    /// A STREAM frame. Returns how much the highest offset received grew, which
    /// connection-level flow control counts. Checks the final size (RFC 9000 §4.5) and the
    /// stream limit (§4.1).
    pub(crate) fn on_data(
        &mut self,
        offset: u64,
        data: &[u8],
        fin: bool,
        payload: &Bytes,
    ) -> Result<u64, TransportError> {
        let ty = FrameType::STREAM;
        let end = offset + data.len() as u64;
        if let Some(final_size) = self.final_size() {
            // RFC 9000 §4.5: no data beyond the final size, and the final size never changes.
            if end > final_size || (fin && end != final_size) {
                return Err(error(
                    TransportErrorCode::FINAL_SIZE_ERROR,
                    ty,
                    "final size changed",
                ));
            }
        }
        if fin && end < self.flow.received() {
            return Err(error(
                TransportErrorCode::FINAL_SIZE_ERROR,
                ty,
                "final size below data already received",
            ));
        }
        // RFC 9000 §4.1, RFC9000-360.
        let Some(grew) = self.flow.receive_up_to(end) else {
            return Err(error(
                TransportErrorCode::FLOW_CONTROL_ERROR,
                ty,
                "stream data beyond MAX_STREAM_DATA",
            ));
        };
        if fin {
            self.flow.close();
            if self.phase == Phase::Recv {
                self.phase = Phase::SizeKnown { final_size: end };
            }
        }
        if self.is_discarding() {
            // Discarded; flow control still counted it.
            return Ok(grew);
        }
        self.insert(offset, data, payload);
        if let Phase::SizeKnown { final_size } = self.phase {
            if self.all_received(final_size) {
                self.phase = Phase::DataRecvd { final_size };
            }
        }
        Ok(grew)
    }

    /// Keeps the part of `data` at `offset` not already held, sharing `payload`'s storage or
    /// copied (see [`super::piece`]): in-order data is shared while the connection allows;
    /// data behind a gap only if it is at least half its packet, since the application cannot
    /// read it and the peer decides when the gap fills.
    fn insert(&mut self, offset: u64, data: &[u8], payload: &Bytes) {
        let end = offset + data.len() as u64;
        let ready_end = self.ready_end();
        if offset <= ready_end && end > ready_end {
            // In order: append, then take whatever out-of-order data now follows on.
            let piece = &data[(ready_end - offset) as usize..];
            let piece = self.shared.keep(payload, piece, true);
            self.push_ready(piece);
            while let Some(entry) = self.chunks.first_entry() {
                let (start, ready_end) = (*entry.key(), self.read + self.ready_len);
                if start > ready_end {
                    break;
                }
                let chunk = entry.remove();
                let chunk_end = start + chunk.bytes.len() as u64;
                // The part the in-order data already covers was counted twice.
                self.received_bytes -= (ready_end - start).min(chunk.bytes.len() as u64);
                if chunk_end > ready_end {
                    self.ready_len += chunk_end - ready_end;
                    self.ready
                        .push_back(chunk.advance((ready_end - start) as usize));
                } else {
                    self.shared.release([&chunk]);
                }
            }
            return;
        }
        let mut start = offset.max(ready_end);
        while start < end {
            // Skip what an earlier chunk covers.
            if let Some((&chunk_start, chunk)) = self.chunks.range(..=start).next_back() {
                let chunk_end = chunk_start + chunk.bytes.len() as u64;
                if chunk_end > start {
                    start = chunk_end;
                    continue;
                }
            }
            let next = self
                .chunks
                .range(start..end)
                .next()
                .map_or(end, |(&s, _)| s);
            let piece = &data[(start - offset) as usize..(next - offset) as usize];
            if !piece.is_empty() {
                self.received_bytes += piece.len() as u64;
                let most_of_its_packet = piece.len() * 2 >= payload.len();
                let piece = self.shared.keep(payload, piece, most_of_its_packet);
                // Nothing is held at `start`: the loop skipped what earlier chunks cover.
                self.chunks.insert(start, piece);
            }
            start = next;
        }
    }

    /// Appends in-order data (counted as received).
    fn push_ready(&mut self, piece: Piece) {
        self.received_bytes += piece.bytes.len() as u64;
        self.ready_len += piece.bytes.len() as u64;
        self.ready.push_back(piece);
    }

    /// Whether every byte up to the final size is here: out-of-order data adjacent to the
    /// in-order data is always merged into it, so nothing may be left out of order.
    fn all_received(&self, final_size: u64) -> bool {
        final_size == self.ready_end() && self.chunks.is_empty()
    }

    /// Reads up to `max` bytes in order. Returns the outcome and how many bytes were consumed
    /// (for connection-level flow control).
    pub(crate) fn read(&mut self, max: usize) -> (ReadOutcome, u64) {
        match self.phase {
            Phase::ResetRecvd { final_size, code } => {
                self.phase = Phase::ResetRead { final_size, code };
                return (ReadOutcome::Reset(code), 0);
            }
            Phase::ResetRead { code, .. } => return (ReadOutcome::Reset(code), 0),
            Phase::DataRead { .. } => return (ReadOutcome::Finished, 0),
            _ => {}
        }
        let Some(piece) = self.ready.front_mut() else {
            // Data Read is entered when the application learns of the end, not when it takes
            // the last byte (RFC 9000 §3.2): only then may the stream be released.
            if let Phase::DataRecvd { final_size } = self.phase {
                self.phase = Phase::DataRead { final_size };
                return (ReadOutcome::Finished, 0);
            }
            return (ReadOutcome::Blocked, 0);
        };
        let take = piece.bytes.len().min(max.max(1));
        let data = piece.bytes.split_to(take);
        if piece.bytes.is_empty() {
            // Read to its end: its share of the connection's count goes back.
            if let Some(piece) = self.ready.pop_front() {
                self.shared.release([&piece]);
            }
        }
        self.ready_len -= take as u64;
        self.read += take as u64;
        self.flow.on_consumed(take as u64);
        (ReadOutcome::Data(data), take as u64)
    }

    /// Whether a read would return data now (not the end, nor a reset).
    pub(crate) fn has_data(&self) -> bool {
        !matches!(
            self.phase,
            Phase::ResetRecvd { .. } | Phase::ResetRead { .. }
        ) && !self.ready.is_empty()
    }

    /// Whether the application can read something now (data, the end, or a reset).
    pub(crate) fn is_readable(&self) -> bool {
        match self.phase {
            Phase::ResetRecvd { .. } | Phase::DataRecvd { .. } => true,
            Phase::DataRead { .. } | Phase::ResetRead { .. } => false,
            Phase::Recv | Phase::SizeKnown { .. } => !self.ready.is_empty(),
        }
    }

    /// RESET_STREAM from the peer. Returns how much the highest offset received grew (counted
    /// against connection flow control) and how many received-but-unread bytes were discarded
    /// (credit to return).
    pub(crate) fn on_reset(
        &mut self,
        code: VarInt,
        final_size: u64,
    ) -> Result<(u64, u64), TransportError> {
        let ty = FrameType::RESET_STREAM;
        // RFC 9000 §4.5: the final size may not change, nor be below what was received.
        if self.final_size().is_some_and(|f| f != final_size) || final_size < self.flow.received() {
            return Err(error(
                TransportErrorCode::FINAL_SIZE_ERROR,
                ty,
                "final size changed",
            ));
        }
        let Some(grew) = self.flow.receive_up_to(final_size) else {
            return Err(error(
                TransportErrorCode::FLOW_CONTROL_ERROR,
                ty,
                "final size beyond MAX_STREAM_DATA",
            ));
        };
        self.flow.close();
        if matches!(
            self.phase,
            Phase::DataRead { .. } | Phase::ResetRead { .. } | Phase::ResetRecvd { .. }
        ) {
            return Ok((grew, 0));
        }
        let unread = final_size - self.read;
        self.discard_buffered();
        self.read = final_size;
        self.phase = if self.is_stopped() {
            // The application already stopped: nobody will read the reset.
            Phase::ResetRead { final_size, code }
        } else {
            Phase::ResetRecvd { final_size, code }
        };
        Ok((grew, unread))
    }

    /// The application stops reading (STOP_SENDING). Returns the buffered bytes discarded, whose
    /// connection credit goes back to the peer.
    pub(crate) fn stop(&mut self, code: VarInt) -> u64 {
        if self.is_stopped() || self.state().is_terminal() {
            return 0;
        }
        // No STOP_SENDING once everything arrived (RFC 9000 §3.5): the peer has nothing to stop.
        let frame = match self.phase {
            Phase::DataRecvd { .. } | Phase::ResetRecvd { .. } => Signal::Unneeded,
            _ => Signal::Due,
        };
        self.stop = Some(Stop { code, frame });
        let highest = self.flow.received();
        let discarded = highest - self.read;
        self.discard_buffered();
        self.read = highest;
        self.phase = match self.phase {
            Phase::ResetRecvd { final_size, code } => Phase::ResetRead { final_size, code },
            Phase::DataRecvd { final_size } => Phase::DataRead { final_size },
            phase => phase,
        };
        discarded
    }

    /// The code of the STOP_SENDING to write now, if one is due.
    pub(crate) fn stop_due(&self) -> Option<VarInt> {
        self.stop
            .filter(|stop| stop.frame.is_due())
            .map(|stop| stop.code)
    }

    /// The STOP_SENDING [`Self::stop_due`] gave was written.
    pub(crate) fn on_stop_written(&mut self) {
        if let Some(stop) = &mut self.stop {
            stop.frame = Signal::Sent;
        }
    }

    /// A packet carrying our STOP_SENDING was lost; returns whether it is due again: it is
    /// while the peer has not told the final size (RFC 9000 §13.3).
    pub(crate) fn on_stop_lost(&mut self) -> bool {
        let needed = self.final_size().is_none();
        match &mut self.stop {
            Some(stop) if needed => {
                stop.frame = Signal::Due;
                true
            }
            _ => false,
        }
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        self.discard_buffered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_share_the_packet_except_small_pieces_behind_a_gap() {
        let payload = Bytes::from(vec![5u8; 1000]);
        let shares = |kept: &Piece| {
            kept.is_shared() && payload.as_ptr_range().contains(&kept.bytes.as_ptr())
        };
        let mut half = RecvHalf::new(10_000, 10_000, SharedPieces::default());
        // In order, however small: shared until the application reads it.
        half.on_data(0, &payload[..10], false, &payload).unwrap();
        assert!(shares(half.ready.back().unwrap()));
        // Behind a gap and small: copied, so it cannot keep the packet's batch alive.
        half.on_data(100, &payload[100..110], false, &payload)
            .unwrap();
        assert!(!shares(&half.chunks[&100]));
        assert_eq!(&half.chunks[&100].bytes[..], &payload[100..110]);
        // Behind a gap and most of the packet: shared.
        half.on_data(200, &payload[200..800], false, &payload)
            .unwrap();
        assert!(shares(&half.chunks[&200]));
    }

    #[test]
    fn streams_a_connection_shares_at_most_max_pieces_and_reading_gives_shares_back() {
        // One byte per packet on two streams nobody reads yet: each kept byte would keep its
        // packet's batch alive. Past the connection's bound the bytes are copied.
        let shared = SharedPieces::default();
        let mut halves = [
            RecvHalf::new(1 << 20, 1 << 20, shared.clone()),
            RecvHalf::new(1 << 20, 1 << 20, shared.clone()),
        ];
        let pieces = SharedPieces::MAX as u64 + 10;
        for offset in 0..pieces {
            for half in &mut halves {
                let packet = Bytes::from(vec![offset as u8; 1200]);
                half.on_data(offset, &packet[..1], false, &packet).unwrap();
            }
        }
        assert_eq!(shared.held(), SharedPieces::MAX);
        let copied: usize = halves
            .iter()
            .map(|h| h.ready.iter().filter(|p| !p.is_shared()).count())
            .sum();
        assert_eq!(copied as u64, 2 * pieces - SharedPieces::MAX as u64);
        // Reading pieces to their end, and discarding a half's data, gives their shares back.
        let mut first = Vec::new();
        while let (ReadOutcome::Data(bytes), _) = halves[0].read(usize::MAX) {
            first.extend_from_slice(&bytes);
        }
        assert_eq!(first, (0..pieces).map(|o| o as u8).collect::<Vec<_>>());
        let in_second = halves[1].ready.iter().filter(|p| p.is_shared()).count();
        assert_eq!(shared.held(), in_second);
        halves[1].stop(VarInt::ZERO);
        assert_eq!(shared.held(), 0);
        // Under the bound again: new data is shared.
        let packet = Bytes::from(vec![1u8; 1200]);
        halves[0]
            .on_data(pieces, &packet[..1], false, &packet)
            .unwrap();
        assert_eq!(shared.held(), 1);
        // A half dropped with data unread (its connection gone) gives its shares back too.
        drop(halves);
        assert_eq!(shared.held(), 0);
    }

    fn data(
        offset: u64,
        bytes: &'static [u8],
        fin: bool,
        half: &mut RecvHalf,
    ) -> Result<u64, TransportError> {
        half.on_data(offset, bytes, fin, &Bytes::from_static(bytes))
    }

    #[test]
    fn streams_readable_only_once_the_next_byte_is_here() {
        let mut half = RecvHalf::new(100, 100, SharedPieces::default());
        data(3, b"def", false, &mut half).unwrap();
        assert!(!half.is_readable(), "a gap at the front");
        data(0, b"abcd", false, &mut half).unwrap();
        assert!(half.is_readable());
        // The in-order piece, then the held one without the byte they share.
        assert_eq!(
            half.read(100).0,
            ReadOutcome::Data(Bytes::from_static(b"abcd"))
        );
        assert_eq!(
            half.read(100).0,
            ReadOutcome::Data(Bytes::from_static(b"ef"))
        );
        assert!(!half.is_readable());
        assert_eq!(half.read(100).0, ReadOutcome::Blocked);
    }

    #[test]
    fn streams_reassemble_out_of_order_overlapping_and_duplicated_data() {
        let mut half = RecvHalf::new(100, 100, SharedPieces::default());
        assert_eq!(data(6, b"world", true, &mut half), Ok(11));
        assert_eq!(half.state(), RecvState::SizeKnown);
        assert_eq!(half.read(100).0, ReadOutcome::Blocked);
        assert_eq!(data(0, b"hello w", false, &mut half), Ok(0));
        assert_eq!(data(3, b"lo wo", false, &mut half), Ok(0));
        assert_eq!(half.state(), RecvState::DataRecvd);
        // Overlaps are held and counted once.
        assert_eq!((half.received_bytes, half.buffered()), (11, 11));
        let mut out = Vec::new();
        while let (ReadOutcome::Data(bytes), _) = half.read(3) {
            out.extend_from_slice(&bytes);
        }
        assert_eq!(out, b"hello world");
        // The loop's last read returned Finished, which is what completes the half.
        assert_eq!(half.state(), RecvState::DataRead);
        assert_eq!(half.read(3).0, ReadOutcome::Finished);
    }

    #[test]
    fn streams_final_size_changes_and_flow_control_violations() {
        let mut half = RecvHalf::new(10, 10, SharedPieces::default());
        assert_eq!(data(0, b"abc", true, &mut half), Ok(3));
        assert_eq!(
            data(0, b"abcd", false, &mut half).unwrap_err().code,
            TransportErrorCode::FINAL_SIZE_ERROR
        );
        assert_eq!(
            data(0, b"ab", true, &mut half).unwrap_err().code,
            TransportErrorCode::FINAL_SIZE_ERROR
        );
        assert_eq!(
            half.on_reset(VarInt::ZERO, 4).unwrap_err().code,
            TransportErrorCode::FINAL_SIZE_ERROR
        );
        let mut half = RecvHalf::new(10, 10, SharedPieces::default());
        assert_eq!(
            data(8, b"abc", false, &mut half).unwrap_err().code,
            TransportErrorCode::FLOW_CONTROL_ERROR
        );
        assert_eq!(
            half.on_reset(VarInt::ZERO, 11).unwrap_err().code,
            TransportErrorCode::FLOW_CONTROL_ERROR
        );
    }

    #[test]
    fn flow_reset_and_stop_return_stream_credit() {
        let mut half = RecvHalf::new(100, 100, SharedPieces::default());
        data(0, b"0123456789", false, &mut half).unwrap();
        assert_eq!(half.on_reset(VarInt::from_u32(7), 30), Ok((20, 30)));
        assert_eq!(half.read(10).0, ReadOutcome::Reset(VarInt::from_u32(7)));
        assert_eq!(half.state(), RecvState::ResetRead);
        let mut half = RecvHalf::new(100, 100, SharedPieces::default());
        data(0, b"0123456789", false, &mut half).unwrap();
        assert_eq!(half.stop(VarInt::from_u32(1)), 10);
        assert!(half.stop_due().is_some() && !half.is_finished());
        assert_eq!(half.on_reset(VarInt::from_u32(1), 15), Ok((5, 5)));
        assert!(half.is_finished());
    }

    #[test]
    fn streams_stop_sending_goes_again_only_while_the_final_size_is_unknown() {
        let mut half = RecvHalf::new(100, 100, SharedPieces::default());
        data(0, b"0123", false, &mut half).unwrap();
        half.stop(VarInt::from_u32(4));
        assert_eq!(half.stop_due(), Some(VarInt::from_u32(4)));
        half.on_stop_written();
        assert_eq!(half.stop_due(), None);
        assert!(
            half.on_stop_lost(),
            "lost while the peer may still send: again"
        );
        half.on_stop_written();
        // The peer's FIN tells the final size: a STOP_SENDING lost now has nothing to stop.
        data(4, b"45", true, &mut half).unwrap();
        assert!(!half.on_stop_lost());
        assert_eq!(half.stop_due(), None);
        assert!(half.is_finished());
        // Stopping a half whose data all arrived sends nothing (RFC 9000 §3.5).
        let mut half = RecvHalf::new(100, 100, SharedPieces::default());
        data(0, b"01", true, &mut half).unwrap();
        half.stop(VarInt::from_u32(4));
        assert_eq!(half.stop_due(), None);
        assert_eq!(half.state(), RecvState::DataRead);
    }
}
