//! The VRRP version 3 election of one virtual router (RFC 9568 §6), as a
//! pure state machine: [`Machine::handle`] takes an [`Event`] and the
//! caller's clock and returns the [`Action`]s to carry out; the caller
//! wakes it with [`Event::Timer`] at [`Machine::next_deadline`]. Nothing
//! here reads a clock, touches a socket or an address, or logs: the tests
//! drive it with a fake clock, the daemon part with the real one.
//!
//! The states are RFC 9568's, under the names operators know from
//! keepalived: Master is the RFC's "Active" (its Active_Down_Timer is our
//! master-down timer), and Fault is keepalived's: the director's own data
//! path is unhealthy, so it holds no address and does not compete.
//!
//! The timers are exactly the RFC's, kept in microseconds so that nothing
//! is rounded: Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256,
//! Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time, where
//! Master_Adver_Interval is learned from the master's adverts (a backup
//! follows the master's pace, not its own configuration). A priority-0
//! advert (the master is stopping) leaves a backup Skew_Time only.
//!
//! Beyond the RFC, from keepalived and Heartbeat:
//! - `preempt_delay`: a backup that would preempt a lower-priority master
//!   waits this long after first hearing it (and at start-up the first
//!   master-down timer is this much longer), so that a director that just
//!   booted does not take the addresses before it is ready.
//! - Gratuitous ARP / unsolicited NA: on becoming master a burst of
//!   `master_repeat`, a second burst after `master_delay`, and, if set, one
//!   of `refresh_repeat` every `master_refresh`. A master that hears a
//!   lower priority answers with its own advert (RFC 9568) and a burst of
//!   `lower_prio_repeat`: after a split brain heals the one that stays
//!   master re-announces its addresses (keepalived #166, PR #551); for
//!   that the loser, a master hearing a higher priority, sends one advert
//!   of its own before it goes backup (`higher_prio_send_advert`).
//! - `initdead` (Heartbeat's ha.cf): at boot the first master-down timer
//!   is at least this long, so a peer that boots a little later is not
//!   declared dead.
//! - `warntime` (ha.cf): a backup that has heard nothing for this long is
//!   told so once ([`Action::LateAdvert`]) before the master-down timer
//!   decides.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A duration of `cs` centiseconds, the unit of VRRP's intervals.
pub const fn centiseconds(cs: u16) -> Duration {
    Duration::from_millis(cs as u64 * 10)
}

/// The gratuitous ARP / unsolicited NA schedule (keepalived's `garp_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpSchedule {
    /// Announcements in the burst on becoming master (default 5).
    pub master_repeat: u32,
    /// Delay of the second burst after becoming master; zero: none
    /// (default 5 s).
    pub master_delay: Duration,
    /// Period of the refresh bursts while master; zero: none (default).
    pub master_refresh: Duration,
    /// Announcements in a refresh burst (default 1).
    pub refresh_repeat: u32,
    /// Announcements in the burst a master sends on hearing a lower
    /// priority (default: as `master_repeat`).
    pub lower_prio_repeat: u32,
}

impl Default for GarpSchedule {
    fn default() -> Self {
        Self {
            master_repeat: 5,
            master_delay: Duration::from_secs(5),
            master_refresh: Duration::ZERO,
            refresh_repeat: 1,
            lower_prio_repeat: 5,
        }
    }
}

/// What one director is configured with for one virtual router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// 1–254, or 255 for the owner of the addresses (master at once).
    pub priority: u8,
    /// Advertisement_Interval, centiseconds (1–4095; default 100).
    pub advert_interval_cs: u16,
    /// Preempt_Mode: a higher priority takes over from a lower one
    /// (ha.cf's `auto_failback on`; keepalived's `nopreempt` is false).
    pub preempt: bool,
    /// How long a backup waits before preempting (keepalived's `preempt_delay`).
    pub preempt_delay: Duration,
    /// This director's primary address on the advert interface: equal
    /// priorities elect the higher one.
    pub primary_address: IpAddr,
    /// Gratuitous ARP / NA schedule.
    pub garp: GarpSchedule,
    /// The shortest first master-down timer after start-up (ha.cf's `initdead`).
    pub initdead: Duration,
    /// Silence after which a backup warns (ha.cf's `warntime`); zero: never.
    pub warntime: Duration,
    /// A master that hears a higher priority sends one advert of its own
    /// before it goes backup, so that the winner hears a lower priority and
    /// re-announces the addresses (keepalived's
    /// `vrrp_higher_prio_send_advert`; without it, after a split brain the
    /// master that stayed sends no GARP: keepalived #166).
    pub higher_prio_send_advert: bool,
    /// Overrides Master_Down_Interval (ha.cf's `deadtime`); `None`: the
    /// RFC's, from the master's advertised interval. A priority-0 advert
    /// still leaves Skew_Time only.
    pub dead_time: Option<Duration>,
    /// With connection sync (`[sync]`): a backup that would preempt a live
    /// lower-priority master first waits, at most this long, until its
    /// sync holds the peer's table ([`Machine::set_sync_pending`]); zero:
    /// no wait. A master that is down or stopping is taken over at once.
    pub sync_wait: Duration,
}

/// Settings a machine cannot run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Priority 0 is what a stopping master advertises, never a setting.
    #[error("VRRP priority 0 is reserved for a master that is stopping: use 1 to 255")]
    ZeroPriority,
    /// The advert interval is 1 to 4095 centiseconds.
    #[error("VRRP advert interval of {0} centiseconds: use 1 to 4095 (10 ms to 40.95 s)")]
    AdvertInterval(u16),
    /// A GARP refresh period with no announcement in its bursts.
    #[error("garp_master_refresh is set but garp_master_refresh_repeat is 0: use 1 or more")]
    EmptyRefresh,
}

/// The state of the virtual router on this director.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped.
    Init,
    /// Another director is master; this one listens.
    Backup,
    /// This director holds the addresses and advertises.
    Master,
    /// This director's data path is unhealthy: no addresses, no election.
    Fault,
}

impl State {
    /// The word operators see (keepalived's).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Backup => "BACKUP",
            Self::Master => "MASTER",
            Self::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the data path is unhealthy; faults are counted separately, and the
/// director recovers when the last one clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// An interface the director serves on is down.
    InterfaceDown,
    /// The workers stopped making progress.
    WorkersStalled,
    /// A tracked script failed (keepalived's `track_script`).
    TrackScript,
}

impl Fault {
    const fn bit(self) -> u8 {
        match self {
            Self::InterfaceDown => 1,
            Self::WorkersStalled => 2,
            Self::TrackScript => 4,
        }
    }
}

/// What happens to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The router is started (RFC: Startup).
    Startup,
    /// The router is stopped (RFC: Shutdown).
    Shutdown,
    /// An advert arrived that passed every receive check (checksum, TTL,
    /// VRID, authentication).
    Advert {
        /// Its priority.
        priority: u8,
        /// Its maximum advertisement interval, centiseconds.
        max_advert_interval_cs: u16,
        /// Its IP source: the sender's primary address.
        sender: IpAddr,
    },
    /// [`Machine::next_deadline`] has come.
    Timer,
    /// A fault began.
    FaultRaised(Fault),
    /// A fault ended.
    FaultCleared(Fault),
}

/// Why the state changed (for the log line and the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Started with priority 255: the owner of the addresses.
    AddressOwner,
    /// Started: listening for a master.
    Started,
    /// Stopped.
    Stopped,
    /// No advert for Master_Down_Interval.
    MasterDown,
    /// The master said it is stopping (priority 0) and Skew_Time passed.
    MasterStopped,
    /// The master's priority is below ours and preemption is on.
    Preempted,
    /// An advert with a higher priority, or equal with a higher address.
    HigherPriority {
        /// Its priority.
        priority: u8,
        /// Its sender.
        sender: IpAddr,
    },
    /// A fault began.
    Fault(Fault),
    /// The last fault ended.
    Recovered,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InterfaceDown => "an interface is down",
            Self::WorkersStalled => "the workers stalled",
            Self::TrackScript => "the track script failed",
        })
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AddressOwner => f.write_str("priority 255: the owner of the addresses"),
            Self::Started => f.write_str("started, listening for a master"),
            Self::Stopped => f.write_str("stopped"),
            Self::MasterDown => f.write_str("no advert for the master-down interval"),
            Self::MasterStopped => f.write_str("the master is stopping (priority 0)"),
            Self::Preempted => f.write_str("the master's priority is lower: preempted it"),
            Self::HigherPriority { priority, sender } => {
                write!(f, "{sender} advertises a higher priority ({priority})")
            }
            Self::Fault(fault) => write!(f, "fault: {fault}"),
            Self::Recovered => f.write_str("the fault cleared"),
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (ours, or 0 when stopping) and
    /// our advert interval.
    SendAdvert {
        /// The priority to advertise.
        priority: u8,
    },
    /// Add the virtual addresses to their interfaces.
    TakeAddresses,
    /// Send this many gratuitous ARPs / unsolicited NAs for each address.
    Announce {
        /// How many of each.
        repeat: u32,
    },
    /// Remove the virtual addresses (and their neighbour entries).
    ReleaseAddresses,
    /// Run the notify hook of the new state (`notify_master`…).
    Notify(State),
    /// Log (and count) a change of state.
    Transition {
        /// The old state.
        from: State,
        /// The new state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// A backup has heard no advert for `warntime` (once per silence).
    LateAdvert {
        /// Since the last advert (or since start-up).
        silent_for: Duration,
    },
    /// A backup would preempt but its sync does not hold the peer's
    /// table yet: it waits, at most `up_to`.
    WaitForSync {
        /// The longest wait (`Settings::sync_wait`).
        up_to: Duration,
    },
    /// The wait for the table is over: it arrived (`complete`) or the
    /// wait timed out; the preemption goes ahead.
    SyncWaitOver {
        /// How long it waited.
        waited: Duration,
        /// The table arrived.
        complete: bool,
    },
}

/// The election of one virtual router on this director.
#[derive(Debug, Clone)]
pub struct Machine {
    settings: Settings,
    state: State,
    /// Learned from the master's adverts; our own interval until then.
    master_adver_interval_cs: u16,
    faults: u8,
    /// Backup: when the master is declared down.
    master_down_at: Option<Instant>,
    /// Backup: the earliest we preempt the lower-priority master heard.
    preempt_at: Option<Instant>,
    /// Backup: the last advert heard (or start-up), and whether warned.
    heard_at: Option<Instant>,
    warned: bool,
    /// Backup: the master said it is stopping (priority 0).
    master_stopping: bool,
    /// Master: the next advert, second GARP burst, GARP refresh.
    advert_at: Option<Instant>,
    second_burst_at: Option<Instant>,
    refresh_at: Option<Instant>,
    /// Backup: a lower-priority master was last heard then (preemption).
    lower_heard_at: Option<Instant>,
    /// The sync does not hold the peer's table (the caller says).
    sync_pending: bool,
    /// Backup: waiting for the table since then, until the second.
    sync_wait: Option<(Instant, Instant)>,
}

impl Machine {
    /// A machine in Init, or why `settings` cannot run.
    pub fn new(settings: Settings) -> Result<Self, SettingsError> {
        if settings.priority == 0 {
            return Err(SettingsError::ZeroPriority);
        }
        if !(1..=xvs_packet::vrrp::MAX_INTERVAL_CS).contains(&settings.advert_interval_cs) {
            return Err(SettingsError::AdvertInterval(settings.advert_interval_cs));
        }
        if !settings.garp.master_refresh.is_zero() && settings.garp.refresh_repeat == 0 {
            return Err(SettingsError::EmptyRefresh);
        }
        Ok(Self {
            master_adver_interval_cs: settings.advert_interval_cs,
            settings,
            state: State::Init,
            faults: 0,
            master_down_at: None,
            preempt_at: None,
            heard_at: None,
            warned: false,
            master_stopping: false,
            advert_at: None,
            second_burst_at: None,
            refresh_at: None,
            lower_heard_at: None,
            sync_pending: false,
            sync_wait: None,
        })
    }

    /// The current state.
    pub const fn state(&self) -> State {
        self.state
    }

    /// Master_Adver_Interval, centiseconds: learned from the master.
    pub const fn master_adver_interval_cs(&self) -> u16 {
        self.master_adver_interval_cs
    }

    /// Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        let interval_us = u64::from(self.master_adver_interval_cs) * 10_000;
        Duration::from_micros((256 - u64::from(self.settings.priority)) * interval_us / 256)
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time, or
    /// the configured dead time.
    pub fn master_down_interval(&self) -> Duration {
        self.settings
            .dead_time
            .unwrap_or_else(|| 3 * centiseconds(self.master_adver_interval_cs) + self.skew_time())
    }

    /// The settings it runs with.
    pub const fn settings(&self) -> &Settings {
        &self.settings
    }

    /// When the caller must send [`Event::Timer`]; `None`: no timer runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        let warn_at = match (self.heard_at, self.warned) {
            (Some(at), false) if !self.settings.warntime.is_zero() => {
                Some(at + self.settings.warntime)
            }
            _ => None,
        };
        [
            self.takeover_at(),
            warn_at,
            self.advert_at,
            self.second_burst_at,
            self.refresh_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A backup takes over at its master-down timer, or later if a
    /// preempt delay runs, or, while it waits for the sync's table to
    /// preempt a live master, at the end of that wait or when that master
    /// falls silent.
    fn takeover_at(&self) -> Option<Instant> {
        let down = self.master_down_at?;
        let at = self.preempt_at.map_or(down, |p| p.max(down));
        match (self.sync_wait, self.lower_heard_at) {
            (Some((_, until)), Some(heard)) if self.sync_pending => {
                Some(at.max(until.min(heard + self.master_down_interval())))
            }
            _ => Some(at),
        }
    }

    /// The sync holds the peer's table (`false`) or not (`true`): with
    /// `Settings::sync_wait`, a preemption waits while it does not.
    pub fn set_sync_pending(&mut self, pending: bool) {
        self.sync_pending = pending;
    }

    /// Whether taking over now would preempt a live lower-priority master.
    fn preempting(&self, now: Instant) -> bool {
        self.lower_heard_at
            .is_some_and(|heard| now < heard + self.master_down_interval())
    }

    /// Handles `event` at `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, event) {
            (_, Event::FaultRaised(fault)) => self.fault_raised(fault, &mut out),
            (_, Event::FaultCleared(fault)) => self.fault_cleared(fault, now, &mut out),
            (State::Init, Event::Startup) => {
                if self.faults != 0 {
                    self.go_fault(Reason::Started, &mut out);
                } else {
                    self.start(now, true, &mut out);
                }
            }
            (State::Backup, Event::Shutdown) => {
                self.clear_timers();
                self.enter(State::Init, Reason::Stopped, &mut out);
            }
            (State::Master, Event::Shutdown) => {
                self.clear_timers();
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::ReleaseAddresses);
                self.enter(State::Init, Reason::Stopped, &mut out);
            }
            (State::Fault, Event::Shutdown) => {
                self.enter(State::Init, Reason::Stopped, &mut out);
            }
            (State::Backup, Event::Advert { .. }) => self.backup_hears(event, now),
            (State::Master, Event::Advert { .. }) => self.master_hears(event, now, &mut out),
            (State::Backup, Event::Timer) => self.backup_timer(now, &mut out),
            (State::Master, Event::Timer) => self.master_timer(now, &mut out),
            // Adverts and timers in Init or Fault, a second Startup, a
            // Shutdown in Init: nothing to do.
            _ => {}
        }
        out
    }

    /// Init → Master (priority 255) or Backup. `boot`: the first start,
    /// when `initdead` and `preempt_delay` lengthen the first timer.
    fn start(&mut self, now: Instant, boot: bool, out: &mut Vec<Action>) {
        if self.settings.priority == 255 {
            self.become_master(now, Reason::AddressOwner, out);
            return;
        }
        self.master_adver_interval_cs = self.settings.advert_interval_cs;
        let mut wait = self.master_down_interval();
        if self.settings.preempt {
            wait += self.settings.preempt_delay;
        }
        if boot {
            wait = wait.max(self.settings.initdead);
        }
        self.master_down_at = Some(now + wait);
        self.heard_at = Some(now);
        self.warned = false;
        let reason = if boot {
            Reason::Started
        } else {
            Reason::Recovered
        };
        self.enter(State::Backup, reason, out);
    }

    fn backup_hears(&mut self, event: Event, now: Instant) {
        let Event::Advert {
            priority,
            max_advert_interval_cs,
            ..
        } = event
        else {
            return;
        };
        // Any advert shows a master alive: the warning is for silence.
        self.heard_at = Some(now);
        self.warned = false;
        if priority == 0 {
            // The master is stopping: the highest-priority backup (the
            // shortest skew) takes over first.
            self.master_down_at = Some(now + self.skew_time());
            self.master_stopping = true;
            self.preempt_at = None;
            return;
        }
        self.master_stopping = false;
        if !self.settings.preempt || priority >= self.settings.priority {
            self.master_adver_interval_cs = max_advert_interval_cs;
            self.master_down_at = Some(now + self.master_down_interval());
            self.preempt_at = None;
            self.lower_heard_at = None;
            self.sync_wait = None;
            return;
        }
        self.lower_heard_at = Some(now);
        // A lower priority and preemption on: the advert is discarded and
        // the master-down timer runs on; with a preempt delay, not before
        // that delay after the first such advert.
        if self.preempt_at.is_none() && !self.settings.preempt_delay.is_zero() {
            self.preempt_at = Some(now + self.settings.preempt_delay);
        }
    }

    fn master_hears(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        let Event::Advert {
            priority,
            max_advert_interval_cs,
            sender,
        } = event
        else {
            return;
        };
        if priority == 0 {
            // Another master stopping: assert ours at once.
            out.push(Action::SendAdvert {
                priority: self.settings.priority,
            });
            self.advert_at = Some(now + self.advert_interval());
            return;
        }
        let ours = self.settings.priority;
        let higher = priority > ours
            || (priority == ours && addr_key(sender) > addr_key(self.settings.primary_address));
        if higher {
            if self.settings.higher_prio_send_advert {
                out.push(Action::SendAdvert { priority: ours });
            }
            self.clear_timers();
            self.master_adver_interval_cs = max_advert_interval_cs;
            self.master_down_at = Some(now + self.master_down_interval());
            self.heard_at = Some(now);
            self.warned = false;
            out.push(Action::ReleaseAddresses);
            self.enter(
                State::Backup,
                Reason::HigherPriority { priority, sender },
                out,
            );
        } else {
            // RFC 9568: assert the master state to the sender and to the
            // learning bridges; and re-announce the addresses, which the
            // other side may have held (split brain healing).
            out.push(Action::SendAdvert { priority: ours });
            self.advert_at = Some(now + self.advert_interval());
            if self.settings.garp.lower_prio_repeat > 0 {
                out.push(Action::Announce {
                    repeat: self.settings.garp.lower_prio_repeat,
                });
            }
        }
    }

    fn backup_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some(at) = self.takeover_at()
            && now >= at
        {
            if self.preempting(now) && !self.settings.sync_wait.is_zero() {
                match self.sync_wait {
                    None if self.sync_pending => {
                        self.sync_wait = Some((now, now + self.settings.sync_wait));
                        out.push(Action::WaitForSync {
                            up_to: self.settings.sync_wait,
                        });
                        return;
                    }
                    Some((since, _)) => out.push(Action::SyncWaitOver {
                        waited: now.saturating_duration_since(since),
                        complete: !self.sync_pending,
                    }),
                    None => {}
                }
            }
            let reason = if self.preempt_at.is_some() || self.preempting(now) {
                Reason::Preempted
            } else if self.master_stopping {
                Reason::MasterStopped
            } else {
                Reason::MasterDown
            };
            self.become_master(now, reason, out);
            return;
        }
        let warntime = self.settings.warntime;
        if let Some(heard) = self.heard_at
            && !self.warned
            && !warntime.is_zero()
            && now >= heard + warntime
        {
            self.warned = true;
            out.push(Action::LateAdvert {
                silent_for: now.saturating_duration_since(heard),
            });
        }
    }

    fn master_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.advert_at.is_some_and(|at| now >= at) {
            out.push(Action::SendAdvert {
                priority: self.settings.priority,
            });
            self.advert_at = Some(now + self.advert_interval());
        }
        if self.second_burst_at.is_some_and(|at| now >= at) {
            self.second_burst_at = None;
            out.push(Action::Announce {
                repeat: self.settings.garp.master_repeat,
            });
        }
        if self.refresh_at.is_some_and(|at| now >= at) {
            self.refresh_at = Some(now + self.settings.garp.master_refresh);
            out.push(Action::Announce {
                repeat: self.settings.garp.refresh_repeat,
            });
        }
    }

    fn become_master(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        self.clear_timers();
        let garp = self.settings.garp;
        out.push(Action::SendAdvert {
            priority: self.settings.priority,
        });
        out.push(Action::TakeAddresses);
        out.push(Action::Announce {
            repeat: garp.master_repeat,
        });
        self.advert_at = Some(now + self.advert_interval());
        self.second_burst_at = (!garp.master_delay.is_zero()).then(|| now + garp.master_delay);
        self.refresh_at = (!garp.master_refresh.is_zero()).then(|| now + garp.master_refresh);
        self.enter(State::Master, reason, out);
    }

    fn fault_raised(&mut self, fault: Fault, out: &mut Vec<Action>) {
        let first = self.faults == 0;
        self.faults |= fault.bit();
        if !first {
            return;
        }
        match self.state {
            State::Master => {
                self.clear_timers();
                // Priority 0: the backup takes over after its skew alone.
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::ReleaseAddresses);
                self.go_fault(Reason::Fault(fault), out);
            }
            State::Backup => {
                self.clear_timers();
                self.go_fault(Reason::Fault(fault), out);
            }
            // In Init the fault is remembered: Startup goes to Fault.
            State::Init | State::Fault => {}
        }
    }

    fn fault_cleared(&mut self, fault: Fault, now: Instant, out: &mut Vec<Action>) {
        if self.faults == 0 {
            return;
        }
        self.faults &= !fault.bit();
        if self.faults == 0 && self.state == State::Fault {
            self.start(now, false, out);
        }
    }

    fn go_fault(&mut self, reason: Reason, out: &mut Vec<Action>) {
        self.clear_timers();
        self.enter(State::Fault, reason, out);
    }

    fn enter(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        out.push(Action::Transition { from, to, reason });
        if to != State::Init {
            out.push(Action::Notify(to));
        }
    }

    fn clear_timers(&mut self) {
        self.master_down_at = None;
        self.preempt_at = None;
        self.heard_at = None;
        self.warned = false;
        self.master_stopping = false;
        self.advert_at = None;
        self.second_burst_at = None;
        self.refresh_at = None;
        self.lower_heard_at = None;
        self.sync_wait = None;
    }

    fn advert_interval(&self) -> Duration {
        centiseconds(self.settings.advert_interval_cs)
    }
}

/// RFC 9568: primary addresses compare as unsigned integers in network
/// byte order.
fn addr_key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Every transition of RFC 9568 §6.4 has a test named after it; the RFC's
/// words (with "Active" read as master):
///
/// §6.4.1 Initialize, on Startup:
/// - "If the Priority = 255 … Send an ADVERTISEMENT … broadcast a
///   gratuitous ARP … Set the Adver_Timer to Advertisement_Interval …
///   Transition to the {Active} state": `init_startup_owner_becomes_master`.
/// - "else … Set Active_Adver_Interval to Advertisement_Interval … Set the
///   Active_Down_Timer to Active_Down_Interval … Transition to the {Backup}
///   state": `init_startup_becomes_backup`.
///
/// §6.4.2 Backup:
/// - "If a Shutdown event is received … Cancel the Active_Down_Timer …
///   Transition to the {Initialize} state": `backup_shutdown_goes_to_init`.
/// - "If the Active_Down_Timer fires … Send an ADVERTISEMENT … gratuitous
///   ARP … Set the Adver_Timer … Transition to the {Active} state":
///   `backup_master_down_timer_fires_becomes_master`.
/// - "If the Priority in the ADVERTISEMENT is zero … Set the
///   Active_Down_Timer to Skew_Time": `backup_priority_zero_waits_skew_time`.
/// - "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is
///   greater than or equal to the local Priority … Set
///   Active_Adver_Interval to Adver Interval contained in the ADVERTISEMENT
///   … Recompute the Active_Down_Interval … Reset the Active_Down_Timer":
///   `backup_higher_or_equal_priority_resets_timer_and_learns_interval`,
///   `backup_without_preempt_follows_a_lower_priority`.
/// - "else … Discard the ADVERTISEMENT": `backup_preempts_a_lower_priority`.
///
/// §6.4.3 Active:
/// - "If a Shutdown event is received … Cancel the Adver_Timer … Send an
///   ADVERTISEMENT with Priority = 0 … Transition to the {Initialize}
///   state": `master_shutdown_sends_priority_zero`.
/// - "If the Adver_Timer fires … Send an ADVERTISEMENT … Reset the
///   Adver_Timer": `master_adver_timer_fires_sends_advert`.
/// - "If the Priority in the ADVERTISEMENT is zero … Send an ADVERTISEMENT
///   … Reset the Adver_Timer": `master_hears_priority_zero_and_answers`.
/// - "If the Priority in the ADVERTISEMENT is greater than the local
///   Priority or the Priority in the ADVERTISEMENT is equal to the local
///   Priority and the primary IPvX address of the sender is greater than the
///   local primary IPvX address … Cancel Adver_Timer … Set
///   Active_Adver_Interval … Recompute … Set Active_Down_Timer … Transition
///   to the {Backup} state": `master_hears_higher_priority_goes_backup`,
///   `master_hears_equal_priority_from_higher_address_goes_backup`.
/// - "else … Send an ADVERTISEMENT immediately … Discard the ADVERTISEMENT":
///   `master_hears_lower_priority_answers_at_once_and_reannounces`,
///   `master_hears_equal_priority_from_lower_address_answers`.
///
/// Beyond: the timers' worked values, preempt on/off and `preempt_delay`,
/// `initdead`, `warntime`, the GARP schedule, split brain, fault and
/// recovery, and a failover between two machines.
#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    const A_ADDR: &str = "192.0.2.1";
    const B_ADDR: &str = "192.0.2.2";

    fn settings(priority: u8, addr: &str) -> Settings {
        Settings {
            priority,
            advert_interval_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address: addr.parse().unwrap(),
            garp: GarpSchedule::default(),
            initdead: Duration::ZERO,
            warntime: Duration::ZERO,
            higher_prio_send_advert: true,
            dead_time: None,
            sync_wait: Duration::ZERO,
        }
    }

    /// The fake clock: an origin and milliseconds from it.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Self(Instant::now())
        }
        fn ms(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
        fn us(&self, us: u64) -> Instant {
            self.0 + Duration::from_micros(us)
        }
    }

    fn advert(priority: u8, sender: &str) -> Event {
        Event::Advert {
            priority,
            max_advert_interval_cs: 100,
            sender: sender.parse().unwrap(),
        }
    }

    fn transitions(actions: &[Action]) -> Vec<(State, State)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Transition { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    fn reason(actions: &[Action]) -> Option<Reason> {
        actions.iter().find_map(|a| match a {
            Action::Transition { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    /// Fires every timer due up to `until`, each at its own deadline.
    fn run_until(m: &mut Machine, until: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(at) = m.next_deadline().filter(|at| *at <= until) {
            out.extend(m.handle(Event::Timer, at));
        }
        out
    }

    fn started_backup(s: Settings, clock: &Clock) -> Machine {
        let mut m = Machine::new(s).unwrap();
        let out = m.handle(Event::Startup, clock.ms(0));
        assert_eq!(transitions(&out), vec![(State::Init, State::Backup)]);
        m
    }

    fn started_master(s: Settings, clock: &Clock) -> Machine {
        let mut m = started_backup(s, clock);
        let down = m.master_down_interval();
        run_until(&mut m, clock.0 + down);
        assert_eq!(m.state(), State::Master);
        m
    }

    const MASTER_ENTRY: [Action; 3] = [
        Action::SendAdvert { priority: 150 },
        Action::TakeAddresses,
        Action::Announce { repeat: 5 },
    ];

    #[test]
    fn timers_match_the_rfc_worked_values() {
        let m = |p| Machine::new(settings(p, A_ADDR)).unwrap();
        // keepalived's man page: priority 128, advert 1 s → 3.5 s.
        assert_eq!(m(128).skew_time(), Duration::from_millis(500));
        assert_eq!(m(128).master_down_interval(), Duration::from_millis(3_500));
        // ((256 − 200) × 100 cs) / 256 = 21.875 cs.
        assert_eq!(
            m(200).master_down_interval(),
            Duration::from_micros(3_218_750)
        );
        assert_eq!(
            m(100).master_down_interval(),
            Duration::from_micros(3_609_375)
        );
        assert_eq!(m(1).skew_time(), Duration::from_micros(996_093));
        let mut fast = settings(150, A_ADDR);
        fast.advert_interval_cs = 10;
        // 100 ms adverts: 300 ms + (106 × 10 cs) / 256.
        assert_eq!(
            Machine::new(fast).unwrap().master_down_interval(),
            Duration::from_micros(341_406)
        );
        // ha.cf's deadtime overrides it, whatever the master advertises.
        let mut dead = settings(150, A_ADDR);
        dead.dead_time = Some(Duration::from_secs(2));
        let mut m = Machine::new(dead).unwrap();
        assert_eq!(m.master_down_interval(), Duration::from_secs(2));
        let clock = Clock(Instant::now());
        m.handle(Event::Startup, clock.ms(0));
        m.handle(
            Event::Advert {
                priority: 200,
                max_advert_interval_cs: 10,
                sender: B_ADDR.parse().unwrap(),
            },
            clock.ms(10),
        );
        assert_eq!(m.next_deadline(), Some(clock.ms(2_010)));
    }

    #[test]
    fn settings_it_cannot_run_with_are_refused() {
        let mut s = settings(0, A_ADDR);
        assert_eq!(Machine::new(s).err(), Some(SettingsError::ZeroPriority));
        s.priority = 100;
        for bad in [0, 4096] {
            s.advert_interval_cs = bad;
            assert_eq!(
                Machine::new(s).err(),
                Some(SettingsError::AdvertInterval(bad))
            );
        }
        s.advert_interval_cs = 4095;
        s.garp.master_refresh = Duration::from_secs(60);
        s.garp.refresh_repeat = 0;
        assert_eq!(Machine::new(s).err(), Some(SettingsError::EmptyRefresh));
        s.garp.refresh_repeat = 1;
        assert!(Machine::new(s).is_ok());
    }

    #[test]
    fn init_startup_owner_becomes_master() {
        let clock = Clock::new();
        let mut m = Machine::new(settings(255, A_ADDR)).unwrap();
        let out = m.handle(Event::Startup, clock.ms(0));
        assert_eq!(
            &out[..3],
            &[
                Action::SendAdvert { priority: 255 },
                Action::TakeAddresses,
                Action::Announce { repeat: 5 }
            ]
        );
        assert_eq!(reason(&out), Some(Reason::AddressOwner));
        assert_eq!(out.last(), Some(&Action::Notify(State::Master)));
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), Some(clock.ms(1_000)), "Adver_Timer");
    }

    #[test]
    fn init_startup_becomes_backup() {
        let clock = Clock::new();
        let mut m = Machine::new(settings(150, A_ADDR)).unwrap();
        let out = m.handle(Event::Startup, clock.ms(0));
        assert_eq!(
            out,
            vec![
                Action::Transition {
                    from: State::Init,
                    to: State::Backup,
                    reason: Reason::Started
                },
                Action::Notify(State::Backup)
            ]
        );
        assert_eq!(m.master_adver_interval_cs(), 100);
        // 3 s + (106 × 100 cs) / 256 = 3.4140625 s.
        assert_eq!(m.next_deadline(), Some(clock.us(3_414_062)));
        assert!(m.handle(Event::Startup, clock.ms(1)).is_empty(), "once");
    }

    #[test]
    fn backup_shutdown_goes_to_init() {
        let clock = Clock::new();
        let mut m = started_backup(settings(150, A_ADDR), &clock);
        let out = m.handle(Event::Shutdown, clock.ms(10));
        assert_eq!(transitions(&out), vec![(State::Backup, State::Init)]);
        assert!(
            !out.contains(&Action::ReleaseAddresses),
            "a backup holds none"
        );
        assert_eq!(m.next_deadline(), None, "Master_Down_Timer cancelled");
        assert!(run_until(&mut m, clock.ms(10_000)).is_empty());
    }

    #[test]
    fn backup_master_down_timer_fires_becomes_master() {
        let clock = Clock::new();
        let mut m = started_backup(settings(150, A_ADDR), &clock);
        assert!(
            m.handle(Event::Timer, clock.ms(3_414)).is_empty(),
            "not yet"
        );
        let out = m.handle(Event::Timer, clock.us(3_414_062));
        assert_eq!(&out[..3], &MASTER_ENTRY);
        assert_eq!(reason(&out), Some(Reason::MasterDown));
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), Some(clock.us(4_414_062)), "Adver_Timer");
    }

    #[test]
    fn backup_priority_zero_waits_skew_time() {
        let clock = Clock::new();
        let mut m = started_backup(settings(150, A_ADDR), &clock);
        assert!(m.handle(advert(0, B_ADDR), clock.ms(1_000)).is_empty());
        // Skew_Time for 150: 106/256 s = 414.0625 ms.
        assert_eq!(m.next_deadline(), Some(clock.us(1_414_062)));
        let out = run_until(&mut m, clock.us(1_414_062));
        assert_eq!(reason(&out), Some(Reason::MasterStopped));
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn backup_higher_or_equal_priority_resets_timer_and_learns_interval() {
        let clock = Clock::new();
        let mut m = started_backup(settings(150, A_ADDR), &clock);
        for (t, p) in [(3_000, 200), (6_000, 150)] {
            assert!(m.handle(advert(p, B_ADDR), clock.ms(t)).is_empty());
            assert_eq!(m.next_deadline(), Some(clock.us(t * 1_000 + 3_414_062)));
        }
        // The master advertises every 50 cs: the backup follows its pace.
        let fast = Event::Advert {
            priority: 200,
            max_advert_interval_cs: 50,
            sender: B_ADDR.parse().unwrap(),
        };
        m.handle(fast, clock.ms(7_000));
        assert_eq!(m.master_adver_interval_cs(), 50);
        // 1.5 s + (106 × 50 cs) / 256 = 1.70703125 s.
        assert_eq!(m.next_deadline(), Some(clock.us(8_707_031)));
        assert!(run_until(&mut m, clock.ms(8_700)).is_empty());
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn backup_without_preempt_follows_a_lower_priority() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.preempt = false;
        let mut m = started_backup(s, &clock);
        for t in (1..30).map(|i| i * 1_000) {
            m.handle(advert(100, B_ADDR), clock.ms(t));
            assert!(run_until(&mut m, clock.ms(t + 999)).is_empty());
        }
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn backup_preempts_a_lower_priority() {
        let clock = Clock::new();
        let mut m = started_backup(settings(150, A_ADDR), &clock);
        let mut out = Vec::new();
        for t in (1..4).map(|i| i * 1_000) {
            out.extend(run_until(&mut m, clock.ms(t)));
            out.extend(m.handle(advert(100, B_ADDR), clock.ms(t)));
        }
        out.extend(run_until(&mut m, clock.ms(3_500)));
        // Discarded: the timer set at start-up fires as if nothing was heard.
        assert_eq!(transitions(&out), vec![(State::Backup, State::Master)]);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn a_preemption_waits_for_the_sync_table_a_dead_master_does_not() {
        // Adverts every second from a lower-priority master; the backup's
        // timer fires at 3.41 s, its sync has no table yet.
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.sync_wait = Duration::from_secs(30);
        let hear_until = |m: &mut Machine, from: u64, to: u64, out: &mut Vec<Action>| {
            for t in (from..=to).map(|i| i * 1_000) {
                out.extend(run_until(m, clock.ms(t)));
                out.extend(m.handle(advert(100, B_ADDR), clock.ms(t)));
            }
        };
        let mut m = started_backup(s, &clock);
        m.set_sync_pending(true);
        let mut out = Vec::new();
        hear_until(&mut m, 1, 10, &mut out);
        assert_eq!(
            out,
            vec![Action::WaitForSync {
                up_to: Duration::from_secs(30)
            }]
        );
        assert_eq!(m.state(), State::Backup);
        // The table arrives at 10.5 s: the preemption goes ahead at once.
        m.set_sync_pending(false);
        assert!(m.next_deadline().is_some_and(|d| d <= clock.ms(10_500)));
        let out = m.handle(Event::Timer, clock.ms(10_500));
        assert_eq!(
            out[0],
            Action::SyncWaitOver {
                waited: Duration::from_micros(10_500_000 - 3_414_062),
                complete: true
            }
        );
        assert_eq!(reason(&out), Some(Reason::Preempted));
        assert_eq!(m.state(), State::Master);

        // The table never comes: at most sync_wait.
        let mut m = started_backup(s, &clock);
        m.set_sync_pending(true);
        let mut out = Vec::new();
        hear_until(&mut m, 1, 33, &mut out);
        assert_eq!(m.state(), State::Backup, "{out:?}");
        out.clear();
        hear_until(&mut m, 34, 34, &mut out);
        assert!(
            out.contains(&Action::SyncWaitOver {
                waited: Duration::from_secs(30),
                complete: false
            }),
            "{out:?}"
        );
        assert_eq!(m.state(), State::Master);

        // The lower-priority master dies while the backup waits: taken
        // over one master-down interval after its last advert, not later.
        let mut m = started_backup(s, &clock);
        m.set_sync_pending(true);
        let mut out = Vec::new();
        hear_until(&mut m, 1, 5, &mut out);
        assert_eq!(m.state(), State::Backup);
        out.clear();
        out.extend(run_until(&mut m, clock.ms(8_414)));
        assert_eq!(m.state(), State::Backup, "{out:?}");
        out.extend(run_until(&mut m, clock.ms(8_415)));
        assert_eq!(m.state(), State::Master, "{out:?}");
        assert!(
            !out.iter().any(|a| matches!(a, Action::SyncWaitOver { .. })),
            "not a preemption: {out:?}"
        );

        // A master that is simply down: no wait at all.
        let mut m = started_backup(s, &clock);
        m.set_sync_pending(true);
        let out = run_until(&mut m, clock.ms(3_500));
        assert_eq!(reason(&out), Some(Reason::MasterDown));
    }

    #[test]
    fn master_shutdown_sends_priority_zero() {
        let clock = Clock::new();
        let mut m = started_master(settings(150, A_ADDR), &clock);
        let out = m.handle(Event::Shutdown, clock.ms(5_000));
        assert_eq!(
            &out[..3],
            &[
                Action::SendAdvert { priority: 0 },
                Action::ReleaseAddresses,
                Action::Transition {
                    from: State::Master,
                    to: State::Init,
                    reason: Reason::Stopped
                }
            ]
        );
        assert_eq!(m.next_deadline(), None, "Adver_Timer cancelled");
    }

    #[test]
    fn master_adver_timer_fires_sends_advert() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.garp.master_delay = Duration::ZERO;
        let mut m = started_master(s, &clock);
        let t0 = clock.us(3_414_062);
        let out = run_until(&mut m, t0 + Duration::from_millis(3_000));
        assert_eq!(out, vec![Action::SendAdvert { priority: 150 }; 3]);
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_millis(4_000)));
    }

    #[test]
    fn master_hears_priority_zero_and_answers() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.garp.master_delay = Duration::ZERO;
        let mut m = started_master(s, &clock);
        let out = m.handle(advert(0, B_ADDR), clock.ms(4_000));
        assert_eq!(out, vec![Action::SendAdvert { priority: 150 }]);
        assert_eq!(
            m.next_deadline(),
            Some(clock.ms(5_000)),
            "Adver_Timer reset"
        );
    }

    #[test]
    fn master_hears_higher_priority_goes_backup() {
        let clock = Clock::new();
        let mut m = started_master(settings(150, A_ADDR), &clock);
        let slow = Event::Advert {
            priority: 200,
            max_advert_interval_cs: 200,
            sender: B_ADDR.parse().unwrap(),
        };
        let out = m.handle(slow, clock.ms(4_000));
        // One advert of its own first (higher_prio_send_advert), so that
        // the winner hears a lower priority and re-announces.
        assert_eq!(
            &out[..2],
            &[
                Action::SendAdvert { priority: 150 },
                Action::ReleaseAddresses
            ]
        );
        assert_eq!(transitions(&out), vec![(State::Master, State::Backup)]);
        assert_eq!(
            reason(&out),
            Some(Reason::HigherPriority {
                priority: 200,
                sender: B_ADDR.parse().unwrap()
            })
        );
        assert_eq!(m.master_adver_interval_cs(), 200);
        // 6 s + (106 × 200 cs) / 256: the GARP and advert timers are gone.
        assert_eq!(m.next_deadline(), Some(clock.us(10_828_125)));
        let mut s = settings(150, A_ADDR);
        s.higher_prio_send_advert = false;
        let mut quiet = started_master(s, &clock);
        let out = quiet.handle(slow, clock.ms(4_000));
        assert_eq!(out[0], Action::ReleaseAddresses, "RFC 9568 alone: silent");
    }

    #[test]
    fn master_hears_equal_priority_from_higher_address_goes_backup() {
        let clock = Clock::new();
        let mut m = started_master(settings(150, A_ADDR), &clock);
        let out = m.handle(advert(150, B_ADDR), clock.ms(4_000));
        assert_eq!(transitions(&out), vec![(State::Master, State::Backup)]);
    }

    #[test]
    fn master_hears_equal_priority_from_lower_address_answers() {
        let clock = Clock::new();
        let mut m = started_master(settings(150, B_ADDR), &clock);
        let out = m.handle(advert(150, A_ADDR), clock.ms(4_000));
        assert_eq!(
            out,
            vec![
                Action::SendAdvert { priority: 150 },
                Action::Announce { repeat: 5 }
            ]
        );
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn master_hears_lower_priority_answers_at_once_and_reannounces() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.garp.lower_prio_repeat = 3;
        let mut m = started_master(s, &clock);
        let out = m.handle(advert(100, B_ADDR), clock.ms(4_000));
        assert_eq!(
            out,
            vec![
                Action::SendAdvert { priority: 150 },
                Action::Announce { repeat: 3 }
            ]
        );
        assert_eq!(
            m.next_deadline(),
            Some(clock.ms(5_000)),
            "Adver_Timer reset"
        );
        s.garp.lower_prio_repeat = 0;
        let mut quiet = started_master(s, &clock);
        let out = quiet.handle(advert(100, B_ADDR), clock.ms(4_000));
        assert_eq!(out, vec![Action::SendAdvert { priority: 150 }]);
    }

    #[test]
    fn preempt_delay_lengthens_the_first_timer_at_boot() {
        // keepalived's man page: priority 128, advert 1 s, preempt_delay 2
        // → 5.5 s instead of 3.5 s.
        let clock = Clock::new();
        let mut s = settings(128, A_ADDR);
        s.preempt_delay = Duration::from_secs(2);
        let m = started_backup(s, &clock);
        assert_eq!(m.next_deadline(), Some(clock.ms(5_500)));
        s.preempt = false;
        let m = started_backup(s, &clock);
        assert_eq!(
            m.next_deadline(),
            Some(clock.ms(3_500)),
            "no preemption, no delay"
        );
    }

    #[test]
    fn preempt_delay_postpones_taking_over_from_a_lower_priority() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.preempt_delay = Duration::from_secs(10);
        let mut m = started_backup(s, &clock);
        // A higher master until 4 s, then a lower one from 5 s.
        let mut out = Vec::new();
        for t in (1..5).map(|i| i * 1_000) {
            out.extend(m.handle(advert(200, B_ADDR), clock.ms(t)));
        }
        for t in (5..20).map(|i| i * 1_000) {
            out.extend(run_until(&mut m, clock.ms(t)));
            out.extend(m.handle(advert(100, "192.0.2.3"), clock.ms(t)));
        }
        out.extend(run_until(&mut m, clock.ms(15_000)));
        let at = transitions(&out);
        assert_eq!(at, vec![(State::Backup, State::Master)]);
        assert_eq!(reason(&out), Some(Reason::Preempted));
        // Not at 1 + 3.41 s (the higher master's timer), but 10 s after
        // the first lower advert.
        let mut again = started_backup(s, &clock);
        again.handle(advert(200, B_ADDR), clock.ms(1_000));
        again.handle(advert(100, "192.0.2.3"), clock.ms(3_000));
        again.handle(advert(100, "192.0.2.3"), clock.ms(4_000));
        assert_eq!(again.next_deadline(), Some(clock.ms(13_000)));
        assert!(run_until(&mut again, clock.ms(12_999)).is_empty());
        assert_eq!(again.state(), State::Backup);
        assert_eq!(
            reason(&run_until(&mut again, clock.ms(13_000))),
            Some(Reason::Preempted)
        );
    }

    #[test]
    fn initdead_is_the_shortest_first_timer() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.initdead = Duration::from_secs(30);
        let mut m = started_backup(s, &clock);
        assert_eq!(m.next_deadline(), Some(clock.ms(30_000)));
        assert!(run_until(&mut m, clock.ms(29_999)).is_empty());
        // Once a master was heard, the RFC's interval counts again.
        m.handle(advert(200, B_ADDR), clock.ms(29_000));
        assert_eq!(m.next_deadline(), Some(clock.us(32_414_062)));
        s.initdead = Duration::from_secs(1);
        let m = started_backup(s, &clock);
        assert_eq!(
            m.next_deadline(),
            Some(clock.us(3_414_062)),
            "never shorter"
        );
    }

    #[test]
    fn warntime_warns_once_per_silence() {
        let clock = Clock::new();
        let mut s = settings(150, A_ADDR);
        s.warntime = Duration::from_millis(2_500);
        let mut m = started_backup(s, &clock);
        m.handle(advert(200, B_ADDR), clock.ms(1_000));
        let out = run_until(&mut m, clock.ms(3_600));
        assert_eq!(
            out,
            vec![Action::LateAdvert {
                silent_for: Duration::from_millis(2_500)
            }]
        );
        assert!(run_until(&mut m, clock.ms(4_000)).is_empty(), "once");
        m.handle(advert(200, B_ADDR), clock.ms(4_000));
        let out = run_until(&mut m, clock.ms(6_500));
        assert_eq!(out.len(), 1, "again after the next silence");
    }

    #[test]
    fn becoming_master_announces_then_a_second_burst_then_refreshes() {
        let clock = Clock::new();
        let mut s = settings(255, A_ADDR);
        s.garp = GarpSchedule {
            master_repeat: 3,
            master_delay: Duration::from_millis(2_500),
            master_refresh: Duration::from_secs(60),
            refresh_repeat: 2,
            lower_prio_repeat: 3,
        };
        let mut m = Machine::new(s).unwrap();
        let out = m.handle(Event::Startup, clock.ms(0));
        assert!(out.contains(&Action::Announce { repeat: 3 }));
        let bursts = |out: &[Action]| {
            out.iter()
                .filter(|a| matches!(a, Action::Announce { .. }))
                .copied()
                .collect::<Vec<_>>()
        };
        assert!(bursts(&run_until(&mut m, clock.ms(2_499))).is_empty());
        assert_eq!(
            bursts(&run_until(&mut m, clock.ms(2_500))),
            vec![Action::Announce { repeat: 3 }]
        );
        assert!(bursts(&run_until(&mut m, clock.ms(59_999))).is_empty());
        assert_eq!(
            bursts(&run_until(&mut m, clock.ms(120_000))),
            vec![Action::Announce { repeat: 2 }; 2]
        );
    }

    #[test]
    fn fault_in_master_releases_with_priority_zero_and_recovers_as_backup() {
        let clock = Clock::new();
        let mut m = started_master(settings(150, A_ADDR), &clock);
        let out = m.handle(Event::FaultRaised(Fault::InterfaceDown), clock.ms(5_000));
        assert_eq!(
            out,
            vec![
                Action::SendAdvert { priority: 0 },
                Action::ReleaseAddresses,
                Action::Transition {
                    from: State::Master,
                    to: State::Fault,
                    reason: Reason::Fault(Fault::InterfaceDown)
                },
                Action::Notify(State::Fault)
            ]
        );
        assert_eq!(m.next_deadline(), None);
        assert!(
            m.handle(advert(100, B_ADDR), clock.ms(6_000)).is_empty(),
            "no election"
        );
        let out = m.handle(Event::FaultCleared(Fault::InterfaceDown), clock.ms(7_000));
        assert_eq!(transitions(&out), vec![(State::Fault, State::Backup)]);
        assert_eq!(reason(&out), Some(Reason::Recovered));
        assert_eq!(m.next_deadline(), Some(clock.us(10_414_062)));
    }

    #[test]
    fn faults_clear_only_when_every_one_has() {
        let clock = Clock::new();
        let mut m = started_backup(settings(150, A_ADDR), &clock);
        let out = m.handle(Event::FaultRaised(Fault::WorkersStalled), clock.ms(1));
        assert_eq!(transitions(&out), vec![(State::Backup, State::Fault)]);
        assert!(
            m.handle(Event::FaultRaised(Fault::TrackScript), clock.ms(2))
                .is_empty()
        );
        assert!(
            m.handle(Event::FaultCleared(Fault::WorkersStalled), clock.ms(3))
                .is_empty()
        );
        assert_eq!(m.state(), State::Fault);
        let out = m.handle(Event::FaultCleared(Fault::TrackScript), clock.ms(4));
        assert_eq!(transitions(&out), vec![(State::Fault, State::Backup)]);
        let out = m.handle(Event::Shutdown, clock.ms(5));
        assert_eq!(transitions(&out), vec![(State::Backup, State::Init)]);
    }

    #[test]
    fn a_fault_before_startup_starts_in_fault() {
        let clock = Clock::new();
        let mut m = Machine::new(settings(255, A_ADDR)).unwrap();
        assert!(
            m.handle(Event::FaultRaised(Fault::InterfaceDown), clock.ms(0))
                .is_empty()
        );
        let out = m.handle(Event::Startup, clock.ms(1));
        assert_eq!(transitions(&out), vec![(State::Init, State::Fault)]);
        assert!(!out.contains(&Action::TakeAddresses), "not even the owner");
        let out = m.handle(Event::FaultCleared(Fault::InterfaceDown), clock.ms(2));
        assert_eq!(transitions(&out), vec![(State::Fault, State::Master)]);
        let out = m.handle(Event::Shutdown, clock.ms(3));
        assert!(out.contains(&Action::SendAdvert { priority: 0 }));
    }

    /// Two directors on one link the test can cut: each advert one sends
    /// reaches the other at once while the link is up.
    struct Pair {
        machines: [Machine; 2],
        logs: [Vec<Action>; 2],
        link_up: bool,
        alive: [bool; 2],
    }

    impl Pair {
        fn new(a: Settings, b: Settings) -> Self {
            Self {
                machines: [Machine::new(a).unwrap(), Machine::new(b).unwrap()],
                logs: [Vec::new(), Vec::new()],
                link_up: true,
                alive: [true, true],
            }
        }

        fn deliver(&mut self, who: usize, event: Event, now: Instant) {
            let mut queue = VecDeque::from([(who, event)]);
            while let Some((i, event)) = queue.pop_front() {
                let out = self.machines[i].handle(event, now);
                for action in &out {
                    if let Action::SendAdvert { priority } = action
                        && self.link_up
                        && self.alive[1 - i]
                    {
                        let sender = self.machines[i].settings.primary_address;
                        queue.push_back((
                            1 - i,
                            Event::Advert {
                                priority: *priority,
                                max_advert_interval_cs: 100,
                                sender,
                            },
                        ));
                    }
                }
                self.logs[i].extend(out);
            }
        }

        fn run_until(&mut self, until: Instant) {
            loop {
                let next = (0..2)
                    .filter(|&i| self.alive[i])
                    .filter_map(|i| self.machines[i].next_deadline().map(|at| (at, i)))
                    .min();
                match next {
                    Some((at, i)) if at <= until => self.deliver(i, Event::Timer, at),
                    _ => return,
                }
            }
        }

        fn states(&self) -> [State; 2] {
            [self.machines[0].state(), self.machines[1].state()]
        }
    }

    fn started_pair(a: Settings, b: Settings, clock: &Clock) -> Pair {
        let mut pair = Pair::new(a, b);
        pair.deliver(0, Event::Startup, clock.ms(0));
        pair.deliver(1, Event::Startup, clock.ms(0));
        pair.run_until(clock.ms(10_000));
        pair
    }

    #[test]
    fn a_pair_elects_the_higher_priority_and_fails_over() {
        let clock = Clock::new();
        let mut pair = started_pair(settings(150, A_ADDR), settings(100, B_ADDR), &clock);
        assert_eq!(pair.states(), [State::Master, State::Backup]);
        // kill -9 of the master at 10 s: its last advert left at
        // 9.414062 s (it became master at 3.414062 s), so the backup takes
        // over a Master_Down_Interval later (3.609375 s for priority 100).
        pair.alive[0] = false;
        pair.logs[1].clear();
        pair.run_until(clock.us(9_414_062 + 3_609_374));
        assert_eq!(pair.machines[1].state(), State::Backup);
        pair.run_until(clock.us(9_414_062 + 3_609_375));
        assert_eq!(pair.machines[1].state(), State::Master);
        assert!(pair.logs[1].contains(&Action::TakeAddresses));
    }

    #[test]
    fn a_clean_stop_hands_over_after_the_skew_alone() {
        let clock = Clock::new();
        let mut pair = started_pair(settings(150, A_ADDR), settings(100, B_ADDR), &clock);
        pair.deliver(0, Event::Shutdown, clock.ms(10_000));
        pair.alive[0] = false;
        // Skew_Time for 100: 156/256 s = 609.375 ms.
        pair.run_until(clock.ms(10_609));
        assert_eq!(pair.machines[1].state(), State::Backup);
        pair.run_until(clock.ms(10_610));
        assert_eq!(pair.machines[1].state(), State::Master);
        assert_eq!(
            reason(&pair.logs[1][pair.logs[1].len() - 5..]),
            Some(Reason::MasterStopped)
        );
    }

    #[test]
    fn the_old_master_returns_and_preempts_or_not() {
        for preempt in [true, false] {
            let clock = Clock::new();
            let mut a = settings(150, A_ADDR);
            a.preempt = preempt;
            a.preempt_delay = Duration::from_secs(5);
            let mut pair = started_pair(a, settings(100, B_ADDR), &clock);
            pair.alive[0] = false;
            pair.run_until(clock.ms(20_000));
            assert_eq!(pair.machines[1].state(), State::Master);
            // The old master restarts.
            pair.alive[0] = true;
            pair.machines[0] = Machine::new(a).unwrap();
            pair.deliver(0, Event::Startup, clock.ms(20_000));
            pair.run_until(clock.ms(60_000));
            let want = if preempt {
                [State::Master, State::Backup]
            } else {
                [State::Backup, State::Master]
            };
            assert_eq!(pair.states(), want, "preempt {preempt}");
        }
    }

    #[test]
    fn split_brain_heals_to_one_master_that_reannounces() {
        for (a, b) in [
            (settings(150, A_ADDR), settings(100, B_ADDR)),
            // Equal priorities: the higher address stays.
            (settings(150, B_ADDR), settings(150, A_ADDR)),
        ] {
            let clock = Clock::new();
            let mut pair = started_pair(a, b, &clock);
            assert_eq!(pair.states(), [State::Master, State::Backup]);
            pair.link_up = false;
            pair.run_until(clock.ms(20_000));
            assert_eq!(pair.states(), [State::Master, State::Master], "split brain");
            pair.link_up = true;
            pair.logs = [Vec::new(), Vec::new()];
            pair.run_until(clock.ms(21_000));
            assert_eq!(pair.states(), [State::Master, State::Backup], "healed");
            assert!(pair.logs[1].contains(&Action::ReleaseAddresses));
            // The master that stayed never changed state, yet announced
            // its addresses again when it heard the other.
            assert!(transitions(&pair.logs[0]).is_empty());
            assert!(
                pair.logs[0].contains(&Action::Announce { repeat: 5 }),
                "{:?}",
                pair.logs[0]
            );
        }
    }
}
