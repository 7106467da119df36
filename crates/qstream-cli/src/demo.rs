//! `qstream demo`: a real transfer between a server and a client in one process, over
//! loopback, with a fresh self-signed certificate; every byte verified with BLAKE3.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use qstream::proto::wire::VarInt;
use qstream::{ClientConfig, Endpoint, ServerConfig};
use tokio::io::AsyncReadExt;

use crate::observe::ObserveArgs;
use crate::tls::{self, Identity};
use crate::transport::TransportArgs;

const ALPN: &[u8] = b"qstream-demo";
const CHUNK: usize = 64 * 1024;

/// Options of `qstream demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Bytes to transfer in total; K, M and G mean powers of 1024.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    bytes: u64,
    /// Streams to spread the transfer over, all open at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    streams: u64,
    /// No progress bars, only the summary.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    transport: TransportArgs,
    #[command(flatten)]
    observe: ObserveArgs,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: use a number with an optional K, M or G"))?;
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}: use K, M or G")),
    };
    value
        .checked_mul(scale)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("{text:?} is zero or too large"))
}

/// Fills `buf` with the deterministic bytes of stream `seed` (xorshift64*), continuing `state`.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for word in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&value[..word.len()]);
    }
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), Box<dyn Error>> {
    let identity = Identity::self_signed(&["localhost"])?;
    let mut server_config = ServerConfig::new(Arc::new(tls::server(&identity, ALPN)?));
    let mut transport = args.transport.config();
    transport.streams.max_concurrent_bidi = args.streams;
    server_config.transport = Arc::new(transport);
    let server = Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    args.observe.apply(&server)?;
    let addr = server.local_addr()?;
    tokio::spawn(serve(server));

    let client_endpoint = Endpoint::client("127.0.0.1:0".parse()?)?;
    args.observe.apply(&client_endpoint)?;
    let client_config = ClientConfig {
        transport: Arc::new(args.transport.config()),
        ..ClientConfig::new(Arc::new(tls::client(identity.cert(), ALPN)?))
    };
    let connection = tokio::time::timeout(
        Duration::from_secs(10),
        client_endpoint.connect(&client_config, addr, "localhost")?,
    )
    .await
    .map_err(|_| "the handshake with the demo server timed out")??;
    args.observe.watch(&connection, "demo client");

    let bars = MultiProgress::with_draw_target(if args.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template(
        "{prefix:>9} {bar:40} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
    )?;
    let total = bars.add(
        ProgressBar::new(args.bytes)
            .with_style(style.clone())
            .with_prefix("total"),
    );
    let credit_waits = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..args.streams {
        let share = args.bytes / args.streams + u64::from(index < args.bytes % args.streams);
        let bar = bars.add(
            ProgressBar::new(share)
                .with_style(style.clone())
                .with_prefix(format!("stream {index}")),
        );
        let (connection, total, credit_waits) =
            (connection.clone(), total.clone(), credit_waits.clone());
        tasks.push(tokio::spawn(async move {
            // Open at once when credit allows, else wait for it, and count the wait.
            let (mut send, mut recv) = match connection.try_open_bi() {
                Ok(pair) => pair,
                Err(_) => {
                    credit_waits.fetch_add(1, Ordering::Relaxed);
                    connection.open_bi().await?
                }
            };
            let mut hasher = blake3::Hasher::new();
            let mut state = 0x9e37_79b9_7f4a_7c15 ^ (index + 1);
            let mut buf = vec![0u8; CHUNK];
            let mut left = share;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                fill(&mut state, &mut buf[..n]);
                hasher.update(&buf[..n]);
                send.write_all(&buf[..n]).await?;
                left -= n as u64;
                bar.inc(n as u64);
                total.inc(n as u64);
            }
            send.finish()?;
            let mut digest = [0u8; 32];
            recv.read_exact(&mut digest).await?;
            bar.finish();
            if digest == *hasher.finalize().as_bytes() {
                Ok(())
            } else {
                Err(format!(
                    "stream {index}: the server's BLAKE3 digest differs from what was sent"
                )
                .into())
            }
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error),
            Err(error) => failures.push(Box::new(error) as Box<dyn Error + Send + Sync>),
        }
    }
    let elapsed = started.elapsed();
    total.finish();
    bars.clear()?;
    let stats = connection.stats().unwrap_or_default();
    let seconds = elapsed.as_secs_f64();
    println!(
        "qstream demo: {} bytes over {} streams in {:.2} s",
        args.bytes, args.streams, seconds
    );
    println!(
        "  throughput {:.1} MB/s ({:.2} Gbit/s), RTT {:.2} ms",
        args.bytes as f64 / seconds / 1e6,
        args.bytes as f64 * 8.0 / seconds / 1e9,
        connection.rtt().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "  packets sent {}, lost {}; streams opened {}; credit waits {}",
        stats.packets_sent,
        stats.packets_lost,
        args.streams,
        credit_waits.load(Ordering::Relaxed)
    );
    connection.close(VarInt::ZERO, b"demo done");
    if failures.is_empty() {
        println!("  every byte verified (BLAKE3)");
        Ok(())
    } else {
        for failure in &failures {
            eprintln!("  {failure}");
        }
        Err(format!("{} of {} streams failed", failures.len(), args.streams).into())
    }
}

/// The demo server: hashes each stream to its end and answers with the BLAKE3 digest.
async fn serve(endpoint: Endpoint) {
    while let Some(Ok(connection)) = endpoint.accept().await {
        tokio::spawn(async move {
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    let mut hasher = blake3::Hasher::new();
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        match recv.read(&mut buf).await {
                            Ok(None) => break,
                            Ok(Some(n)) => {
                                hasher.update(&buf[..n]);
                            }
                            Err(_) => return,
                        }
                    }
                    let _ = send.write_all(hasher.finalize().as_bytes()).await;
                    let _ = send.finish();
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_reject_nonsense() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").unwrap_err().contains("unit"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
