//! Decoders of application protocols from captured byte streams.

pub mod db;
pub mod db_framing;
pub mod grpc;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod memcached;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql_sanitize;
