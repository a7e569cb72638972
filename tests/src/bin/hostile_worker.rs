//! A stand-in for a compromised worker, started by the real loader through
//! `--worker-path`. It sends the loader requests outside its protocol and
//! prints, as one JSON object, how the loader answered each; then exits with
//! the "configuration error" code so the loader stops instead of restarting it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use serde_json::{json, Map, Value};
use zerotrace_shared::ipc::{self, Envelope, Reply, Request, IPC_FD_ENV};

fn exchange(socket: &OwnedFd, bytes: &[u8], fds: &[i32]) -> Value {
    if let Err(e) = ipc::send_message(socket.as_fd(), bytes, fds) {
        return json!(format!("send failed: {e}"));
    }
    match ipc::recv_message(socket.as_fd()) {
        Ok(Some(message)) => match ipc::decode::<Reply>(&message.bytes) {
            Ok(Reply::Hello { maps, .. }) => {
                json!(format!(
                    "Hello: {} maps, {} fds",
                    maps.len(),
                    message.fds.len()
                ))
            }
            Ok(reply) => json!(format!("{reply:?}")),
            Err(e) => json!(format!("undecodable reply {e:?}")),
        },
        Ok(None) => json!("connection closed"),
        Err(e) => json!(format!("recv failed: {e}")),
    }
}

fn encoded(request: &Request) -> Vec<u8> {
    ipc::encode(request).unwrap_or_default()
}

fn main() {
    let fd: i32 = std::env::var(IPC_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    if fd < 3 {
        eprintln!("hostile worker: no IPC fd");
        std::process::exit(1);
    }
    // SAFETY: the loader gave us this descriptor.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let own_pid = std::process::id();
    let mut unknown_tag = encoded(&Request::Stats);
    if let Some(tag) = unknown_tag.last_mut() {
        *tag = 0x63;
    }
    let wrong_version = postcard::to_stdvec(&Envelope {
        version: 99,
        body: Request::Hello,
    })
    .unwrap_or_default();
    let too_many = Request::SetTargets {
        add: (1..=2000).collect(),
        remove: Vec::new(),
    };
    let stdin_fd = std::io::stdin().as_fd().as_raw_fd();

    let steps: Vec<(&str, Vec<u8>, Vec<i32>)> = vec![
        ("stats_before_hello", encoded(&Request::Stats), vec![]),
        ("hello", encoded(&Request::Hello), vec![]),
        ("hello_again", encoded(&Request::Hello), vec![]),
        ("unknown_tag", unknown_tag, vec![]),
        ("wrong_version", wrong_version, vec![]),
        (
            "garbage",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            vec![],
        ),
        ("oversize", vec![0u8; 100 * 1024], vec![]),
        ("with_fd", encoded(&Request::Stats), vec![stdin_fd]),
        (
            "pid_zero",
            encoded(&Request::SetTargets {
                add: vec![0],
                remove: vec![],
            }),
            vec![],
        ),
        (
            "pid_too_large",
            encoded(&Request::SetTargets {
                add: vec![],
                remove: vec![u32::MAX],
            }),
            vec![],
        ),
        ("too_many_pids", encoded(&too_many), vec![]),
        (
            "instrument_self",
            encoded(&Request::SetTargets {
                add: vec![own_pid],
                remove: vec![],
            }),
            vec![],
        ),
        (
            "describe_pid_zero",
            encoded(&Request::DescribeProcess { pid: 0 }),
            vec![],
        ),
        ("list_listeners", encoded(&Request::ListListeners), vec![]),
        (
            "describe_self",
            encoded(&Request::DescribeProcess { pid: own_pid }),
            vec![],
        ),
        ("stats", encoded(&Request::Stats), vec![]),
    ];
    let mut results = Map::new();
    for (label, bytes, fds) in steps {
        results.insert(label.to_owned(), exchange(&socket, &bytes, &fds));
    }
    println!("{}", Value::Object(results));
    std::process::exit(78);
}
