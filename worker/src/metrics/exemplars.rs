//! Exemplars: which span a histogram bucket last counted, so that a
//! dashboard can jump from a latency bucket to a trace. OBI's
//! `prometheus_export.exemplar_filter` (`OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER`):
//! `always_off` (the default), `always_on` (every span), `trace_based` (the
//! spans whose traces the trace export keeps, by the same sampler). The
//! Prometheus endpoint writes them in OpenMetrics (`metrics/red.rs` keeps
//! one per bucket, `exporters/prometheus.rs` writes them).

use crate::config::ExemplarFilter;
use crate::otel::sampler::Sampler;
use crate::spans::Span;

/// A bucket's last span: its ids, the value it counted and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub value: f64,
    pub unix_ns: u64,
}

/// Which spans leave exemplars.
#[derive(Debug, Clone, Copy, Default)]
pub enum ExemplarPolicy {
    #[default]
    Off,
    AlwaysOn,
    /// The spans the trace export's sampler keeps.
    TraceBased(Sampler),
}

impl ExemplarPolicy {
    /// The policy of `filter`, `sampler` being the trace export's.
    pub fn new(filter: ExemplarFilter, sampler: Sampler) -> Self {
        match filter {
            ExemplarFilter::AlwaysOff => Self::Off,
            ExemplarFilter::AlwaysOn => Self::AlwaysOn,
            ExemplarFilter::TraceBased => Self::TraceBased(sampler),
        }
    }

    /// The exemplar `span` leaves for `value`, if it leaves one.
    pub fn of(&self, span: &Span, value: f64, unix_ns: u64) -> Option<Exemplar> {
        let kept = match self {
            Self::Off => return None,
            Self::AlwaysOn => true,
            Self::TraceBased(sampler) => sampler.keeps(&span.ids),
        };
        (kept && span.ids.trace_id != [0; 16]).then_some(Exemplar {
            trace_id: span.ids.trace_id,
            span_id: span.ids.span_id,
            value,
            unix_ns,
        })
    }
}
