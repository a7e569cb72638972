//! OpenTelemetry semantics: settings from the SDK environment variables,
//! trace context and sampling, per-process resources, and the mapping of our
//! spans (HTTP, gRPC) to OTLP.

pub mod resource;
pub mod sampler;
pub mod settings;
pub mod span_encoding;
