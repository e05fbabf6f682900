//! The scheduler behind `mailprobe run`: every mailbox is checked every `interval` (plus jitter),
//! at most `concurrency` at once, each run within its deadline; on shutdown, in-flight runs get
//! a grace period and are then cancelled, so the process exits within 10 s of SIGTERM.
//!
//! The per-server connection budget is enforced where connections are made ([`mailprobe_core::net`]).
//!
//! Mailboxes can be added, removed and updated while it runs (a configuration reload): an
//! updated mailbox keeps its place in the schedule and takes its new settings at its next run.
//!
//! A run that panics is caught at the loop (whatever hostile bytes made it panic), handed to
//! the panic handler to be recorded, and the mailbox keeps its schedule: one bad server must
//! not silently end its mailbox's checks.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use mailprobe_core::model::Target;

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub interval: Duration,
    /// Up to this fraction of `interval` is added at random to each wait, so that many probes
    /// (or many mailboxes on one server) do not fire in lockstep.
    pub jitter: f64,
    /// Mailboxes checked at once.
    pub concurrency: usize,
    /// How long in-flight runs may go on after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Seed for the jitter, so tests are repeatable.
    pub seed: Option<u64>,
    /// Told, for every run, how late it started: from when it was due to when it got its slot.
    pub on_lag: Option<LagHook>,
}

/// Receives each run's schedule lag (the daemon turns it into a histogram). Called from the
/// mailbox's task: it must return at once.
#[derive(Clone)]
pub struct LagHook(pub Arc<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for LagHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagHook")
    }
}

impl SchedulerConfig {
    pub fn new(interval: Duration, concurrency: usize) -> Self {
        SchedulerConfig {
            interval,
            jitter: 0.1,
            concurrency: concurrency.max(1),
            shutdown_grace: Duration::from_secs(8),
            seed: None,
            on_lag: None,
        }
    }
}

type LoopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Builds one mailbox's loop (the caller's `run_one` erased, so the handle can start loops later).
type Spawner = Arc<
    dyn Fn(watch::Receiver<Arc<Target>>, CancellationToken, Duration, u64) -> LoopFuture
        + Send
        + Sync,
>;

/// One scheduled mailbox.
struct Scheduled {
    /// Stops this mailbox's loop at once (it was removed), without the shutdown grace.
    removed: CancellationToken,
    /// The settings its next run uses.
    target: watch::Sender<Arc<Target>>,
}

/// A running scheduler.
pub struct SchedulerHandle {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    grace: Duration,
    mailboxes: BTreeMap<String, Scheduled>,
    spawner: Spawner,
    interval: watch::Sender<Duration>,
    rng: fastrand::Rng,
}

impl SchedulerHandle {
    /// The names of the mailboxes scheduled now.
    pub fn mailboxes(&self) -> Vec<String> {
        self.mailboxes.keys().cloned().collect()
    }

    /// Schedules a new mailbox; its first run comes within a tenth of the interval (at most
    /// 30 s). Returns false (and changes nothing) when a mailbox of that name is scheduled.
    pub fn add(&mut self, target: Arc<Target>) -> bool {
        if self.mailboxes.contains_key(&target.mailbox) {
            return false;
        }
        let spread = first_round_spread(*self.interval.borrow());
        let first = spread.mul_f64(self.rng.f64());
        let seed = self.rng.u64(..);
        self.spawn(target, first, seed);
        true
    }

    /// Gives a scheduled mailbox new settings, used from its next run on; its schedule stays.
    /// Returns false when no mailbox of that name is scheduled.
    pub fn update(&mut self, target: Arc<Target>) -> bool {
        match self.mailboxes.get(&target.mailbox) {
            Some(s) => {
                s.target.send_replace(target);
                true
            }
            None => false,
        }
    }

    /// Stops a mailbox's loop at once, a run in flight included. Returns false when no mailbox
    /// of that name is scheduled.
    pub fn remove(&mut self, mailbox: &str) -> bool {
        match self.mailboxes.remove(mailbox) {
            Some(s) => {
                s.removed.cancel();
                true
            }
            None => false,
        }
    }

    /// A new interval, for every mailbox from its next wait on.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval.send_replace(interval);
    }

    fn spawn(&mut self, target: Arc<Target>, first: Duration, seed: u64) {
        let removed = CancellationToken::new();
        let name = target.mailbox.clone();
        let (tx, rx) = watch::channel(target);
        self.tasks
            .spawn((self.spawner)(rx, removed.clone(), first, seed));
        // Reap loops that ended (removed mailboxes), so a long-lived daemon that reloads often
        // does not keep their results.
        while self.tasks.try_join_next().is_some() {}
        self.mailboxes.insert(
            name,
            Scheduled {
                removed,
                target: tx,
            },
        );
    }

    /// The token that stops the scheduler when cancelled.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops scheduling, lets in-flight runs finish within the grace period, then cancels them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(self.grace + Duration::from_millis(500), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }

    /// Waits until every mailbox loop ended (only after shutdown).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Called with a target and the panic's message when a run of it panicked.
pub type PanicHandler = Arc<dyn Fn(Arc<Target>, String) + Send + Sync>;

/// Starts one loop per target. `run_one` checks one target and must respect its deadline; the
/// scheduler also cuts it off at its timeout plus the longer of its timeout and the interval
/// (a queue for its servers) plus 5 s. A run that panics is logged and the
/// loop goes on; [`start_guarded`] also hands it to a handler.
pub fn start<F, Fut>(
    targets: Vec<Arc<Target>>,
    config: SchedulerConfig,
    run_one: F,
) -> SchedulerHandle
where
    F: Fn(Arc<Target>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    start_guarded(targets, config, run_one, Arc::new(|_, _| {}))
}

/// As [`start`], with `on_panic` called for every run that panicked (to record it as a probe
/// error); the mailbox stays scheduled.
pub fn start_guarded<F, Fut>(
    targets: Vec<Arc<Target>>,
    config: SchedulerConfig,
    run_one: F,
    on_panic: PanicHandler,
) -> SchedulerHandle
where
    F: Fn(Arc<Target>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut rng = match config.seed {
        Some(s) => fastrand::Rng::with_seed(s),
        None => fastrand::Rng::new(),
    };
    let (interval, interval_rx) = watch::channel(config.interval);
    let spawner: Spawner = {
        let token = shutdown.clone();
        let cfg = config.clone();
        Arc::new(move |target, removed, first, seed| {
            Box::pin(mailbox_loop(
                target,
                cfg.clone(),
                interval_rx.clone(),
                token.clone(),
                removed,
                slots.clone(),
                run_one.clone(),
                first,
                seed,
                on_panic.clone(),
            ))
        })
    };
    let mut handle = SchedulerHandle {
        shutdown,
        tasks: JoinSet::new(),
        grace: config.shutdown_grace,
        mailboxes: BTreeMap::new(),
        spawner,
        interval,
        rng: fastrand::Rng::with_seed(rng.u64(..)),
    };
    let firsts = first_runs(&targets, config.interval);
    for (target, first) in targets.into_iter().zip(firsts) {
        let seed = rng.u64(..);
        handle.spawn(target, first, seed);
    }
    handle
}

fn first_round_spread(interval: Duration) -> Duration {
    (interval / 10).min(Duration::from_secs(30))
}

/// The first round's pace per server: one mailbox a second, unless the interval's tenth (at
/// most 30 s) allows more.
const FIRST_ROUND_STEP: Duration = Duration::from_secs(1);

/// When each target's first run comes (same order as `targets`). The mailboxes of one server
/// (the address or name they dial) are spread evenly over a window: a tenth of the interval (at
/// most 30 s) while that keeps them a second apart, else up to the whole interval. So a small
/// configuration has its results at once, and 10,000 mailboxes of one provider start at the
/// pace their interval needs (N / interval per second) instead of all within 30 s, ahead of
/// what the server budget lets through. Their order is a hash of their names: stable across
/// restarts, and the same for every probe that checks the same file.
fn first_runs(targets: &[Arc<Target>], interval: Duration) -> Vec<Duration> {
    let mut servers: BTreeMap<String, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        servers
            .entry(t.imap.dial_host().to_ascii_lowercase())
            .or_default()
            .push((stable_hash(&t.mailbox), i));
    }
    let mut firsts = vec![Duration::ZERO; targets.len()];
    for mut members in servers.into_values() {
        members.sort_unstable();
        let m = members.len() as u32;
        let window = FIRST_ROUND_STEP
            .saturating_mul(m)
            .max(first_round_spread(interval))
            .min(interval);
        for (k, (_, i)) in members.into_iter().enumerate() {
            firsts[i] = window / m * k as u32;
        }
    }
    firsts
}

/// FNV-1a: a hash that does not change between runs or Rust versions.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[allow(clippy::too_many_arguments)]
async fn mailbox_loop<F, Fut>(
    mut target: watch::Receiver<Arc<Target>>,
    config: SchedulerConfig,
    interval: watch::Receiver<Duration>,
    shutdown: CancellationToken,
    removed: CancellationToken,
    slots: Arc<Semaphore>,
    run_one: F,
    first: Duration,
    seed: u64,
    on_panic: PanicHandler,
) where
    F: Fn(Arc<Target>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut next = Instant::now() + first;
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = shutdown.cancelled() => return,
            _ = removed.cancelled() => return,
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
            _ = removed.cancelled() => return,
        };
        let current = target.borrow_and_update().clone();
        let started = Instant::now();
        if let Some(hook) = &config.on_lag {
            (hook.0)(started.saturating_duration_since(next));
        }
        // Boxed: a task's future is stored inline, so an unboxed run (its whole context and
        // every plugin's state) would cost every idle mailbox its size between runs too.
        let guarded =
            AssertUnwindSafe(Box::pin(async { run_one(current.clone()).await })).catch_unwind();
        // The run may first queue for its servers' connections for up to its timeout or the
        // interval, whichever is longer (see `RunContext::reserve_slots`), then has its
        // timeout; 5 s more for closing.
        let queue = current.timeout.max(*interval.borrow());
        let run = tokio::time::timeout(current.timeout + queue + Duration::from_secs(5), guarded);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            // Dropping the run cancels it: a removed mailbox reports nothing more.
            _ = removed.cancelled() => return,
            _ = shutdown.cancelled() => {
                let _ = tokio::time::timeout(config.shutdown_grace, &mut run).await;
                return;
            }
        };
        if let Ok(Err(panic)) = result {
            record_panic(&current, panic.as_ref(), &on_panic);
        }
        drop(permit);
        let every = *interval.borrow();
        let jitter = every.mul_f64(config.jitter.clamp(0.0, 1.0) * rng.f64());
        next = started + every + jitter;
    }
}

/// Logs a run's panic and hands it to the handler, which must not take the loop down either.
fn record_panic(target: &Arc<Target>, panic: &(dyn std::any::Any + Send), on_panic: &PanicHandler) {
    // The message may quote server bytes: through the one redactor, like any error text.
    let message = mailprobe_core::redact::redact(
        &crate::runner::panic_message(panic),
        target.password.expose(),
    );
    tracing::error!(mailbox = %target.mailbox, panic = %message, "a check panicked; the mailbox stays scheduled");
    let handler = AssertUnwindSafe(|| on_panic(target.clone(), message));
    if std::panic::catch_unwind(handler).is_err() {
        tracing::error!(mailbox = %target.mailbox, "recording a panicked check panicked too");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::model::{Endpoint, Protocol, Security};
    use mailprobe_core::profile::Profile;
    use mailprobe_core::secret::Secret;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn target(name: &str, timeout: Duration) -> Arc<Target> {
        Arc::new(Target {
            mailbox: name.into(),
            profile: Arc::new(Profile::builtin("hubspot").unwrap()),
            imap: Endpoint {
                protocol: Protocol::Imap,
                host: "h".into(),
                port: 993,
                security: Security::Tls,
                connect_to: None,
                auto_security: false,
                source_address: None,
            },
            smtp: None,
            user: "u".into(),
            password: Secret::new("p"),
            ca_file: None,
            allow_insecure_cert: false,
            timeout,
            roundtrip: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn every_mailbox_runs_every_interval_with_bounded_jitter() {
        let runs = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
        let t0 = Instant::now();
        let r = runs.clone();
        let mut cfg = SchedulerConfig::new(Duration::from_secs(60), 4);
        cfg.seed = Some(7);
        let h = start(
            vec![
                target("a", Duration::from_secs(5)),
                target("b", Duration::from_secs(5)),
            ],
            cfg,
            move |t| {
                let r = r.clone();
                async move {
                    r.lock().unwrap().push((t.mailbox.clone(), Instant::now()));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            },
        );
        tokio::time::sleep(Duration::from_secs(60 * 5 + 1)).await;
        h.shutdown().await;
        let runs = runs.lock().unwrap();
        for name in ["a", "b"] {
            let times: Vec<_> = runs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .collect();
            // 5 minutes at 60 s + up to 10 % jitter: 5 or 6 runs.
            assert!((5..=6).contains(&times.len()), "{name}: {}", times.len());
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                assert!(
                    gap >= Duration::from_secs(60) && gap <= Duration::from_secs(66),
                    "{gap:?}"
                );
            }
            assert!(times[0] - t0 < Duration::from_secs(7));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn mailboxes_are_added_removed_and_updated_while_it_runs() {
        let runs = Arc::new(Mutex::new(Vec::<(String, Duration, Instant)>::new()));
        let r = runs.clone();
        let mut cfg = SchedulerConfig::new(Duration::from_secs(60), 4);
        cfg.seed = Some(3);
        cfg.jitter = 0.0;
        let mut h = start(
            vec![
                target("a", Duration::from_secs(5)),
                target("b", Duration::from_secs(5)),
            ],
            cfg,
            move |t| {
                let r = r.clone();
                async move {
                    r.lock()
                        .unwrap()
                        .push((t.mailbox.clone(), t.timeout, Instant::now()));
                }
            },
        );
        tokio::time::sleep(Duration::from_secs(90)).await;
        let a_before: Vec<Instant> = runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == "a")
            .map(|(_, _, t)| *t)
            .collect();
        assert!(h.remove("b"));
        assert!(!h.remove("b"));
        assert!(h.add(target("c", Duration::from_secs(5))));
        assert!(!h.add(target("a", Duration::from_secs(5))));
        assert!(h.update(target("a", Duration::from_secs(9))));
        assert_eq!(h.mailboxes(), vec!["a".to_string(), "c".to_string()]);
        let reloaded = Instant::now();
        tokio::time::sleep(Duration::from_secs(120)).await;
        h.shutdown().await;
        let runs = runs.lock().unwrap();
        assert!(
            runs.iter()
                .filter(|(n, _, t)| n == "b" && *t > reloaded)
                .count()
                == 0
        );
        let c: Vec<_> = runs.iter().filter(|(n, _, _)| n == "c").collect();
        assert!(c.len() >= 2, "{c:?}");
        assert!(c[0].2 - reloaded <= Duration::from_secs(6), "{c:?}");
        // `a` kept its schedule: still every 60 s from its first run, now with the new settings.
        let a_after: Vec<_> = runs
            .iter()
            .filter(|(n, _, t)| n == "a" && *t > reloaded)
            .collect();
        assert!(!a_after.is_empty());
        for (_, timeout, t) in &a_after {
            assert_eq!(*timeout, Duration::from_secs(9));
            assert_eq!((*t - a_before[0]).as_secs() % 60, 0, "{a_after:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), max.clone());
        let targets = (0..10)
            .map(|i| target(&format!("m{i}"), Duration::from_secs(30)))
            .collect();
        let h = start(
            targets,
            SchedulerConfig::new(Duration::from_secs(600), 3),
            move |_| {
                let (n, m) = (n.clone(), m.clone());
                async move {
                    let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(c, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    n.fetch_sub(1, Ordering::SeqCst);
                }
            },
        );
        tokio::time::sleep(Duration::from_secs(200)).await;
        h.shutdown().await;
        assert_eq!(max.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_run_is_cut_at_its_deadline() {
        let ended = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (s, e) = (started.clone(), ended.clone());
        let h = start(
            vec![target("slow", Duration::from_secs(10))],
            SchedulerConfig::new(Duration::from_secs(60), 1),
            move |_| {
                let (s, e) = (s.clone(), e.clone());
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    e.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        tokio::time::sleep(Duration::from_secs(200)).await;
        h.shutdown().await;
        // Cut at 75 s (the timeout, a queue of up to the interval, and 5 s) each time, so the
        // mailbox kept being checked.
        assert!(started.load(Ordering::SeqCst) >= 3);
        assert_eq!(ended.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_lag_is_the_wait_for_a_slot() {
        let lags = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let l = lags.clone();
        let mut cfg = SchedulerConfig::new(Duration::from_secs(600), 1);
        cfg.on_lag = Some(LagHook(Arc::new(move |lag| l.lock().unwrap().push(lag))));
        // One slot, two mailboxes: the second is due 15 s in (the first round is spread over
        // 30 s) but the first holds the slot for 20 s, so it starts 5 s late.
        let h = start(
            vec![
                target("a", Duration::from_secs(30)),
                target("b", Duration::from_secs(30)),
            ],
            cfg,
            |_| async { tokio::time::sleep(Duration::from_secs(20)).await },
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        h.shutdown().await;
        assert_eq!(
            *lags.lock().unwrap(),
            vec![Duration::ZERO, Duration::from_secs(5)]
        );
    }

    fn on(name: &str, host: &str) -> Arc<Target> {
        let mut t = (*target(name, Duration::from_secs(30))).clone();
        t.imap.host = host.into();
        Arc::new(t)
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_round_spreads_each_servers_mailboxes_over_the_interval() {
        let firsts = Arc::new(Mutex::new(BTreeMap::<String, Duration>::new()));
        let f = firsts.clone();
        let t0 = Instant::now();
        // 600 mailboxes of a big provider, 3 of a small one; 5 min interval.
        let mut targets: Vec<_> = (0..600)
            .map(|i| on(&format!("big{i}"), "imap.big.test"))
            .collect();
        targets.extend((0..3).map(|i| on(&format!("small{i}"), "mail.small.test")));
        let mut cfg = SchedulerConfig::new(Duration::from_secs(300), 10_000);
        cfg.jitter = 0.0;
        let h = start(targets.clone(), cfg, move |t| {
            let f = f.clone();
            async move {
                f.lock()
                    .unwrap()
                    .entry(t.mailbox.clone())
                    .or_insert(t0.elapsed());
            }
        });
        tokio::time::sleep(Duration::from_secs(301)).await;
        h.shutdown().await;
        let firsts = firsts.lock().unwrap();
        assert_eq!(
            firsts.len(),
            603,
            "every mailbox ran once within the interval"
        );
        // The big provider: 600 over 300 s, evenly: 60 in every 30 s, 0.5 s apart.
        let mut big: Vec<Duration> = firsts
            .iter()
            .filter(|(n, _)| n.starts_with("big"))
            .map(|(_, t)| *t)
            .collect();
        big.sort();
        for w in 0..10u64 {
            let range = Duration::from_secs(w * 30)..Duration::from_secs((w + 1) * 30);
            assert_eq!(
                big.iter().filter(|t| range.contains(*t)).count(),
                60,
                "{range:?}"
            );
        }
        assert!(
            big.windows(2)
                .all(|p| p[1] - p[0] == Duration::from_millis(500))
        );
        // The small one's results come at once: within a tenth of the interval (30 s).
        let small: Vec<_> = firsts
            .iter()
            .filter(|(n, _)| n.starts_with("small"))
            .collect();
        assert!(
            small.iter().all(|(_, t)| **t < Duration::from_secs(30)),
            "{small:?}"
        );
        // The order is the mailbox names' (a stable hash), not the file's.
        let mut shuffled = targets.clone();
        shuffled.reverse();
        let again: BTreeMap<_, _> = shuffled
            .iter()
            .zip(first_runs(&shuffled, Duration::from_secs(300)))
            .map(|(t, d)| (t.mailbox.clone(), d))
            .collect();
        assert_eq!(*firsts, again);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_finishes_within_ten_seconds_even_with_runs_in_flight() {
        let h = start(
            vec![target("x", Duration::from_secs(60))],
            SchedulerConfig::new(Duration::from_secs(60), 1),
            |_| async { tokio::time::sleep(Duration::from_secs(3600)).await },
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        h.shutdown().await;
        assert!(t.elapsed() <= Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_run_is_recorded_and_the_mailbox_stays_scheduled() {
        let runs = Arc::new(AtomicUsize::new(0));
        let panics = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let (r, p) = (runs.clone(), panics.clone());
        let h = start_guarded(
            vec![
                target("bad", Duration::from_secs(10)),
                target("good", Duration::from_secs(10)),
            ],
            SchedulerConfig::new(Duration::from_secs(60), 2),
            move |t| {
                let r = r.clone();
                async move {
                    if t.mailbox == "bad" {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        panic!("hostile bytes in {}", t.mailbox);
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                }
            },
            Arc::new(move |t, msg| p.lock().unwrap().push((t.mailbox.clone(), msg))),
        );
        tokio::time::sleep(Duration::from_secs(60 * 4 + 30)).await;
        h.shutdown().await;
        let panics = panics.lock().unwrap();
        // Every scheduled run of the bad mailbox panicked, was recorded, and it was run again.
        assert!(panics.len() >= 4, "{panics:?}");
        assert!(
            panics
                .iter()
                .all(|(m, msg)| m == "bad" && msg == "hostile bytes in bad")
        );
        assert!(runs.load(Ordering::SeqCst) >= 4);
    }
}
