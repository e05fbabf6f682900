//! The scheduler behind `mailprobe run`: every mailbox is checked every `interval` (plus jitter),
//! at most `concurrency` at once, each run within its deadline; on shutdown, in-flight runs get
//! a grace period and are then cancelled, so the process exits within 10 s of SIGTERM.
//!
//! The per-server connection budget is enforced where connections are made ([`crate::net`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::model::Target;

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

/// A running scheduler.
pub struct SchedulerHandle {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    grace: Duration,
}

impl SchedulerHandle {
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

/// Starts one loop per target. `run_one` checks one target and must respect its deadline; the
/// scheduler also cuts it off at the deadline plus 5 s.
pub fn start<F, Fut>(
    targets: Vec<Arc<Target>>,
    config: SchedulerConfig,
    run_one: F,
) -> SchedulerHandle
where
    F: Fn(Arc<Target>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = JoinSet::new();
    let n = targets.len().max(1) as u32;
    let mut rng = match config.seed {
        Some(s) => fastrand::Rng::with_seed(s),
        None => fastrand::Rng::new(),
    };
    // The first round is spread over at most a tenth of the interval (and 30 s), so a restart
    // does not hit every server at the same instant yet results come in quickly.
    let spread = (config.interval / 10).min(Duration::from_secs(30));
    for (i, target) in targets.into_iter().enumerate() {
        let first = spread / n * i as u32;
        let cfg = config.clone();
        let token = shutdown.clone();
        let slots = slots.clone();
        let run_one = run_one.clone();
        let seed = rng.u64(..);
        tasks.spawn(mailbox_loop(
            target, cfg, token, slots, run_one, first, seed,
        ));
    }
    SchedulerHandle {
        shutdown,
        tasks,
        grace: config.shutdown_grace,
    }
}

async fn mailbox_loop<F, Fut>(
    target: Arc<Target>,
    config: SchedulerConfig,
    shutdown: CancellationToken,
    slots: Arc<Semaphore>,
    run_one: F,
    first: Duration,
    seed: u64,
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
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let started = Instant::now();
        if let Some(hook) = &config.on_lag {
            (hook.0)(started.saturating_duration_since(next));
        }
        // Boxed: a task's future is stored inline, so an unboxed run (its whole context and
        // every plugin's state) would cost every idle mailbox its size between runs too.
        let run = tokio::time::timeout(
            target.timeout + Duration::from_secs(5),
            Box::pin(run_one(target.clone())),
        );
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => {}
            _ = shutdown.cancelled() => {
                let _ = tokio::time::timeout(config.shutdown_grace, &mut run).await;
                return;
            }
        }
        drop(permit);
        let jitter = config
            .interval
            .mul_f64(config.jitter.clamp(0.0, 1.0) * rng.f64());
        next = started + config.interval + jitter;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol, Security};
    use crate::profile::Profile;
    use crate::secret::Secret;
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
            },
            smtp: None,
            user: "u".into(),
            password: Secret::new("p"),
            ca_file: None,
            allow_insecure_cert: false,
            timeout,
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
        // Cut at 15 s each time, so the mailbox kept being checked every minute.
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
}
