//! Retry tokens (RFC 9000 §8.1.2-§8.1.4): proof that a client can receive at its address.
//!
//! A token carries the client's original Destination Connection ID, the Retry's Source Connection
//! ID and when it was issued, authenticated together with the client's address by
//! HMAC-SHA256 under the endpoint's key. It is bound to the address, expires, and cannot be
//! forged or moved to another connection attempt.

use std::net::SocketAddr;
use std::time::Duration;

use aws_lc_rs::hmac;

use crate::wire::ConnectionId;

const TAG_LEN: usize = 16;

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

    fn tag(&self, remote: SocketAddr, body: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(b"qstream retry token");
        match remote {
            SocketAddr::V4(a) => context.update(&a.ip().octets()),
            SocketAddr::V6(a) => context.update(&a.ip().octets()),
        }
        context.update(&remote.port().to_be_bytes());
        context.update(body);
        context.sign()
    }

    /// A token for a client at `remote`, issued at `issued` (time since the endpoint started).
    pub(crate) fn issue(
        &self,
        remote: SocketAddr,
        original_dcid: &ConnectionId,
        retry_scid: &ConnectionId,
        issued: Duration,
    ) -> Vec<u8> {
        let mut token = Vec::with_capacity(8 + 2 + 40 + TAG_LEN);
        token.extend_from_slice(&(issued.as_millis() as u64).to_be_bytes());
        token.push(original_dcid.len() as u8);
        token.extend_from_slice(original_dcid);
        token.push(retry_scid.len() as u8);
        token.extend_from_slice(retry_scid);
        let tag = self.tag(remote, &token);
        token.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        token
    }

    /// The token's contents, if it is authentic, for `remote`, and younger than `lifetime` at
    /// `now` (time since the endpoint started).
    pub(crate) fn validate(
        &self,
        remote: SocketAddr,
        token: &[u8],
        now: Duration,
        lifetime: Duration,
    ) -> Option<RetryToken> {
        let body_len = token.len().checked_sub(TAG_LEN)?;
        let (body, tag) = token.split_at(body_len);
        let expected = self.tag(remote, body);
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG_LEN], tag)
            .ok()?;
        let issued = Duration::from_millis(u64::from_be_bytes(body.get(..8)?.try_into().ok()?));
        if now.saturating_sub(issued) > lifetime || issued > now {
            return None;
        }
        let rest = &body[8..];
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
}
