//! Address validation tokens (RFC 9000 §8.1.2-§8.1.4): proof that a client can receive at its
//! address.
//!
//! A Retry token carries the client's original Destination Connection ID, the Retry's Source
//! Connection ID and when it was issued, authenticated together with the client's address and
//! port by HMAC-SHA256 under the endpoint's key. A NEW_TOKEN token, for a later connection,
//! carries its issue time and the QUIC version of the connection that gave it (RFC 9369 §5: a
//! token is valid only in that version), and is bound to the client's IP address (its port may
//! change).
//! Both expire and cannot be forged; a leading byte tells them apart (§8.1.3).

use std::net::SocketAddr;
use std::time::Duration;

use aws_lc_rs::hmac;

use crate::wire::{ConnectionId, Version};

const TAG_LEN: usize = 16;
const RETRY: u8 = 0;
const NEW_TOKEN: u8 = 1;

/// What kind of token a client presented.
pub(crate) enum PresentedToken {
    /// From our Retry, valid.
    Retry(RetryToken),
    /// From our NEW_TOKEN frame, valid.
    NewToken,
    /// A Retry token that is not valid: the Initial is dropped (§8.1.3).
    InvalidRetry,
    /// Anything else: treated as no token (§8.1.3).
    Unusable,
}

/// Issues and checks Retry tokens.
pub(crate) struct TokenKey(hmac::Key);

/// What a valid token says.
pub(crate) struct RetryToken {
    pub(crate) original_dcid: ConnectionId,
    pub(crate) retry_scid: ConnectionId,
}

impl TokenKey {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The tag over `body`, which starts with the kind byte; Retry tokens also bind the port.
    fn tag(&self, remote: SocketAddr, body: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(b"qstream address validation token");
        match remote {
            SocketAddr::V4(a) => context.update(&a.ip().octets()),
            SocketAddr::V6(a) => context.update(&a.ip().octets()),
        }
        if body.first() == Some(&RETRY) {
            context.update(&remote.port().to_be_bytes());
        }
        context.update(body);
        context.sign()
    }

    fn seal(&self, remote: SocketAddr, mut body: Vec<u8>) -> Vec<u8> {
        let tag = self.tag(remote, &body);
        body.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        body
    }

    /// A token for a NEW_TOKEN frame of a connection in `version`, issued at `issued` (time
    /// since the endpoint started).
    pub(crate) fn issue_new_token(
        &self,
        remote: SocketAddr,
        version: Version,
        issued: Duration,
    ) -> Vec<u8> {
        let mut body = vec![NEW_TOKEN];
        body.extend_from_slice(&(issued.as_millis() as u64).to_be_bytes());
        body.extend_from_slice(&version.0.to_be_bytes());
        self.seal(remote, body)
    }

    /// Classifies the token of a client's Initial in `version`. RFC 9369 §5, RFC9369-016: a
    /// NEW_TOKEN token from a connection in another version is not accepted.
    pub(crate) fn check(
        &self,
        remote: SocketAddr,
        token: &[u8],
        version: Version,
        now: Duration,
        retry_lifetime: Duration,
        new_token_lifetime: Duration,
    ) -> PresentedToken {
        match token.first() {
            Some(&RETRY) => match self.validate(remote, token, now, retry_lifetime) {
                Some(retry) => PresentedToken::Retry(retry),
                None => PresentedToken::InvalidRetry,
            },
            Some(&NEW_TOKEN) => match self.authentic_body(remote, token, now, new_token_lifetime) {
                Some(issued_in) if issued_in == version.0.to_be_bytes() => PresentedToken::NewToken,
                _ => PresentedToken::Unusable,
            },
            _ => PresentedToken::Unusable,
        }
    }

    /// The body after the kind byte and issue time, if the tag is valid and the token young
    /// enough.
    fn authentic_body<'t>(
        &self,
        remote: SocketAddr,
        token: &'t [u8],
        now: Duration,
        lifetime: Duration,
    ) -> Option<&'t [u8]> {
        let body_len = token.len().checked_sub(TAG_LEN)?;
        let (body, tag) = token.split_at(body_len);
        let expected = self.tag(remote, body);
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG_LEN], tag)
            .ok()?;
        let issued = Duration::from_millis(u64::from_be_bytes(body.get(1..9)?.try_into().ok()?));
        if now.saturating_sub(issued) > lifetime || issued > now {
            return None;
        }
        Some(&body[9..])
    }

    /// A token for a client at `remote`, issued at `issued` (time since the endpoint started).
    pub(crate) fn issue(
        &self,
        remote: SocketAddr,
        original_dcid: &ConnectionId,
        retry_scid: &ConnectionId,
        issued: Duration,
    ) -> Vec<u8> {
        let mut body = Vec::with_capacity(1 + 8 + 2 + 40 + TAG_LEN);
        body.push(RETRY);
        body.extend_from_slice(&(issued.as_millis() as u64).to_be_bytes());
        body.push(original_dcid.len() as u8);
        body.extend_from_slice(original_dcid);
        body.push(retry_scid.len() as u8);
        body.extend_from_slice(retry_scid);
        self.seal(remote, body)
    }

    /// The token's contents, if it is authentic, for `remote`, and younger than `lifetime` at
    /// `now` (time since the endpoint started).
    fn validate(
        &self,
        remote: SocketAddr,
        token: &[u8],
        now: Duration,
        lifetime: Duration,
    ) -> Option<RetryToken> {
        let rest = self.authentic_body(remote, token, now, lifetime)?;
        let (&odcid_len, rest) = rest.split_first()?;
        let original_dcid = ConnectionId::from_slice(rest.get(..usize::from(odcid_len))?)?;
        let rest = &rest[usize::from(odcid_len)..];
        let (&scid_len, rest) = rest.split_first()?;
        let retry_scid = ConnectionId::from_slice(rest.get(..usize::from(scid_len))?)?;
        Some(RetryToken {
            original_dcid,
            retry_scid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_address_and_expire() {
        let key = TokenKey::new(&[9; 32]);
        let addr: SocketAddr = "192.0.2.1:4433".parse().unwrap();
        let odcid = ConnectionId::from_slice(&[1; 8]).unwrap();
        let scid = ConnectionId::from_slice(&[2; 8]).unwrap();
        let lifetime = Duration::from_secs(10);
        let token = key.issue(addr, &odcid, &scid, Duration::from_secs(5));
        let valid = key
            .validate(addr, &token, Duration::from_secs(6), lifetime)
            .unwrap();
        assert_eq!((valid.original_dcid, valid.retry_scid), (odcid, scid));
        let other: SocketAddr = "192.0.2.2:4433".parse().unwrap();
        assert!(
            key.validate(other, &token, Duration::from_secs(6), lifetime)
                .is_none()
        );
        assert!(
            key.validate(addr, &token, Duration::from_secs(16), lifetime)
                .is_none()
        );
        let mut forged = token.clone();
        forged[9] ^= 1;
        assert!(
            key.validate(addr, &forged, Duration::from_secs(6), lifetime)
                .is_none()
        );
        assert!(
            TokenKey::new(&[8; 32])
                .validate(addr, &token, Duration::from_secs(6), lifetime)
                .is_none()
        );
        assert!(key.validate(addr, &[], Duration::ZERO, lifetime).is_none());
    }

    #[test]
    fn new_tokens_ignore_the_port_and_are_told_apart_from_retry_tokens() {
        let key = TokenKey::new(&[9; 32]);
        let addr: SocketAddr = "192.0.2.1:4433".parse().unwrap();
        let moved: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let day = Duration::from_secs(86_400);
        let token = key.issue_new_token(addr, Version::V1, Duration::from_secs(1));
        let check = |remote, token: &[u8], now| {
            key.check(
                remote,
                token,
                Version::V1,
                now,
                Duration::from_secs(10),
                day,
            )
        };
        assert!(matches!(
            check(moved, &token, Duration::from_secs(2)),
            PresentedToken::NewToken
        ));
        assert!(matches!(
            check(
                "192.0.2.9:1".parse().unwrap(),
                &token,
                Duration::from_secs(2)
            ),
            PresentedToken::Unusable
        ));
        assert!(matches!(
            check(addr, &token, 2 * day),
            PresentedToken::Unusable
        ));
        let retry = key.issue(
            addr,
            &ConnectionId::EMPTY,
            &ConnectionId::EMPTY,
            Duration::ZERO,
        );
        assert!(matches!(
            check(addr, &retry, Duration::from_secs(1)),
            PresentedToken::Retry(_)
        ));
        assert!(matches!(
            check(moved, &retry, Duration::from_secs(1)),
            PresentedToken::InvalidRetry
        ));
        assert!(matches!(
            check(addr, b"junk", Duration::ZERO),
            PresentedToken::Unusable
        ));
    }

    /// RFC 9369 §5, RFC9369-016: a token from a version 1 connection does not validate an
    /// address in a version 2 connection.
    #[test]
    fn new_tokens_are_valid_only_in_the_version_that_issued_them() {
        let key = TokenKey::new(&[9; 32]);
        let addr: SocketAddr = "192.0.2.1:4433".parse().unwrap();
        let day = Duration::from_secs(86_400);
        let token = key.issue_new_token(addr, Version::V1, Duration::from_secs(1));
        let now = Duration::from_secs(2);
        let ten = Duration::from_secs(10);
        assert!(matches!(
            key.check(addr, &token, Version::V1, now, ten, day),
            PresentedToken::NewToken
        ));
        assert!(matches!(
            key.check(addr, &token, Version::V2, now, ten, day),
            PresentedToken::Unusable
        ));
    }
}
