//! Decoders of application protocols from captured byte streams.

pub mod grpc;
pub mod hpack;
pub mod http1;
pub mod http2;
