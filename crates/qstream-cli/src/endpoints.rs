//! Endpoints for the commands: binding, resolving, and saying in one line what went wrong.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use qstream::{Connecting, Connection, ConnectionError, Endpoint, ServerConfig};

use crate::observe::ObserveArgs;

/// A server endpoint on `listen`, observed as `observe` asks, or a message naming the address.
pub(crate) fn server(
    config: ServerConfig,
    listen: SocketAddr,
    observe: &ObserveArgs,
) -> Result<Endpoint, Box<dyn Error>> {
    let endpoint = Endpoint::server(config, listen).map_err(|e| {
        format!("cannot listen on {listen}: {e} (is another program using that port?)")
    })?;
    observe.apply(&endpoint)?;
    Ok(endpoint)
}

/// A client endpoint able to reach `host:port`, and the address `host` resolved to.
pub(crate) async fn client(
    host: &str,
    port: u16,
    observe: &ObserveArgs,
) -> Result<(Endpoint, SocketAddr), Box<dyn Error>> {
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let local: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let endpoint = Endpoint::client(local)?;
    observe.apply(&endpoint)?;
    Ok((endpoint, addr))
}

/// The connection once `connecting` completes its handshake within `timeout`. A peer that
/// never answers is reported as `silence` says, a failed handshake as `explain` says.
pub(crate) async fn handshake(
    connecting: Connecting,
    timeout: Duration,
    silence: impl FnOnce() -> String,
    explain: impl FnOnce(&ConnectionError) -> String,
) -> Result<Connection, Box<dyn Error>> {
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(silence().into()),
        Ok(Err(error)) => Err(explain(&error).into()),
        Ok(Ok(connection)) => Ok(connection),
    }
}

/// What a failed handshake means for the user: `untrusted` when our side refused the peer's
/// certificate, `other_protocol` when no ALPN protocol was shared, else the error itself.
pub(crate) fn explain_handshake_error(
    error: &ConnectionError,
    untrusted: &str,
    other_protocol: &str,
) -> String {
    match error.tls_alert() {
        // bad_certificate, unknown_ca, access_denied (a pinned fingerprint differs),
        // decrypt_error, raised by our side: the certificate.
        Some(42 | 48 | 49 | 51) if matches!(error, ConnectionError::TransportError(_)) => {
            format!("{untrusted} ({error})")
        }
        // no_application_protocol (RFC 9001 §8.1).
        Some(120) => format!("{other_protocol} ({error})"),
        _ => format!("the handshake failed: {error}"),
    }
}
