//! Dynamic weights from the real-server agents' load reports: the capacity
//! formula and the per-server policy that turns reports into the weight in
//! force. Pure: every function takes the time ([`Millis`]) it needs; all
//! arithmetic is in integers (permille).
//!
//! # The capacity formula ([`CapacityFormula`])
//! Each figure the formula counts is first made a utilisation `uᵢ` in
//! permille of the level at which it counts as fully loaded, capped at
//! 1000: CPU `min(1000·cpu/cpu_full, 1000)`, memory likewise, established
//! connections `min(1000·established/connections_full, 1000)`. The
//! aggregate load is the weighted mean `L = Σ wᵢ·uᵢ / Σ wᵢ` over the
//! figures with a non-zero weight that the report carries (an unknown
//! figure drops out and the others' weights are renormalised; with none
//! left `L = 0`). The capacity is `max(1000 − L, min_fraction)` permille.
//!
//! This is the aggregate load of LVS's dynamic-feedback scheduling
//! (W. Zhang, lvs-users 2002-07: `aggregate_load = Σ Rᵢ·Loadᵢ`, `ΣRᵢ = 1`,
//! inputs normalised), but used as a target capacity rather than as the
//! cube-root increment of that design: the damping its increment and
//! threshold gave comes here from smoothing and a per-step rate limit
//! (below). The floor follows haproxy-dynagent (never below 50 % of the
//! configured weight by default) so that a loaded server is made lighter,
//! never dropped: taking a server out is the health check's job.
//!
//! # The policy ([`WeightPolicy`], [`AgentFeedback`])
//! Per real server, for each accepted report:
//! 1. the report's capacity (formula above) is smoothed, an EWMA
//!    `s ← s + α·(c − s)` with `α = smoothing` permille;
//! 2. the capacity in force moves towards the smoothed value by at most
//!    `max_step` permille per report, so one report or one noisy second
//!    cannot swing the weight, and a herd of equal servers reporting the
//!    same load moves together, monotonically, without overshoot;
//! 3. the effective weight is `round(configured × capacity / 1000)`, at
//!    least 1 when the configured weight is (load alone never quiesces a
//!    server), so it stays within `[min_fraction × configured, configured]`.
//!
//! The first report after start or after a silence starts from the full
//! capacity and is rate-limited like any other. Until the first report the
//! configured weight is in force. An agent silent for `timeout` no longer
//! counts: its server gets its configured weight back, or weight 0
//! ([`OnSilence::Quiesce`], ldirectord's quiescent spirit). `drain` from
//! the agent sets weight 0 (established connections drain); `maint` takes
//! the server out as a failed health check would. Both stay in force
//! through a silence — as in HAProxy's agent-check, only the agent undoes
//! what it asked for — and its load keeps being smoothed meanwhile, so
//! `ready` returns to the weight the load calls for. A server that its
//! health check holds down stays down whatever its agent says.

use xvs_packet::load_report::{AgentState, LoadFigures};

use crate::Millis;

/// Inputs of the capacity formula (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityFormula {
    /// Importance of CPU utilisation.
    pub cpu_weight: u32,
    /// Importance of memory utilisation.
    pub memory_weight: u32,
    /// Importance of established connections (needs `connections_full`).
    pub connections_weight: u32,
    /// CPU permille that counts as fully loaded (1–1000).
    pub cpu_full_permille: u16,
    /// Memory permille that counts as fully loaded (1–1000).
    pub memory_full_permille: u16,
    /// Established connections that count as fully loaded; 0 leaves
    /// connections out whatever their weight.
    pub connections_full: u32,
    /// The lowest capacity, permille of the configured weight (0–1000).
    pub min_fraction_permille: u16,
}

impl Default for CapacityFormula {
    /// CPU only, full at 100 %, floor 50 % (haproxy-dynagent's).
    fn default() -> Self {
        Self {
            cpu_weight: 1,
            memory_weight: 0,
            connections_weight: 0,
            cpu_full_permille: 1000,
            memory_full_permille: 1000,
            connections_full: 0,
            min_fraction_permille: 500,
        }
    }
}

/// A figure as utilisation permille of `full`, capped at 1000.
fn utilisation(value: u64, full: u64) -> u64 {
    (value.saturating_mul(1000) / full.max(1)).min(1000)
}

impl CapacityFormula {
    /// The aggregate load `L`, permille (0 when no counted figure is known).
    pub fn aggregate_load(&self, load: &LoadFigures) -> u16 {
        let terms = [
            (
                self.cpu_weight,
                load.cpu_permille
                    .map(|v| utilisation(v.into(), self.cpu_full_permille.into())),
            ),
            (
                self.memory_weight,
                load.memory_permille
                    .map(|v| utilisation(v.into(), self.memory_full_permille.into())),
            ),
            (
                if self.connections_full == 0 {
                    0
                } else {
                    self.connections_weight
                },
                load.established
                    .map(|v| utilisation(v.into(), self.connections_full.into())),
            ),
        ];
        let (mut sum, mut weights) = (0u64, 0u64);
        for (weight, u) in terms {
            if let (w @ 1.., Some(u)) = (u64::from(weight), u) {
                sum += w * u;
                weights += w;
            }
        }
        if weights == 0 {
            return 0;
        }
        (sum / weights) as u16
    }

    /// The capacity, permille of the configured weight, in
    /// `[min_fraction, 1000]`.
    pub fn capacity(&self, load: &LoadFigures) -> u16 {
        (1000 - self.aggregate_load(load)).max(self.min_fraction_permille.min(1000))
    }
}

/// What becomes of a server whose agent has gone silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnSilence {
    /// Its configured weight (as if it had no agent).
    #[default]
    Configured,
    /// Weight 0: no new connections until the agent reports again.
    Quiesce,
}

/// How reports become weights (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightPolicy {
    /// The capacity of one report.
    pub formula: CapacityFormula,
    /// EWMA weight of the newest report, permille (1000: no smoothing).
    pub smoothing_permille: u16,
    /// The most the capacity in force moves per report, permille.
    pub max_step_permille: u16,
    /// After this long without a report the agent counts as silent.
    pub timeout: Millis,
    /// What a silent agent's server gets.
    pub on_silence: OnSilence,
}

impl Default for WeightPolicy {
    /// Smoothing 0.3, at most 10 % of the configured weight per report,
    /// silent after 5 s (five missed reports at the default interval).
    fn default() -> Self {
        Self {
            formula: CapacityFormula::default(),
            smoothing_permille: 300,
            max_step_permille: 100,
            timeout: 5_000,
            on_silence: OnSilence::Configured,
        }
    }
}

/// Why a server takes no connections at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownBy {
    /// Its health check failed.
    HealthCheck,
    /// Its agent said `maint`.
    Maintenance,
}

/// The weight in force for a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// In service with this weight (0: quiesced, connections drain).
    Up(u32),
    /// Out of service.
    Down(DownBy),
}

/// One real server's agent as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFeedback {
    /// EWMA of the reports' capacities, in thousandths of a permille.
    smoothed: u32,
    /// The capacity in force, permille.
    capacity: u16,
    state: AgentState,
    last_report: Option<Millis>,
}

impl Default for AgentFeedback {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentFeedback {
    /// No report yet: the configured weight is in force.
    pub const fn new() -> Self {
        Self {
            smoothed: 1_000_000,
            capacity: 1000,
            state: AgentState::Ready,
            last_report: None,
        }
    }

    fn silent(&self, policy: &WeightPolicy, now: Millis) -> bool {
        self.last_report
            .is_some_and(|at| now.saturating_sub(at) >= policy.timeout)
    }

    /// Takes an accepted report (authentic and fresh) received at `now`.
    pub fn report(
        &mut self,
        policy: &WeightPolicy,
        state: AgentState,
        load: &LoadFigures,
        now: Millis,
    ) {
        let sample = u32::from(policy.formula.capacity(load)) * 1000;
        if self.last_report.is_none() || self.silent(policy, now) {
            // A fresh start: the sample is the whole history, and the
            // capacity in force starts from full.
            self.smoothed = sample;
            self.capacity = 1000;
        } else {
            let alpha = i64::from(policy.smoothing_permille.min(1000));
            let s = i64::from(self.smoothed);
            self.smoothed = (s + alpha * (i64::from(sample) - s) / 1000) as u32;
        }
        let target = (self.smoothed + 500) / 1000;
        let step = u32::from(policy.max_step_permille);
        let now_in_force = u32::from(self.capacity);
        let moved = if target > now_in_force {
            target.min(now_in_force + step)
        } else {
            target.max(now_in_force.saturating_sub(step))
        };
        self.capacity = moved as u16;
        self.state = state;
        self.last_report = Some(now);
    }

    /// The capacity in force, permille of the configured weight (1000
    /// before the first report and while silent).
    pub fn capacity(&self, policy: &WeightPolicy, now: Millis) -> u16 {
        if self.last_report.is_none() || self.silent(policy, now) {
            1000
        } else {
            self.capacity
        }
    }

    /// What the agent last asked for.
    pub const fn state(&self) -> AgentState {
        self.state
    }

    /// When the last report was accepted.
    pub const fn last_report(&self) -> Option<Millis> {
        self.last_report
    }

    /// The weight in force at `now` for a server configured with weight
    /// `configured` whose health check says `healthy`.
    pub fn weight(
        &self,
        policy: &WeightPolicy,
        configured: u32,
        healthy: bool,
        now: Millis,
    ) -> Weight {
        if !healthy {
            return Weight::Down(DownBy::HealthCheck);
        }
        match self.state {
            AgentState::Maint => return Weight::Down(DownBy::Maintenance),
            AgentState::Drain => return Weight::Up(0),
            AgentState::Ready => {}
        }
        if self.silent(policy, now) && policy.on_silence == OnSilence::Quiesce {
            return Weight::Up(0);
        }
        let capacity = u64::from(self.capacity(policy, now));
        let weight = (u64::from(configured) * capacity + 500) / 1000;
        Weight::Up((weight as u32).clamp(configured.min(1), configured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(permille: u16) -> LoadFigures {
        LoadFigures {
            cpu_permille: Some(permille),
            ..LoadFigures::default()
        }
    }

    /// A fake clock: one report a second.
    struct Run {
        policy: WeightPolicy,
        agent: AgentFeedback,
        now: Millis,
    }

    impl Run {
        fn new(policy: WeightPolicy) -> Self {
            Self {
                policy,
                agent: AgentFeedback::new(),
                now: 1_000_000,
            }
        }

        fn report(&mut self, state: AgentState, load: LoadFigures) -> u16 {
            self.now += 1000;
            self.agent.report(&self.policy, state, &load, self.now);
            self.agent.capacity(&self.policy, self.now)
        }

        fn weight(&self, configured: u32) -> Weight {
            self.agent.weight(&self.policy, configured, true, self.now)
        }
    }

    #[test]
    fn formula_weighs_known_figures_only() {
        let f = CapacityFormula {
            cpu_weight: 3,
            memory_weight: 1,
            connections_weight: 0,
            min_fraction_permille: 0,
            ..CapacityFormula::default()
        };
        let load = LoadFigures {
            cpu_permille: Some(400),
            memory_permille: Some(800),
            ..LoadFigures::default()
        };
        assert_eq!(f.aggregate_load(&load), (3 * 400 + 800) / 4);
        assert_eq!(f.capacity(&load), 1000 - 500);
        let cpu_unknown = LoadFigures {
            cpu_permille: None,
            ..load
        };
        assert_eq!(f.aggregate_load(&cpu_unknown), 800, "renormalised");
        assert_eq!(f.capacity(&LoadFigures::default()), 1000, "nothing known");
    }

    #[test]
    fn formula_thresholds_and_floor() {
        let f = CapacityFormula {
            cpu_weight: 1,
            connections_weight: 1,
            cpu_full_permille: 800,
            connections_full: 200,
            min_fraction_permille: 300,
            ..CapacityFormula::default()
        };
        let load = |cpu, conns| LoadFigures {
            cpu_permille: Some(cpu),
            established: Some(conns),
            ..LoadFigures::default()
        };
        assert_eq!(f.capacity(&load(400, 50)), 1000 - (500 + 250) / 2);
        assert_eq!(f.capacity(&load(1000, 10_000)), 300, "capped, then floored");
        let no_conns = CapacityFormula {
            connections_full: 0,
            ..f
        };
        assert_eq!(
            no_conns.capacity(&load(400, 10_000)),
            500,
            "connections off"
        );
        assert_eq!(CapacityFormula::default().capacity(&cpu(1000)), 500);
        assert_eq!(CapacityFormula::default().capacity(&cpu(0)), 1000);
    }

    #[test]
    fn configured_weight_before_any_report() {
        let run = Run::new(WeightPolicy::default());
        assert_eq!(run.weight(40), Weight::Up(40));
    }

    #[test]
    fn bounds_hold_under_full_and_no_load() {
        let mut run = Run::new(WeightPolicy::default());
        for _ in 0..100 {
            run.report(AgentState::Ready, cpu(1000));
            let Weight::Up(w) = run.weight(40) else {
                panic!("down")
            };
            assert!((20..=40).contains(&w), "{w}");
        }
        assert_eq!(run.weight(40), Weight::Up(20), "settles on the floor");
        assert_eq!(run.weight(1), Weight::Up(1));
        for _ in 0..100 {
            run.report(AgentState::Ready, cpu(0));
        }
        assert_eq!(run.weight(40), Weight::Up(40), "never above configured");
    }

    #[test]
    fn load_alone_never_quiesces() {
        let mut policy = WeightPolicy::default();
        policy.formula.min_fraction_permille = 0;
        let mut run = Run::new(policy);
        for _ in 0..100 {
            run.report(AgentState::Ready, cpu(1000));
        }
        assert_eq!(run.agent.capacity(&run.policy, run.now), 0);
        assert_eq!(run.weight(40), Weight::Up(1));
        assert_eq!(run.weight(0), Weight::Up(0), "configured 0 stays 0");
    }

    #[test]
    fn smoothing_follows_an_ewma() {
        let mut run = Run::new(WeightPolicy {
            max_step_permille: 1000,
            ..WeightPolicy::default()
        });
        assert_eq!(run.report(AgentState::Ready, cpu(0)), 1000);
        // Target 500: s = 1000 + 0.3·(500 − 1000) = 850, then 745, 671.5 …
        assert_eq!(run.report(AgentState::Ready, cpu(1000)), 850);
        assert_eq!(run.report(AgentState::Ready, cpu(1000)), 745);
        assert_eq!(run.report(AgentState::Ready, cpu(1000)), 672);
        for _ in 0..40 {
            run.report(AgentState::Ready, cpu(1000));
        }
        assert_eq!(run.report(AgentState::Ready, cpu(1000)), 500);
    }

    #[test]
    fn one_noisy_report_moves_at_most_one_step() {
        // (smoothing, max step, capacity after one report of 100 % CPU
        // among reports of 10 %): each damping alone holds it, and without
        // either the weight would swing to the floor.
        for (smoothing, max_step, after) in [
            (300, 1000, 780),
            (1000, 100, 800),
            (300, 100, 800),
            (1000, 1000, 500),
        ] {
            let mut run = Run::new(WeightPolicy {
                smoothing_permille: smoothing,
                max_step_permille: max_step,
                ..WeightPolicy::default()
            });
            for _ in 0..50 {
                run.report(AgentState::Ready, cpu(100));
            }
            assert_eq!(run.report(AgentState::Ready, cpu(100)), 900);
            assert_eq!(
                run.report(AgentState::Ready, cpu(1000)),
                after,
                "smoothing {smoothing}, step {max_step}"
            );
            assert_eq!(run.weight(100), Weight::Up(u32::from(after) / 10));
        }
    }

    #[test]
    fn the_first_report_is_rate_limited_too() {
        let mut run = Run::new(WeightPolicy::default());
        assert_eq!(run.report(AgentState::Ready, cpu(1000)), 900);
    }

    #[test]
    fn a_herd_of_equal_servers_moves_together_without_oscillating() {
        let policy = WeightPolicy::default();
        let mut herd: Vec<AgentFeedback> = (0..20).map(|_| AgentFeedback::new()).collect();
        let mut now = 0;
        let mut history = Vec::new();
        for second in 0..60 {
            now += 1000;
            // Everyone busy for 20 s, then idle.
            let load = cpu(if second < 20 { 900 } else { 100 });
            for agent in &mut herd {
                agent.report(&policy, AgentState::Ready, &load, now);
            }
            let weights: Vec<Weight> = herd
                .iter()
                .map(|a| a.weight(&policy, 10, true, now))
                .collect();
            assert!(weights.iter().all(|w| *w == weights[0]), "{weights:?}");
            history.push(herd[0].capacity(&policy, now));
        }
        let (busy, idle) = history.split_at(20);
        assert!(busy.windows(2).all(|w| w[1] <= w[0]), "{busy:?}");
        assert!(idle.windows(2).all(|w| w[1] >= w[0]), "{idle:?}");
        assert_eq!(busy[19], 500, "reached the busy target without overshoot");
        assert_eq!(idle[39], 900, "and the idle one");
    }

    #[test]
    fn silence_returns_configured_or_quiesces() {
        let mut run = Run::new(WeightPolicy::default());
        for _ in 0..30 {
            run.report(AgentState::Ready, cpu(1000));
        }
        assert_eq!(run.weight(10), Weight::Up(5));
        run.now += 4_999;
        assert_eq!(run.weight(10), Weight::Up(5), "not yet silent");
        run.now += 1;
        assert_eq!(run.weight(10), Weight::Up(10), "silent: configured");
        run.policy.on_silence = OnSilence::Quiesce;
        assert_eq!(run.weight(10), Weight::Up(0), "silent: quiesced");
        // Back: a fresh start from full capacity, rate-limited.
        assert_eq!(run.report(AgentState::Ready, cpu(1000)), 900);
        assert_eq!(run.weight(10), Weight::Up(9));
    }

    #[test]
    fn drain_is_weight_zero_and_ready_returns_to_the_load_weight() {
        let mut run = Run::new(WeightPolicy::default());
        for _ in 0..30 {
            run.report(AgentState::Ready, cpu(300));
        }
        assert_eq!(run.weight(10), Weight::Up(7));
        run.report(AgentState::Drain, cpu(300));
        assert_eq!(run.weight(10), Weight::Up(0));
        run.now += 60_000;
        assert_eq!(run.weight(10), Weight::Up(0), "drain outlives a silence");
        run.report(AgentState::Ready, cpu(300));
        assert_eq!(run.weight(10), Weight::Up(9), "fresh start after silence");
    }

    #[test]
    fn maint_takes_the_server_out() {
        let mut run = Run::new(WeightPolicy::default());
        run.report(AgentState::Maint, cpu(0));
        assert_eq!(run.weight(10), Weight::Down(DownBy::Maintenance));
        run.now += 60_000;
        assert_eq!(run.weight(10), Weight::Down(DownBy::Maintenance));
        run.report(AgentState::Ready, cpu(0));
        assert_eq!(run.weight(10), Weight::Up(10));
    }

    #[test]
    fn health_check_wins_over_the_agent() {
        let mut run = Run::new(WeightPolicy::default());
        for state in [AgentState::Ready, AgentState::Drain, AgentState::Maint] {
            run.report(state, cpu(0));
            assert_eq!(
                run.agent.weight(&run.policy, 10, false, run.now),
                Weight::Down(DownBy::HealthCheck),
                "{state}"
            );
        }
    }
}
