//! The agent's logs: `--log-format json` makes every stderr line of the
//! loader and of the worker one JSON object with a level and a message; in
//! text, `--log-level` (and the YAML file's `log_level`, for the worker)
//! decides which lines are written; a bad level is a configuration error.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use zerotrace_integration_tests::*;

/// Curls the server until the agent prints its span: the agent is up
/// whatever its log level lets it say.
fn wait_until_capturing(agent: &Agent, server: &Server, path: &str) {
    let seen = wait_for(Duration::from_secs(20), || {
        curl(&[&server.url(path)]);
        std::thread::sleep(Duration::from_millis(200));
        agent
            .spans()
            .iter()
            .any(|s| s.str_of("target") == path)
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "no span for {path}; stderr:\n{}",
        agent.stderr.text()
    );
}

/// The level word of a text line (`program: level: message`), with the program.
fn text_level(line: &str) -> Option<(&str, &str)> {
    let (program, rest) = line.split_once(": ")?;
    let (level, _) = rest.split_once(": ")?;
    Some((program, level))
}

#[test]
fn json_format_makes_every_line_of_loader_and_worker_an_object() {
    require_root();
    let server = Server::python_app();
    let port = server.port.to_string();
    let mut agent = Agent::start(&["--open-port", &port, "--log-format", "json"], &[]);
    curl(&[&server.url("/hello?json-logs")]);
    agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?json-logs");
    assert_eq!(agent.stop(), Some(0));
    let lines = agent.stderr.snapshot();
    let mut targets = Vec::new();
    for line in &lines {
        let object: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nall:\n{}", lines.join("\n")));
        let level = object["level"].as_str().unwrap_or_default();
        assert!(
            ["DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line}"
        );
        assert!(
            !object["message"].as_str().unwrap_or_default().is_empty(),
            "{line}"
        );
        targets.push(object["target"].as_str().unwrap_or_default().to_owned());
    }
    let has = |message: &str, worker: bool| {
        lines.iter().zip(&targets).any(|(line, target)| {
            line.contains(message) && target.starts_with("zerotrace_worker") == worker
        })
    };
    assert!(has("probes attached", false), "{lines:#?}");
    assert!(has("ready: instrumenting", true), "{lines:#?}");
    assert!(has("stopping", true), "{lines:#?}");
}

#[test]
fn the_level_decides_which_text_lines_are_written() {
    require_root();
    let server = Server::python_app();
    let port = server.port.to_string();

    let mut verbose = Agent::start(&["--open-port", &port, "--log-level", "debug"], &[]);
    assert_eq!(verbose.stop(), Some(0));
    let lines = verbose.stderr.snapshot();
    let levels: Vec<(&str, &str)> = lines.iter().filter_map(|l| text_level(l)).collect();
    assert_eq!(levels.len(), lines.len(), "{lines:#?}");
    for (program, level) in &levels {
        assert!(
            ["zerotrace", "zerotrace-worker"].contains(program),
            "{lines:#?}"
        );
        assert!(
            ["debug", "info", "warning", "error"].contains(level),
            "{lines:#?}"
        );
    }
    assert!(levels.contains(&("zerotrace", "debug")), "{lines:#?}");
    assert!(
        levels.contains(&("zerotrace-worker", "debug")),
        "{lines:#?}"
    );
    assert!(levels.contains(&("zerotrace-worker", "info")), "{lines:#?}");

    // OBI spells the levels in capitals: any case is accepted.
    let mut quiet = Agent::spawn(&["--open-port", &port, "--log-level", "WARN"], &[]);
    wait_until_capturing(&quiet, &server, "/hello?quiet");
    assert_eq!(quiet.stop(), Some(0));
    let lines = quiet.stderr.snapshot();
    assert!(
        lines
            .iter()
            .all(|l| matches!(text_level(l), Some((_, "warning" | "error")))),
        "only warnings and errors at warn:\n{lines:#?}"
    );
}

#[test]
fn the_files_log_level_applies_to_the_worker_unless_the_environment_says_otherwise() {
    require_root();
    let server = Server::python_app();
    let port = server.port.to_string();
    let dir = std::env::temp_dir().join(format!("zerotrace-logging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("zt.yaml");
    std::fs::write(&file, format!("open_port: {port}\nlog_level: warn\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = file.to_string_lossy().into_owned();

    let mut agent = Agent::spawn(&["--config", &config], &[]);
    wait_until_capturing(&agent, &server, "/hello?file-level");
    agent.stop();
    let lines = agent.stderr.snapshot();
    // The loader never reads the file: its lines stay at info.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("zerotrace: info: probes attached")),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("zerotrace-worker: info:")),
        "{lines:#?}"
    );

    let agent = Agent::start(&["--config", &config], &[("OTEL_EBPF_LOG_LEVEL", "debug")]);
    assert!(
        agent
            .stderr
            .text()
            .contains("zerotrace-worker: debug: the loader"),
        "{}",
        agent.stderr.text()
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_level_or_format_is_a_configuration_error() {
    require_root();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(bin_dir().join("zerotrace"))
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let (code, stderr) = run(&["--open-port", "1", "--log-level", "loud"], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert_eq!(
        stderr,
        "zerotrace: error: --log-level: \"loud\" is not a log level \
         (expected debug, info, warn or error)"
    );
    let (code, stderr) = run(&["--open-port", "1"], &[("OTEL_EBPF_LOG_FORMAT", "xml")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("OTEL_EBPF_LOG_FORMAT"), "{stderr}");
}
