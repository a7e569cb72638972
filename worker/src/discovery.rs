//! Discovery by open port: which processes to instrument. Listening sockets
//! come from the loader's BPF iterator (servers that were already running)
//! and from the kernel's listen events (servers started later); forks and
//! exits of instrumented processes come from the kernel too. No procfs access
//! beyond what an unprivileged user has is needed.

use std::collections::{BTreeSet, HashMap};

use zerotrace_shared::event::ListeningSocket;
use zerotrace_shared::ports::PortSelection;

use crate::capture::bpf_map::BpfMap;
use crate::loader_client::LoaderClient;

/// How the kernel's pid filter is changed: directly through the map fd when
/// the kernel allows an unprivileged holder to, else by asking the loader.
pub enum PidFilterWriter {
    Direct(BpfMap),
    ViaLoader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentedProcess {
    pub ports: BTreeSet<u16>,
    /// Instrumented because its instrumented parent forked it.
    pub inherited: bool,
}

pub struct PortDiscovery {
    ports: PortSelection,
    /// The agent itself: never instrumented.
    excluded: Vec<u32>,
    instrumented: HashMap<u32, InstrumentedProcess>,
    writer: PidFilterWriter,
}

impl PortDiscovery {
    pub fn new(ports: PortSelection, excluded: Vec<u32>, writer: PidFilterWriter) -> Self {
        Self {
            ports,
            excluded,
            instrumented: HashMap::new(),
            writer,
        }
    }

    pub fn instrumented(&self) -> &HashMap<u32, InstrumentedProcess> {
        &self.instrumented
    }

    fn add_to_filter(&self, pid: u32, loader: &LoaderClient) -> Result<(), String> {
        match &self.writer {
            PidFilterWriter::Direct(map) => map
                .update(&pid.to_ne_bytes(), &1u32.to_ne_bytes())
                .map_err(|e| format!("pid filter update: {e}")),
            PidFilterWriter::ViaLoader => loader.set_targets(vec![pid], Vec::new()),
        }
    }

    fn remove_from_filter(&self, pid: u32, loader: &LoaderClient) {
        let _ = match &self.writer {
            PidFilterWriter::Direct(map) => {
                map.delete(&pid.to_ne_bytes()).map_err(|e| e.to_string())
            }
            PidFilterWriter::ViaLoader => loader.set_targets(Vec::new(), vec![pid]),
        };
    }

    /// A process listens on `port`: instrument it if the port is selected.
    pub fn on_listen(&mut self, pid: u32, port: u16, comm: &str, loader: &LoaderClient) {
        if !self.ports.contains(port) || self.excluded.contains(&pid) {
            return;
        }
        if let Some(process) = self.instrumented.get_mut(&pid) {
            process.ports.insert(port);
            return;
        }
        match self.add_to_filter(pid, loader) {
            Ok(()) => {
                eprintln!(
                    "zerotrace-worker: instrumenting pid {pid} ({comm}) listening on port {port}"
                );
                self.instrumented.insert(
                    pid,
                    InstrumentedProcess {
                        ports: BTreeSet::from([port]),
                        inherited: false,
                    },
                );
            }
            Err(e) => eprintln!("zerotrace-worker: cannot instrument pid {pid}: {e}"),
        }
    }

    /// A full scan of listening sockets; also forgets processes that are gone.
    pub fn on_listeners(&mut self, listeners: &[ListeningSocket], loader: &LoaderClient) {
        for listener in listeners {
            let comm =
                std::fs::read_to_string(format!("/proc/{}/comm", listener.pid)).unwrap_or_default();
            self.on_listen(listener.pid, listener.port, comm.trim(), loader);
        }
        let gone: Vec<u32> = self
            .instrumented
            .keys()
            .copied()
            .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        for pid in gone {
            self.instrumented.remove(&pid);
            self.remove_from_filter(pid, loader);
        }
    }

    /// The kernel already instrumented the child of an instrumented process.
    pub fn on_fork(&mut self, child: u32, parent: u32) {
        let ports = self
            .instrumented
            .get(&parent)
            .map(|p| p.ports.clone())
            .unwrap_or_default();
        self.instrumented.insert(
            child,
            InstrumentedProcess {
                ports,
                inherited: true,
            },
        );
    }

    /// The kernel already removed the exited process from its filter.
    pub fn on_exit(&mut self, pid: u32) {
        self.instrumented.remove(&pid);
    }
}
