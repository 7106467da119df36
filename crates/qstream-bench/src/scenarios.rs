//! The five scenarios, written once for every [`Stack`]. Each runs a fresh server and client
//! pair and returns its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{self, resident_bytes};
use crate::relay::{Path, Relay};
use crate::report::Measure;
use crate::stacks::{RESPONSE_LEN, Stack};
use crate::tls::Tls;

/// What went wrong in a run, in words.
pub(crate) type Failure = String;

/// The longest any single run may take before it counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs `client` against `S`'s server with the harness, bounded by [`RUN_LIMIT`].
pub(crate) fn run<S, C, F>(tls: &Tls, client: C) -> Result<Vec<Measure>, Failure>
where
    S: Stack,
    C: FnOnce(std::net::SocketAddr, harness::Clocks, Tls) -> F + Send + 'static,
    F: Future<Output = Result<Vec<Measure>, Failure>>,
{
    let (server_tls, client_tls) = (tls.clone(), tls.clone());
    harness::run(
        move |ready| S::serve(server_tls, ready),
        move |addr, clocks| async move {
            tokio::time::timeout(RUN_LIMIT, client(addr, clocks, client_tls))
                .await
                .unwrap_or_else(|_| Err(format!("no result within {RUN_LIMIT:?}")))
        },
    )
}

pub(crate) fn failed(what: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |error| format!("{what}: {error}")
}

/// One connection, one stream carrying `bytes`: throughput, CPU per GB on each side, and the
/// sender's datagrams per send call and ACKs received per packet sent.
pub(crate) fn bulk<S: Stack>(tls: &Tls, bytes: u64) -> Result<Vec<Measure>, Failure> {
    run::<S, _, _>(tls, move |addr, clocks, tls| async move {
        let endpoint = S::endpoint(&tls).map_err(failed("client endpoint"))?;
        let client = S::connect(&endpoint, addr)
            .await
            .map_err(failed("connect"))?;
        S::request(&client, 64).await.map_err(failed("warm-up"))?;
        let counters_before = S::send_counters(&endpoint, &client);
        let cpu_before = clocks.now();
        let started = Instant::now();
        S::request(&client, bytes)
            .await
            .map_err(failed("transfer"))?;
        let elapsed = started.elapsed().as_secs_f64();
        let (client_cpu, server_cpu) = clocks.now().since(&cpu_before);
        let counters = S::send_counters(&endpoint, &client)
            .zip(counters_before)
            .map(|(after, before)| {
                (
                    ratio(
                        after.datagrams_sent - before.datagrams_sent,
                        after.send_calls - before.send_calls,
                    ),
                    ratio(
                        after.acks_received - before.acks_received,
                        after.packets_sent - before.packets_sent,
                    ),
                    ratio(
                        after.packets_lost - before.packets_lost,
                        after.packets_sent - before.packets_sent,
                    ),
                )
            });
        S::close(client);
        let gb = bytes as f64 / 1e9;
        let scenario = "bulk";
        Ok(vec![
            Measure::higher(
                scenario,
                "throughput",
                "MB/s",
                Some(bytes as f64 / 1e6 / elapsed),
            ),
            Measure::lower(scenario, "client CPU", "s/GB", client_cpu.map(|s| s / gb)),
            Measure::lower(scenario, "server CPU", "s/GB", server_cpu.map(|s| s / gb)),
            Measure::higher(
                scenario,
                "datagrams per send call",
                "",
                counters.and_then(|c| c.0),
            ),
            Measure::lower(
                scenario,
                "ACKs per data packet",
                "",
                counters.and_then(|c| c.1),
            ),
            Measure::lower(
                scenario,
                "packets lost",
                "%",
                counters.and_then(|c| c.2).map(|r| r * 100.0),
            ),
        ])
    })
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Completions counted by [`count_completions`].
struct Counted {
    per_second: f64,
    completions: u64,
    /// Completions including the warm-up.
    all_completions: u64,
    /// Client and server CPU seconds while counting.
    cpu: (Option<f64>, Option<f64>),
}

impl Counted {
    /// Client and server CPU microseconds per completion.
    fn cpu_per_completion(&self) -> (Option<f64>, Option<f64>) {
        let per = |cpu: Option<f64>| {
            cpu.filter(|_| self.completions > 0)
                .map(|s| s * 1e6 / self.completions as f64)
        };
        (per(self.cpu.0), per(self.cpu.1))
    }
}

/// Runs `concurrency` workers that each repeat `work` until stopped; after a warm-up of a
/// fifth of `duration`, counts how often it completes in `duration` and the CPU both sides
/// spend meanwhile. The first failure of any worker is the result.
async fn count_completions<W, F>(
    clocks: harness::Clocks,
    concurrency: usize,
    duration: Duration,
    work: W,
) -> Result<Counted, Failure>
where
    W: Fn() -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), Failure>> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (done, work) = (done.clone(), work.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(failure) = work().await {
                        return failure;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(duration / 5).await;
    let (count_before, cpu_before, started) =
        (done.load(Ordering::Relaxed), clocks.now(), Instant::now());
    tokio::time::sleep(duration).await;
    let all_completions = done.load(Ordering::Relaxed);
    let completions = all_completions - count_before;
    let (cpu, elapsed) = (clocks.now().since(&cpu_before), started.elapsed());
    let failed = workers.iter().position(|w| w.is_finished());
    for worker in &workers {
        worker.abort();
    }
    if let Some(index) = failed {
        let worker = workers.into_iter().nth(index).expect("index in range");
        return Err(worker.await.unwrap_or_else(|e| e.to_string()));
    }
    Ok(Counted {
        per_second: completions as f64 / elapsed.as_secs_f64(),
        completions,
        all_completions,
        cpu,
    })
}

/// The name of a churn run: its concurrency, and the round-trip time of a delayed path.
pub(crate) fn churn_name(concurrency: usize, rtt: Option<Duration>) -> String {
    match rtt {
        None => format!("churn c={concurrency}"),
        Some(rtt) => format!("churn c={concurrency} rtt={:.1}ms", rtt.as_secs_f64() * 1e3),
    }
}

/// Request/response streams (64 bytes each way, finished, released) per second on one
/// connection, `concurrency` at a time, against a limit of 100 open streams; over loopback,
/// or through a [`Relay`] adding `rtt` (datagram stacks only); CPU per stream on each
/// side.
pub(crate) fn churn<S: Stack>(
    tls: &Tls,
    concurrency: usize,
    rtt: Option<Duration>,
    duration: Duration,
) -> Result<Vec<Measure>, Failure> {
    run::<S, _, _>(tls, move |addr, clocks, tls| async move {
        let relay = rtt
            .map(|rtt| Relay::start(addr, Path::delay(rtt / 2), 1))
            .transpose()
            .map_err(failed("relay"))?;
        let addr = relay.as_ref().map_or(addr, Relay::addr);
        let endpoint = S::endpoint(&tls).map_err(failed("client endpoint"))?;
        let client = S::connect(&endpoint, addr)
            .await
            .map_err(failed("connect"))?;
        let connection = client.clone();
        let before = S::send_counters(&endpoint, &client);
        let counted = count_completions(clocks, concurrency, duration, move || {
            let client = connection.clone();
            async move {
                S::request(&client, RESPONSE_LEN as u64)
                    .await
                    .map_err(failed("request"))
            }
        })
        .await?;
        let packets =
            S::send_counters(&endpoint, &client)
                .zip(before)
                .and_then(|(after, before)| {
                    ratio(
                        after.packets_sent - before.packets_sent,
                        counted.all_completions,
                    )
                });
        S::close(client);
        let (client_cpu, server_cpu) = counted.cpu_per_completion();
        let scenario = churn_name(concurrency, rtt);
        Ok(vec![
            Measure::higher(&scenario, "streams", "1/s", Some(counted.per_second)),
            Measure::lower(&scenario, "client CPU", "us", client_cpu),
            Measure::lower(&scenario, "server CPU", "us", server_cpu),
            Measure::lower(&scenario, "client packets per stream", "", packets),
        ])
    })
}

/// Full handshakes per second, `concurrency` at a time, each connection closed once
/// established; CPU microseconds per handshake on each side.
pub(crate) fn handshakes<S: Stack>(
    tls: &Tls,
    concurrency: usize,
    duration: Duration,
) -> Result<Vec<Measure>, Failure> {
    run::<S, _, _>(tls, move |addr, clocks, tls| async move {
        let endpoint = Arc::new(S::endpoint(&tls).map_err(failed("client endpoint"))?);
        let counted = count_completions(clocks, concurrency, duration, move || {
            let endpoint = endpoint.clone();
            async move {
                let client = S::connect(&endpoint, addr)
                    .await
                    .map_err(failed("handshake"))?;
                S::close(client);
                Ok(())
            }
        })
        .await?;
        let (client_cpu, server_cpu) = counted.cpu_per_completion();
        let scenario = format!("handshakes c={concurrency}");
        Ok(vec![
            Measure::higher(&scenario, "handshakes", "1/s", Some(counted.per_second)),
            Measure::lower(&scenario, "client CPU", "us", client_cpu),
            Measure::lower(&scenario, "server CPU", "us", server_cpu),
        ])
    })
}

/// Round trips of a 64-byte request on an established connection, one at a time.
pub(crate) fn latency<S: Stack>(tls: &Tls, samples: usize) -> Result<Vec<Measure>, Failure> {
    run::<S, _, _>(tls, move |addr, _, tls| async move {
        let endpoint = S::endpoint(&tls).map_err(failed("client endpoint"))?;
        let client = S::connect(&endpoint, addr)
            .await
            .map_err(failed("connect"))?;
        let warm_up = samples / 10 + 1;
        let mut rtts = Vec::with_capacity(samples);
        for i in 0..warm_up + samples {
            let started = Instant::now();
            S::request(&client, RESPONSE_LEN as u64)
                .await
                .map_err(failed("request"))?;
            if i >= warm_up {
                rtts.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        S::close(client);
        rtts.sort_by(f64::total_cmp);
        let percentile = |p: usize| {
            rtts.get((rtts.len() * p / 100).min(rtts.len() - 1))
                .copied()
        };
        Ok(vec![
            Measure::lower("latency", "p50", "us", percentile(50)),
            Measure::lower("latency", "p99", "us", percentile(99)),
        ])
    })
}

/// Resident memory per idle connection (client and server side together, both in this
/// process): the growth from opening `connections` connections, divided by their number.
/// Run it in a fresh process, since freed memory from earlier runs would hide growth.
pub(crate) fn idle_memory<S: Stack>(
    tls: &Tls,
    connections: usize,
) -> Result<Vec<Measure>, Failure> {
    run::<S, _, _>(tls, move |addr, _, tls| async move {
        let endpoint = S::endpoint(&tls).map_err(failed("client endpoint"))?;
        let first = S::connect(&endpoint, addr)
            .await
            .map_err(failed("connect"))?;
        S::request(&first, RESPONSE_LEN as u64)
            .await
            .map_err(failed("request"))?;
        let settle = Duration::from_millis(300);
        tokio::time::sleep(settle).await;
        let before = resident_bytes();
        let mut open = Vec::with_capacity(connections);
        for _ in 0..connections {
            open.push(
                S::connect(&endpoint, addr)
                    .await
                    .map_err(failed("connect"))?,
            );
        }
        tokio::time::sleep(settle).await;
        let after = resident_bytes();
        let per_connection = before
            .zip(after)
            .map(|(before, after)| after.saturating_sub(before) as f64 / connections as f64);
        drop(open);
        Ok(vec![Measure::lower(
            "idle memory",
            "per connection",
            "KiB",
            per_connection.map(|bytes| bytes / 1024.0),
        )])
    })
}
