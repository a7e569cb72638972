//! The worker's side of the loader protocol: one request, one reply.

use std::os::fd::{AsFd, OwnedFd};

use zerotrace_shared::event::ListeningSocket;
use zerotrace_shared::ipc::{self, MapDescriptor, ProcessDescription, Refusal, Reply, Request};

pub struct LoaderClient {
    socket: OwnedFd,
}

/// What the loader handed over in its Hello reply.
pub struct Handover {
    pub loader_pid: u32,
    pub maps: Vec<(MapDescriptor, OwnedFd)>,
}

impl LoaderClient {
    pub fn new(socket: OwnedFd) -> Self {
        Self { socket }
    }

    fn call(&self, request: &Request) -> Result<(Reply, Vec<OwnedFd>), String> {
        let bytes = ipc::encode(request).map_err(|e| format!("encode: {e}"))?;
        ipc::send_message(self.socket.as_fd(), &bytes, &[])
            .map_err(|e| format!("send to loader: {e}"))?;
        let message = ipc::recv_message(self.socket.as_fd())
            .map_err(|e| format!("receive from loader: {e}"))?
            .ok_or("the loader closed the connection")?;
        if message.truncated {
            return Err("oversize reply from the loader".into());
        }
        let reply = ipc::decode::<Reply>(&message.bytes)
            .map_err(|e| format!("undecodable reply from the loader: {e:?}"))?;
        Ok((reply, message.fds))
    }

    /// The loader closed its end: it wants us to stop (or it died). The loader
    /// never sends unprompted, so anything readable between calls means EOF.
    pub fn loader_gone(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => fds[0].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN | PollFlags::POLLERR)
            }),
            _ => false,
        }
    }

    pub fn hello(&self) -> Result<Handover, String> {
        match self.call(&Request::Hello)? {
            (Reply::Hello { loader_pid, maps }, fds) if fds.len() == maps.len() => Ok(Handover {
                loader_pid,
                maps: maps.into_iter().zip(fds).collect(),
            }),
            (Reply::Refused(r), _) => Err(format!("the loader refused Hello: {r:?}")),
            (other, fds) => Err(format!(
                "unexpected Hello reply ({other:?}, {} fds)",
                fds.len()
            )),
        }
    }

    /// The loader's counters (requests, worker restarts, attached probes).
    pub fn stats(&self) -> Result<zerotrace_shared::ipc::LoaderStats, String> {
        match self.call(&Request::Stats)?.0 {
            Reply::Stats(stats) => Ok(stats),
            other => Err(refusal_text(other)),
        }
    }

    pub fn list_listeners(&self) -> Result<Vec<ListeningSocket>, String> {
        match self.call(&Request::ListListeners)?.0 {
            Reply::Listeners(listeners) => Ok(listeners),
            other => Err(refusal_text(other)),
        }
    }

    /// The executable path and TLS libraries of a process (the worker cannot
    /// read /proc/PID/exe or /proc/PID/maps of other users).
    pub fn describe_process(&self, pid: u32) -> Result<ProcessDescription, String> {
        match self.call(&Request::DescribeProcess { pid })?.0 {
            Reply::Process(description) => Ok(description),
            other => Err(refusal_text(other)),
        }
    }

    /// Asks for a TLS library hook: Some(true) when this request attached
    /// it, Some(false) when it was already there, None when the file has no
    /// such function.
    pub fn attach_uprobe(
        &self,
        pid: u32,
        library: &str,
        symbol: &str,
    ) -> Result<Option<bool>, String> {
        let request = Request::AttachUprobe {
            pid,
            library: library.to_owned(),
            symbol: symbol.to_owned(),
        };
        match self.call(&request)?.0 {
            Reply::UprobeAttached { new } => Ok(Some(new)),
            Reply::SymbolAbsent => Ok(None),
            other => Err(refusal_text(other)),
        }
    }

    /// Asks for a Go TLS hook in the executable of `pid`: Ok(GoTlsAnswer).
    pub fn attach_go_tls(
        &self,
        pid: u32,
        exe_path: &str,
        symbol: &str,
    ) -> Result<GoTlsAnswer, String> {
        let request = Request::AttachGoTls {
            pid,
            exe_path: exe_path.to_owned(),
            symbol: symbol.to_owned(),
        };
        match self.call(&request)?.0 {
            Reply::UprobeAttached { new } => Ok(GoTlsAnswer::Attached { new }),
            Reply::SymbolAbsent => Ok(GoTlsAnswer::Absent),
            Reply::GoTlsUnsupported { not_go, reason } => {
                Ok(GoTlsAnswer::Unsupported { not_go, reason })
            }
            other => Err(refusal_text(other)),
        }
    }

    pub fn set_targets(&self, add: Vec<u32>, remove: Vec<u32>) -> Result<(), String> {
        match self.call(&Request::SetTargets { add, remove })?.0 {
            Reply::TargetsSet => Ok(()),
            other => Err(refusal_text(other)),
        }
    }
}

/// How the loader answered an `AttachGoTls` request it did not refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoTlsAnswer {
    /// The hook is in place (`new`: this request attached it).
    Attached { new: bool },
    /// A Go program without this function (no `crypto/tls`).
    Absent,
    /// Not Go (`not_go`), or Go older than 1.17: the loader's reason.
    Unsupported { not_go: bool, reason: String },
}

fn refusal_text(reply: Reply) -> String {
    match reply {
        Reply::Refused(Refusal::Failed { reason }) => reason,
        Reply::Refused(r) => format!("refused: {r:?}"),
        other => format!("unexpected reply {other:?}"),
    }
}
