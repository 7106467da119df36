//! The `qstream` command: streaming data transfer over QUIC.

mod demo;
mod endpoints;
mod get;
mod input;
mod interop;
mod observe;
mod output;
mod pipe;
mod serve;
mod shutdown;
mod tls;
mod transport;

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Streaming data transfer over QUIC, on a stack whose streams never hang.
#[derive(Parser, Debug)]
#[command(name = "qstream", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Transfers data between a server and a client in this process, over loopback with a
    /// fresh self-signed certificate, verifying every byte with BLAKE3.
    Demo(demo::DemoArgs),
    /// Serves the files of a directory over ALPN hq-interop (HTTP/0.9 over QUIC).
    Serve(serve::ServeArgs),
    /// Fetches files over hq-interop, concurrently over one connection per server.
    #[command(
        after_help = "Exit codes: 0 every file downloaded; 1 other failure; 2 bad \
                            arguments; 3 cannot connect; 4 a file was not found; 5 no stream \
                            credit within --open-timeout; 6 cannot write a file; 130 \
                            interrupted (SIGINT), 143 terminated (SIGTERM), partial files \
                            removed. With several failures, the highest code."
    )]
    Get(get::GetArgs),
    /// Sends a file or standard input to `qstream recv`, checked end to end with BLAKE3.
    Send(pipe::SendArgs),
    /// Receives one `qstream send` transfer into a file or standard output.
    Recv(pipe::RecvArgs),
    /// Runs as a QUIC interop runner endpoint (ROLE, TESTCASE, REQUESTS from the environment);
    /// exits 127 for a test case it does not support.
    Interop(interop::InteropArgs),
}

/// The command line asks for something impossible (a bad URL, outputs that collide): exit
/// code 2, as for arguments clap refuses.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for UsageError {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG selects what is logged (for example RUST_LOG=qstream=debug); warnings by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: redirected logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("qstream: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Get(args) => get::run(args).await,
            Command::Send(args) => pipe::send(args).await,
            Command::Recv(args) => pipe::recv(args).await,
            Command::Interop(args) => interop::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("qstream: {error}");
            if let Some(shutdown::Interrupted(signal)) = error.downcast_ref() {
                ExitCode::from(signal.exit_code())
            } else if error.is::<UsageError>() {
                ExitCode::from(2)
            } else if error.is::<interop::Unsupported>() {
                // The interop runner's code for a test case an endpoint does not implement.
                ExitCode::from(127)
            } else if let Some(failed) = error.downcast_ref::<get::GetFailed>() {
                ExitCode::from(failed.failure as u8)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
