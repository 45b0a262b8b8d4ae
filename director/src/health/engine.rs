//! The health checker: one thread running a current-thread tokio runtime,
//! one task per checked target, and the table of target states the control
//! plane reads.
//!
//! # Contract
//! * [`HealthChecker::start`] / [`update`](HealthChecker::update) change the
//!   state table before they return, so [`status`](HealthChecker::status)
//!   right after them lists exactly the given targets; the checks
//!   themselves run on the checker's thread.
//! * `update` keeps the state (up/down, counts, history) of every target
//!   whose key and spec are unchanged, and its task runs on undisturbed. A
//!   target whose spec changed keeps its up/down state, its counts restart
//!   and its checks restart with the new spec; `check = "on"`/`"off"` take
//!   effect at once. Removed targets are forgotten without a transition.
//! * Every transition — from a check, a passive report or an update — is
//!   logged at info level with its reason, passed to the [`HealthSink`] and
//!   to the target's hook, always on the checker's thread (never inside
//!   `update`, so a sink may take locks the caller of `update` holds).
//! * At most [`MAX_CONCURRENT_CHECKS`] checks are in flight at once (file
//!   descriptors stay bounded with thousands of targets); a check's
//!   timeouts start when it gets its turn.
//! * [`report_passive`](HealthChecker::report_passive) never blocks: it
//!   queues the report (or drops and counts it when the queue is full).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle as TaskHandle;

use super::check::{self, TlsConfigs};
use super::spec::{Check, CheckSpec, Target, TargetKey};
use super::state::{Reason, Source, TargetState, Transition, next_check};

/// Checks in flight at once, over all targets.
pub const MAX_CONCURRENT_CHECKS: usize = 256;
/// Passive reports queued for the checker's thread before new ones are
/// dropped.
pub const PASSIVE_QUEUE: usize = 4096;
/// The first round of checks after a start or reload is spread over at most
/// this long (or the interval, if shorter), so that thousands of targets do
/// not all connect in the same millisecond.
pub const FIRST_ROUND_SPREAD: Duration = Duration::from_secs(1);

/// What the control plane implements to hear of transitions.
pub trait HealthSink: Send + Sync {
    /// `target` went up (`up = true`) or down, because of `reason`.
    /// Called on the checker's thread; keep it short.
    fn transition(&self, target: &TargetKey, up: bool, reason: &Reason);
}

/// One target's state, for listings and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// Which target.
    pub key: TargetKey,
    /// How it is checked.
    pub spec: CheckSpec,
    /// In rotation or not.
    pub up: bool,
    /// The last result's reason ([`Reason::NotChecked`] before the first).
    pub last_reason: Reason,
    /// How long the last active check took.
    pub last_latency: Option<Duration>,
    /// Consecutive failures so far.
    pub consecutive_failures: u32,
    /// Consecutive successes so far.
    pub consecutive_successes: u32,
    /// State changes since the target was added.
    pub transitions: u64,
    /// Since when it is in its state.
    pub since: Instant,
    /// Active checks run.
    pub checks: u64,
    /// Active checks failed.
    pub failed_checks: u64,
}

struct Entry {
    spec: CheckSpec,
    state: TargetState,
    /// Bumped whenever the target's task is replaced, so that a result of
    /// an old task that raced with an update is not counted.
    generation: u64,
}

struct Shared {
    entries: Mutex<BTreeMap<TargetKey, Entry>>,
    sink: Arc<dyn HealthSink>,
    tls: TlsConfigs,
    checks: Semaphore,
    passive_dropped: AtomicU64,
}

enum Command {
    /// (Re)start the checks of a target.
    Spawn {
        key: TargetKey,
        spec: CheckSpec,
        generation: u64,
        delay: Duration,
    },
    /// Stop checking a target.
    Abort(TargetKey),
    /// Report a transition that an update caused.
    Report(TargetKey, Transition, Option<Vec<String>>),
    /// Forget cached TLS configurations (CA files may have changed).
    ClearTls,
}

/// A clonable sender of passive reports, for threads that do not own the
/// checker (the workers).
#[derive(Clone)]
pub struct PassiveHandle {
    passive: mpsc::Sender<(TargetKey, bool)>,
    shared: Arc<Shared>,
}

impl core::fmt::Debug for PassiveHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PassiveHandle").finish_non_exhaustive()
    }
}

impl PassiveHandle {
    /// As [`HealthChecker::report_passive`]: never blocks; `false` when the
    /// report was dropped.
    pub fn report(&self, target: &TargetKey, failed: bool) -> bool {
        let queued = self.passive.try_send((*target, failed)).is_ok();
        if !queued {
            self.shared.passive_dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }
}

/// The health checker. Dropping it stops it.
pub struct HealthChecker {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    passive: mpsc::Sender<(TargetKey, bool)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("targets", &self.shared.entries.lock().len())
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// Starts checking `targets` on a new thread (`xvs-health`), reporting
    /// transitions to `sink`. Targets start up, or down under `alpha` or
    /// `check = "off"`; no transition is reported for that initial state.
    ///
    /// # Errors
    /// When the runtime or its thread cannot be created.
    pub fn start(targets: Vec<Target>, sink: Arc<dyn HealthSink>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let shared = Arc::new(Shared {
            entries: Mutex::new(BTreeMap::new()),
            sink,
            tls: TlsConfigs::default(),
            checks: Semaphore::new(MAX_CONCURRENT_CHECKS),
            passive_dropped: AtomicU64::new(0),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (passive, passive_rx) = mpsc::channel(PASSIVE_QUEUE);
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("xvs-health".into())
                .spawn(move || {
                    runtime.block_on(run(shared, command_rx, passive_rx, stop_rx));
                })?
        };
        let checker = Self {
            shared,
            commands,
            passive,
            stop: Some(stop),
            thread: Some(thread),
        };
        checker.update(targets);
        Ok(checker)
    }

    /// Replaces the set of targets (a reload), keeping the state of those
    /// that did not change. A key given twice counts once (the first).
    pub fn update(&self, targets: Vec<Target>) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut entries = self.shared.entries.lock();
            let mut wanted: BTreeMap<TargetKey, CheckSpec> = BTreeMap::new();
            for t in targets {
                wanted.entry(t.key).or_insert(t.spec);
            }
            entries.retain(|key, _| {
                let keep = wanted.contains_key(key);
                if !keep {
                    out.push(Command::Abort(*key));
                }
                keep
            });
            let new_checks = wanted
                .iter()
                .filter(|(key, spec)| {
                    is_checked(spec) && entries.get(*key).is_none_or(|e| e.spec != **spec)
                })
                .count();
            let mut nth = 0u32;
            for (key, spec) in wanted {
                match entries.get_mut(&key) {
                    Some(e) if e.spec == spec => continue,
                    Some(e) => {
                        e.generation += 1;
                        e.state.reset_counts();
                        let forced = match spec.check {
                            Check::On => e.state.force(true, Reason::CheckOn, now),
                            Check::Off => e.state.force(false, Reason::CheckOff, now),
                            _ => None,
                        };
                        if let Some(t) = forced {
                            out.push(Command::Report(key, t, spec.hook.clone()));
                        }
                        e.spec = spec.clone();
                    }
                    None => {
                        let state = match spec.check {
                            Check::On => TargetState::fixed(true, now),
                            Check::Off => TargetState::fixed(false, now),
                            _ => TargetState::new(spec.alpha, now),
                        };
                        entries.insert(
                            key,
                            Entry {
                                spec: spec.clone(),
                                state,
                                generation: 0,
                            },
                        );
                    }
                }
                let generation = entries.get(&key).map_or(0, |e| e.generation);
                if is_checked(&spec) {
                    let spread = spec.interval.min(FIRST_ROUND_SPREAD);
                    let delay = spread.mul_f64(f64::from(nth) / new_checks.max(1) as f64);
                    nth += 1;
                    out.push(Command::Spawn {
                        key,
                        spec,
                        generation,
                        delay,
                    });
                } else {
                    out.push(Command::Abort(key));
                }
            }
        }
        let _ = self.commands.send(Command::ClearTls);
        for command in out {
            // Fails only once the checker stopped; nothing is left to do then.
            let _ = self.commands.send(command);
        }
    }

    /// The data path's report on a connection to `target`: `failed` when the
    /// server refused or did not answer a SYN, else a success. Counted only
    /// for targets whose spec has `passive`. Never blocks; `false` when the
    /// report was dropped (queue full, checker stopped).
    pub fn report_passive(&self, target: &TargetKey, failed: bool) -> bool {
        let queued = self.passive.try_send((*target, failed)).is_ok();
        if !queued {
            self.shared.passive_dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// A handle the data path keeps to report with
    /// ([`PassiveHandle::report`] is [`HealthChecker::report_passive`]).
    #[must_use]
    pub fn passive_handle(&self) -> PassiveHandle {
        PassiveHandle {
            passive: self.passive.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Passive reports dropped because the queue was full.
    #[must_use]
    pub fn passive_dropped(&self) -> u64 {
        self.shared.passive_dropped.load(Ordering::Relaxed)
    }

    /// Every target's state, ordered by key.
    #[must_use]
    pub fn status(&self) -> Vec<TargetStatus> {
        self.shared
            .entries
            .lock()
            .iter()
            .map(|(key, e)| TargetStatus {
                key: *key,
                spec: e.spec.clone(),
                up: e.state.up,
                last_reason: e.state.last_reason.clone(),
                last_latency: e.state.last_latency,
                consecutive_failures: e.state.failures,
                consecutive_successes: e.state.successes,
                transitions: e.state.transitions,
                since: e.state.since,
                checks: e.state.checks,
                failed_checks: e.state.failed_checks,
            })
            .collect()
    }

    /// Whether `target` is up; `None` if it is not a target.
    #[must_use]
    pub fn is_up(&self, target: &TargetKey) -> Option<bool> {
        self.shared.entries.lock().get(target).map(|e| e.state.up)
    }

    /// Stops every check and the thread; hooks still running are killed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("health: the checker thread panicked");
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn is_checked(spec: &CheckSpec) -> bool {
    !matches!(spec.check, Check::On | Check::Off)
}

/// The checker thread's loop: commands from `update`, passive reports.
async fn run(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut passive: mpsc::Receiver<(TargetKey, bool)>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tasks: HashMap<TargetKey, TaskHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            command = commands.recv() => match command {
                None => break,
                Some(Command::Spawn { key, spec, generation, delay }) => {
                    let task = tokio::spawn(check_loop(Arc::clone(&shared), key, spec, generation, delay));
                    if let Some(old) = tasks.insert(key, task) {
                        old.abort();
                    }
                }
                Some(Command::Abort(key)) => {
                    if let Some(old) = tasks.remove(&key) {
                        old.abort();
                    }
                }
                Some(Command::Report(key, transition, hook)) => {
                    report(&shared, &key, &transition, hook.as_deref());
                }
                Some(Command::ClearTls) => shared.tls.clear(),
            },
            Some((key, failed)) = passive.recv() => on_passive(&shared, &key, failed),
        }
    }
    for (_, task) in tasks {
        task.abort();
    }
}

fn on_passive(shared: &Shared, key: &TargetKey, failed: bool) {
    let reason = if failed {
        Reason::PassiveFailure
    } else {
        Reason::PassiveSuccess
    };
    let (transition, hook) = {
        let mut entries = shared.entries.lock();
        let Some(e) = entries.get_mut(key) else {
            return;
        };
        if !e.spec.passive || !is_checked(&e.spec) {
            return;
        }
        let counts = e.spec.counts();
        (
            e.state
                .record(reason, Source::Passive, None, counts, Instant::now()),
            e.spec.hook.clone(),
        )
    };
    if let Some(t) = transition {
        report(shared, key, &t, hook.as_deref());
    }
}

/// Logs a transition, tells the sink, starts the hook.
fn report(shared: &Shared, key: &TargetKey, t: &Transition, hook: Option<&[String]>) {
    let state = if t.up { "up" } else { "down" };
    log::info!("health: {key} is {state}: {}", t.reason);
    shared.sink.transition(key, t.up, &t.reason);
    if let Some(hook) = hook {
        let (hook, key, up, reason) = (hook.to_vec(), *key, t.up, t.reason.clone());
        tokio::spawn(async move { check::run_hook(&hook, &key, up, &reason).await });
    }
}

/// Checks one target forever (until aborted).
async fn check_loop(
    shared: Arc<Shared>,
    key: TargetKey,
    spec: CheckSpec,
    generation: u64,
    delay: Duration,
) {
    let mut next = tokio::time::Instant::now() + delay;
    loop {
        tokio::time::sleep_until(next).await;
        let Ok(permit) = shared.checks.acquire().await else {
            return;
        };
        let started = Instant::now();
        let reason = check::run(&spec.check, &key, &shared.tls).await;
        let finished = Instant::now();
        drop(permit);
        let latency = finished - started;
        if !reason.is_pass() {
            log::debug!("health: {key}: check failed: {reason}");
        }
        let transition = {
            let mut entries = shared.entries.lock();
            let Some(e) = entries.get_mut(&key) else {
                return;
            };
            if e.generation != generation {
                return;
            }
            e.state.record(
                reason,
                Source::Active,
                Some(latency),
                spec.counts(),
                finished,
            )
        };
        if let Some(t) = transition {
            report(&shared, &key, &t, spec.hook.as_deref());
        }
        let after = next_check(started, finished, spec.interval);
        next = tokio::time::Instant::from_std(after);
    }
}
