//! The worker's configuration: the loader's flags, the YAML file and the
//! environment, merged into one [`WorkerConfig`].

mod discovery;
mod environment;
mod error;
mod export;
pub mod file;
pub mod flags;
pub mod glob;
mod obi_keys;
pub mod otel_sdk;
pub mod print;
pub mod printer;
pub mod prometheus;
pub mod routes;
pub mod selectors;
#[cfg(test)]
mod test_support;
mod values;

pub use error::ConfigError;
pub use file::{config_path, load, load_str, EffectiveConfig};
pub use flags::WorkerConfig;
pub use otel_sdk::{
    BatchSettings, ExportSettings, OtlpDestination, Protocol, SamplerSetting, Signal, Temporality,
};
pub use printer::PrinterFormat;
pub use prometheus::PrometheusSettings;
pub use routes::RouteSettings;
pub use selectors::{container_id_from_cgroup, decide, ProcessFacts, Selector};
