//! Where a benchmark runs: a server and a client, each on its own thread with a single-threaded
//! tokio runtime, pinned to different cores when there are two, and the CPU time each thread
//! spends.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// The CPU time one thread has spent, read from `/proc/self/task/<tid>/schedstat` (Linux).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadClock {
    tid: u32,
}

impl ThreadClock {
    /// The clock of the calling thread; `None` where the kernel does not expose it.
    fn current() -> Option<Self> {
        let link = std::fs::read_link("/proc/thread-self").ok()?;
        let tid = link.file_name()?.to_str()?.parse().ok()?;
        Some(Self { tid })
    }

    /// CPU time the thread has spent so far (user and system), in nanoseconds.
    fn cpu(&self) -> Option<Duration> {
        let text =
            std::fs::read_to_string(format!("/proc/self/task/{}/schedstat", self.tid)).ok()?;
        let nanos = text.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    }
}

/// The CPU time each side's thread has spent so far.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTimes {
    pub(crate) client: Option<Duration>,
    pub(crate) server: Option<Duration>,
}

impl CpuTimes {
    /// CPU time spent by each side between `earlier` and `self`, in seconds.
    pub(crate) fn since(&self, earlier: &CpuTimes) -> (Option<f64>, Option<f64>) {
        let delta = |now: Option<Duration>, then: Option<Duration>| {
            Some(now?.checked_sub(then?)?.as_secs_f64())
        };
        (
            delta(self.client, earlier.client),
            delta(self.server, earlier.server),
        )
    }
}

/// Reads both sides' CPU clocks; handed to the client half of a benchmark.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clocks {
    client: Option<ThreadClock>,
    server: Option<ThreadClock>,
}

impl Clocks {
    /// Both sides' CPU time now.
    pub(crate) fn now(&self) -> CpuTimes {
        CpuTimes {
            client: self.client.and_then(|c| c.cpu()),
            server: self.server.and_then(|c| c.cpu()),
        }
    }
}

/// The process's resident memory in bytes (`VmRSS`, Linux).
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether the two sides run on two different pinned cores.
pub(crate) fn pinned() -> bool {
    core_affinity::get_core_ids().is_some_and(|ids| ids.len() >= 2)
}

fn pin(index: usize) {
    if let Some(ids) = core_affinity::get_core_ids().filter(|ids| ids.len() >= 2) {
        core_affinity::set_for_current(ids[index]);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `server` on one thread (core 1) and `client` on another (core 0), and returns what the
/// client returns. The server reports the address it listens on through its sender and runs
/// until the client is done; its runtime is then dropped, which ends every server task.
pub(crate) fn run<S, SF, C, CF, T>(server: S, client: C) -> T
where
    S: FnOnce(std::sync::mpsc::Sender<SocketAddr>) -> SF + Send + 'static,
    SF: Future<Output = ()>,
    C: FnOnce(SocketAddr, Clocks) -> CF + Send + 'static,
    CF: Future<Output = T>,
    T: Send + 'static,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (clock_tx, clock_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            pin(1);
            let _ = clock_tx.send(ThreadClock::current());
            runtime().block_on(async move {
                tokio::select! {
                    _ = server(addr_tx) => {}
                    _ = stop_rx => {}
                }
            });
        })
        .expect("a server thread");
    let server_clock = clock_rx.recv().expect("the server thread started");
    let addr = addr_rx.recv().expect("the server is listening");
    let client_thread = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            pin(0);
            let clocks = Clocks {
                client: ThreadClock::current(),
                server: server_clock,
            };
            runtime().block_on(client(addr, clocks))
        })
        .expect("a client thread");
    let result = client_thread.join().expect("the client thread panicked");
    let _ = stop_tx.send(());
    server_thread.join().expect("the server thread panicked");
    result
}
