//! Where finished spans go.

pub mod otel_export;
pub mod otlp;
pub mod prometheus;
pub mod trace_printer;
