//! How the loader, the worker and `zerotrace top` write their logs: through
//! `tracing`, to stderr, at OBI's levels (`OTEL_EBPF_LOG_LEVEL`, YAML
//! `log_level`, `--log-level`) and in OBI's formats (`OTEL_EBPF_LOG_FORMAT`,
//! YAML `log_format`, `--log-format`): text (`zerotrace: warning: …`, as the
//! agent always wrote) or one JSON object per line for log collectors.
//! Flags win over the environment, the environment over the file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// OBI's variable for the level.
pub const LEVEL_ENV: &str = "OTEL_EBPF_LOG_LEVEL";
/// OBI's variable for the format.
pub const FORMAT_ENV: &str = "OTEL_EBPF_LOG_FORMAT";

/// The least severe lines written (OBI's four levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    fn filter(self) -> LevelFilter {
        match self {
            Self::Debug => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warn => LevelFilter::WARN,
            Self::Error => LevelFilter::ERROR,
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;

    /// Case-insensitive, as OBI documents them in capitals.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            _ => Err(format!(
                "{text:?} is not a log level (expected debug, info, warn or error)"
            )),
        }
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<LogLevel> for String {
    fn from(level: LogLevel) -> Self {
        level.as_str().to_owned()
    }
}

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogFormat {
    /// `program: level: message`, for people.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, `target`).
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "{text:?} is not a log format (expected text or json)"
            )),
        }
    }
}

impl TryFrom<String> for LogFormat {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<LogFormat> for String {
    fn from(format: LogFormat) -> Self {
        format.as_str().to_owned()
    }
}

/// The level and format a process logs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// One setting as each source gives it, before precedence is applied.
#[derive(Debug, Clone, Default)]
pub struct LogSources<'a> {
    pub level_flag: Option<&'a str>,
    pub format_flag: Option<&'a str>,
    pub level_env: Option<&'a str>,
    pub format_env: Option<&'a str>,
    pub level_file: Option<LogLevel>,
    pub format_file: Option<LogFormat>,
}

/// Flag, else variable (empty is unset), else file, else the default.
fn pick<T: FromStr<Err = String> + Default>(
    flag: Option<&str>,
    flag_name: &str,
    env: Option<&str>,
    env_name: &str,
    file: Option<T>,
) -> Result<T, String> {
    if let Some(text) = flag {
        return text.parse().map_err(|e| format!("{flag_name}: {e}"));
    }
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        return text.parse().map_err(|e| format!("{env_name}: {e}"));
    }
    Ok(file.unwrap_or_default())
}

impl LogSettings {
    /// The effective settings; an error names the flag or variable and its value.
    pub fn resolve(sources: &LogSources<'_>) -> Result<Self, String> {
        Ok(Self {
            level: pick(
                sources.level_flag,
                "--log-level",
                sources.level_env,
                LEVEL_ENV,
                sources.level_file,
            )?,
            format: pick(
                sources.format_flag,
                "--log-format",
                sources.format_env,
                FORMAT_ENV,
                sources.format_file,
            )?,
        })
    }

    /// Like [`resolve`](Self::resolve), keeping what is valid and the
    /// default for the rest: to log the error itself.
    pub fn resolve_lenient(sources: &LogSources<'_>) -> Self {
        let strict = |s: LogSources<'_>| Self::resolve(&s).ok();
        let level = strict(LogSources {
            format_flag: None,
            format_env: None,
            ..sources.clone()
        })
        .map(|s| s.level)
        .unwrap_or_default();
        let format = strict(LogSources {
            level_flag: None,
            level_env: None,
            ..sources.clone()
        })
        .map(|s| s.format)
        .unwrap_or_default();
        Self { level, format }
    }
}

/// Writes `program: level: message` (the level word `info`, `warning`,
/// `error`, `debug`), then any other fields as `key=value`.
struct TextLine {
    program: &'static str,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG | Level::TRACE => "debug",
        };
        write!(writer, "{}: {level}: ", self.program)?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the process's logger (stderr); `program` prefixes text lines.
/// A second call changes nothing.
pub fn init(program: &'static str, settings: LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(settings.level.filter());
    let installed = match settings.format {
        LogFormat::Text => builder.event_format(TextLine { program }).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    // Already installed (a test, or a second call): keep the first.
    drop(installed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_formats_read_case_insensitively() {
        assert_eq!("DEBUG".parse(), Ok(LogLevel::Debug));
        assert_eq!(" Warn ".parse(), Ok(LogLevel::Warn));
        assert_eq!("JSON".parse(), Ok(LogFormat::Json));
        assert!("loud"
            .parse::<LogLevel>()
            .is_err_and(|e| e.contains("expected debug, info, warn or error")));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn flags_win_over_the_environment_and_the_environment_over_the_file() {
        let all = LogSources {
            level_flag: Some("error"),
            format_flag: None,
            level_env: Some("debug"),
            format_env: Some("json"),
            level_file: Some(LogLevel::Warn),
            format_file: Some(LogFormat::Text),
        };
        assert_eq!(
            LogSettings::resolve(&all),
            Ok(LogSettings {
                level: LogLevel::Error,
                format: LogFormat::Json
            })
        );
        let file_only = LogSources {
            level_env: Some(" "),
            level_file: Some(LogLevel::Warn),
            ..LogSources::default()
        };
        assert_eq!(
            LogSettings::resolve(&file_only).map(|s| s.level),
            Ok(LogLevel::Warn)
        );
        assert_eq!(
            LogSettings::resolve(&LogSources::default()),
            Ok(LogSettings::default())
        );
    }

    #[test]
    fn a_bad_value_names_its_source_and_the_rest_still_applies() {
        let bad = LogSources {
            level_env: Some("loud"),
            format_flag: Some("json"),
            ..LogSources::default()
        };
        assert!(LogSettings::resolve(&bad)
            .is_err_and(|e| e.starts_with("OTEL_EBPF_LOG_LEVEL: \"loud\"")));
        assert_eq!(
            LogSettings::resolve_lenient(&bad),
            LogSettings {
                level: LogLevel::Info,
                format: LogFormat::Json
            }
        );
    }
}
