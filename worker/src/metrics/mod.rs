//! Metrics derived from spans.

pub mod attribute_select;
pub mod db;
pub mod duration;
pub mod exemplars;
pub mod exponential;
pub mod host_info;
pub mod http;
pub mod messaging;
pub mod process;
pub mod red;
pub mod rpc;
pub mod self_metrics;
pub mod service_graph;
pub mod span_metrics;
