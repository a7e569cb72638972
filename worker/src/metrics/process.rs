//! The process metrics (OBI's `application_process` feature): each
//! instrumented process's CPU time and utilization, memory, threads, context
//! switches and page faults, as the OpenTelemetry semantic conventions for OS
//! processes name them, on the process's own resource. The readings come from
//! procfs (`process_usage.rs`), taken by the pipeline when an exporter is
//! about to send them (OTLP: at each metric export; Prometheus: every few
//! seconds), so `process.cpu.utilization` covers the time since the reading
//! before.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::red::scope;
use crate::config::Temporality;
use crate::hashing::FastMap;
use crate::process_usage::ProcessUsage;
use crate::semconv::attribute::string_attribute;

/// Processes followed at once; readings of more are not kept (counted).
pub const MAX_PROCESSES: usize = 10_000;

/// One reading and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub usage: ProcessUsage,
    pub at_unix_ns: u64,
}

/// A process's readings.
#[derive(Debug, Clone)]
pub struct ProcessSeries {
    pub resource: Arc<Resource>,
    /// When the process started: the start of its cumulative counters.
    pub start_unix_ns: u64,
    pub latest: Reading,
    /// The reading before the latest (for the utilization).
    pub previous: Option<Reading>,
    /// The reading the last OTLP export sent (for delta counters).
    exported: Option<Reading>,
    exited: bool,
}

impl ProcessSeries {
    /// A process's first reading.
    fn first(resource: &Arc<Resource>, start_unix_ns: u64, reading: Reading) -> Self {
        Self {
            resource: Arc::clone(resource),
            start_unix_ns,
            latest: reading,
            previous: None,
            exported: None,
            exited: false,
        }
    }

    /// CPU utilization (user, system) between the last two readings: the CPU
    /// time spent over the time elapsed and the CPUs the process may use.
    pub fn utilization(&self) -> Option<(f64, f64)> {
        let previous = self.previous?;
        let elapsed_ns = self.latest.at_unix_ns.checked_sub(previous.at_unix_ns)?;
        if elapsed_ns == 0 {
            return None;
        }
        let capacity = elapsed_ns as f64 / 1e9 * f64::from(self.latest.usage.cpus_allowed.max(1));
        let share = |now: f64, before: f64| (now - before).max(0.0) / capacity;
        let (now, before) = (&self.latest.usage, &previous.usage);
        Some((
            share(now.user_seconds, before.user_seconds),
            share(now.system_seconds, before.system_seconds),
        ))
    }
}

/// The instruments, as the semantic conventions name them.
pub mod names {
    pub const CPU_TIME: &str = "process.cpu.time";
    pub const CPU_UTILIZATION: &str = "process.cpu.utilization";
    pub const MEMORY_USAGE: &str = "process.memory.usage";
    pub const MEMORY_VIRTUAL: &str = "process.memory.virtual";
    pub const THREAD_COUNT: &str = "process.thread.count";
    pub const CONTEXT_SWITCHES: &str = "process.context_switches";
    pub const PAGING_FAULTS: &str = "process.paging.faults";
    /// The attributes that split them.
    pub const CPU_MODE: &str = "cpu.mode";
    pub const CONTEXT_SWITCH_TYPE: &str = "process.context_switch.type";
    pub const PAGING_FAULT_TYPE: &str = "process.paging.fault_type";
}

/// Every followed process's readings.
pub struct ProcessMetrics {
    temporality: Temporality,
    series: FastMap<u32, ProcessSeries>,
    /// Readings not kept because [`MAX_PROCESSES`] were followed.
    pub over_limit: u64,
}

impl ProcessMetrics {
    pub fn new(temporality: Temporality) -> Self {
        Self {
            temporality,
            series: FastMap::default(),
            over_limit: 0,
        }
    }

    /// A new reading of a process.
    pub fn record(
        &mut self,
        pid: u32,
        resource: &Arc<Resource>,
        usage: ProcessUsage,
        start_unix_ns: u64,
        now_unix_ns: u64,
    ) {
        let reading = Reading {
            usage,
            at_unix_ns: now_unix_ns,
        };
        if let Some(series) = self.series.get_mut(&pid) {
            // A pid taken by another process since: start over.
            if series.latest.usage.start_ticks != usage.start_ticks {
                *series = ProcessSeries::first(resource, start_unix_ns, reading);
                return;
            }
            series.previous = Some(series.latest);
            series.latest = reading;
            series.resource = Arc::clone(resource);
            series.exited = false;
            return;
        }
        if self.series.len() >= MAX_PROCESSES {
            self.over_limit += 1;
            return;
        }
        self.series
            .insert(pid, ProcessSeries::first(resource, start_unix_ns, reading));
    }

    /// A process exited: its series goes after the next export or scrape.
    pub fn forget_process(&mut self, pid: u32) {
        if let Some(series) = self.series.get_mut(&pid) {
            series.exited = true;
        }
    }

    /// Drops the series of these processes now.
    pub fn drop_processes(&mut self, pids: &[u32]) {
        self.series.retain(|pid, _| !pids.contains(pid));
    }

    /// Every process's series, by pid.
    pub fn series(&self) -> impl Iterator<Item = (u32, &ProcessSeries)> {
        self.series.iter().map(|(pid, series)| (*pid, series))
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// One resource's metrics per process: counters cumulative since the
    /// process started or, with delta temporality, since the last export.
    pub fn export(&mut self) -> Vec<ResourceMetrics> {
        let delta = self.temporality == Temporality::Delta;
        let mut out = Vec::with_capacity(self.series.len());
        let mut pids: Vec<u32> = self.series.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            let Some(series) = self.series.get_mut(&pid) else {
                continue;
            };
            let metrics = otlp_metrics(series, delta);
            series.exported = Some(series.latest);
            out.push(ResourceMetrics {
                resource: Some((*series.resource).clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        self.series.retain(|_, series| !series.exited);
        out
    }
}

/// A value of a counter, its attribute, read from a reading.
type CounterPart = (&'static str, fn(&ProcessUsage) -> f64);

const CPU_MODES: [CounterPart; 2] = [
    ("user", |u| u.user_seconds),
    ("system", |u| u.system_seconds),
];
const SWITCH_TYPES: [CounterPart; 2] = [
    ("voluntary", |u| u.voluntary_switches as f64),
    ("involuntary", |u| u.involuntary_switches as f64),
];
const FAULT_TYPES: [CounterPart; 2] = [
    ("minor", |u| u.minor_faults as f64),
    ("major", |u| u.major_faults as f64),
];

fn number_point(
    attributes: Vec<KeyValue>,
    start_unix_ns: u64,
    now_unix_ns: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_unix_ns,
        time_unix_nano: now_unix_ns,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    }
}

fn metric_of(name: &str, description: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        metadata: Vec::new(),
        data: Some(data),
    }
}

/// A monotonic counter split by one attribute: since the process started,
/// or (delta) since the reading last exported.
fn counter(
    series: &ProcessSeries,
    delta: bool,
    attribute: &str,
    parts: &[CounterPart],
    as_double: bool,
) -> metric::Data {
    let now = series.latest.at_unix_ns;
    let base = series.exported.filter(|_| delta);
    let start = base.map_or(series.start_unix_ns, |b| b.at_unix_ns);
    let data_points = parts
        .iter()
        .map(|(name, read)| {
            let total = read(&series.latest.usage);
            let amount = base.map_or(total, |b| (total - read(&b.usage)).max(0.0));
            let value = if as_double {
                number_data_point::Value::AsDouble(amount)
            } else {
                number_data_point::Value::AsInt(amount as i64)
            };
            number_point(vec![string_attribute(attribute, *name)], start, now, value)
        })
        .collect();
    let temporality = if delta {
        AggregationTemporality::Delta
    } else {
        AggregationTemporality::Cumulative
    };
    metric::Data::Sum(Sum {
        data_points,
        aggregation_temporality: temporality as i32,
        is_monotonic: true,
    })
}

/// An up-down counter's current value (cumulative whatever the preference,
/// as the SDKs' delta preference leaves up-down counters).
fn level(series: &ProcessSeries, value: u64) -> metric::Data {
    metric::Data::Sum(Sum {
        data_points: vec![number_point(
            Vec::new(),
            series.start_unix_ns,
            series.latest.at_unix_ns,
            number_data_point::Value::AsInt(i64::try_from(value).unwrap_or(i64::MAX)),
        )],
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
        is_monotonic: false,
    })
}

fn otlp_metrics(series: &ProcessSeries, delta: bool) -> Vec<Metric> {
    let usage = &series.latest.usage;
    let mut metrics = vec![metric_of(
        names::CPU_TIME,
        "Total CPU seconds broken down by different states.",
        "s",
        counter(series, delta, names::CPU_MODE, &CPU_MODES, true),
    )];
    if let Some((user, system)) = series.utilization() {
        let at = series.latest.at_unix_ns;
        let point = |mode: &str, value: f64| {
            number_point(
                vec![string_attribute(names::CPU_MODE, mode)],
                0,
                at,
                number_data_point::Value::AsDouble(value),
            )
        };
        metrics.push(metric_of(
            names::CPU_UTILIZATION,
            "Difference in process.cpu.time since the last measurement, divided by the elapsed time and number of CPUs available to the process.",
            "1",
            metric::Data::Gauge(Gauge {
                data_points: vec![point("user", user), point("system", system)],
            }),
        ));
    }
    metrics.extend([
        metric_of(
            names::MEMORY_USAGE,
            "The amount of physical memory in use.",
            "By",
            level(series, usage.resident_bytes),
        ),
        metric_of(
            names::MEMORY_VIRTUAL,
            "The amount of committed virtual memory.",
            "By",
            level(series, usage.virtual_bytes),
        ),
        metric_of(
            names::THREAD_COUNT,
            "Process threads count.",
            "{thread}",
            level(series, usage.threads),
        ),
        metric_of(
            names::CONTEXT_SWITCHES,
            "Number of times the process has been context switched.",
            "{context_switch}",
            counter(
                series,
                delta,
                names::CONTEXT_SWITCH_TYPE,
                &SWITCH_TYPES,
                false,
            ),
        ),
        metric_of(
            names::PAGING_FAULTS,
            "Number of page faults the process has made.",
            "{fault}",
            counter(series, delta, names::PAGING_FAULT_TYPE, &FAULT_TYPES, false),
        ),
    ]);
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semconv::attribute::int_attribute;

    const SECOND: u64 = 1_000_000_000;

    fn resource(pid: u32) -> Arc<Resource> {
        Arc::new(Resource {
            attributes: vec![int_attribute("process.pid", i64::from(pid))],
            ..Resource::default()
        })
    }

    fn usage(user: f64, system: f64, switches: u64) -> ProcessUsage {
        ProcessUsage {
            user_seconds: user,
            system_seconds: system,
            resident_bytes: 10 << 20,
            virtual_bytes: 100 << 20,
            threads: 3,
            minor_faults: 50,
            major_faults: 1,
            voluntary_switches: switches,
            involuntary_switches: 2,
            cpus_allowed: 2,
            start_ticks: 1234,
        }
    }

    fn points<'a>(request: &'a [ResourceMetrics], name: &str) -> Vec<&'a NumberDataPoint> {
        request
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.iter().collect::<Vec<_>>(),
                Some(metric::Data::Gauge(g)) => g.data_points.iter().collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn double(point: &NumberDataPoint) -> f64 {
        match point.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None => f64::NAN,
        }
    }

    #[test]
    fn utilization_is_the_cpu_time_spent_over_the_time_and_cpus_available() {
        let mut metrics = ProcessMetrics::new(Temporality::Cumulative);
        metrics.record(
            7,
            &resource(7),
            usage(1.0, 0.5, 10),
            5 * SECOND,
            100 * SECOND,
        );
        let first = metrics.export();
        // One reading: nothing to compare with yet.
        assert!(points(&first, names::CPU_UTILIZATION).is_empty());
        // 10 s later, 3 s more of user time and 1 s of system time on 2 CPUs.
        metrics.record(
            7,
            &resource(7),
            usage(4.0, 1.5, 30),
            5 * SECOND,
            110 * SECOND,
        );
        let second = metrics.export();
        let utilization = points(&second, names::CPU_UTILIZATION);
        assert_eq!(utilization.len(), 2);
        assert!((double(utilization[0]) - 0.15).abs() < 1e-9);
        assert!((double(utilization[1]) - 0.05).abs() < 1e-9);
        let cpu = points(&second, names::CPU_TIME);
        assert_eq!(
            cpu.iter().map(|p| double(p)).collect::<Vec<_>>(),
            vec![4.0, 1.5]
        );
        assert!(cpu.iter().all(|p| p.start_time_unix_nano == 5 * SECOND));
        assert_eq!(
            double(points(&second, names::MEMORY_USAGE)[0]),
            10.0 * 1048576.0
        );
        // cpu time 2, utilization 2, memory 2, threads 1, switches 2, faults 2.
        let names = [
            names::CPU_TIME,
            names::CPU_UTILIZATION,
            names::MEMORY_USAGE,
            names::MEMORY_VIRTUAL,
            names::THREAD_COUNT,
            names::CONTEXT_SWITCHES,
            names::PAGING_FAULTS,
        ];
        let count: usize = names.iter().map(|n| points(&second, n).len()).sum();
        assert_eq!(count, 11);
    }

    #[test]
    fn delta_counters_count_from_the_last_export() {
        let mut metrics = ProcessMetrics::new(Temporality::Delta);
        metrics.record(
            7,
            &resource(7),
            usage(1.0, 0.5, 10),
            5 * SECOND,
            100 * SECOND,
        );
        let first = metrics.export();
        let cpu = points(&first, names::CPU_TIME);
        assert_eq!(double(cpu[0]), 1.0);
        assert_eq!(cpu[0].start_time_unix_nano, 5 * SECOND);
        metrics.record(
            7,
            &resource(7),
            usage(4.0, 1.5, 30),
            5 * SECOND,
            110 * SECOND,
        );
        let second = metrics.export();
        let cpu = points(&second, names::CPU_TIME);
        assert_eq!(double(cpu[0]), 3.0);
        assert_eq!(double(cpu[1]), 1.0);
        assert_eq!(cpu[0].start_time_unix_nano, 100 * SECOND);
        let switches = points(&second, names::CONTEXT_SWITCHES);
        assert_eq!(double(switches[0]), 20.0);
        // An export without a new reading sends nothing more.
        let third = metrics.export();
        assert_eq!(double(points(&third, names::CPU_TIME)[0]), 0.0);
        // Levels stay levels.
        assert_eq!(double(points(&third, names::THREAD_COUNT)[0]), 3.0);
    }

    #[test]
    fn an_exited_process_goes_after_its_last_export_and_a_reused_pid_starts_over() {
        let mut metrics = ProcessMetrics::new(Temporality::Cumulative);
        metrics.record(
            7,
            &resource(7),
            usage(1.0, 0.5, 10),
            5 * SECOND,
            100 * SECOND,
        );
        metrics.record(
            8,
            &resource(8),
            usage(1.0, 0.5, 10),
            5 * SECOND,
            100 * SECOND,
        );
        metrics.forget_process(7);
        let last = metrics.export();
        assert_eq!(last.len(), 2);
        let after = metrics.export();
        assert_eq!(after.len(), 1);
        // pid 8 now another process: no utilization against the old one's time.
        let mut other = usage(0.1, 0.0, 1);
        other.start_ticks = 9999;
        metrics.record(8, &resource(8), other, 50 * SECOND, 120 * SECOND);
        let reused = metrics.export();
        assert!(points(&reused, names::CPU_UTILIZATION).is_empty());
        assert_eq!(
            points(&reused, names::CPU_TIME)[0].start_time_unix_nano,
            50 * SECOND
        );
    }

    #[test]
    fn past_the_limit_readings_are_counted_not_kept() {
        let mut metrics = ProcessMetrics::new(Temporality::Cumulative);
        for pid in 0..MAX_PROCESSES as u32 + 3 {
            metrics.record(pid, &resource(pid), usage(0.0, 0.0, 0), 0, SECOND);
        }
        assert_eq!(metrics.series().count(), MAX_PROCESSES);
        assert_eq!(metrics.over_limit, 3);
    }
}
