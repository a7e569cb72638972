//! zerotrace-worker: the unprivileged half of the agent. It reads kernel
//! events from the ring buffer the loader handed over, reassembles TCP
//! streams, decodes HTTP and database protocols, builds spans and exports them.
//!
//! Folders follow the pipeline: capture → connections → protocols → spans →
//! exporters, with discovery deciding what the kernel captures.

pub mod capture;
pub mod clock;
pub mod config;
pub mod connections;
pub mod discovery;
pub mod exporters;
pub mod hashing;
pub mod live_view;
pub mod loader_client;
pub mod metrics;
pub mod otel;
pub mod pipeline;
pub mod privileges;
pub mod process_language;
pub mod process_state;
pub mod process_usage;
pub mod protocols;
pub mod routes;
pub mod sandbox;
pub mod semconv;
pub mod service_graph;
pub mod span_filter;
pub mod spans;
pub mod tls_hooks;
pub mod traces;

/// Recorded database exchanges through the whole decode path (test only).
#[cfg(test)]
mod db_replay_tests;
/// Recorded Kafka exchanges through the whole decode path (test only).
#[cfg(test)]
mod kafka_replay_tests;
/// Recorded MQTT and AMQP exchanges through the whole decode path (test only).
#[cfg(test)]
mod messaging_replay_tests;
