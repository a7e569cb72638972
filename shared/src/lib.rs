//! Types shared by the privileged loader and the unprivileged worker: the IPC
//! protocol between them, the worker's start-up data, the layout of kernel
//! events, small config types, and how every zerotrace process logs.

pub mod event;
pub mod ipc;
pub mod logging;
pub mod ports;
pub mod startup;
