//! Received stream data kept until the application reads it, and the bound on how much of it
//! shares the storage it arrived in.
//!
//! A received packet's payload is a slice of the datagram batch it arrived in (up to 64 KiB of
//! the peer's datagrams, decrypted in place). Keeping a piece of it without copying keeps the
//! whole batch alive until the piece is read, whatever the piece's size: flow control counts the
//! piece, not the batch. A peer could then pin a batch per byte of flow-control credit, for
//! example with one byte for a stream nobody reads in each batch. So a connection lets at most
//! [`SharedPieces::MAX`] kept pieces share their batch at once; the rest are copied, and the
//! memory unread data holds stays within flow control plus that many batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

/// The count of one connection's kept pieces that share their batch, shared by its streams'
/// receiving halves. Whoever drops a shared [`Piece`] gives its share back with
/// [`Self::release`].
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedPieces(Arc<AtomicUsize>);

impl SharedPieces {
    /// The most kept pieces of one connection that share their batch at once.
    pub(crate) const MAX: usize = 256;

    /// Pieces that share their batch now.
    pub(crate) fn held(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Keeps `piece`, a part of a received packet's `payload`: sharing its storage if the
    /// caller finds that `worth_it` and the connection is under [`Self::MAX`], a copy otherwise.
    pub(crate) fn keep(&self, payload: &Bytes, piece: &[u8], worth_it: bool) -> Piece {
        if worth_it && self.held() < Self::MAX {
            self.0.fetch_add(1, Ordering::Relaxed);
            Piece {
                bytes: payload.slice_ref(piece),
                shared: true,
            }
        } else {
            Piece {
                bytes: Bytes::copy_from_slice(piece),
                shared: false,
            }
        }
    }

    /// Gives back the shares of `pieces`, which are being dropped.
    pub(crate) fn release<'a>(&self, pieces: impl IntoIterator<Item = &'a Piece>) {
        let shared = pieces.into_iter().filter(|p| p.shared).count();
        if shared > 0 {
            self.0.fetch_sub(shared, Ordering::Relaxed);
        }
    }
}

/// Received bytes kept for the application, and whether they share the storage they arrived
/// in (then counted in the connection's [`SharedPieces`]).
#[derive(Debug)]
pub(crate) struct Piece {
    pub(crate) bytes: Bytes,
    shared: bool,
}

impl Piece {
    /// Whether it shares the storage it arrived in.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }

    /// The piece without its first `offset` bytes, still counted as before.
    pub(crate) fn advance(mut self, offset: usize) -> Self {
        self.bytes = self.bytes.slice(offset..);
        self
    }
}
