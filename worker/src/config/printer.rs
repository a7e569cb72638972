//! The trace printer's setting (`trace_printer`, `OTEL_EBPF_TRACE_PRINTER`):
//! OBI's names, and on by default (as text) only when nothing is exported.

use super::environment::env_value;
use super::error::{ConfigError, Ctx};
use super::values::Text;

/// What the trace printer writes for each span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrinterFormat {
    Disabled,
    Text,
    Json,
}

impl PrinterFormat {
    /// OBI's values: `disabled`, `text`, `json` (and `counter`, which we do not have).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "disabled" | "" => Ok(Self::Disabled),
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "invalid trace printer {other:?}: expected text, json or disabled"
            )),
        }
    }
}

/// OBI's printer names; `json_indent` prints compact JSON, `counter` is refused.
fn parse_printer(value: &str) -> Result<(PrinterFormat, Option<&'static str>), String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "json_indent" => Ok((
            PrinterFormat::Json,
            Some("json_indent prints compact JSON (json) in zerotrace"),
        )),
        "counter" => {
            Err("not supported by zerotrace: counter (expected text, json or disabled)".into())
        }
        other => PrinterFormat::parse(other).map(|f| (f, None)),
    }
}

/// The variable, else the file, else text when nothing is exported (off otherwise).
pub(super) fn trace_printer(
    ctx: &mut Ctx,
    raw: Option<Text>,
    env: &dyn Fn(&str) -> Option<String>,
    anything_exported: bool,
) -> Result<PrinterFormat, ConfigError> {
    let (format, note) = if let Some(value) = env_value(env, "OTEL_EBPF_TRACE_PRINTER") {
        parse_printer(&value)
            .map_err(|e| ConfigError::Env(format!("OTEL_EBPF_TRACE_PRINTER={value:?}: {e}")))?
    } else if let Some(Text(value)) = raw {
        parse_printer(&value).map_err(|e| ctx.err("trace_printer", format!("{value:?}: {e}")))?
    } else if anything_exported {
        // With an exporter the printer is opt-in, as in OBI.
        (PrinterFormat::Disabled, None)
    } else {
        (PrinterFormat::Text, None)
    };
    if let Some(note) = note {
        ctx.warn("trace_printer", note);
    }
    Ok(format)
}

pub(super) fn printer_name(format: PrinterFormat) -> &'static str {
    match format {
        PrinterFormat::Disabled => "disabled",
        PrinterFormat::Text => "text",
        PrinterFormat::Json => "json",
    }
}
