//! Transport options shared by the commands that make connections.

use std::time::Duration;

use qstream::proto::recovery::CongestionControl;
use qstream::{Endpoint, TransportConfig};

/// The congestion controller, as the command line names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Controller {
    /// CUBIC (RFC 9438): the default; fair to TCP, regrows fast after loss.
    #[default]
    Cubic,
    /// NewReno (RFC 9002 §7).
    Newreno,
    /// BBRv3: paces at the measured bandwidth; for lossy or long paths.
    Bbr,
}

/// Transport options shared by the commands that make connections.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TransportArgs {
    /// Congestion controller: cubic (the default, fair to TCP), newreno, or bbr (for paths
    /// that lose packets without being congested, such as wireless or long-distance links).
    #[arg(long = "cc", value_enum, default_value_t = Controller::default())]
    controller: Controller,
    /// Give up on a peer not heard from for this long, in seconds; a PING every third of it
    /// keeps a quiet but live connection open.
    #[arg(long, default_value_t = 10.0, value_parser = parse_timeout)]
    idle_timeout: f64,
    /// Send every datagram with a system call of its own rather than batched (GSO), so that
    /// a packet capture sees them one by one and Wireshark can decrypt them.
    #[arg(long, env = "QSTREAM_NO_GSO", value_parser = clap::builder::BoolishValueParser::new())]
    no_gso: bool,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 600.0 => Ok(seconds),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 600"
        )),
    }
}

impl TransportArgs {
    /// The transport configuration these options describe, on top of the defaults.
    pub(crate) fn config(&self) -> TransportConfig {
        TransportConfig {
            congestion_control: match self.controller {
                Controller::Cubic => CongestionControl::Cubic,
                Controller::Newreno => CongestionControl::NewReno,
                Controller::Bbr => CongestionControl::Bbr,
            },
            max_idle_timeout: Some(Duration::from_secs_f64(self.idle_timeout)),
            keep_alive_interval: Some(Duration::from_secs_f64(self.idle_timeout / 3.0)),
            ..TransportConfig::default()
        }
    }

    /// Applies the socket options to `endpoint`.
    pub(crate) fn apply(&self, endpoint: &Endpoint) {
        endpoint.set_gso(!self.no_gso);
    }
}
