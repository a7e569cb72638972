//! Why a configuration is refused ([`ConfigError`], naming the file and key or
//! the variable), and the context every section is read with: the file's
//! name and the warnings collected on the way.

use std::fmt;

/// Why the configuration was refused. `Display` names the file and key (or
/// the environment variable) and the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Read { file: String, reason: String },
    /// The file is not YAML zerotrace can read (the message has line and column).
    Syntax { file: String, message: String },
    /// A key of the file is unknown, unsupported or has a bad value.
    Key {
        file: String,
        path: String,
        message: String,
    },
    /// An environment variable has a bad value (the message names both).
    Env(String),
    /// The settings as a whole cannot work (e.g. nothing to instrument).
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { file, reason } => write!(f, "{file}: cannot read: {reason}"),
            Self::Syntax { file, message } => write!(f, "{file}: {message}"),
            Self::Key {
                file,
                path,
                message,
            } => write!(f, "{file}: {path}: {message}"),
            Self::Env(message) | Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The file's name for messages, and the warnings collected while loading.
pub(super) struct Ctx {
    pub(super) file: String,
    pub(super) warnings: Vec<String>,
}

impl Ctx {
    pub(super) fn err(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            file: self.file.clone(),
            path: path.into(),
            message: message.into(),
        }
    }

    pub(super) fn warn(&mut self, path: &str, message: impl fmt::Display) {
        self.warnings.push(format!("{path}: {message}"));
    }
}

/// `path.key` (or `key` at the top level), for messages.
pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
