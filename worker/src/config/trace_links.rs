//! Trace links across processes (`OTEL_EBPF_BPF_DISABLE_BLACK_BOX_CP`,
//! `ZEROTRACE_TRACE_LINK_WAIT`): the settings `traces::TraceLinker` runs with.

use std::time::Duration;

/// How trace linking behaves (`OTEL_EBPF_BPF_DISABLE_BLACK_BOX_CP` turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    pub enabled: bool,
    /// How long a span waits at most for its parent.
    pub wait: Duration,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            wait: Duration::from_millis(500),
        }
    }
}
