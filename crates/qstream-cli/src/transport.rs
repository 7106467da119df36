//! Transport options shared by the commands that make connections.

use qstream::TransportConfig;
use qstream::proto::recovery::CongestionControl;

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
            ..TransportConfig::default()
        }
    }
}
