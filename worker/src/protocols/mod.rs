//! Decoders of application protocols from captured byte streams, and the
//! registry that says which one a connection speaks.

pub mod grpc;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod http_span;
pub mod registry;
pub mod session;
