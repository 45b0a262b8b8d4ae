//! Schedulers by ipvsadm name, and the options a service gives them.

use crate::server::ServerList;
use crate::{Millis, Scheduler};

/// Every algorithm, by the name ipvsadm's `-s` takes.
pub const SCHEDULER_NAMES: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
];

/// The scheduler flags of a service (`-b sh-fallback,sh-port` etc.). The
/// kernel has three generic bits; sh and mh give the first two a meaning:
/// SCHED1 = `*-fallback`, SCHED2 = `*-port`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedFlags {
    /// `IP_VS_SVC_F_SCHED1`: sh-fallback / mh-fallback.
    pub fallback: bool,
    /// `IP_VS_SVC_F_SCHED2`: sh-port / mh-port.
    pub port: bool,
}

/// Size of the Maglev lookup table: a prime from the kernel's list
/// (`CONFIG_IP_VS_MH_TAB_INDEX` 8..=17) or 65537 (the Maglev paper's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MhTableSize {
    slots: u32,
    bits: u32,
}

impl MhTableSize {
    /// The kernel's primes, index 8 to 17.
    pub const KERNEL_PRIMES: [u32; 10] = [
        251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    ];
    /// The kernel's default (`CONFIG_IP_VS_MH_TAB_INDEX` = 12).
    pub const DEFAULT: Self = Self {
        slots: 4093,
        bits: 6,
    };

    /// A size by number of slots; `None` unless a kernel prime or 65537.
    ///
    /// `bits` (the kernel's `IP_VS_MH_TAB_BITS` = index / 2, used to scale
    /// large weights down) follows the Kconfig index; 65537 is given the
    /// bits of 65521, its neighbour.
    #[must_use]
    pub fn new(slots: u32) -> Option<Self> {
        if slots == 65537 {
            return Some(Self { slots, bits: 8 });
        }
        let idx = Self::KERNEL_PRIMES.iter().position(|&p| p == slots)?;
        Some(Self {
            slots,
            bits: (idx as u32 + 8) / 2,
        })
    }

    /// Number of slots (M).
    #[must_use]
    pub const fn slots(self) -> u32 {
        self.slots
    }

    /// `IP_VS_MH_TAB_BITS` for this size.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.bits
    }
}

impl Default for MhTableSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a scheduler is told when it is bound to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedOptions {
    /// Service scheduler flags.
    pub flags: SchedFlags,
    /// mh table size.
    pub mh_table_size: MhTableSize,
    /// sysctl `lblc_expiration` (default 24 h).
    pub lblc_expiration: Millis,
    /// sysctl `lblcr_expiration` (default 24 h).
    pub lblcr_expiration: Millis,
}

impl Default for SchedOptions {
    fn default() -> Self {
        Self {
            flags: SchedFlags::default(),
            mh_table_size: MhTableSize::DEFAULT,
            lblc_expiration: 24 * 3600 * 1000,
            lblcr_expiration: 24 * 3600 * 1000,
        }
    }
}

/// Why a scheduler could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// No algorithm of that name.
    #[error(
        "unknown scheduler {0:?}; use one of rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf twos"
    )]
    UnknownScheduler(String),
}

/// Builds the scheduler `name` for a service whose servers are `servers`
/// (usually empty: ipvsadm creates the service first), created at `now`.
///
/// # Errors
/// [`SchedError::UnknownScheduler`] when `name` is not an ipvsadm name.
pub fn create_scheduler(
    name: &str,
    servers: &ServerList,
    options: &SchedOptions,
    now: Millis,
) -> Result<Box<dyn Scheduler>, SchedError> {
    Ok(match name {
        "rr" => Box::new(crate::rr::RoundRobin::new()),
        "wrr" => Box::new(crate::wrr::WeightedRoundRobin::new(servers)),
        "lc" => Box::new(crate::lc::LeastConnection),
        "wlc" => Box::new(crate::wlc::WeightedLeastConnection),
        "sed" => Box::new(crate::sed::ShortestExpectedDelay),
        "nq" => Box::new(crate::nq::NeverQueue),
        "fo" => Box::new(crate::fo::WeightedFailover),
        "ovf" => Box::new(crate::ovf::WeightedOverflow),
        "twos" => Box::new(crate::twos::PowerOfTwo),
        "dh" => Box::new(crate::dh::DestinationHashing::new(servers)),
        "sh" => Box::new(crate::sh::SourceHashing::new(servers, options.flags)),
        "mh" => Box::new(crate::mh::MaglevHashing::new(
            servers,
            options.flags,
            options.mh_table_size,
        )),
        "lblc" => Box::new(crate::lblc::LocalityLeastConnection::new(
            options.lblc_expiration,
            now,
        )),
        "lblcr" => Box::new(crate::lblcr::LocalityReplication::new(
            options.lblcr_expiration,
            now,
        )),
        other => return Err(SchedError::UnknownScheduler(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_a_scheduler_of_that_name() {
        let servers = ServerList::new();
        for name in SCHEDULER_NAMES {
            let s = create_scheduler(name, &servers, &SchedOptions::default(), 0).unwrap();
            assert_eq!(s.name(), name);
        }
        let err = create_scheduler("wlcx", &servers, &SchedOptions::default(), 0).unwrap_err();
        assert!(err.to_string().contains("wlcx"));
    }

    #[test]
    fn mh_sizes_follow_the_kernel_index() {
        assert_eq!(MhTableSize::new(4093), Some(MhTableSize::DEFAULT));
        assert_eq!(MhTableSize::new(251).unwrap().bits(), 4);
        assert_eq!(MhTableSize::new(131_071).unwrap().bits(), 8);
        assert_eq!(MhTableSize::new(65537).unwrap().slots(), 65537);
        assert_eq!(MhTableSize::new(4096), None);
    }
}
