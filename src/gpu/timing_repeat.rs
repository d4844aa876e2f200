//! Coarse GPU timestamps: browsers may quantize timestamp queries (Chrome rounds them to 100 µs
//! on real GPUs), so one fast pass can read equal start and end stamps. [`until_advances`] then
//! times the pass again with twice the repetitions, up to [`MAX_GROWTH`] times the number asked
//! for, until the stamps differ; the caller divides by the repetitions that ran.

use std::future::Future;
use std::time::Duration;

use crate::Result;

/// The most the repetitions of one timing grow over those asked for (1024: a 1 µs kernel under
/// 100 µs stamps advances them at 128).
pub(crate) const MAX_GROWTH: u32 = 1024;

/// A wall-clock span over which stamps that stayed equal are broken, not coarse: natively the
/// repetition stops there and the wall clock times the pass, as it did before repeating.
const COARSEST: Duration = Duration::from_millis(10);

/// What one timed pass read: its start and end timestamps (raw ticks), where the device has
/// them, and its wall-clock span, where there is a wall clock (natively).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    pub ticks: Option<(u64, u64)>,
    pub wall: Option<Duration>,
}

/// How a timing ended: `iters` repetitions in one pass, and what timed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The timestamps advanced by `ticks`.
    Ticks { iters: u32, ticks: u64 },
    /// They did not (or the device has none): the wall clock's span.
    Wall { iters: u32, wall: Duration },
    /// Neither advancing timestamps nor a wall clock (a browser whose stamps stayed equal up to
    /// the bound, or that has none).
    NoClock { iters: u32 },
}

/// Times `pass(iters)`, and where its stamps came out equal, `pass` with twice the
/// repetitions, and so on up to `iters * MAX_GROWTH`, until they advance. Stamps that advance
/// at once give exactly one pass, so a device with fine stamps times as it always did.
pub(crate) async fn until_advances<F, Fut>(iters: u32, mut pass: F) -> Result<Outcome>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Reading>>,
{
    let mut n = iters.max(1);
    let limit = n.saturating_mul(MAX_GROWTH);
    loop {
        let r = pass(n).await?;
        let coarse = match r.ticks {
            Some((t0, t1)) if t1 > t0 => return Ok(Outcome::Ticks { iters: n, ticks: t1 - t0 }),
            // Equal stamps over a short span: too coarse for this many repetitions.
            Some((t0, t1)) => t1 == t0 && r.wall.is_none_or(|w| w < COARSEST),
            None => false,
        };
        if !coarse || n >= limit {
            return Ok(r.wall.map_or(Outcome::NoClock { iters: n }, |wall| Outcome::Wall { iters: n, wall }));
        }
        n = n.saturating_mul(2).min(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake GPU timer: every repetition costs `cost` ticks from `start`, and the stamps are
    /// rounded down to multiples of `quantum` (a browser's coarse timestamps). Records the
    /// repetitions of every pass it is asked to time.
    struct FakeTimer {
        start: u64,
        cost: u64,
        quantum: u64,
        wall_per_iter: Option<Duration>,
        passes: Vec<u32>,
    }

    impl FakeTimer {
        fn new(start: u64, cost: u64, quantum: u64) -> Self {
            Self { start, cost, quantum, wall_per_iter: None, passes: Vec::new() }
        }

        fn run(&mut self, iters: u32) -> Outcome {
            let outcome = pollster::block_on(until_advances(iters, |n| {
                self.passes.push(n);
                let q = |t: u64| t / self.quantum * self.quantum;
                let ticks = Some((q(self.start), q(self.start + u64::from(n) * self.cost)));
                let wall = self.wall_per_iter.map(|w| w * n);
                async move { Ok(Reading { ticks, wall }) }
            }));
            outcome.unwrap()
        }
    }

    #[test]
    fn fine_stamps_time_one_pass_as_asked() {
        let mut t = FakeTimer::new(1_000, 7, 1);
        assert_eq!(t.run(3), Outcome::Ticks { iters: 3, ticks: 21 });
        assert_eq!(t.passes, [3]);
    }

    #[test]
    fn coarse_stamps_double_the_repetitions_until_they_advance() {
        // 7 ticks per repetition under 100-tick stamps: 16 repetitions (112 ticks) cross one.
        let mut t = FakeTimer::new(0, 7, 100);
        assert_eq!(t.run(1), Outcome::Ticks { iters: 16, ticks: 100 });
        assert_eq!(t.passes, [1, 2, 4, 8, 16]);
        // Starting just below a boundary, fewer repetitions cross it.
        let mut t = FakeTimer::new(95, 7, 100);
        assert_eq!(t.run(1), Outcome::Ticks { iters: 1, ticks: 100 });
        // With the wall clock beside them (natively), short equal spans repeat too.
        let mut t = FakeTimer::new(0, 7, 100);
        t.wall_per_iter = Some(Duration::from_micros(7));
        assert_eq!(t.run(5), Outcome::Ticks { iters: 20, ticks: 100 });
        assert_eq!(t.passes, [5, 10, 20]);
    }

    #[test]
    fn stamps_that_never_advance_stop_at_the_bound() {
        // No wall clock (a browser): up to MAX_GROWTH times the repetitions, then no clock.
        let mut t = FakeTimer::new(0, 0, 1);
        assert_eq!(t.run(3), Outcome::NoClock { iters: 3 * MAX_GROWTH });
        assert_eq!(t.passes.len(), 11);
        assert!(t.passes.windows(2).all(|w| w[1] == 2 * w[0]));
        // Natively the wall clock times a span too long for coarse stamps at once.
        let mut t = FakeTimer::new(0, 0, 1);
        t.wall_per_iter = Some(COARSEST);
        assert_eq!(t.run(2), Outcome::Wall { iters: 2, wall: 2 * COARSEST });
        assert_eq!(t.passes, [2]);
        // And the last span where it does not reach that.
        let mut t = FakeTimer::new(0, 0, 1);
        t.wall_per_iter = Some(Duration::from_nanos(1));
        assert_eq!(t.run(1), Outcome::Wall { iters: MAX_GROWTH, wall: Duration::from_nanos(1024) });
    }

    #[test]
    fn stamps_that_go_back_or_are_missing_take_the_wall_clock_at_once() {
        let mut t = FakeTimer::new(0, 7, 1);
        let outcome = pollster::block_on(until_advances(4, |n| {
            t.passes.push(n);
            async move { Ok(Reading { ticks: Some((9, 5)), wall: Some(Duration::from_micros(4)) }) }
        }));
        assert_eq!(outcome.unwrap(), Outcome::Wall { iters: 4, wall: Duration::from_micros(4) });
        let outcome = pollster::block_on(until_advances(0, |_| async { Ok(Reading { ticks: None, wall: None }) }));
        assert_eq!(outcome.unwrap(), Outcome::NoClock { iters: 1 });
        // A failed pass is the timing's error.
        let outcome = pollster::block_on(until_advances(1, |_| async { Err(crate::Error::Gpu("lost".into())) }));
        assert!(matches!(outcome, Err(crate::Error::Gpu(_))));
        assert_eq!(t.passes, [4]);
    }
}
