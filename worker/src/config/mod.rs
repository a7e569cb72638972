//! The worker's configuration: the loader's flags, the YAML file and the
//! environment, merged into one [`WorkerConfig`].

mod error;
pub mod file;
pub mod flags;
#[cfg(test)]
mod test_support;
mod values;

pub use error::ConfigError;
pub use file::{
    config_path, container_id_from_cgroup, decide, load, load_str, EffectiveConfig, ProcessFacts,
    Selector,
};
pub use flags::WorkerConfig;
