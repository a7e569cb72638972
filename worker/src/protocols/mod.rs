//! Decoders of application protocols from captured byte streams.

pub mod http1;
