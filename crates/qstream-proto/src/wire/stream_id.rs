//! Stream IDs (RFC 9000 §2.1).

use std::fmt;

use super::VarInt;
use crate::Side;

/// Whether a stream carries data both ways or only from its initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Bidirectional.
    Bi,
    /// Unidirectional: only the initiator sends.
    Uni,
}

/// A stream ID (RFC 9000 §2.1): the two low bits say who initiated the stream and in which
/// directions it carries data; the rest is its index among streams of that kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(VarInt);

impl StreamId {
    /// The ID of the `index`th stream of kind (`initiator`, `dir`), or `None` when that index
    /// exceeds 2^60-1, the most streams of one kind a connection can have (RFC 9000 §4.6).
    pub fn new(initiator: Side, dir: Dir, index: u64) -> Option<Self> {
        if index >= 1 << 60 {
            return None;
        }
        let initiator_bit = match initiator {
            Side::Client => 0,
            Side::Server => 1,
        };
        let dir_bit = match dir {
            Dir::Bi => 0,
            Dir::Uni => 2,
        };
        VarInt::from_u64(index << 2 | dir_bit | initiator_bit)
            .ok()
            .map(Self)
    }

    /// Who opened the stream (RFC 9000 §2.1, Table 1).
    pub fn initiator(self) -> Side {
        if self.0.into_inner() & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// Bidirectional or unidirectional.
    pub fn dir(self) -> Dir {
        if self.0.into_inner() & 2 == 0 {
            Dir::Bi
        } else {
            Dir::Uni
        }
    }

    /// The stream's position among streams of the same initiator and direction.
    pub fn index(self) -> u64 {
        self.0.into_inner() >> 2
    }
}

impl From<VarInt> for StreamId {
    fn from(value: VarInt) -> Self {
        Self(value)
    }
}

impl From<StreamId> for VarInt {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl From<StreamId> for u64 {
    fn from(id: StreamId) -> Self {
        id.0.into_inner()
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let initiator = match self.initiator() {
            Side::Client => "client",
            Side::Server => "server",
        };
        let dir = match self.dir() {
            Dir::Bi => "bidi",
            Dir::Uni => "uni",
        };
        write!(f, "{} ({initiator} {dir} #{})", self.0, self.index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9000 §2.1, Table 1: the two low bits of the ID.
    #[test]
    fn table_1_stream_id_types() {
        let cases = [
            (0x0, Side::Client, Dir::Bi),
            (0x1, Side::Server, Dir::Bi),
            (0x2, Side::Client, Dir::Uni),
            (0x3, Side::Server, Dir::Uni),
        ];
        for (bits, side, dir) in cases {
            let id = StreamId::new(side, dir, 5).unwrap();
            assert_eq!(u64::from(id), 5 << 2 | bits);
            assert_eq!((id.initiator(), id.dir(), id.index()), (side, dir, 5));
        }
        assert!(StreamId::new(Side::Server, Dir::Uni, (1 << 60) - 1).is_some());
        assert!(StreamId::new(Side::Client, Dir::Bi, 1 << 60).is_none());
    }
}
