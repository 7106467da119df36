//! `qstream-bench`: qstream, quinn and TCP+TLS side by side on loopback, in turns, with
//! medians and ratios. See the README for how to run it and the latest figures.

mod harness;
mod hq_quinn;
mod loss;
mod processes;
mod relay;
mod report;
mod resume;
mod scenarios;
mod stacks;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use report::{Measure, Report};
use scenarios::Failure;
use stacks::{Bbr, NewReno, Qstream, Quinn, Stack, TcpTls};
use tls::Tls;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Benchmarks qstream against quinn and TCP+TLS on loopback"
)]
struct Args {
    /// Tiny sizes, one round: checks that every scenario runs, measures nothing useful.
    #[arg(long)]
    smoke: bool,
    /// Rounds; every stack runs every scenario once per round, in turns.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Scenarios to run (all by default).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Stacks to run (all by default); the first is the one ratios are about.
    #[arg(long, value_delimiter = ',')]
    stacks: Vec<StackName>,
    /// Also runs churn through a relay that holds every datagram for half this round-trip
    /// time, in microseconds, each way (the QUIC stacks only: the relay carries datagrams).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rtt_us: Option<u64>,
    /// Runs only the loss cases whose names contain one of these (all by default), e.g.
    /// `--cases "loss 10%,bursts"`; one that starts with `=` names a case exactly
    /// (`=loss 1%` is not `100Mbit/s rtt=20ms loss 1%`).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Runs only these sender→receiver pairs in the loss scenario (all by default), e.g.
    /// `--pairs qstream,quinn-to-qstream,quinn`.
    #[arg(long, value_delimiter = ',')]
    pairs: Vec<LossPair>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measures idle memory of one stack in this fresh process and prints the JSON figures
    /// (run by the benchmark itself).
    #[command(hide = true)]
    MemoryChild {
        #[arg(long)]
        stack: StackName,
        #[arg(long)]
        connections: usize,
    },
    /// Serves a directory over hq-interop with quinn (the `cli` scenarios' quinn server).
    #[command(hide = true)]
    HqServe {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Downloads one URL over hq-interop with quinn (the `cli` scenarios' quinn client).
    #[command(hide = true)]
    HqGet {
        url: String,
        #[arg(short = 'o')]
        output: PathBuf,
        /// The server's certificate (PEM), the only one trusted.
        #[arg(long)]
        ca: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Bulk,
    Churn,
    Handshakes,
    Memory,
    Latency,
    /// Bulk transfers over lossy, delayed and narrow paths, for pairs of sending and
    /// receiving stacks (QUIC only).
    Loss,
    /// The tools as processes on a file: `qstream serve`/`get` against a quinn hq-interop
    /// server and client, `send`/`recv` and `demo`.
    Cli,
    /// Downloads as processes inside a network namespace whose nftables rules drop datagrams
    /// (root, iproute2 and nftables needed; not run by default).
    LossNetns,
    /// Time to the first byte of an answer on a connection that resumes an earlier one's
    /// session, the request in 0-RTT or after the handshake (QUIC only), on loopback and at
    /// 1 ms and 20 ms round trips.
    Resume,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StackName {
    Qstream,
    Quinn,
    Tcp,
}

impl StackName {
    const ALL: [StackName; 3] = [Self::Qstream, Self::Quinn, Self::Tcp];

    fn label(self) -> &'static str {
        match self {
            Self::Qstream => <Qstream>::NAME,
            Self::Quinn => Quinn::NAME,
            Self::Tcp => TcpTls::NAME,
        }
    }
}

/// How big each scenario is.
struct Sizes {
    bulk_bytes: u64,
    churn: Duration,
    handshakes: Duration,
    idle_connections: usize,
    latency_samples: usize,
    /// The file the `cli` scenario moves through each tool.
    cli_bytes: u64,
    /// The file `loss-netns` downloads.
    netns_bytes: u64,
}

impl Sizes {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                bulk_bytes: 4 << 20,
                churn: Duration::from_millis(200),
                handshakes: Duration::from_millis(200),
                idle_connections: 20,
                latency_samples: 50,
                cli_bytes: 8 << 20,
                netns_bytes: 1 << 20,
            }
        } else {
            Self {
                bulk_bytes: 1 << 30,
                churn: Duration::from_secs(3),
                handshakes: Duration::from_secs(3),
                idle_connections: 1000,
                latency_samples: 5000,
                cli_bytes: 1 << 30,
                netns_bytes: (10 << 20) + 1024,
            }
        }
    }
}

/// A sending and a receiving stack of the loss scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LossPair {
    Qstream,
    QstreamToQuinn,
    QuinnToQstream,
    QstreamNewReno,
    QstreamBbr,
    Quinn,
}

impl LossPair {
    const ALL: [LossPair; 6] = [
        Self::Qstream,
        Self::QstreamToQuinn,
        Self::QuinnToQstream,
        Self::QstreamNewReno,
        Self::QstreamBbr,
        Self::Quinn,
    ];
    /// What the ratios are about.
    const REFERENCE: &'static str = "quinn";

    fn label(self) -> &'static str {
        match self {
            Self::Qstream => <Qstream>::NAME,
            Self::QstreamToQuinn => "qstream→quinn",
            Self::QuinnToQstream => "quinn→qstream",
            Self::QstreamNewReno => Qstream::<NewReno>::NAME,
            Self::QstreamBbr => Qstream::<Bbr>::NAME,
            Self::Quinn => Self::REFERENCE,
        }
    }

    /// Whether the pair runs only stacks among `stacks`.
    fn runs_on(self, stacks: &[StackName]) -> bool {
        let needs: &[StackName] = match self {
            Self::Qstream | Self::QstreamNewReno | Self::QstreamBbr => &[StackName::Qstream],
            Self::Quinn => &[StackName::Quinn],
            Self::QstreamToQuinn | Self::QuinnToQstream => &[StackName::Qstream, StackName::Quinn],
        };
        needs.iter().all(|s| stacks.contains(s))
    }

    fn transfer(self, tls: &Tls, case: &loss::Case, seed: u64) -> Result<Vec<Measure>, Failure> {
        match self {
            Self::Qstream => loss::transfer::<Qstream, Qstream>(tls, case, seed),
            Self::QstreamToQuinn => loss::transfer::<Qstream, Quinn>(tls, case, seed),
            Self::QuinnToQstream => loss::transfer::<Quinn, Qstream>(tls, case, seed),
            Self::QstreamNewReno => {
                loss::transfer::<Qstream<NewReno>, Qstream<NewReno>>(tls, case, seed)
            }
            Self::QstreamBbr => loss::transfer::<Qstream<Bbr>, Qstream<Bbr>>(tls, case, seed),
            Self::Quinn => loss::transfer::<Quinn, Quinn>(tls, case, seed),
        }
    }
}

/// Runs `scenario` for the stack `S`; churn also over a delayed path of round-trip time `rtt`,
/// if any.
fn run_scenario<S: Stack>(
    scenario: Scenario,
    tls: &Tls,
    sizes: &Sizes,
    rtt: Option<Duration>,
) -> Vec<(String, Result<Vec<Measure>, Failure>)> {
    match scenario {
        Scenario::Bulk => vec![("bulk".into(), scenarios::bulk::<S>(tls, sizes.bulk_bytes))],
        Scenario::Churn => {
            let paths = std::iter::once(None).chain(rtt.filter(|_| S::OVER_UDP).map(Some));
            paths
                .flat_map(|rtt| [1, 50, 100].map(|c| (c, rtt)))
                .map(|(c, rtt)| {
                    let result = scenarios::churn::<S>(tls, c, rtt, sizes.churn);
                    (scenarios::churn_name(c, rtt), result)
                })
                .collect()
        }
        Scenario::Handshakes => [1, 8]
            .into_iter()
            .map(|c| {
                let result = scenarios::handshakes::<S>(tls, c, sizes.handshakes);
                (format!("handshakes c={c}"), result)
            })
            .collect(),
        Scenario::Latency => vec![(
            "latency".into(),
            scenarios::latency::<S>(tls, sizes.latency_samples),
        )],
        Scenario::Memory
        | Scenario::Loss
        | Scenario::Cli
        | Scenario::LossNetns
        | Scenario::Resume => {
            unreachable!("idle memory runs in a child process, the others in pairs of stacks")
        }
    }
}

/// Runs the idle-memory scenario of `stack` in a fresh child process.
fn memory_in_child(stack: StackName, connections: usize) -> Result<Vec<Measure>, Failure> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let output = std::process::Command::new(exe)
        .args(["memory-child", "--stack"])
        .arg(stack.to_possible_value().expect("named").get_name())
        .args(["--connections", &connections.to_string()])
        .output()
        .map_err(|e| format!("memory child: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "memory child failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let kib: Option<f64> = String::from_utf8_lossy(&output.stdout).trim().parse().ok();
    Ok(vec![Measure::lower(
        "idle memory",
        "per connection",
        "KiB",
        kib,
    )])
}

fn memory_child(stack: StackName, connections: usize) -> ExitCode {
    let result = Tls::new()
        .map_err(|e| e.to_string())
        .and_then(|tls| match stack {
            StackName::Qstream => scenarios::idle_memory::<Qstream>(&tls, connections),
            StackName::Quinn => scenarios::idle_memory::<Quinn>(&tls, connections),
            StackName::Tcp => scenarios::idle_memory::<TcpTls>(&tls, connections),
        });
    match result {
        Ok(measures) => {
            let kib = measures.first().and_then(|m| m.value);
            println!("{}", kib.map_or("nan".to_owned(), |k| k.to_string()));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

/// Where the benchmark ran, for the report.
fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned());
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "kernel": kernel,
        "pinned": harness::pinned(),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::MemoryChild { stack, connections }) => {
            return memory_child(stack, connections);
        }
        Some(Command::HqServe {
            listen,
            root,
            cert,
            key,
        }) => return exit_with(hq_quinn::serve(listen, &root, &cert, &key)),
        Some(Command::HqGet { url, output, ca }) => {
            return exit_with(hq_quinn::get(&url, &output, &ca));
        }
        None => {}
    }
    let tls = match Tls::new() {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("qstream-bench: cannot set up TLS: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sizes = Sizes::new(args.smoke);
    let rtt = args.rtt_us.map(Duration::from_micros);
    let rounds = if args.smoke { 1 } else { args.rounds };
    let scenarios = if args.scenarios.is_empty() {
        vec![
            Scenario::Bulk,
            Scenario::Churn,
            Scenario::Handshakes,
            Scenario::Memory,
            Scenario::Latency,
            Scenario::Loss,
            Scenario::Cli,
            Scenario::Resume,
        ]
    } else {
        args.scenarios.clone()
    };
    let stacks = if args.stacks.is_empty() {
        StackName::ALL.to_vec()
    } else {
        args.stacks.clone()
    };
    let mut report = Report::new(stacks.iter().map(|s| s.label()).collect());
    let pairs: Vec<LossPair> = LossPair::ALL
        .into_iter()
        .filter(|p| p.runs_on(&stacks))
        .filter(|p| args.pairs.is_empty() || args.pairs.contains(p))
        .collect();
    let mut loss_report = Report::against(
        LossPair::ALL.iter().map(|p| p.label()).collect(),
        LossPair::REFERENCE,
    );
    let loss_cases: Vec<loss::Case> = loss::cases(args.smoke)
        .into_iter()
        .filter(|c| {
            args.cases.is_empty()
                || args.cases.iter().any(|n| match n.strip_prefix('=') {
                    Some(exact) => c.name == exact,
                    None => c.name.contains(n.as_str()),
                })
        })
        .collect();
    let mut resume_report = Report::against(
        resume::ResumeStack::ALL.iter().map(|s| s.label()).collect(),
        "quinn",
    );
    let mut cli_report = Report::against(
        processes::CLI_PAIRS
            .iter()
            .map(|&(s, c)| processes::pair_label(s, c))
            .collect(),
        "quinn",
    );
    let mut netns_report = Report::against(
        processes::NETNS_PAIRS
            .iter()
            .map(|&(s, c)| processes::pair_label(s, c))
            .collect(),
        "quinn",
    );
    let runs_processes = scenarios
        .iter()
        .any(|s| matches!(s, Scenario::Cli | Scenario::LossNetns));
    let programs = if runs_processes {
        match processes::Programs::find() {
            Ok(programs) => Some(programs),
            Err(failure) => {
                eprintln!("qstream-bench: {failure}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    for round in 0..rounds {
        for &scenario in &scenarios {
            if let (Scenario::Cli, Some(programs)) = (scenario, &programs) {
                run_cli(round, sizes.cli_bytes, programs, &mut cli_report);
                continue;
            }
            if let (Scenario::LossNetns, Some(programs)) = (scenario, &programs) {
                run_loss_netns(round, sizes.netns_bytes, programs, &mut netns_report);
                continue;
            }
            if scenario == Scenario::Resume {
                let samples = if args.smoke { 2 } else { 10 };
                for case in resume::cases() {
                    for turn in 0..resume::ResumeStack::ALL.len() {
                        let all = resume::ResumeStack::ALL;
                        let stack = all[(turn + round as usize) % all.len()];
                        eprintln!(
                            "round {}/{rounds}: {}, {}",
                            round + 1,
                            case.name,
                            stack.label()
                        );
                        match resume::first_byte(stack, &tls, &case, samples) {
                            Ok(measures) => resume_report.add(stack.label(), measures),
                            Err(failure) => {
                                eprintln!("  failed: {failure}");
                                resume_report.fail(format!(
                                    "{} {}: {failure}",
                                    stack.label(),
                                    case.name
                                ));
                            }
                        }
                    }
                }
                continue;
            }
            if scenario == Scenario::Loss {
                for case in &loss_cases {
                    for turn in 0..pairs.len() {
                        let pair = pairs[(turn + round as usize) % pairs.len()];
                        let seed = u64::from(round) + 1;
                        eprintln!(
                            "round {}/{rounds}: {}, {}",
                            round + 1,
                            case.name,
                            pair.label()
                        );
                        match pair.transfer(&tls, case, seed) {
                            Ok(measures) => loss_report.add(pair.label(), measures),
                            Err(failure) => {
                                eprintln!("  failed: {failure}");
                                loss_report.fail(format!(
                                    "{} {}: {failure}",
                                    pair.label(),
                                    case.name
                                ));
                            }
                        }
                    }
                }
                continue;
            }
            // Turns: each round starts with a different stack.
            for turn in 0..stacks.len() {
                let stack = stacks[(turn + round as usize) % stacks.len()];
                let results = match (scenario, stack) {
                    (Scenario::Memory, _) => vec![(
                        "idle memory".to_owned(),
                        memory_in_child(stack, sizes.idle_connections),
                    )],
                    (_, StackName::Qstream) => run_scenario::<Qstream>(scenario, &tls, &sizes, rtt),
                    (_, StackName::Quinn) => run_scenario::<Quinn>(scenario, &tls, &sizes, rtt),
                    (_, StackName::Tcp) => run_scenario::<TcpTls>(scenario, &tls, &sizes, rtt),
                };
                for (name, result) in results {
                    eprintln!("round {}/{rounds}: {name}, {}", round + 1, stack.label());
                    match result {
                        Ok(measures) => report.add(stack.label(), measures),
                        Err(failure) => {
                            eprintln!("  failed: {failure}");
                            report.fail(format!("{} {name}: {failure}", stack.label()));
                        }
                    }
                }
            }
        }
    }
    if !report.is_empty() {
        print!("{}", report.table());
    }
    if !loss_report.is_empty() {
        println!(
            "\nloss: {} per transfer ({} over a bottleneck without loss), ∞ = not done in {} s",
            mib(loss_cases.iter().map(|c| c.bytes).min().unwrap_or(0)),
            mib(loss_cases.iter().map(|c| c.bytes).max().unwrap_or(0)),
            loss::TRANSFER_LIMIT.as_secs()
        );
        print!("{}", loss_report.table());
    }
    if !resume_report.is_empty() {
        println!(
            "\nresume: a {}-byte request on a new connection that resumes an earlier session, \
             median of {} connections each way",
            64,
            if args.smoke { 2 } else { 10 }
        );
        print!("{}", resume_report.table());
    }
    if !cli_report.is_empty() {
        println!(
            "\ncli: {} through each tool, as processes",
            mib(sizes.cli_bytes)
        );
        print!("{}", cli_report.table());
    }
    if !netns_report.is_empty() {
        println!(
            "\nloss-netns: {} downloads (server ← client) in a network namespace with nftables \
             dropping UDP at random, ∞ = not done in {} s",
            mib(sizes.netns_bytes),
            loss::TRANSFER_LIMIT.as_secs()
        );
        print!("{}", netns_report.table());
    }
    let context = serde_json::json!({
        "machine": machine(),
        "rounds": rounds,
        "smoke": args.smoke,
        "bulk_bytes": sizes.bulk_bytes,
        "idle_connections": sizes.idle_connections,
        "latency_samples": sizes.latency_samples,
        "churn_seconds": sizes.churn.as_secs_f64(),
        "churn_rtt_us": args.rtt_us,
        "handshake_seconds": sizes.handshakes.as_secs_f64(),
    });
    if let Some(path) = &args.json {
        let mut json = report.json(context);
        json["loss"] = loss_report.json(serde_json::json!({}));
        json["cli"] = cli_report.json(serde_json::json!({ "bytes": sizes.cli_bytes }));
        json["loss_netns"] = netns_report.json(serde_json::json!({ "bytes": sizes.netns_bytes }));
        json["resume"] = resume_report.json(serde_json::json!({}));
        let text = serde_json::to_string_pretty(&json).expect("JSON");
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("qstream-bench: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let failures = report.failures().len()
        + loss_report.failures().len()
        + cli_report.failures().len()
        + netns_report.failures().len();
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("qstream-bench: {failures} runs failed");
        ExitCode::FAILURE
    }
}

/// One round of the `cli` scenario: each download pair, in turns, then send/recv and demo.
fn run_cli(round: u32, bytes: u64, programs: &processes::Programs, report: &mut Report) {
    let work = match processes::Workspace::new(bytes) {
        Ok(work) => work,
        Err(failure) => {
            report.fail(format!("cli: {failure}"));
            return;
        }
    };
    let pairs = processes::CLI_PAIRS;
    for turn in 0..pairs.len() {
        let (server, client) = pairs[(turn + round as usize) % pairs.len()];
        let label = processes::pair_label(server, client);
        eprintln!("round {}: cli download, {label}", round + 1);
        match processes::cli_download(server, client, programs, &work) {
            Ok(measures) => report.add(label, measures),
            Err(failure) => {
                eprintln!("  failed: {failure}");
                report.fail(format!("cli {label}: {failure}"));
            }
        }
    }
    eprintln!("round {}: cli send/recv and demo", round + 1);
    match processes::cli_pipe_and_demo(programs, &work) {
        Ok(measures) => report.add("qstream", measures),
        Err(failure) => {
            eprintln!("  failed: {failure}");
            report.fail(format!("cli send/recv: {failure}"));
        }
    }
}

/// One round of the `loss-netns` scenario: both nftables hooks, each loss rate, each pair.
fn run_loss_netns(round: u32, bytes: u64, programs: &processes::Programs, report: &mut Report) {
    let work = match processes::Workspace::new(bytes) {
        Ok(work) => work,
        Err(failure) => {
            report.fail(format!("loss-netns: {failure}"));
            return;
        }
    };
    for hook in ["output", "input"] {
        for percent in [2, 10, 20] {
            let scenario = format!("{hook} loss {percent}%");
            let namespace = match processes::LossyNamespace::create(percent * 10, hook) {
                Ok(namespace) => namespace,
                Err(failure) => {
                    report.fail(format!("loss-netns: {failure}"));
                    return;
                }
            };
            let pairs = processes::NETNS_PAIRS;
            for turn in 0..pairs.len() {
                let (server, client) = pairs[(turn + round as usize) % pairs.len()];
                let label = processes::pair_label(server, client);
                eprintln!("round {}: {scenario}, {label}", round + 1);
                match processes::netns_download(
                    server, client, programs, &work, &namespace, &scenario,
                ) {
                    Ok(measures) => report.add(label, measures),
                    Err(failure) => {
                        eprintln!("  failed: {failure}");
                        report.fail(format!("{scenario} {label}: {failure}"));
                    }
                }
            }
        }
    }
}

fn exit_with(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("qstream-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `bytes` in MiB, for headings.
fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}
