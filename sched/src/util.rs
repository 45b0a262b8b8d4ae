//! Small helpers shared by several algorithms.

use crate::server::{RealServer, ServerList};

/// `a_load / a_weight > b_load / b_weight`, compared as the kernel does:
/// `a_load * b_weight > b_load * a_weight`, widened so nothing overflows.
pub(crate) fn more_loaded(a_load: u64, a_weight: u32, b_load: u64, b_weight: u32) -> bool {
    u128::from(a_load) * u128::from(b_weight) > u128::from(b_load) * u128::from(a_weight)
}

/// Greatest common divisor (the kernel's `gcd()`), for positive values.
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// gcd of all weights selected by `weight` that are > 0, or 0 when none.
pub(crate) fn gcd_of<'a>(
    servers: impl Iterator<Item = &'a RealServer>,
    weight: impl Fn(&RealServer) -> u32,
) -> u32 {
    servers
        .map(weight)
        .filter(|&w| w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w })
}

/// The weighted-least-connection rule of wlc (and of lblc/lblcr when they
/// must choose afresh): the first server in list order that is not
/// OVERLOADed and has weight > 0 is the candidate; a later one that is not
/// OVERLOADed replaces it only when strictly less loaded per unit of weight.
pub(crate) fn weighted_least(
    servers: &ServerList,
    load: impl Fn(&RealServer) -> u64,
) -> Option<&RealServer> {
    let mut iter = servers.iter();
    let mut least = iter.find(|s| s.is_usable())?;
    let mut least_load = load(least);
    for s in iter {
        if s.is_overloaded() {
            continue;
        }
        let l = load(s);
        if more_loaded(least_load, least.weight(), l, s.weight()) {
            least = s;
            least_load = l;
        }
    }
    Some(least)
}

/// lblc/lblcr's notion of "overloaded": more active connections than its
/// weight while some server in the service is below half its weight.
pub(crate) fn lblc_overloaded(server: &RealServer, servers: &ServerList) -> bool {
    u64::from(server.active_conns()) > u64::from(server.weight())
        && servers
            .iter()
            .any(|d| u64::from(d.active_conns()) * 2 < u64::from(d.weight()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_and_cross_products() {
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(7, 3), 1);
        assert!(more_loaded(3, 1, 5, 2)); // 3/1 > 5/2
        assert!(!more_loaded(4, 2, 2, 1)); // equal is not more
        assert!(more_loaded(u64::MAX, u32::MAX, u64::MAX - 1, u32::MAX));
        assert!(more_loaded(u64::from(u32::MAX), u32::MAX, 1, u32::MAX - 1));
        assert!(!more_loaded(1 << 40, 1 << 20, 1 << 20, 1));
    }
}
