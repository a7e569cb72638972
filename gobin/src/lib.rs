//! Finds where to hook Go's `crypto/tls` in a Go executable (work in progress).
#![forbid(unsafe_code)]

mod bytes;
pub mod elf;
mod error;
pub mod source;

pub use error::GoBinError;
pub mod buildinfo;
pub mod pclntab;
pub mod returns;
