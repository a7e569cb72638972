//! Fault tolerance: a killed loader, an overflowing ring buffer.

use std::time::Duration;

use zerotrace_integration_tests::*;

#[test]
fn a_killed_loader_takes_its_programs_and_worker_with_it() {
    require_root();
    let mut agent = Agent::start(&["--open-port", "1"], &[]);
    let programs = bpf_prog_ids_of(agent.child.id());
    assert!(!programs.is_empty());
    let worker = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGKILL) };
    let _ = agent.child.wait();
    let worker_gone = wait_for(Duration::from_secs(5), || {
        (!std::path::Path::new(&format!("/proc/{worker}")).exists()
            || status_field(worker, "State:").is_some_and(|s| s.starts_with('Z')))
        .then_some(())
    });
    assert!(worker_gone.is_some(), "the worker outlived its loader");
    // Nothing was pinned: the programs go with the loader's file descriptors.
    let unloaded = wait_for(Duration::from_secs(5), || {
        programs
            .iter()
            .all(|id| !bpf_prog_exists(*id))
            .then_some(())
    });
    assert!(unloaded.is_some(), "programs left behind: {programs:?}");
}

#[test]
fn ring_buffer_overflow_is_counted_and_the_rest_is_right() {
    require_root();
    let server = Server::python_app();
    let mut agent = Agent::start(
        &[
            "--open-port",
            &server.port.to_string(),
            "--ring-buffer-bytes",
            "4096",
        ],
        &[],
    );
    // A burst much larger than 4 KiB of events between two drains.
    let request = "POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 400\r\n\r\n".to_owned()
        + &"x".repeat(400);
    let burst: Vec<&str> = std::iter::repeat_n(request.as_str(), 300).collect();
    for _ in 0..3 {
        raw_keepalive_requests(server.port, &burst);
    }
    std::thread::sleep(Duration::from_millis(500));
    curl(&[&server.url("/hello?after-flood")]);
    let after = agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?after-flood");
    assert_eq!(after[0].u64_of("status"), 200);
    // Whatever made it through is well-formed.
    for span in agent.spans() {
        let path = span.str_of("path").to_owned();
        assert!(path == "/echo" || path == "/hello", "garbled span {span}");
    }
    assert_eq!(agent.stop(), Some(0), "{}", agent.stderr.text());
    let stderr = agent.stderr.text();
    let summary = stderr
        .lines()
        .find(|l| l.contains("dropped with the ring buffer full"))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    assert!(
        !summary.contains(" 0 dropped with the ring buffer full"),
        "no drop counted: {summary}"
    );
}
