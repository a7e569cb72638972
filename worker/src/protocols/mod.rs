//! Decoders of application protocols from captured byte streams, and the
//! registry that says which one a connection speaks.

pub mod amqp;
pub mod counters;
pub mod db;
pub mod db_framing;
pub mod db_selection;
pub mod db_session;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod http_span;
pub mod kafka;
pub mod memcached;
pub mod messaging_call;
#[cfg(test)]
pub mod messaging_fixture;
pub mod messaging_session;
pub mod mongodb;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod postgres;
pub mod prefix_framer;
pub mod redis;
pub mod registry;
pub mod session;
pub mod sql_sanitize;

/// gRPC is HTTP/2 streams; kept at this path for the conventions and exporters.
pub use http2::grpc;
