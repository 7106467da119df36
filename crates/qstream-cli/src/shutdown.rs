//! Ending on SIGINT (Ctrl-C) and SIGTERM: the commands close their connections with a reason
//! the peer sees, remove partial output, and exit with the shell's code for the signal.

use std::error::Error;
use std::fmt;

/// The application error code of a CONNECTION_CLOSE sent because the user interrupted us.
pub(crate) const INTERRUPTED: u32 = 0x100;

/// A signal that ends the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// The exit code shells give a process ended by this signal: 128 + its number.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }

    /// The reason sent to the peer in CONNECTION_CLOSE.
    pub(crate) fn reason(self) -> &'static [u8] {
        match self {
            Self::Interrupt => b"interrupted by the user (SIGINT)",
            Self::Terminate => b"terminated (SIGTERM)",
        }
    }
}

/// The command ended because of a signal; main exits with its code.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) Signal);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Signal::Interrupt => f.write_str("interrupted"),
            Signal::Terminate => f.write_str("terminated"),
        }
    }
}

impl Error for Interrupted {}

/// Waits for SIGINT or SIGTERM. Where signals cannot be watched, waits for Ctrl-C only, and
/// if not even that, forever.
pub(crate) async fn signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            return tokio::select! {
                _ = interrupt.recv() => Signal::Interrupt,
                _ = terminate.recv() => Signal::Terminate,
            };
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => Signal::Interrupt,
        Err(_) => std::future::pending().await,
    }
}
