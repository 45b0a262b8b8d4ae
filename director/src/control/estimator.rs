//! Rate estimation as IPVS does it (`ip_vs_est.c`): every two seconds the
//! counters' growth is folded into an exponentially weighted average
//! (weight 1/4), kept in fixed point; `ipvsadm --rate` shows the averages
//! per second.

use crate::control::proto::RatesView;
use crate::pipeline::TrafficCounters;

/// How often [`Estimate::sample`] should run: IPVS's two seconds.
pub const PERIOD_MS: u64 = 2_000;

/// One object's estimate (a service or a real server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    last: TrafficCounters,
    // Scaled as IPVS scales them: cps/pps by 2^10, bps by 2^5.
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

/// `avg += (rate - avg) / 4`, in signed arithmetic as the kernel's.
fn fold(avg: u64, rate: u64) -> u64 {
    let (avg_i, rate_i) = (avg as i128, rate as i128);
    (avg_i + ((rate_i - avg_i) >> 2)).max(0) as u64
}

impl Estimate {
    /// Folds in the counters as they are now, two seconds after the last
    /// sample. The first sample only sets the baseline.
    pub fn sample(&mut self, now: TrafficCounters, first: bool) {
        if !first {
            let d = |a: u64, b: u64| a.saturating_sub(b);
            // Growth over 2 s: << 9 for per-second × 2^10, << 4 for
            // per-second × 2^5 (ip_vs_est.c).
            self.cps = fold(self.cps, d(now.conns, self.last.conns) << 9);
            self.inpps = fold(self.inpps, d(now.packets_in, self.last.packets_in) << 9);
            self.outpps = fold(self.outpps, d(now.packets_out, self.last.packets_out) << 9);
            self.inbps = fold(self.inbps, d(now.bytes_in, self.last.bytes_in) << 4);
            self.outbps = fold(self.outbps, d(now.bytes_out, self.last.bytes_out) << 4);
        }
        self.last = now;
    }

    /// Starts again from zero with `now` as the baseline (`-Z`).
    pub fn reset(&mut self, now: TrafficCounters) {
        *self = Self {
            last: now,
            ..Self::default()
        };
    }

    /// The rates per second, rounded as `ip_vs_read_estimator` rounds.
    #[must_use]
    pub fn rates(&self) -> RatesView {
        RatesView {
            cps: (self.cps + 0x1FF) >> 10,
            inpps: (self.inpps + 0x1FF) >> 10,
            outpps: (self.outpps + 0x1FF) >> 10,
            inbps: (self.inbps + 0xF) >> 5,
            outbps: (self.outbps + 0xF) >> 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_converges_and_an_idle_one_decays() {
        let mut e = Estimate::default();
        let mut c = TrafficCounters::default();
        e.sample(c, true);
        // The average closes a quarter of the gap per period: after 80
        // periods what is left is below the fixed point's resolution.
        for _ in 0..80 {
            // 100 connections/s, 1000 packets/s, 1 MB/s in.
            c.conns += 200;
            c.packets_in += 2000;
            c.bytes_in += 2_000_000;
            e.sample(c, false);
        }
        let r = e.rates();
        assert_eq!(
            (r.cps, r.inpps, r.inbps, r.outpps),
            (100, 1000, 1_000_000, 0)
        );
        for _ in 0..60 {
            e.sample(c, false);
        }
        assert_eq!(e.rates().cps, 0);
        assert_eq!(e.rates().inbps, 0);
    }

    #[test]
    fn the_first_sample_is_a_baseline_and_reset_forgets() {
        let mut e = Estimate::default();
        let c = TrafficCounters {
            conns: 1_000_000,
            ..TrafficCounters::default()
        };
        e.sample(c, true);
        assert_eq!(e.rates(), RatesView::default(), "history is not a rate");
        let mut more = c;
        more.conns += 2000;
        e.sample(more, false);
        assert_eq!(e.rates().cps, 250, "a quarter of 1000/s after one period");
        e.reset(more);
        assert_eq!(e.rates(), RatesView::default());
    }
}
