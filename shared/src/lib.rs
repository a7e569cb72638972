//! Types shared by the privileged loader and the unprivileged worker: the IPC
//! protocol between them, the worker's start-up data, the layout of kernel
//! events, and small config types.

pub mod event;
pub mod ipc;
pub mod ports;
pub mod startup;
