//! Base-2 exponential histogram buckets: OTLP's `ExponentialHistogram`, which
//! OBI's `histogram_aggregation: base2_exponential_bucket_histogram` (or
//! `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`) selects for
//! the OTLP export. Bucket `i` at scale `s` holds the values in
//! (2^(i·2^-s), 2^((i+1)·2^-s)]; a histogram starts at [`MAX_SCALE`] and
//! halves its resolution (merges bucket pairs) whenever the values it holds
//! would need more than [`MAX_SIZE`] buckets, as the OpenTelemetry metrics
//! SDK specification lays out (the limits are OBI's: the Go SDK's defaults).
//!
//! The values recorded here are durations and body sizes: never negative,
//! so only the positive range has buckets; zero (an empty body) goes to the
//! zero count.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;

/// The most buckets a histogram keeps.
pub const MAX_SIZE: usize = 160;
/// The finest scale: 2^20 buckets per power of two.
pub const MAX_SCALE: i32 = 20;
/// The coarsest scale the index arithmetic allows (buckets of 2^1024 span
/// every finite double).
const MIN_SCALE: i32 = -10;

/// The positive buckets and zero count of one exponential histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct ExponentialBuckets {
    scale: i32,
    zero_count: u64,
    /// The index of `counts[0]`.
    offset: i32,
    /// Counts of the buckets from `offset` on, at most [`MAX_SIZE`]; empty
    /// until the first positive value.
    counts: Vec<u64>,
}

impl Default for ExponentialBuckets {
    fn default() -> Self {
        Self::new()
    }
}

impl ExponentialBuckets {
    pub fn new() -> Self {
        Self {
            scale: MAX_SCALE,
            zero_count: 0,
            offset: 0,
            counts: Vec::new(),
        }
    }

    pub fn scale(&self) -> i32 {
        self.scale
    }

    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// The first bucket's index and the counts from it on.
    pub fn positive(&self) -> (i32, &[u64]) {
        (self.offset, &self.counts)
    }

    /// Counts `value`: zero (and anything not above it) in the zero count,
    /// a positive value in its bucket, first lowering the scale when the
    /// buckets would not fit in [`MAX_SIZE`]. Not inlined: the explicit
    /// histograms' record, on the hot path, stays small.
    #[inline(never)]
    pub fn record(&mut self, value: f64) {
        if value <= 0.0 || value.is_nan() {
            self.zero_count += 1;
            return;
        }
        let mut index = index_of(value, self.scale);
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(1);
            return;
        }
        let high = self.last_index();
        let change = scale_change(index.min(self.offset), index.max(high));
        if change > 0 {
            self.downscale(change);
            index = index_of(value, self.scale);
        }
        self.add(index, 1);
    }

    /// Adds `other`'s counts (a series merged into another by
    /// `attributes.select`), at the finer scale both fit in.
    pub fn merge(&mut self, other: &ExponentialBuckets) {
        self.zero_count += other.zero_count;
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.scale = self.scale.min(other.scale);
            let mut copy = other.clone();
            copy.downscale(other.scale - self.scale);
            self.offset = copy.offset;
            self.counts = copy.counts;
            return;
        }
        let scale = self.scale.min(other.scale);
        let at = |index: i32, from: i32| index >> (from - scale);
        let low = at(self.offset, self.scale).min(at(other.offset, other.scale));
        let high = at(self.last_index(), self.scale).max(at(other.last_index(), other.scale));
        let target = scale - scale_change(low, high);
        self.downscale(self.scale - target);
        let shift = other.scale - target;
        for (position, &count) in other.counts.iter().enumerate() {
            if count > 0 {
                self.add((other.offset + position as i32) >> shift, count);
            }
        }
    }

    /// The OTLP data point of these buckets with the histogram's totals.
    pub fn data_point(
        &self,
        totals: Totals,
        attributes: Vec<KeyValue>,
    ) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: totals.start_unix_ns,
            time_unix_nano: totals.now_unix_ns,
            count: totals.count,
            sum: Some(totals.sum),
            scale: self.scale,
            zero_count: self.zero_count,
            positive: Some(Buckets {
                offset: self.offset,
                bucket_counts: self.counts.clone(),
            }),
            negative: None,
            flags: 0,
            exemplars: Vec::new(),
            min: totals.min,
            max: totals.max,
            zero_threshold: 0.0,
        }
    }

    fn last_index(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }

    /// Adds `count` to bucket `index`, growing the counts to reach it (the
    /// caller made sure the range fits).
    fn add(&mut self, index: i32, count: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(count);
            return;
        }
        if index < self.offset {
            let missing = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, missing));
            self.offset = index;
        }
        let position = (index - self.offset) as usize;
        if position >= self.counts.len() {
            self.counts.resize(position + 1, 0);
        }
        if let Some(slot) = self.counts.get_mut(position) {
            *slot += count;
        }
    }

    /// Lowers the scale by `change`: each bucket merges into bucket
    /// `index >> change`.
    fn downscale(&mut self, change: i32) {
        if change <= 0 {
            return;
        }
        let change = change.min(self.scale - MIN_SCALE);
        self.scale -= change;
        if self.counts.is_empty() {
            return;
        }
        let old_offset = self.offset;
        let old = std::mem::take(&mut self.counts);
        self.offset = old_offset >> change;
        for (position, count) in old.into_iter().enumerate() {
            let index = (old_offset + position as i32) >> change;
            let slot = (index - self.offset) as usize;
            if slot >= self.counts.len() {
                self.counts.resize(slot + 1, 0);
            }
            self.counts[slot] += count;
        }
    }
}

/// What an exponential data point carries besides its buckets.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    pub start_unix_ns: u64,
    pub now_unix_ns: u64,
    pub count: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// How many times the scale must halve for indices `low..=high` to fit in
/// [`MAX_SIZE`] buckets.
fn scale_change(mut low: i32, mut high: i32) -> i32 {
    let mut change = 0;
    while i64::from(high) - i64::from(low) >= MAX_SIZE as i64 {
        high >>= 1;
        low >>= 1;
        change += 1;
    }
    change
}

/// The bucket of a positive, finite `value` at `scale`. Exact powers of two
/// are bucket boundaries and computed from the exponent alone; other values
/// from the logarithm at positive scales (the specification's methods).
pub fn index_of(value: f64, scale: i32) -> i32 {
    // Subnormal values share the smallest normal value's bucket.
    let value = value.max(f64::MIN_POSITIVE);
    let bits = value.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let exact_power = bits & ((1u64 << 52) - 1) == 0;
    if scale <= 0 {
        let exponent = if exact_power { exponent - 1 } else { exponent };
        return exponent >> -scale;
    }
    if exact_power {
        return (exponent << scale) - 1;
    }
    let factor = std::f64::consts::LOG2_E * f64::from(1u32 << scale);
    (value.ln() * factor).floor() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket's bounds, (lower, upper], at `scale`.
    fn bounds(index: i32, scale: i32) -> (f64, f64) {
        let base = 2f64.powf(2f64.powi(-scale));
        (base.powi(index), base.powi(index + 1))
    }

    #[test]
    fn a_value_falls_in_the_bucket_whose_bounds_hold_it() {
        for scale in [-2, 0, 1, 3, 8, 20] {
            for value in [1e-9, 0.0007, 0.3, 1.5, 3.0, 1000.0, 65_535.0, 1e9] {
                let (low, high) = bounds(index_of(value, scale), scale);
                let tolerance = 1e-9 * value;
                assert!(
                    low - tolerance <= value && value <= high + tolerance,
                    "{value} at scale {scale}: ({low}, {high}]"
                );
            }
        }
    }

    #[test]
    fn powers_of_two_are_upper_bounds() {
        assert_eq!(index_of(1.0, 0), -1);
        assert_eq!(index_of(2.0, 0), 0);
        assert_eq!(index_of(4.0, 1), 3);
        assert_eq!(index_of(1024.0, 20), (10 << 20) - 1);
        assert_eq!(index_of(1024.0, -1), 4); // (256, 1024]
        assert_eq!(index_of(0.5, 3), -9);
    }

    #[test]
    fn values_too_wide_for_the_buckets_lower_the_scale_and_keep_every_count() {
        let mut buckets = ExponentialBuckets::new();
        let values = [1.0, 3.0, 1000.0, 0.0, 65_536.0, 1e6, 1e6, 17.5];
        for value in values {
            buckets.record(value);
        }
        let (offset, counts) = buckets.positive();
        assert!(counts.len() <= MAX_SIZE);
        assert_eq!(buckets.zero_count(), 1);
        assert_eq!(counts.iter().sum::<u64>(), 7);
        // At scale 3, 1 is bucket -1's upper bound and 1e6 is in bucket 159:
        // 161 buckets, one too many.
        assert_eq!(buckets.scale(), 2);
        for value in values.into_iter().filter(|v| *v > 0.0) {
            let index = index_of(value, buckets.scale());
            let position = (index - offset) as usize;
            assert!(counts[position] > 0, "{value} not in its bucket");
        }
        assert_eq!(counts.first(), Some(&1));
        assert_eq!(counts.last(), Some(&2));
    }

    #[test]
    fn one_value_keeps_the_finest_scale() {
        let mut buckets = ExponentialBuckets::new();
        buckets.record(0.25);
        buckets.record(0.25);
        assert_eq!(buckets.scale(), MAX_SCALE);
        assert_eq!(buckets.positive(), (index_of(0.25, MAX_SCALE), &[2u64][..]));
    }

    #[test]
    fn merging_matches_recording_everything_in_one() {
        let (first, second) = ([0.002, 0.004, 0.5], [0.0, 3.0, 90.0, 0.0031]);
        let mut one = ExponentialBuckets::new();
        let (mut left, mut right) = (ExponentialBuckets::new(), ExponentialBuckets::new());
        for value in first {
            one.record(value);
            left.record(value);
        }
        for value in second {
            one.record(value);
            right.record(value);
        }
        let mut merged = left.clone();
        merged.merge(&right);
        assert_eq!(merged, one);
        // And the other way round, and into an empty histogram.
        let mut merged = right.clone();
        merged.merge(&left);
        assert_eq!(merged, one);
        let mut empty = ExponentialBuckets::new();
        empty.merge(&left);
        assert_eq!(empty, left);
    }
}
