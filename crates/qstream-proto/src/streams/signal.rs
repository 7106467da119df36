//! Whether a one-off control frame about a stream half still has to be written.

/// The state of a RESET_STREAM or STOP_SENDING a half owes the peer: written once, and again
/// only when the packet carrying it is lost while the frame still matters (RFC 9000 §13.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// To be written in the next packet with room.
    Due,
    /// Written; in flight or acknowledged.
    Sent,
    /// Not needed: the peer has nothing left that the frame would stop.
    Unneeded,
}

impl Signal {
    /// Whether the frame must be written now.
    pub(crate) fn is_due(self) -> bool {
        self == Self::Due
    }
}
