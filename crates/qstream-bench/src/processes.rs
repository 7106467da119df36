//! Scenarios that run the tools as a user does, as whole processes on real files: `qstream
//! serve` and `qstream get`, `qstream send` and `recv`, `qstream demo`, and a minimal quinn
//! hq-interop server and client of this benchmark ([`crate::hq_quinn`]) beside them. Figures
//! are per process: wall time from start to exit, and the CPU time the kernel accounts to the
//! process (user and system).
//!
//! `cli` downloads a file on loopback; `loss-netns` downloads one inside a private network
//! namespace whose nftables rules drop datagrams at random (root only).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::Measure;
use crate::scenarios::Failure;

/// The programs the scenarios run.
#[derive(Clone, Debug)]
pub(crate) struct Programs {
    /// The `qstream` binary: `QSTREAM_BIN`, or the one beside this benchmark's executable.
    pub(crate) qstream: PathBuf,
    /// This benchmark's executable, for its quinn server and client.
    pub(crate) bench: PathBuf,
}

impl Programs {
    pub(crate) fn find() -> Result<Self, Failure> {
        let bench = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let qstream = match std::env::var_os("QSTREAM_BIN") {
            Some(path) => PathBuf::from(path),
            None => bench.with_file_name("qstream"),
        };
        if !qstream.exists() {
            return Err(format!(
                "no qstream binary at {}: build it (cargo build --release -p qstream-cli) or \
                 set QSTREAM_BIN",
                qstream.display()
            ));
        }
        Ok(Self { qstream, bench })
    }
}

/// A scratch directory with the file to serve and a certificate for the quinn server,
/// removed when dropped. Kept in /dev/shm where it exists, so that the disk is not measured.
pub(crate) struct Workspace {
    dir: PathBuf,
    /// The file the servers serve, under `www/`.
    pub(crate) file_name: &'static str,
    pub(crate) bytes: u64,
}

impl Workspace {
    pub(crate) fn new(bytes: u64) -> Result<Self, Failure> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("qstream-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let io = |e: std::io::Error| format!("scratch directory {}: {e}", dir.display());
        std::fs::create_dir_all(dir.join("www")).map_err(io)?;
        // Not compressible, not all zeros: what a user's file is like.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(dir.join("www/data.bin")).map_err(io)?);
        let mut block = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            for word in block.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
            }
            let n = left.min(block.len() as u64) as usize;
            std::io::Write::write_all(&mut file, &block[..n]).map_err(io)?;
            left -= n as u64;
        }
        std::io::Write::flush(&mut file).map_err(io)?;
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("cert.pem"), cert.pem()).map_err(io)?;
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).map_err(io)?;
        Ok(Self {
            dir,
            file_name: "data.bin",
            bytes,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A fresh output path; any earlier output is removed.
    fn output(&self) -> PathBuf {
        let path = self.path("out.bin");
        let _ = std::fs::remove_file(&path);
        path
    }

    /// Whether the output holds exactly the served file.
    fn output_matches(&self) -> bool {
        let (a, b) = (self.path("out.bin"), self.path("www").join(self.file_name));
        match (std::fs::metadata(&a), std::fs::metadata(&b)) {
            (Ok(x), Ok(y)) if x.len() == y.len() => std::fs::read(a).ok() == std::fs::read(b).ok(),
            _ => false,
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU seconds of this process's children that were waited for, so far (Linux:
/// /proc/self/stat's cutime and cstime).
fn children_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A running process; killed when dropped.
struct Running(Child);

impl Running {
    /// Waits for its exit; the CPU seconds it used, where the system tells.
    fn wait(mut self) -> (std::io::Result<std::process::ExitStatus>, Option<f64>) {
        let before = children_cpu();
        let status = self.0.wait();
        let cpu = children_cpu()
            .zip(before)
            .map(|(after, before)| after - before);
        (status, cpu)
    }

    /// Ends it (SIGKILL) and returns the CPU seconds it used.
    fn stop(mut self) -> Option<f64> {
        let _ = self.0.kill();
        self.wait().1
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `output` up to the first line that starts with `prefix`; returns the lines before it
/// and that one, or `None` if it never comes. The rest is drained on a thread of its own, so
/// that the process never fails writing to a closed pipe.
fn read_until(output: impl std::io::Read + Send + 'static, prefix: &str) -> Option<Vec<String>> {
    let mut lines = BufReader::new(output).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.ok()?;
        let done = line.starts_with(prefix);
        seen.push(line);
        if done {
            std::thread::spawn(move || lines.for_each(drop));
            return Some(seen);
        }
    }
    None
}

/// How a command is started: in a network namespace or not.
#[derive(Clone, Debug)]
struct Launcher {
    netns: Option<String>,
}

impl Launcher {
    fn command(&self, program: &Path) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(program);
                command
            }
        }
    }
}

/// The servers and clients of a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tool {
    Qstream,
    Quinn,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::Qstream => "qstream",
            Self::Quinn => "quinn",
        }
    }
}

/// Starts a server of `tool` on a free port; returns it once listening, with its address.
fn start_server(
    tool: Tool,
    programs: &Programs,
    launcher: &Launcher,
    work: &Workspace,
    extra: &[&str],
) -> Result<(Running, SocketAddr), Failure> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let www = work.path("www");
    let mut command = match tool {
        Tool::Qstream => {
            let mut c = launcher.command(&programs.qstream);
            c.args(["serve", "--listen", &listen, "--root"])
                .arg(&www)
                .arg("--cert")
                .arg(work.path("cert.pem"))
                .arg("--key")
                .arg(work.path("key.pem"));
            c
        }
        Tool::Quinn => {
            let mut c = launcher.command(&programs.bench);
            c.args(["hq-serve", "--listen", &listen, "--root"])
                .arg(&www)
                .arg("--cert")
                .arg(work.path("cert.pem"))
                .arg("--key")
                .arg(work.path("key.pem"));
            c
        }
    };
    let mut child = command
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start the {} server: {e}", tool.name()))?;
    let stdout = child.stdout.take().expect("piped");
    let running = Running(child);
    match read_until(stdout, "serving ") {
        Some(_) => Ok((running, listen.parse().expect("an address"))),
        None => Err(format!("the {} server did not start", tool.name())),
    }
}

/// One download of the workspace's file by a `client` from a `server`: wall time, and each
/// process's CPU seconds. `None` for the time when it did not finish within `limit`.
struct Download {
    seconds: Option<f64>,
    client_cpu: Option<f64>,
    server_cpu: Option<f64>,
}

fn download(
    server: Tool,
    client: Tool,
    programs: &Programs,
    launcher: &Launcher,
    work: &Workspace,
    limit: Duration,
) -> Result<Download, Failure> {
    let (server_process, addr) = start_server(server, programs, launcher, work, &[])?;
    let url = format!("https://{addr}/{}", work.file_name);
    let output = work.output();
    let mut command = match client {
        Tool::Qstream => {
            let mut c = launcher.command(&programs.qstream);
            c.args(["get", "--ca"])
                .arg(work.path("cert.pem"))
                .arg("-o")
                .arg(&output)
                .arg(&url);
            c
        }
        Tool::Quinn => {
            let mut c = launcher.command(&programs.bench);
            c.args(["hq-get", &url, "-o"])
                .arg(&output)
                .arg("--ca")
                .arg(work.path("cert.pem"));
            c
        }
    };
    let started = Instant::now();
    let cpu_before = children_cpu();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start the {} client: {e}", client.name()))?;
    let mut running = Running(child);
    // Polled rather than waited for, to give up after `limit`; reaping it adds its CPU time
    // to this process's children's.
    let status = loop {
        match running.0.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > limit => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => return Err(error.to_string()),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let client_cpu = match status {
        Some(_) => children_cpu()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
        None => running.stop(),
    };
    let server_cpu = server_process.stop();
    let finished = status.is_some();
    if let Some(status) = status {
        if !status.success() || !work.output_matches() {
            return Err(format!(
                "{} ← {}: the download failed ({status})",
                server.name(),
                client.name()
            ));
        }
    }
    Ok(Download {
        seconds: finished.then_some(seconds),
        client_cpu,
        server_cpu,
    })
}

/// The pairs of the `cli` scenario, as "server ← client" columns.
pub(crate) const CLI_PAIRS: [(Tool, Tool); 3] = [
    (Tool::Qstream, Tool::Qstream),
    (Tool::Quinn, Tool::Qstream),
    (Tool::Quinn, Tool::Quinn),
];

/// The column of a pair.
pub(crate) fn pair_label(server: Tool, client: Tool) -> &'static str {
    match (server, client) {
        (Tool::Qstream, Tool::Qstream) => "qstream",
        (Tool::Quinn, Tool::Qstream) => "quinn ← qstream get",
        (Tool::Qstream, Tool::Quinn) => "qstream ← quinn get",
        (Tool::Quinn, Tool::Quinn) => "quinn",
    }
}

/// `qstream serve` and `qstream get` (and the quinn pair) download the workspace's file on
/// loopback: MB/s and CPU seconds per GB of each process.
pub(crate) fn cli_download(
    server: Tool,
    client: Tool,
    programs: &Programs,
    work: &Workspace,
) -> Result<Vec<Measure>, Failure> {
    let run = download(
        server,
        client,
        programs,
        &Launcher { netns: None },
        work,
        Duration::from_secs(300),
    )?;
    let gb = work.bytes as f64 / 1e9;
    let scenario = "cli download";
    Ok(vec![
        Measure::higher(
            scenario,
            "throughput",
            "MB/s",
            run.seconds.map(|s| work.bytes as f64 / 1e6 / s),
        ),
        Measure::lower(
            scenario,
            "client CPU",
            "s/GB",
            run.client_cpu.map(|c| c / gb),
        ),
        Measure::lower(
            scenario,
            "server CPU",
            "s/GB",
            run.server_cpu.map(|c| c / gb),
        ),
    ])
}

/// `qstream send` into `qstream recv` of the workspace's file, and `qstream demo` of as many
/// bytes in one process: MB/s of each, CPU per GB of send and recv.
pub(crate) fn cli_pipe_and_demo(
    programs: &Programs,
    work: &Workspace,
) -> Result<Vec<Measure>, Failure> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let output = work.output();
    let mut recv = Command::new(&programs.qstream)
        .args(["recv", "--listen", &listen, "-o"])
        .arg(&output)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start qstream recv: {e}"))?;
    let stderr = recv.stderr.take().expect("piped");
    let recv = Running(recv);
    let fingerprint = read_until(stderr, "listening on")
        .and_then(|lines| {
            lines
                .iter()
                .find_map(|l| Some(l.split("fingerprint ").nth(1)?.trim().to_owned()))
        })
        .ok_or("qstream recv did not start")?;
    let started = Instant::now();
    let send = Command::new(&programs.qstream)
        .args(["send", &listen])
        .arg(work.path("www").join(work.file_name))
        .args(["--fingerprint", &fingerprint])
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start qstream send: {e}"))?;
    let (status, send_cpu) = Running(send).wait();
    let seconds = started.elapsed().as_secs_f64();
    let (recv_status, recv_cpu) = recv.wait();
    let ok = status.is_ok_and(|s| s.success()) && recv_status.is_ok_and(|s| s.success());
    if !ok || !work.output_matches() {
        return Err("qstream send into qstream recv failed".into());
    }
    let started = Instant::now();
    let demo = Command::new(&programs.qstream)
        .args(["demo", "--quiet", "--bytes", &work.bytes.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("qstream demo: {e}"))?;
    let demo_seconds = started.elapsed().as_secs_f64();
    if !demo.success() {
        return Err("qstream demo failed".into());
    }
    let gb = work.bytes as f64 / 1e9;
    let mb = work.bytes as f64 / 1e6;
    Ok(vec![
        Measure::higher("cli send/recv", "throughput", "MB/s", Some(mb / seconds)),
        Measure::lower(
            "cli send/recv",
            "send CPU",
            "s/GB",
            send_cpu.map(|c| c / gb),
        ),
        Measure::lower(
            "cli send/recv",
            "recv CPU",
            "s/GB",
            recv_cpu.map(|c| c / gb),
        ),
        Measure::higher("cli demo", "throughput", "MB/s", Some(mb / demo_seconds)),
    ])
}

/// A network namespace with only loopback, whose nftables rules drop `permille` of the UDP
/// datagrams at random on `hook` (input or output); removed when dropped.
pub(crate) struct LossyNamespace {
    name: String,
}

impl LossyNamespace {
    pub(crate) fn create(permille: u32, hook: &str) -> Result<Self, Failure> {
        let name = format!("qstream-bench-{}", std::process::id());
        let run = |args: &[&str]| -> Result<(), Failure> {
            let status = Command::new(args[0])
                .args(&args[1..])
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("{}: {e}", args[0]))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{} failed (root, iproute2 and nftables needed)",
                    args.join(" ")
                ))
            }
        };
        // A namespace left by an earlier run of this process ID; none, usually.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name])?;
        let namespace = Self { name: name.clone() };
        run(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        if hook == "input" {
            // One datagram per packet: a drop on input then loses one datagram, as a real
            // path does, not a whole GSO batch.
            run(&["ip", "-n", &name, "link", "set", "lo", "gso_max_segs", "1"])?;
        }
        let nft = |rule: &str| run(&["ip", "netns", "exec", &name, "nft", rule]);
        nft("add table inet loss")?;
        nft(&format!(
            "add chain inet loss lossy {{ type filter hook {hook} priority 0; }}"
        ))?;
        nft(&format!(
            "add rule inet loss lossy meta l4proto udp numgen random mod 1000 lt {permille} drop"
        ))?;
        Ok(namespace)
    }
}

impl Drop for LossyNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The pairs of the `loss-netns` scenario.
pub(crate) const NETNS_PAIRS: [(Tool, Tool); 4] = [
    (Tool::Qstream, Tool::Qstream),
    (Tool::Qstream, Tool::Quinn),
    (Tool::Quinn, Tool::Qstream),
    (Tool::Quinn, Tool::Quinn),
];

/// One download by `client` from `server` inside `namespace`: its time (infinite when not
/// done within the loss scenario's limit).
pub(crate) fn netns_download(
    server: Tool,
    client: Tool,
    programs: &Programs,
    work: &Workspace,
    namespace: &LossyNamespace,
    scenario: &str,
) -> Result<Vec<Measure>, Failure> {
    let launcher = Launcher {
        netns: Some(namespace.name.clone()),
    };
    let run = download(
        server,
        client,
        programs,
        &launcher,
        work,
        crate::loss::TRANSFER_LIMIT,
    )?;
    Ok(vec![Measure::lower(
        scenario,
        "time",
        "s",
        Some(run.seconds.unwrap_or(f64::INFINITY)),
    )])
}
