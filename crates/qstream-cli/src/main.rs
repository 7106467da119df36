//! The `qstream` command: streaming data transfer over QUIC.

use clap::Parser;

/// Streaming data transfer over QUIC, on a stack whose streams never hang.
///
/// The transfer commands (demo, serve, get, send, recv, interop) arrive with the async API; this
/// build reports its version and the QUIC versions its protocol core speaks.
#[derive(Parser, Debug)]
#[command(name = "qstream", version, about, long_about)]
struct Cli {}

fn main() {
    Cli::parse();
    let versions: Vec<String> = qstream::proto::wire::Version::SUPPORTED
        .iter()
        .map(|v| format!("{v:?}"))
        .collect();
    println!(
        "qstream {}: QUIC {} wire format and packet protection; transfers are not available yet",
        env!("CARGO_PKG_VERSION"),
        versions.join(" and ")
    );
}
