//! The worker's configuration: the loader's flags, the YAML file and the
//! environment, merged into one [`WorkerConfig`].

pub mod file;
pub mod flags;

pub use file::{
    config_path, container_id_from_cgroup, decide, load, load_str, ConfigError, EffectiveConfig,
    ProcessFacts, Selector,
};
pub use flags::WorkerConfig;
