//! Metrics derived from spans.

pub mod red;
