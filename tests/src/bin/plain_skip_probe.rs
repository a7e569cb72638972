//! Started by the real loader through `--worker-path` in place of the worker,
//! to check the kernel's authority rule for plain-HTTP sockets: a socket that
//! an instrumented process marked plain spares that process's later segments
//! the pid filter's hash, and no other process's. This stand-in holds what a
//! compromised worker holds (the pid bitmap mapped writable, the filter, the
//! ring buffer) and does what one could: set the bit of a process the filter
//! does not hold, whose socket an instrumented process has marked plain.
//!
//! One Python process (A) opens a loopback TCP connection to itself (both
//! ends in one process) and forks B, which shares both sockets, before A is
//! instrumented. Then, each step one HTTP/1 exchange over the connection:
//! A in the filter and the bitmap does `/a-1`; B, bit set but not in the
//! filter, does `/b-1` and `/b-2`; A again `/a-2`; B, added to the filter,
//! `/b-3` (the control: B's segments are seen once the filter holds it).
//! Prints one JSON object (the request lines each pid's records carried, the
//! step replies) and exits with the "configuration error" code so the loader
//! stops instead of restarting it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use zerotrace_integration_tests::stand_in::loader_socket;
use zerotrace_shared::event::KernelEvent;
use zerotrace_shared::ipc::MapRole;
use zerotrace_worker::capture::bpf_map::BpfMap;
use zerotrace_worker::capture::pid_bits::PidBits;
use zerotrace_worker::capture::ring_buffer::RingBuffer;
use zerotrace_worker::loader_client::LoaderClient;

const SCRIPT: &str = r#"
import os, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()

def exchange(path):
    client.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: probe\r\nCookie: k=v\r\n\r\n")
    server.recv(4096)
    server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    client.recv(4096)

to_b_r, to_b_w = os.pipe()
from_b_r, from_b_w = os.pipe()
b = os.fork()
if b == 0:
    # Only A writes to B: B's read ends, and B with it, when A exits.
    os.close(to_b_w)
    os.close(from_b_r)
    while True:
        line = b""
        while not line.endswith(b"\n"):
            piece = os.read(to_b_r, 64)
            if not piece:
                os._exit(0)
            line += piece
        exchange(line.strip())
        os.write(from_b_w, b".")
os.close(to_b_r)
os.close(from_b_w)
print(os.getpid(), b, flush=True)
for line in sys.stdin:
    who, path = line.split()
    if who == "A":
        exchange(path.encode())
    else:
        os.write(to_b_w, path.encode() + b"\n")
        os.read(from_b_r, 1)
    print("done", flush=True)
"#;

fn fail(message: &str) -> ! {
    eprintln!("plain skip probe: {message}");
    std::process::exit(1);
}

fn main() {
    let loader = LoaderClient::new(loader_socket("plain skip probe"));
    let handover = loader.hello().unwrap_or_else(|e| fail(&e));
    let (mut ring, mut filter, mut bits) = (None, None, None);
    for (descriptor, fd) in handover.maps {
        match descriptor.role {
            MapRole::Events => ring = RingBuffer::new(fd, descriptor.max_entries).ok(),
            MapRole::PidFilter => {
                filter = Some(BpfMap::new(fd, descriptor.key_size, descriptor.value_size))
            }
            MapRole::PidBits => {
                bits = PidBits::new(fd, descriptor.max_entries, descriptor.value_size).ok()
            }
            MapRole::Counters => {}
        }
    }
    let (Some(mut ring), Some(filter), Some(bits)) = (ring, filter, bits) else {
        fail("the loader did not hand over the ring, the filter and the bitmap");
    };

    let mut python = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("python3: {e}")));
    let (Some(mut to_python), Some(from_python)) = (python.stdin.take(), python.stdout.take())
    else {
        fail("no pipes to python3");
    };
    let mut from_python = BufReader::new(from_python);
    let mut line = String::new();
    let _ = from_python.read_line(&mut line);
    let pids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let [a, b] = pids[..] else {
        fail(&format!("no pids from python3: {line:?}"));
    };

    let instrument = |pid: u32| {
        filter
            .update(&pid.to_ne_bytes(), &1u32.to_ne_bytes())
            .unwrap_or_else(|e| fail(&format!("pid filter update: {e}")));
        bits.set(pid);
    };
    let mut steps = Vec::new();
    let mut step = |who: &str, path: &str| {
        let _ = writeln!(to_python, "{who} {path}");
        let mut reply = String::new();
        let _ = from_python.read_line(&mut reply);
        steps.push(format!("{who} {path}: {}", reply.trim()));
    };
    instrument(a);
    step("A", "/a-1");
    // B: what a compromised worker could do, or a bit left set after an exit
    // when the pid is reused: the bit without the filter.
    bits.set(b);
    step("B", "/b-1");
    step("B", "/b-2");
    step("A", "/a-2");
    instrument(b);
    step("B", "/b-3");
    drop(to_python);
    let _ = python.wait();

    // Records are in the ring once the syscalls returned; give the kernel's
    // last commits a moment and read them all.
    std::thread::sleep(Duration::from_millis(200));
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    ring.consume(|record| {
        if let Ok(KernelEvent::Data {
            origin, payload, ..
        }) = KernelEvent::decode(record)
        {
            let who = if origin.pid == a {
                "A"
            } else if origin.pid == b {
                "B"
            } else {
                "other"
            };
            let first_line = payload.split(|&c| c == b'\r').next().unwrap_or_default();
            seen.entry(who.to_owned())
                .or_default()
                .push(String::from_utf8_lossy(first_line).into_owned());
        }
        true
    });
    println!(
        "{}",
        json!({ "a": a, "b": b, "steps": steps, "seen": seen })
    );
    let _ = std::io::stdout().flush();
    std::process::exit(78);
}
