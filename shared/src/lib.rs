//! Types shared by the privileged loader and the unprivileged worker: the IPC
//! protocol between them, the layout of kernel events, and small config types.

pub mod event;
pub mod ipc;
pub mod ports;
