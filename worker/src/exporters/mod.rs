//! Where finished spans go.

pub mod trace_printer;
