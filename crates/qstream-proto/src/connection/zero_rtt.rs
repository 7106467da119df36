//! 0-RTT (RFC 9001 §4.6, RFC 9000 §7.4.1): a client resuming a session sends stream data and
//! datagrams in its first flight, under the server's transport parameters remembered with the
//! session ticket; the server takes them when TLS accepted early data.
//!
//! Replay: early data can be replayed by anyone who captured it. rustls accepts early data only
//! with stateful resumption, where every ticket is taken from the server's session store once,
//! so one server (or a fleet sharing one store) takes a flight at most once; a flight replayed
//! to a server with another store is not protected. Applications accept in early data only
//! requests that are safe to repeat, and can tell which streams began in it
//! ([`super::Connection::stream_is_early`]).

use std::time::Instant;

use rustls::quic::DirectionalKeys;

use super::Connection;
use crate::error::TransportError;
use crate::wire::{SpaceId, TransportParameters, Version};
use crate::{Side, TransportErrorCode};

/// What became of early data on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyData {
    /// None was sent (client: no ticket allowing it) or accepted (server).
    NotAttempted,
    /// Client: 0-RTT packets may be sent; the server has not answered yet.
    Pending,
    /// The server took the early data.
    Accepted,
    /// Client: the server refused the early data; what it carried went again in 1-RTT
    /// packets, under the server's new limits.
    Rejected,
}

/// The 0-RTT state of a connection.
pub(super) struct ZeroRtt {
    /// Client: the keys 0-RTT packets are sent with, until 1-RTT keys arrive. Server: the keys
    /// the client's 0-RTT packets open with, until the handshake is confirmed.
    keys: Option<DirectionalKeys>,
    pub(super) status: EarlyData,
    /// Client: the server's parameters remembered with the ticket.
    remembered: Option<TransportParameters>,
}

impl Default for ZeroRtt {
    fn default() -> Self {
        Self {
            keys: None,
            status: EarlyData::NotAttempted,
            remembered: None,
        }
    }
}

impl std::fmt::Debug for ZeroRtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroRtt")
            .field("keys", &self.keys.is_some())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ZeroRtt {
    /// The 0-RTT keys while they are in use.
    pub(super) fn keys(&self) -> Option<&DirectionalKeys> {
        self.keys.as_ref()
    }

    /// Client: whether the next Data-space packet is a 0-RTT packet.
    pub(super) fn sending(&self) -> bool {
        self.keys.is_some() && self.status == EarlyData::Pending
    }

    /// RFC 9001 §4.9.3: 0-RTT keys are discarded once 1-RTT keys are installed (client,
    /// RFC9001-028) or the handshake is confirmed (server, RFC9001-029: before the client's
    /// first 1-RTT packet can be processed, so well within three PTOs of it).
    pub(super) fn discard_keys(&mut self) {
        self.keys = None;
    }
}

/// Parameters a server that accepted 0-RTT may not lower below the remembered values (RFC 9000
/// §7.4.1, RFC9000-085): their names and values.
fn limits(params: &TransportParameters) -> [(&'static str, u64); 7] {
    [
        (
            "active_connection_id_limit",
            params.active_connection_id_limit.into_inner(),
        ),
        ("initial_max_data", params.initial_max_data.into_inner()),
        (
            "initial_max_stream_data_bidi_local",
            params.initial_max_stream_data_bidi_local.into_inner(),
        ),
        (
            "initial_max_stream_data_bidi_remote",
            params.initial_max_stream_data_bidi_remote.into_inner(),
        ),
        (
            "initial_max_stream_data_uni",
            params.initial_max_stream_data_uni.into_inner(),
        ),
        (
            "initial_max_streams_bidi",
            params.initial_max_streams_bidi.into_inner(),
        ),
        (
            "initial_max_streams_uni",
            params.initial_max_streams_uni.into_inner(),
        ),
    ]
}

impl Connection {
    /// Client, right after the ClientHello: when TLS resumes a session that allows early data,
    /// 0-RTT starts under the remembered parameters (RFC 9000 §7.4.1, RFC9000-083, RFC9000-088).
    /// A ticket issued in another QUIC version is not used for 0-RTT (RFC 9369 §5: its
    /// parameters and tokens were for that version).
    pub(super) fn start_zero_rtt(&mut self) {
        if self.side != Side::Client
            || self.zero_rtt.status != EarlyData::NotAttempted
            || self.one_rtt.is_some()
        {
            return;
        }
        let Some(keys) = self.tls.zero_rtt_keys() else {
            return;
        };
        let remembered = self
            .tls
            .quic_transport_parameters()
            .and_then(|raw| TransportParameters::decode(raw, Side::Server).ok());
        let Some(remembered) = remembered else {
            return;
        };
        let issued_in = remembered.version_information.as_ref().map(|v| v.chosen);
        if issued_in.unwrap_or(Version::V1) != self.version {
            return;
        }
        // RFC 9000 §7.4.1, RFC9000-081: of the remembered parameters only the limits apply; the
        // delays, connection IDs, tokens and addresses are this handshake's.
        self.streams.apply_peer_params(&remembered);
        self.datagrams.peer_max_frame = remembered
            .max_datagram_frame_size
            .map(|size| size.into_inner())
            .filter(|&size| size > 0);
        self.zero_rtt = ZeroRtt {
            keys: Some(keys),
            status: EarlyData::Pending,
            remembered: Some(remembered),
        };
    }

    /// Client: whether the next Data-space packet goes with 0-RTT keys: early data is pending
    /// and no 1-RTT keys are installed (RFC 9000 §17.2.3, RFC9000-310: no 0-RTT once 1-RTT
    /// packets are processed).
    pub(super) fn is_sending_zero_rtt(&self) -> bool {
        self.one_rtt.is_none() && self.zero_rtt.sending()
    }

    /// Server, after the ClientHello: TLS accepted early data, so the client's 0-RTT packets
    /// open with these keys.
    pub(super) fn accept_zero_rtt(&mut self) {
        if self.side != Side::Server || self.zero_rtt.status != EarlyData::NotAttempted {
            return;
        }
        if let Some(keys) = self.tls.zero_rtt_keys() {
            self.zero_rtt.keys = Some(keys);
            self.zero_rtt.status = EarlyData::Accepted;
        }
    }

    /// Client, with the server's parameters from this handshake: settles what 0-RTT sent.
    /// Accepted, the new limits may only be higher (RFC 9000 §7.4.1, RFC9000-084/085) and
    /// raise those in use; rejected, the 0-RTT packets are forgotten without counting as
    /// congestion (RFC 9002 §6.4) and every stream starts over from its first byte under the new
    /// limits (RFC 9001 §4.6.2: the client resets the state of all streams), so what the
    /// application wrote goes again without its doing anything.
    pub(super) fn settle_zero_rtt(
        &mut self,
        now: Instant,
        params: &TransportParameters,
    ) -> Result<bool, TransportError> {
        if self.zero_rtt.status != EarlyData::Pending {
            return Ok(false);
        }
        self.zero_rtt.discard_keys();
        let remembered = self.zero_rtt.remembered.take().expect("set with Pending");
        let accepted = match &self.tls {
            rustls::quic::Connection::Client(tls) => tls.is_early_data_accepted(),
            rustls::quic::Connection::Server(_) => false,
        };
        if accepted {
            self.zero_rtt.status = EarlyData::Accepted;
            for ((name, old), (_, new)) in limits(&remembered).into_iter().zip(limits(params)) {
                if new < old {
                    return Err(TransportError::new(
                        TransportErrorCode::PROTOCOL_VIOLATION,
                        format!("the server accepted 0-RTT but lowered {name} from {old} to {new}"),
                    ));
                }
            }
            self.streams.raise_peer_limits(now, params);
        } else {
            self.zero_rtt.status = EarlyData::Rejected;
            let data = &mut self.spaces[SpaceId::Data as usize];
            self.path.bytes_in_flight -= data.forget_sent();
            data.pending = Default::default();
            self.streams.restart_after_rejected_early_data(params)?;
        }
        Ok(true)
    }
}
