//! The handshake: driving TLS, installing keys, the peer's transport parameters, and
//! confirming and discarding packet number spaces (RFC 9001 §4).

use std::time::{Duration, Instant};

use super::keys::{OneRttKeys, UpdateSecrets};
use super::{Connection, EndpointEvent, Event, State};
use crate::config::TransportConfig;
use crate::crypto::derived::DerivedSecrets;
use crate::error::TransportError;
use crate::qlog::Initiator;
use crate::wire::{
    ConnectionId, SpaceId, StatelessResetToken, TransportParameters, VarInt, Version,
    VersionInformation,
};
use crate::{Side, TransportErrorCode};

/// How far the handshake got (RFC 9001 §4.1).
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The handshake is confirmed (RFC 9001 §4.1.2).
    pub(super) confirmed: bool,
    /// Server: HANDSHAKE_DONE is to be sent.
    pub(super) done_pending: bool,
    /// Client: whether a Handshake packet was sent, which discards Initial keys (RFC 9001
    /// §4.9.1).
    pub(super) sent_handshake_packet: bool,
    /// Client: whether any packet from the server was processed (Retry and VN then are
    /// ignored).
    pub(super) heard_from_peer: bool,
    /// Whether the handshake was sped up once already (RFC 9002 §6.2.3).
    pub(super) sped_up: bool,
}

/// Key log labels of the handshake traffic secrets (client, server).
const HANDSHAKE_SECRETS: (&str, &str) = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
);

/// Key log labels of the first application traffic secrets (client, server).
const TRAFFIC_SECRETS: (&str, &str) = ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0");

impl Connection {
    /// Passes received CRYPTO data to TLS, queues what TLS writes, installs new keys, and checks
    /// the handshake's progress.
    pub(super) fn drive_tls(&mut self, now: Instant) {
        let mut level = if self.one_rtt.is_some() {
            SpaceId::Data
        } else if self.spaces[SpaceId::Handshake as usize].keys.is_some() {
            SpaceId::Handshake
        } else {
            SpaceId::Initial
        };
        loop {
            let mut out = Vec::new();
            let change = self.tls.write_hs(&mut out);
            if !out.is_empty() {
                self.spaces[level as usize].crypto_send.write(&out);
            }
            match change {
                None => break,
                Some(rustls::quic::KeyChange::Handshake { keys }) => {
                    let keys = match self.derived_secrets(HANDSHAKE_SECRETS) {
                        Ok(None) => keys,
                        Ok(Some(derived)) => derived.keys(),
                        Err(error) => return self.close_with_error(now, error),
                    };
                    self.spaces[SpaceId::Handshake as usize].keys = Some(keys);
                    level = SpaceId::Handshake;
                }
                Some(rustls::quic::KeyChange::OneRtt { keys, next }) => {
                    let (keys, next) = match self.derived_secrets(TRAFFIC_SECRETS) {
                        Ok(None) => (keys, UpdateSecrets::Tls(next)),
                        Ok(Some(mut derived)) => {
                            let keys = derived.keys();
                            derived.update();
                            (keys, UpdateSecrets::Derived(derived))
                        }
                        Err(error) => return self.close_with_error(now, error),
                    };
                    let next_pn = self.spaces[SpaceId::Data as usize].next_pn;
                    self.one_rtt = Some(OneRttKeys::new(keys, next, next_pn));
                    level = SpaceId::Data;
                }
            }
        }
        self.start_zero_rtt();
        if self.tls.is_handshaking() {
            self.accept_zero_rtt();
        }
        // On resumption rustls offers the previous session's parameters (kept for 0-RTT) from
        // the start; the client validates only this handshake's, which it has once the server's
        // Finished gave it 1-RTT keys (EncryptedExtensions come first).
        let params_from_this_handshake = self.side == Side::Server || self.one_rtt.is_some();
        if self.peer_params.is_none() && params_from_this_handshake {
            if let Some(raw) = self.tls.quic_transport_parameters() {
                let raw = raw.to_vec();
                if let Err(error) = self.apply_peer_params(now, &raw) {
                    self.close_with_error(now, error);
                    return;
                }
            }
        }
        if matches!(self.state, State::Handshaking) && !self.tls.is_handshaking() {
            self.on_handshake_complete(now);
        }
    }

    /// TLS finished the handshake: the connection is established, if the peer sent its
    /// transport parameters.
    fn on_handshake_complete(&mut self, now: Instant) {
        if self.peer_params.is_none() {
            // RFC 9000 §7.3: transport parameters are mandatory.
            self.close_with_error(
                now,
                TransportError::new(
                    TransportErrorCode::TRANSPORT_PARAMETER_ERROR,
                    "peer sent no transport parameters",
                ),
            );
            return;
        }
        self.state = State::Established;
        self.events.push_back(Event::Connected);
        if let (Some(qlog), Some(alpn)) = (&mut self.qlog, self.tls.alpn_protocol()) {
            qlog.alpn_information(now, alpn);
        }
        self.request_cids();
        if self.side == Side::Server {
            // RFC 9001 §4.1.2: the server's handshake is confirmed when it completes; it
            // tells the client with HANDSHAKE_DONE (RFC 9000 §19.20), and gives it a token
            // for its next connection (§8.1.3).
            self.handshake.done_pending = true;
            self.confirm_handshake();
            self.endpoint_events.push_back(EndpointEvent::NeedToken);
        }
    }

    /// RFC 9001 §4.9.2: Handshake keys are discarded once the handshake is confirmed.
    pub(super) fn confirm_handshake(&mut self) {
        self.handshake.confirmed = true;
        // RFC 9001 §4.9.3: a server's 0-RTT keys go with the handshake.
        self.zero_rtt.discard_keys();
        self.discard_space(SpaceId::Handshake);
        // The first ACK_FREQUENCY goes out with what confirms the handshake, the server's
        // HANDSHAKE_DONE or the client's acknowledgment of it.
        if self.path.rtt.has_sample() {
            self.ack_frequency.on_rtt(self.path.rtt.smoothed());
        }
    }

    /// Forgets a space's keys and in-flight packets (RFC 9002 §6.4).
    pub(super) fn discard_space(&mut self, id: SpaceId) {
        let space = &mut self.spaces[id as usize];
        if space.keys.is_none() && space.sent.is_empty() {
            return;
        }
        space.keys = None;
        self.path.bytes_in_flight -= space.forget_sent();
        space.pending = Default::default();
        space.probes = 0;
        space.unacked_eliciting = 0;
        space.ack_deadline = None;
        self.pto_count = 0;
    }

    /// Validates and applies the peer's transport parameters (RFC 9000 §7.3, §7.4).
    pub(super) fn apply_peer_params(
        &mut self,
        now: Instant,
        raw: &[u8],
    ) -> Result<(), TransportError> {
        let params = TransportParameters::decode(raw, self.side.peer())?;
        let mismatch = |what: &str| {
            TransportError::new(
                TransportErrorCode::TRANSPORT_PARAMETER_ERROR,
                format!("{what} does not match the connection IDs used"),
            )
        };
        // RFC 9000 §7.3: the connection IDs each side used must be authenticated by its
        // parameters.
        if params.initial_source_connection_id != self.peer_initial_scid {
            return Err(mismatch("initial_source_connection_id"));
        }
        if self.side == Side::Client {
            if params.original_destination_connection_id != Some(self.original_dcid) {
                return Err(mismatch("original_destination_connection_id"));
            }
            if params.retry_source_connection_id != self.retry_scid {
                return Err(mismatch("retry_source_connection_id"));
            }
            self.cids
                .set_initial_remote_token(params.stateless_reset_token);
            if let Some(preferred) = &params.preferred_address {
                self.on_preferred_address(preferred);
            }
        }
        self.check_version_information(params.version_information.as_ref())?;
        self.ack_frequency.on_peer_params(
            Duration::from_millis(params.max_ack_delay.into_inner()),
            params
                .min_ack_delay
                .map(|us| Duration::from_micros(us.into_inner())),
        );
        self.peer_ack_delay_exponent = params.ack_delay_exponent;
        if !self.settle_zero_rtt(now, &params)? {
            self.streams.apply_peer_params(&params);
        }
        self.path
            .mtu
            .limit_to_peer(params.max_udp_payload_size.into_inner());
        self.datagrams.peer_max_frame = params
            .max_datagram_frame_size
            .map(VarInt::into_inner)
            .filter(|&size| size > 0);
        if let Some(qlog) = &mut self.qlog {
            let cipher = self
                .tls
                .negotiated_cipher_suite()
                .map(|suite| format!("{:?}", suite.suite()));
            qlog.parameters_set(now, Initiator::Remote, &params, cipher.as_deref());
        }
        self.peer_params = Some(params);
        Ok(())
    }

    /// Logs, when recording qlog, the transport parameters this side announces and the
    /// versions it offers (client) or accepts (server), most preferred first.
    pub(crate) fn qlog_local_parameters(
        &mut self,
        now: Instant,
        params: &TransportParameters,
        versions: &[Version],
    ) {
        if let Some(qlog) = &mut self.qlog {
            qlog.parameters_set(now, Initiator::Local, params, None);
            qlog.version_information(now, self.side, versions, Some(self.version));
        }
    }

    /// After a version switch the TLS key schedule is the original version's: the secrets
    /// of a level, as TLS logged them, to derive the negotiated version's keys from; `None`
    /// when no switch happened.
    pub(super) fn derived_secrets(
        &self,
        (client_label, server_label): (&str, &str),
    ) -> Result<Option<DerivedSecrets>, TransportError> {
        if self.version == self.versions.tls_version {
            return Ok(None);
        }
        let missing = || {
            TransportError::new(
                TransportErrorCode::INTERNAL_ERROR,
                "TLS secrets for the negotiated version are unavailable",
            )
        };
        let capture = self.versions.secret_capture.as_ref().ok_or_else(missing)?;
        let suite = self
            .tls
            .negotiated_cipher_suite()
            .ok_or_else(missing)?
            .suite();
        let (client, server) = (
            capture.get(client_label).ok_or_else(missing)?,
            capture.get(server_label).ok_or_else(missing)?,
        );
        DerivedSecrets::new(suite, self.version, self.side, client, server)
            .map(Some)
            .ok_or_else(missing)
    }

    /// Our transport parameters, for the TLS handshake.
    pub(crate) fn local_transport_parameters(
        config: &TransportConfig,
        side: Side,
        local_cid: ConnectionId,
        original_dcid: Option<ConnectionId>,
        retry_scid: Option<ConnectionId>,
        reset_token: Option<StatelessResetToken>,
        version_information: VersionInformation,
    ) -> TransportParameters {
        let mut params = config.transport_parameters();
        params.initial_source_connection_id = Some(local_cid);
        if side == Side::Server {
            params.original_destination_connection_id = original_dcid;
            params.retry_source_connection_id = retry_scid;
            params.stateless_reset_token = reset_token;
        }
        // RFC 9369 §4, RFC9369-004: an endpoint that supports v2 sends version_information.
        params.version_information = Some(version_information);
        params
    }
}
