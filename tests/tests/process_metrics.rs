//! Process metrics (OBI's `application_process`): an instrumented Python
//! server spends CPU time and holds memory on request; what the agent reports
//! is checked against what the kernel says of the process (its
//! `/proc/PID/status`, read by the test), decoded from OTLP with
//! opentelemetry-proto, and scraped by a real Prometheus.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric, NumberDataPoint};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::prometheus_server::{query, start_prometheus, PrometheusGuard};
use zerotrace_integration_tests::*;

const FEATURES: (&str, &str) = (
    "OTEL_EBPF_METRICS_FEATURES",
    "application,application_process",
);

/// A line of `/proc/PID/status` in bytes (`VmRSS`, `VmSize`: kB).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

fn points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(metric::Data::Sum(sum)) => &sum.data_points,
        Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
        _ => &[],
    }
}

fn value(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

/// The point of `metric` whose attribute `key` is `wanted`.
fn point_with<'a>(metric: &'a Metric, key: &str, wanted: &str) -> &'a NumberDataPoint {
    points(metric)
        .iter()
        .find(|p| attr_str(&p.attributes, key).as_deref() == Some(wanted))
        .unwrap_or_else(|| panic!("{}: no point with {key}={wanted}: {metric:#?}", metric.name))
}

#[test]
fn otlp_carries_each_instrumented_process_s_cpu_and_memory_as_the_kernel_counts_them() {
    require_root();
    let before_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let server = Server::python_app();
    // Not instrumented: none of its readings may go out.
    let other = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let port = server.port.to_string();
    let agent = Agent::start_exporting_to(&["--open-port", &port], &receiver, &[FEATURES]);
    let hold = curl(&[&server.url("/hold/64")]);
    assert!(hold.starts_with("holding 64 MiB"), "{hold}");
    let burn = curl(&[&server.url("/burn/800")]);
    assert!(burn.starts_with("burnt"), "{burn}");
    curl(&[&other.url("/burn/300")]);
    let pid = server.pid().to_string();
    // The first export after the burn, and the one after it (for the utilization).
    let found = receiver.wait_for_metrics(Duration::from_secs(20), |exports| {
        let mine: Vec<Metric> = metrics_of(exports)
            .into_iter()
            .filter(|(resource, m)| {
                resource.get("process.pid") == Some(&pid) && m.name.starts_with("process.")
            })
            .map(|(_, m)| m)
            .collect();
        let cpu = mine.iter().rev().find(|m| m.name == "process.cpu.time")?;
        let spent: f64 = points(cpu).iter().map(value).sum();
        let utilization = mine
            .iter()
            .rev()
            .find(|m| m.name == "process.cpu.utilization")?;
        (spent >= 0.8).then(|| (mine.clone(), cpu.clone(), utilization.clone()))
    });
    let (mine, cpu, utilization) = found.unwrap_or_else(|| {
        panic!(
            "no process.cpu.time of 0.8 s or more for pid {pid}: {:#?}\n{}",
            metrics_of(&receiver.metrics())
                .iter()
                .filter(|(_, m)| m.name.starts_with("process."))
                .collect::<Vec<_>>(),
            agent.stderr.text()
        )
    });
    let rss_kib = status_kib(server.pid(), "VmRSS:");
    let vm_kib = status_kib(server.pid(), "VmSize:");
    // CPU time: by mode, cumulative since the process started, in seconds.
    assert_eq!(cpu.unit, "s");
    let Some(metric::Data::Sum(sum)) = &cpu.data else {
        panic!("{cpu:#?}")
    };
    assert!(sum.is_monotonic);
    let user = point_with(&cpu, "cpu.mode", "user");
    let system = point_with(&cpu, "cpu.mode", "system");
    assert!(value(user) > 0.0 && value(system) >= 0.0, "{cpu:#?}");
    let start = user.start_time_unix_nano;
    assert!(
        start + 2_000_000_000 >= before_start && start <= before_start + 10_000_000_000,
        "the process started at {before_start}, the series at {start}"
    );
    // Utilization: between 0 and 1 of the CPUs the process may use.
    for mode in ["user", "system"] {
        let share = value(point_with(&utilization, "cpu.mode", mode));
        assert!((0.0..=1.0).contains(&share), "{utilization:#?}");
    }
    let latest = |name: &str| {
        mine.iter()
            .rev()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}: {mine:#?}"))
    };
    // Memory: what the kernel says now (the 64 MiB are held for good).
    let memory = latest("process.memory.usage");
    assert_eq!(memory.unit, "By");
    let resident = value(&points(memory)[0]);
    assert!(resident >= 64.0 * 1048576.0, "{memory:#?}");
    assert!(
        (resident - (rss_kib * 1024) as f64).abs() < 16.0 * 1048576.0,
        "reported {resident}, VmRSS {rss_kib} kB"
    );
    let virtual_size = value(&points(latest("process.memory.virtual"))[0]);
    assert!(
        (virtual_size - (vm_kib * 1024) as f64).abs() < 64.0 * 1048576.0,
        "reported {virtual_size}, VmSize {vm_kib} kB"
    );
    assert!(value(&points(latest("process.thread.count"))[0]) >= 1.0);
    let switches = latest("process.context_switches");
    assert!(
        value(point_with(
            switches,
            "process.context_switch.type",
            "voluntary"
        )) > 0.0
    );
    let faults = latest("process.paging.faults");
    // Touching 64 MiB faulted each of its pages in.
    assert!(
        value(point_with(faults, "process.paging.fault_type", "minor")) >= 16_384.0,
        "{faults:#?}"
    );
    // Only instrumented processes are read.
    let other_pid = other.pid().to_string();
    let exports = metrics_of(&receiver.metrics());
    let readers: std::collections::BTreeSet<&String> = exports
        .iter()
        .filter(|(_, m)| m.name.starts_with("process."))
        .filter_map(|(resource, _)| resource.get("process.pid"))
        .collect();
    assert_eq!(readers.into_iter().collect::<Vec<_>>(), vec![&pid]);
    assert!(!exports
        .iter()
        .any(|(resource, _)| resource.get("process.pid") == Some(&other_pid)));
}

#[test]
fn a_real_prometheus_scrapes_the_process_metrics_with_the_process_s_target_info() {
    require_root();
    let server = Server::python_app();
    let metrics_port = free_port();
    let port = server.port.to_string();
    // The Prometheus exporter's own list, as OBI's older per-exporter form.
    let _agent = Agent::start(
        &["--open-port", &port],
        &[
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
            (
                "OTEL_EBPF_PROMETHEUS_FEATURES",
                "application,application_process",
            ),
        ],
    );
    curl(&[&server.url("/hold/32")]);
    curl(&[&server.url("/burn/500")]);
    let (prometheus, prometheus_port, work) = start_prometheus("process", metrics_port);
    let _prometheus = PrometheusGuard(prometheus, work);
    let pid = server.pid();
    // The scrape's `instance` is the target's: the agent's own becomes `exported_instance`.
    let of_process = format!("exported_instance=~\".+-{pid}\"");
    let cpu = wait_for(Duration::from_secs(30), || {
        query(
            prometheus_port,
            &format!("sum(process_cpu_time_seconds_total{{{of_process}}})"),
        )
        .filter(|v| *v >= 0.5)
    });
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert!(cpu.is_some(), "{scrape}");
    let resident = query(
        prometheus_port,
        &format!("process_memory_usage_bytes{{{of_process}}}"),
    )
    .unwrap_or_else(|| panic!("{scrape}"));
    let rss_kib = status_kib(pid, "VmRSS:");
    assert!(resident >= 32.0 * 1048576.0, "{scrape}");
    assert!(
        (resident - (rss_kib * 1024) as f64).abs() < 16.0 * 1048576.0,
        "reported {resident}, VmRSS {rss_kib} kB"
    );
    for series in [
        format!("process_cpu_time_seconds_total{{{of_process},cpu_mode=\"user\"}}"),
        format!("process_context_switches_total{{{of_process},process_context_switch_type=\"voluntary\"}}"),
        format!("process_paging_faults_total{{{of_process},process_paging_fault_type=\"minor\"}}"),
        format!("process_thread_count{{{of_process}}}"),
        format!("process_memory_virtual_bytes{{{of_process}}}"),
    ] {
        let v = query(prometheus_port, &series);
        assert!(v.is_some_and(|v| v > 0.0), "{series}: {v:?}\n{scrape}");
    }
    // The process's resource, once, as target_info (joinable on the instance).
    assert_eq!(
        query(
            prometheus_port,
            &format!("count(target_info{{process_pid=\"{pid}\",service_name=\"python3\"}})")
        ),
        Some(1.0),
        "{scrape}"
    );
    // Utilization comes from two readings 5 s apart.
    let utilization = wait_for(Duration::from_secs(15), || {
        query(
            prometheus_port,
            &format!("sum(process_cpu_utilization_ratio{{{of_process}}})"),
        )
    });
    assert!(
        utilization.is_some_and(|u| (0.0..=1.0).contains(&u)),
        "{utilization:?}\n{scrape}"
    );
    assert!(
        scrape.contains("zerotrace_process_metrics_unread_total 0"),
        "{scrape}"
    );
}
