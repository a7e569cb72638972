//! Metrics derived from spans.

pub mod red;
pub mod self_metrics;
pub mod rpc;
