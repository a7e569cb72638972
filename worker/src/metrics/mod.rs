//! Metrics derived from spans.

pub mod red;
pub mod rpc;
pub mod self_metrics;
