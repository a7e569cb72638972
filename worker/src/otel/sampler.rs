//! Head sampling of traces (`OTEL_TRACES_SAMPLER`). Metrics are recorded for
//! every request before this decision, so sampling never biases RED metrics.

use crate::config::SamplerSetting;
use crate::spans::SpanIds;

/// Decides whether a span of trace `trace_id` is exported.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    setting: SamplerSetting,
}

/// Spec algorithm: a trace is kept when its id's last 8 bytes, as an integer,
/// fall below ratio × 2^63 (so every agent decides the same for one trace).
fn ratio_keeps(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let value = u64::from_be_bytes(low) >> 1;
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    value < bound
}

impl Sampler {
    pub fn new(setting: SamplerSetting) -> Self {
        Self { setting }
    }

    /// Whether the span of `ids` is exported: its process's own sampler's
    /// decision when it has one, else this sampler's.
    #[inline]
    pub fn keeps(&self, ids: &SpanIds) -> bool {
        match ids.service_sampled {
            Some(kept) => kept,
            None => self.should_sample(&ids.trace_id, ids.parent_sampled),
        }
    }

    /// `parent_sampled`: the sampled flag of an incoming traceparent, if any.
    pub fn should_sample(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        match (self.setting, parent_sampled) {
            (SamplerSetting::AlwaysOn, _) => true,
            (SamplerSetting::AlwaysOff, _) => false,
            (SamplerSetting::TraceIdRatio(r), _) => ratio_keeps(trace_id, r),
            (SamplerSetting::ParentBasedAlwaysOn, Some(sampled))
            | (SamplerSetting::ParentBasedAlwaysOff, Some(sampled))
            | (SamplerSetting::ParentBasedTraceIdRatio(_), Some(sampled)) => sampled,
            (SamplerSetting::ParentBasedAlwaysOn, None) => true,
            (SamplerSetting::ParentBasedAlwaysOff, None) => false,
            (SamplerSetting::ParentBasedTraceIdRatio(r), None) => ratio_keeps(trace_id, r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::ids::new_trace_id;

    #[test]
    fn ratio_keeps_about_the_ratio() {
        let sampler = Sampler::new(SamplerSetting::TraceIdRatio(0.1));
        let kept = (0..100_000)
            .filter(|_| sampler.should_sample(&new_trace_id(), None))
            .count();
        // 10,000 expected; 5 standard deviations is ±474.
        assert!((9_526..=10_474).contains(&kept), "{kept}");
    }

    #[test]
    fn parent_based_follows_the_parent() {
        let id = new_trace_id();
        let on = Sampler::new(SamplerSetting::ParentBasedAlwaysOn);
        assert!(on.should_sample(&id, None));
        assert!(!on.should_sample(&id, Some(false)));
        let off = Sampler::new(SamplerSetting::ParentBasedAlwaysOff);
        assert!(!off.should_sample(&id, None));
        assert!(off.should_sample(&id, Some(true)));
        assert!(!Sampler::new(SamplerSetting::AlwaysOff).should_sample(&id, Some(true)));
        assert!(Sampler::new(SamplerSetting::AlwaysOn).should_sample(&id, Some(false)));
    }
}
