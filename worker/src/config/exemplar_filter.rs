//! Which spans leave exemplars on the histograms' buckets: OBI's
//! `prometheus_export.exemplar_filter` and the SDKs'
//! `OTEL_METRICS_EXEMPLAR_FILTER` (for OTLP), with the values the
//! specification gives the latter.

/// OBI's `exemplar_filter` (after `OTEL_METRICS_EXEMPLAR_FILTER`'s values);
/// the default is Prometheus's (`always_off`), OTLP's is `trace_based`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExemplarFilter {
    #[default]
    AlwaysOff,
    AlwaysOn,
    /// The spans whose traces the trace export's sampler keeps.
    TraceBased,
}

impl ExemplarFilter {
    const ALL: [ExemplarFilter; 3] = [Self::AlwaysOff, Self::AlwaysOn, Self::TraceBased];

    pub fn name(self) -> &'static str {
        match self {
            Self::AlwaysOff => "always_off",
            Self::AlwaysOn => "always_on",
            Self::TraceBased => "trace_based",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|filter| text.trim().eq_ignore_ascii_case(filter.name()))
    }

    /// `text`, the value of variable `var`; an unknown value is an error naming both.
    pub(super) fn from_var(var: &str, text: &str) -> Result<Self, String> {
        Self::parse(text)
            .ok_or_else(|| format!("{var}={text:?}: expected always_off, always_on or trace_based"))
    }
}
