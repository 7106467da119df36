//! QUIC transport error codes (RFC 9000 §20.1) and the error every decoder returns.

use std::fmt;

/// A QUIC transport error code (RFC 9000 §20.1), as carried in a CONNECTION_CLOSE frame of type
/// 0x1c.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportErrorCode(pub u64);

impl TransportErrorCode {
    /// The connection is being closed abruptly in the absence of any error.
    pub const NO_ERROR: Self = Self(0x00);
    /// The endpoint encountered an internal error and cannot continue with the connection.
    pub const INTERNAL_ERROR: Self = Self(0x01);
    /// The server refused to accept a new connection.
    pub const CONNECTION_REFUSED: Self = Self(0x02);
    /// An endpoint received more data than it permitted in its advertised data limits.
    pub const FLOW_CONTROL_ERROR: Self = Self(0x03);
    /// An endpoint received a frame for a stream identifier that exceeded its advertised limit.
    pub const STREAM_LIMIT_ERROR: Self = Self(0x04);
    /// An endpoint received a frame for a stream that was not in a state that permitted it.
    pub const STREAM_STATE_ERROR: Self = Self(0x05);
    /// A stream's final size changed, or data arrived beyond it.
    pub const FINAL_SIZE_ERROR: Self = Self(0x06);
    /// An endpoint received a frame that was badly formatted.
    pub const FRAME_ENCODING_ERROR: Self = Self(0x07);
    /// Transport parameters were badly formatted, invalid, absent when required, or duplicated.
    pub const TRANSPORT_PARAMETER_ERROR: Self = Self(0x08);
    /// The peer provided more connection IDs than our active_connection_id_limit.
    pub const CONNECTION_ID_LIMIT_ERROR: Self = Self(0x09);
    /// A protocol compliance error not covered by a more specific code.
    pub const PROTOCOL_VIOLATION: Self = Self(0x0a);
    /// A server received a client Initial with an invalid token.
    pub const INVALID_TOKEN: Self = Self(0x0b);
    /// The application or application protocol caused the connection to be closed.
    pub const APPLICATION_ERROR: Self = Self(0x0c);
    /// An endpoint received more CRYPTO data than it can buffer.
    pub const CRYPTO_BUFFER_EXCEEDED: Self = Self(0x0d);
    /// An error in key update.
    pub const KEY_UPDATE_ERROR: Self = Self(0x0e);
    /// The AEAD confidentiality or integrity limit was reached.
    pub const AEAD_LIMIT_REACHED: Self = Self(0x0f);
    /// No network path could support QUIC.
    pub const NO_VIABLE_PATH: Self = Self(0x10);
    /// Version negotiation failed (RFC 9368 §10.2).
    pub const VERSION_NEGOTIATION_ERROR: Self = Self(0x11);

    /// The CRYPTO_ERROR code (0x0100–0x01ff) that carries a TLS alert.
    pub const fn crypto(alert: u8) -> Self {
        Self(0x100 | alert as u64)
    }

    /// The TLS alert this code carries, when it is a CRYPTO_ERROR.
    pub fn tls_alert(self) -> Option<u8> {
        (0x100..=0x1ff)
            .contains(&self.0)
            .then_some((self.0 & 0xff) as u8)
    }

    /// The name the RFC gives this code, when it has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "NO_ERROR",
            0x01 => "INTERNAL_ERROR",
            0x02 => "CONNECTION_REFUSED",
            0x03 => "FLOW_CONTROL_ERROR",
            0x04 => "STREAM_LIMIT_ERROR",
            0x05 => "STREAM_STATE_ERROR",
            0x06 => "FINAL_SIZE_ERROR",
            0x07 => "FRAME_ENCODING_ERROR",
            0x08 => "TRANSPORT_PARAMETER_ERROR",
            0x09 => "CONNECTION_ID_LIMIT_ERROR",
            0x0a => "PROTOCOL_VIOLATION",
            0x0b => "INVALID_TOKEN",
            0x0c => "APPLICATION_ERROR",
            0x0d => "CRYPTO_BUFFER_EXCEEDED",
            0x0e => "KEY_UPDATE_ERROR",
            0x0f => "AEAD_LIMIT_REACHED",
            0x10 => "NO_VIABLE_PATH",
            0x11 => "VERSION_NEGOTIATION_ERROR",
            _ => return None,
        })
    }
}

impl fmt::Display for TransportErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.tls_alert()) {
            (Some(name), _) => f.write_str(name),
            (None, Some(alert)) => write!(f, "CRYPTO_ERROR(alert {alert})"),
            (None, None) => write!(f, "{:#x}", self.0),
        }
    }
}

impl fmt::Debug for TransportErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why untrusted bytes were rejected.
///
/// Carries the transport error code that the receiving endpoint closes the connection with (or, for
/// packet-level problems, the code that explains why the packet is discarded), the frame type when
/// a frame was being decoded, and a short static explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The RFC 9000 §20.1 code this input maps to.
    pub code: TransportErrorCode,
    /// The type of the frame being decoded, when the error is in a frame.
    pub frame_type: Option<u64>,
    /// What was wrong, for logs and CONNECTION_CLOSE reason phrases.
    pub reason: &'static str,
}

impl DecodeError {
    /// An error with `code` outside any frame.
    pub const fn new(code: TransportErrorCode, reason: &'static str) -> Self {
        Self {
            code,
            frame_type: None,
            reason,
        }
    }

    /// A FRAME_ENCODING_ERROR in a frame of type `frame_type`.
    pub(crate) const fn frame(frame_type: u64, reason: &'static str) -> Self {
        Self {
            code: TransportErrorCode::FRAME_ENCODING_ERROR,
            frame_type: Some(frame_type),
            reason,
        }
    }

    /// An error with `code` in a frame of type `frame_type`.
    pub(crate) const fn in_frame(
        code: TransportErrorCode,
        frame_type: u64,
        reason: &'static str,
    ) -> Self {
        Self {
            code,
            frame_type: Some(frame_type),
            reason,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.frame_type {
            Some(ty) => write!(f, "{} in frame {ty:#x}: {}", self.code, self.reason),
            None => write!(f, "{}: {}", self.code, self.reason),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A transport error: the code, the frame that caused it when known, and an explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// The RFC 9000 §20.1 code, or CRYPTO_ERROR carrying a TLS alert.
    pub code: TransportErrorCode,
    /// The type of the frame that triggered the error, when known.
    pub frame_type: Option<u64>,
    /// What went wrong.
    pub reason: String,
}

impl TransportError {
    pub(crate) fn new(code: TransportErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            frame_type: None,
            reason: reason.into(),
        }
    }
}

impl From<DecodeError> for TransportError {
    fn from(err: DecodeError) -> Self {
        Self {
            code: err.code,
            frame_type: err.frame_type,
            reason: err.reason.to_owned(),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(ty) = self.frame_type {
            write!(f, " in frame {ty:#x}")?;
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}
