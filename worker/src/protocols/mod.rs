//! Decoders of application protocols from captured byte streams, and the
//! registry that says which one a connection speaks.

pub mod counters;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod http_span;
pub mod registry;
pub mod session;

/// gRPC is HTTP/2 streams; kept at this path for the conventions and exporters.
pub use http2::grpc;
