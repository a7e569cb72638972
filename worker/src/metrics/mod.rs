//! Metrics derived from spans.

pub mod db;
pub mod http;
pub mod red;
pub mod rpc;
pub mod self_metrics;
