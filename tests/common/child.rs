//! Runs a child process to its end (or kills it at a deadline) and reports its peak memory:
//! `ru_maxrss` of that one child from wait4(2), which the kernel keeps up to the child's last
//! moment (a sample of /proc/PID/status could miss a spike just before exit). A memory bound is
//! a fact about what the probe allocated, not a timing, so tests may assert it.
#![allow(dead_code)]
// wait4(2) has no safe wrapper in the crates this workspace uses; this is the only unsafe code
// of the tests, one call with buffers owned right here.
#![allow(unsafe_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The peak resident memory every `mailprobe` run against a hostile peer must stay under. A
/// normal run of the debug build peaks far lower; a reply the probe buffered whole (a
/// `{536000000}` literal, an endless flood) would take it far above.
pub const MAX_PEAK_RSS: u64 = 64 * 1024 * 1024;

/// How a child ended.
#[derive(Debug)]
pub struct Ended {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Its peak resident set size, in bytes.
    pub peak_rss: u64,
    /// Whether it was still running at the deadline (and so was killed).
    pub overran: bool,
}

impl Ended {
    /// Asserts the peak memory bound, naming `what` ran.
    #[track_caller]
    pub fn assert_peak_rss(&self, what: &str) {
        assert!(
            self.peak_rss < MAX_PEAK_RSS,
            "{what}: peak RSS {} MiB, the bound is {} MiB\nstdout:\n{}\nstderr:\n{}",
            self.peak_rss / (1024 * 1024),
            MAX_PEAK_RSS / (1024 * 1024),
            self.stdout,
            self.stderr
        );
    }
}

/// A started child whose output is being collected.
pub struct Running {
    child: Child,
    out: JoinHandle<Vec<u8>>,
    err: JoinHandle<Vec<u8>>,
    /// The wait status and peak RSS, once reaped.
    reaped: Option<(i32, u64)>,
}

/// Starts `cmd` with stdout and stderr piped (and stdin closed).
pub fn start(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout")));
    let err = collect(Box::new(child.stderr.take().expect("stderr")));
    Running {
        child,
        out,
        err,
        reaped: None,
    }
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reaps the child if it has ended: its wait status and peak RSS.
    fn try_reap(&mut self, block: bool) -> Option<(i32, u64)> {
        if self.reaped.is_some() {
            return self.reaped;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: both pointers are to locals that outlive the call; the pid is our own
            // child, not yet reaped (`reaped` keeps the first outcome).
            let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
            if r == pid {
                // ru_maxrss is in KiB on Linux.
                let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
                self.reaped = Some((status, peak));
                return self.reaped;
            }
            if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            assert!(r != -1, "wait4: {}", std::io::Error::last_os_error());
            return None;
        }
    }

    /// Sends `signal` to the child (while it is still ours to signal).
    pub fn signal(&self, signal: libc::c_int) {
        if self.reaped.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) takes plain integers; the pid is our unreaped child, so it cannot
        // name another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Whether the child has ended (it is then reaped; call [`Running::wait`] for the rest).
    pub fn ended(&mut self) -> Option<(i32, u64)> {
        self.try_reap(false)
    }

    /// Waits until the child ends or `deadline` has passed since `since`; kills it then.
    pub fn wait(mut self, since: Instant, deadline: Duration) -> Ended {
        let mut overran = false;
        let (status, peak) = loop {
            if let Some(done) = self.try_reap(false) {
                break done;
            }
            if since.elapsed() > deadline {
                overran = true;
                self.signal(libc::SIGKILL);
                break self.try_reap(true).expect("the killed child");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = |h: JoinHandle<Vec<u8>>| {
            String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned()
        };
        let (code, signal) = if libc::WIFEXITED(status) {
            (Some(libc::WEXITSTATUS(status)), None)
        } else if libc::WIFSIGNALED(status) {
            (None, Some(libc::WTERMSIG(status)))
        } else {
            (None, None)
        };
        Ended {
            code,
            signal,
            stdout: text(self.out),
            stderr: text(self.err),
            peak_rss: peak,
            overran,
        }
    }

    /// Kills the child now and collects how it ended.
    pub fn kill(self) -> Ended {
        self.signal(libc::SIGKILL);
        self.wait(Instant::now(), Duration::from_secs(60))
    }
}

/// Runs `cmd` to its end, killing it if it outlives `deadline`.
pub fn run(cmd: &mut Command, deadline: Duration) -> Ended {
    let since = Instant::now();
    start(cmd).wait(since, deadline)
}
