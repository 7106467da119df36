//! The loss scenario: bulk transfers over paths that lose, delay, reorder and rate-limit
//! datagrams (the [`Relay`]), for pairs of a sending and a receiving stack.

use std::time::{Duration, Instant};

use crate::relay::{Loss, Path, Relay};
use crate::report::Measure;
use crate::scenarios::{self, Failure, failed};
use crate::stacks::Stack;
use crate::tls::Tls;

/// One path condition of the loss scenario.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    /// Its name in reports, e.g. `loss 10%`.
    pub(crate) name: String,
    pub(crate) path: Path,
    /// How much one transfer moves.
    pub(crate) bytes: u64,
}

/// What a transfer moves unless a case says otherwise.
const TRANSFER_BYTES: u64 = 10 << 20;
/// What a transfer over a bottleneck without loss moves: enough that slow start is a small
/// part of it, so that the link's use is that of the steady state.
const BOTTLENECK_BYTES: u64 = 50 << 20;

impl Case {
    fn new(name: impl Into<String>, path: Path) -> Self {
        let bytes = if path.rate.is_some() && path.loss == Loss::None {
            BOTTLENECK_BYTES
        } else {
            TRANSFER_BYTES
        };
        Self {
            name: name.into(),
            path,
            bytes,
        }
    }

    /// The case with transfers of `bytes`.
    pub(crate) fn with_bytes(self, bytes: u64) -> Self {
        Self { bytes, ..self }
    }
}

/// Bursts of the Gilbert–Elliott model: the bad state loses half its datagrams and lasts five
/// datagrams on average; the good state loses none and lasts long enough for `mean` loss.
fn bursts(mean: f64) -> Loss {
    let (to_good, loss_bad) = (0.2, 0.5);
    let bad_share = mean / loss_bad;
    Loss::GilbertElliott {
        to_bad: to_good * bad_share / (1.0 - bad_share),
        to_good,
        loss_good: 0.0,
        loss_bad,
    }
}

/// The path conditions: random loss of single datagrams on loopback from 0 to 30 %, bursty
/// loss, reordering, random loss over a 20 ms round trip, and a 100 Mbit/s bottleneck with a
/// queue of one bandwidth-delay product over 20 ms, with and without loss.
pub(crate) fn cases(smoke: bool) -> Vec<Case> {
    let loopback = Path::delay(Duration::ZERO);
    let wan = Path::delay(Duration::from_millis(10));
    let random = |path: Path, percent: u32| Path {
        loss: if percent == 0 {
            Loss::None
        } else {
            Loss::Random(f64::from(percent) / 100.0)
        },
        ..path
    };
    if smoke {
        return vec![
            Case::new("loss 5%", random(loopback, 5)).with_bytes(1 << 20),
            Case::new(
                "100Mbit/s rtt=20ms loss 1%",
                random(wan, 1).bottleneck(100_000_000),
            )
            .with_bytes(1 << 20),
        ];
    }
    let mut cases: Vec<Case> = [0, 1, 2, 5, 10, 20, 30]
        .into_iter()
        .map(|percent| Case::new(format!("loss {percent}%"), random(loopback, percent)))
        .collect();
    for percent in [2, 5] {
        cases.push(Case::new(
            format!("bursts {percent}%"),
            Path {
                loss: bursts(f64::from(percent) / 100.0),
                ..loopback
            },
        ));
    }
    cases.push(Case::new(
        "reorder 5% by 1ms",
        Path {
            reorder: 0.05,
            reorder_by: Duration::from_millis(1),
            ..loopback
        },
    ));
    for percent in [2, 5] {
        cases.push(Case::new(
            format!("rtt=20ms loss {percent}%"),
            random(wan, percent),
        ));
    }
    for percent in [0, 1] {
        cases.push(Case::new(
            format!("100Mbit/s rtt=20ms loss {percent}%"),
            random(wan, percent).bottleneck(100_000_000),
        ));
    }
    cases
}

/// The longest a transfer may take; one that takes longer counts as not done, its time as
/// infinite.
pub(crate) const TRANSFER_LIMIT: Duration = Duration::from_secs(60);

/// The case's bytes sent by a client of `Sender` to a server of `Receiver` over its path: the
/// time from the first Initial to the server's answer (the handshake included, as a user
/// waits for it), goodput, the sender's lost bytes and probe timeouts, and at a bottleneck
/// its use after the handshake and the queueing delay.
pub(crate) fn transfer<Sender: Stack, Receiver: Stack>(
    tls: &Tls,
    case: &Case,
    seed: u64,
) -> Result<Vec<Measure>, Failure> {
    let case = case.clone();
    let bytes = case.bytes;
    scenarios::run::<Receiver, _, _>(tls, move |addr, _, tls| async move {
        let relay = Relay::start(addr, case.path, seed).map_err(failed("relay"))?;
        let endpoint = Sender::endpoint(&tls).map_err(failed("client endpoint"))?;
        let started = Instant::now();
        let mut connected = None;
        let moved = tokio::time::timeout(TRANSFER_LIMIT, async {
            let client = Sender::connect(&endpoint, relay.addr())
                .await
                .map_err(failed("connect"))?;
            connected = Some(Instant::now());
            Sender::request(&client, bytes)
                .await
                .map_err(failed("transfer"))?;
            Ok::<_, Failure>(client)
        })
        .await;
        let (elapsed, after_handshake) = (
            started.elapsed().as_secs_f64(),
            connected.map(|at| at.elapsed().as_secs_f64()),
        );
        let scenario = case.name.as_str();
        let (client, time, transfer_time) = match moved {
            Ok(Ok(client)) => (Some(client), elapsed, after_handshake.unwrap_or(elapsed)),
            Ok(Err(failure)) => return Err(failure),
            Err(_) => (None, f64::INFINITY, f64::INFINITY),
        };
        let goodput = bytes as f64 / 1e6 / time;
        let counters = client
            .as_ref()
            .and_then(|c| Sender::send_counters(&endpoint, c));
        let path = relay.stats();
        let mut measures = vec![
            Measure::lower(scenario, "time", "s", Some(time)),
            Measure::higher(scenario, "goodput", "MB/s", Some(goodput)),
            Measure::lower(
                scenario,
                "bytes lost",
                "% of sent",
                counters.map(|c| 100.0 * c.bytes_lost as f64 / c.bytes_sent.max(1) as f64),
            ),
            Measure::lower(
                scenario,
                "probe timeouts",
                "",
                counters.and_then(|c| c.probe_timeouts.map(|n| n as f64)),
            ),
        ];
        if let Some(rate) = case.path.rate {
            measures.push(Measure::higher(
                scenario,
                "link use",
                "%",
                Some(100.0 * bytes as f64 * 8.0 / transfer_time / rate as f64),
            ));
            measures.push(Measure::lower(
                scenario,
                "queueing delay",
                "ms",
                Some(path.mean_queueing.as_secs_f64() * 1e3),
            ));
        }
        if let Some(client) = client {
            Sender::close(client);
        }
        Ok(measures)
    })
}
