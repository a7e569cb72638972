//! OpenTelemetry semantics: trace context and sampling, per-process
//! resources, and the mapping of our spans (HTTP, gRPC) to OTLP. (The SDK's
//! environment variables are read in `config::otel_sdk`.)

pub mod attribute_blocks;
pub mod host_id;
pub mod resource;
pub mod sampler;
pub mod span_encoding;
pub mod span_wire;
