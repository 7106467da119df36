//! Compatible version negotiation as the connection carries it out (RFC 9368): which version
//! to switch to, and checking the peer's version_information.

use std::time::Instant;

use super::Connection;
use crate::error::TransportError;
use crate::wire::{SpaceId, Version, VersionInformation};
use crate::{Side, TransportErrorCode};

impl Connection {
    /// Client: whether a server packet in `version` switches this connection to it (RFC 9369
    /// §4.1): a version this client offered, seen before anything from the server was
    /// processed.
    pub(crate) fn may_switch_to(&self, version: Version) -> bool {
        self.side == Side::Client
            && version != self.version
            && self.version == self.versions.original_version
            && self.versions.compatible_versions.contains(&version)
            && self.spaces[SpaceId::Initial as usize]
                .received
                .max()
                .is_none()
            && self.spaces[SpaceId::Handshake as usize].keys.is_none()
    }

    /// Client: the server answered in `version` (RFC 9369 §4.1): Initial packets use its keys
    /// from now on; Handshake and 1-RTT keys are derived for it.
    pub(crate) fn switch_version(
        &mut self,
        now: Instant,
        version: Version,
        initial_keys: rustls::quic::Keys,
    ) {
        self.spaces[SpaceId::Initial as usize].keys = Some(initial_keys);
        self.version = version;
        if let Some(qlog) = &mut self.qlog {
            let mut offered = self.versions.compatible_versions.clone();
            offered.push(self.versions.original_version);
            qlog.version_information(now, self.side, &offered, Some(version));
        }
    }

    /// Validates the peer's version_information (RFC 9368 §4), when it sent one.
    pub(super) fn check_version_information(
        &self,
        info: Option<&VersionInformation>,
    ) -> Result<(), TransportError> {
        let Some(info) = info else {
            return Ok(());
        };
        let expected = match self.side {
            // RFC9368-024/025/026: the client's Chosen Version is the version its transport
            // parameters travelled in, the original one.
            Side::Server => self.versions.original_version,
            // RFC9368-028/033: the server's Chosen Version is the version in use, which this
            // client offered.
            Side::Client => self.version,
        };
        if info.chosen != expected {
            return Err(TransportError::new(
                TransportErrorCode::VERSION_NEGOTIATION_ERROR,
                format!(
                    "peer's chosen version {:?} is not {:?}",
                    info.chosen, expected
                ),
            ));
        }
        Ok(())
    }

    /// Server: the ClientHello is complete; continues in the version the client offers that
    /// the server prefers (RFC 9368 §2.3), starting TLS anew in it before it read anything.
    pub(super) fn choose_version(&mut self, now: Instant, hello: &[u8]) {
        let Some(choice) = self.versions.version_choice.take() else {
            return;
        };
        let negotiated = choice.negotiate(self.version, hello);
        if negotiated == self.version {
            return;
        }
        let (Some(tls), Some(keys)) = (
            choice.tls_for(negotiated),
            crate::crypto::initial_keys(negotiated, &self.versions.initial_keys_cid, self.side),
        ) else {
            return;
        };
        self.tls = tls;
        self.versions.tls_version = negotiated;
        self.versions.original_initial_keys =
            self.spaces[SpaceId::Initial as usize].keys.replace(keys);
        self.version = negotiated;
        if let Some(qlog) = &mut self.qlog {
            qlog.version_information(now, self.side, choice.versions(), Some(negotiated));
        }
    }
}
