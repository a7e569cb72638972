//! Kernel timestamps (CLOCK_MONOTONIC, from bpf_ktime_get_ns) to wall-clock
//! time. The offset is re-read periodically so NTP adjustments are followed.

use std::time::{Duration, Instant};

fn read_clock(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

pub fn monotonic_now_ns() -> u64 {
    read_clock(libc::CLOCK_MONOTONIC)
}

/// The wall clock now, in Unix-epoch nanoseconds.
pub fn unix_now_ns() -> u64 {
    read_clock(libc::CLOCK_REALTIME)
}

/// Converts monotonic nanoseconds to Unix-epoch nanoseconds.
pub struct WallClock {
    realtime_minus_monotonic: u64,
    refreshed: Instant,
}

const REFRESH_EVERY: Duration = Duration::from_secs(30);

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock {
    pub fn new() -> Self {
        Self {
            realtime_minus_monotonic: Self::measure(),
            refreshed: Instant::now(),
        }
    }

    fn measure() -> u64 {
        let before = monotonic_now_ns();
        let real = read_clock(libc::CLOCK_REALTIME);
        let after = monotonic_now_ns();
        real.saturating_sub(before / 2 + after / 2)
    }

    pub fn refresh_if_due(&mut self) {
        if self.refreshed.elapsed() >= REFRESH_EVERY {
            self.realtime_minus_monotonic = Self::measure();
            self.refreshed = Instant::now();
        }
    }

    pub fn to_unix_ns(&self, monotonic_ns: u64) -> u64 {
        monotonic_ns.saturating_add(self.realtime_minus_monotonic)
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC for Unix-epoch nanoseconds.
pub fn format_utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let millis = (unix_ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00.000");
        // 2026-01-30 13:35:17.123 UTC
        assert_eq!(
            format_utc(1_769_780_117_123_000_000),
            "2026-01-30 13:35:17.123"
        );
        // a leap day
        assert_eq!(
            format_utc(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000"
        );
    }

    #[test]
    fn monotonic_converts_to_now() {
        let clock = WallClock::new();
        let wall = clock.to_unix_ns(monotonic_now_ns());
        let real = read_clock(libc::CLOCK_REALTIME);
        assert!(wall.abs_diff(real) < 50_000_000);
    }
}
