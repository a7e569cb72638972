//! Capture: the kernel side's outputs as seen from the unprivileged worker —
//! the event ring buffer and the maps it may read or update through fds the
//! loader handed over. All `unsafe` of the worker lives in this folder.

pub mod bpf_map;
pub mod pid_bits;
pub mod reader;
pub mod ring_buffer;
