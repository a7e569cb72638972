//! RED metrics of gRPC calls: `rpc.server.duration` / `rpc.client.duration`
//! (seconds, the HTTP duration buckets), per process and attribute set
//! (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`,
//! `server.address`, `server.port`). The names are those of the RPC semantic
//! conventions v1.37, which also name the span attributes we emit, and of
//! OBI; the unit is seconds as OBI exports it (v1.37 said ms; the newer
//! `rpc.*.call.duration` is in seconds too). See docs/configuration.md.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, Histogram, HistogramDataPoint, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::red::{HistogramState, DURATION_BOUNDS_SECONDS, MAX_SERIES};
use crate::hashing::FastMap;
use crate::otel::resource::{bool_attribute, int_attribute, string_attribute};
use crate::otel::rpc_conventions::RPC_SYSTEM;
use crate::otel::span_encoding::server_address_and_port;
use crate::spans::{GrpcCall, HttpSpan, SpanKind};

/// (OTLP name, Prometheus family, description) per span kind.
pub fn metric_names(kind: SpanKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        SpanKind::Server => (
            "rpc.server.duration",
            "rpc_server_duration_seconds",
            "Duration of RPCs served.",
        ),
        SpanKind::Client => (
            "rpc.client.duration",
            "rpc_client_duration_seconds",
            "Duration of RPCs made.",
        ),
    }
}

/// The attributes that identify one RPC series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RpcSeriesKey {
    pub pid: u32,
    pub kind: SpanKind,
    pub service: String,
    pub method: String,
    pub status_code: Option<u32>,
    pub server_address: String,
    pub server_port: u16,
    pub overflow: bool,
}

impl RpcSeriesKey {
    pub fn of(span: &HttpSpan, call: &GrpcCall) -> Self {
        let (server_address, server_port) = match span.kind {
            // As for HTTP: the listening socket keeps a server's cardinality bounded.
            SpanKind::Server => (span.local.ip().to_string(), span.local.port()),
            SpanKind::Client => server_address_and_port(span),
        };
        Self {
            pid: span.pid,
            kind: span.kind,
            service: call.service.clone(),
            method: call.method.clone(),
            status_code: call.status_code,
            server_address,
            server_port,
            overflow: false,
        }
    }

    fn overflow_of(pid: u32, kind: SpanKind) -> Self {
        Self {
            pid,
            kind,
            service: String::new(),
            method: String::new(),
            status_code: None,
            server_address: String::new(),
            server_port: 0,
            overflow: true,
        }
    }

    pub fn attributes(&self) -> Vec<KeyValue> {
        if self.overflow {
            return vec![bool_attribute("otel.metric.overflow", true)];
        }
        let mut attributes = vec![
            string_attribute("rpc.system", RPC_SYSTEM),
            string_attribute("rpc.service", self.service.clone()),
            string_attribute("rpc.method", self.method.clone()),
            string_attribute("server.address", self.server_address.clone()),
            int_attribute("server.port", i64::from(self.server_port)),
        ];
        if let Some(code) = self.status_code {
            attributes.push(int_attribute("rpc.grpc.status_code", i64::from(code)));
        }
        attributes
    }
}

#[derive(Debug, Clone)]
pub struct RpcSeries {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    pub duration: HistogramState,
}

/// The RPC duration histograms of every process.
#[derive(Debug, Default)]
pub struct RpcMetrics {
    series: FastMap<RpcSeriesKey, RpcSeries>,
    pub overflowed_points: u64,
}

impl RpcMetrics {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn series(&self) -> impl Iterator<Item = (&RpcSeriesKey, &RpcSeries)> {
        self.series.iter()
    }

    pub fn record(
        &mut self,
        span: &HttpSpan,
        call: &GrpcCall,
        resource: &Arc<Resource>,
        now_unix_ns: u64,
    ) {
        let mut key = RpcSeriesKey::of(span, call);
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
            key = RpcSeriesKey::overflow_of(span.pid, span.kind);
            self.overflowed_points += 1;
        }
        self.series
            .entry(key)
            .or_insert_with(|| RpcSeries {
                resource: Arc::clone(resource),
                start_unix_ns: now_unix_ns,
                duration: HistogramState::new(&DURATION_BOUNDS_SECONDS),
            })
            .duration
            .record(&DURATION_BOUNDS_SECONDS, span.duration_ns() as f64 / 1e9);
    }

    /// The metrics of each process (series without new points are skipped
    /// when `skip_empty`, as delta temporality wants).
    pub fn metrics_by_process(
        &self,
        temporality: i32,
        skip_empty: bool,
        now_unix_ns: u64,
    ) -> HashMap<u32, (Arc<Resource>, Vec<Metric>)> {
        // pid -> (resource, [server points, client points])
        let mut points: HashMap<u32, (Arc<Resource>, [Vec<HistogramDataPoint>; 2])> =
            HashMap::new();
        for (key, series) in &self.series {
            if skip_empty && series.duration.count == 0 {
                continue;
            }
            let entry = points
                .entry(key.pid)
                .or_insert_with(|| (Arc::clone(&series.resource), Default::default()));
            let slot = match key.kind {
                SpanKind::Server => 0,
                SpanKind::Client => 1,
            };
            entry.1[slot].push(series.duration.data_point(
                &DURATION_BOUNDS_SECONDS,
                key.attributes(),
                series.start_unix_ns,
                now_unix_ns,
            ));
        }
        points
            .into_iter()
            .map(|(pid, (resource, [server, client]))| {
                let metrics = [(SpanKind::Server, server), (SpanKind::Client, client)]
                    .into_iter()
                    .filter(|(_, points)| !points.is_empty())
                    .map(|(kind, data_points)| {
                        let (name, _, description) = metric_names(kind);
                        Metric {
                            name: name.into(),
                            description: description.into(),
                            unit: "s".into(),
                            metadata: Vec::new(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points,
                                aggregation_temporality: temporality,
                            })),
                        }
                    })
                    .collect();
                (pid, (resource, metrics))
            })
            .collect()
    }

    /// After an export: delta series start over; exited processes go.
    pub fn after_export(&mut self, reset: bool, exited: &[u32], now_unix_ns: u64) {
        if reset {
            for series in self.series.values_mut() {
                series.start_unix_ns = now_unix_ns;
                series.duration = HistogramState::new(&DURATION_BOUNDS_SECONDS);
            }
        }
        self.series.retain(|key, _| !exited.contains(&key.pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Temporality;
    use crate::metrics::red::RedMetrics;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

    fn call_span(kind: SpanKind, method: &str, code: Option<u32>, duration_ms: u64) -> HttpSpan {
        HttpSpan {
            kind,
            pid: 9,
            process_name: "app".into(),
            local: "127.0.0.1:50051".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            method: "POST".into(),
            target: format!("/shop.Catalog/{method}"),
            status: 200,
            protocol_version: "2",
            start_monotonic_ns: 0,
            end_monotonic_ns: duration_ms * 1_000_000,
            request_body_bytes: 5,
            response_body_bytes: 7,
            host: None,
            traceparent: None,
            truncated: false,
            route: None,
            tls: false,
            grpc: Some(GrpcCall {
                service: "shop.Catalog".into(),
                method: method.into(),
                status_code: code,
                message: None,
            }),
        }
    }

    fn metrics(request: &ExportMetricsServiceRequest) -> Vec<&Metric> {
        request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .collect()
    }

    fn points(metric: &Metric) -> &[HistogramDataPoint] {
        match &metric.data {
            Some(metric::Data::Histogram(h)) => &h.data_points,
            _ => &[],
        }
    }

    #[test]
    fn calls_are_counted_as_rpcs_only_with_their_attributes() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        red.record(
            &call_span(SpanKind::Server, "Get", Some(0), 3),
            None,
            &resource,
            1,
        );
        red.record(
            &call_span(SpanKind::Server, "Get", Some(0), 40),
            None,
            &resource,
            1,
        );
        red.record(
            &call_span(SpanKind::Server, "Get", Some(5), 1),
            None,
            &resource,
            1,
        );
        red.record(
            &call_span(SpanKind::Client, "Watch", None, 2_000),
            None,
            &resource,
            1,
        );
        assert_eq!(red.series().count(), 0, "no HTTP series for gRPC calls");
        let request = red.export(10).unwrap_or_default();
        let metrics = metrics(&request);
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["rpc.server.duration", "rpc.client.duration"]);
        assert!(metrics.iter().all(|m| m.unit == "s"));

        let server = points(metrics[0]);
        assert_eq!(server.len(), 2, "one series per status code");
        let ok = server
            .iter()
            .find(|p| p.count == 2)
            .unwrap_or_else(|| panic!("{server:?}"));
        let attributes: Vec<(String, String)> = ok
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), format!("{:?}", kv.value)))
            .collect();
        for key in [
            "rpc.system",
            "rpc.service",
            "rpc.method",
            "rpc.grpc.status_code",
            "server.address",
            "server.port",
        ] {
            assert!(attributes.iter().any(|(k, _)| k == key), "{key}");
        }
        assert_eq!(ok.bucket_counts[0], 1); // 3 ms
        assert_eq!(ok.bucket_counts[3], 1); // 40 ms in (0.025, 0.05]

        let client = points(metrics[1]);
        assert_eq!(client.len(), 1);
        assert!(
            client[0]
                .attributes
                .iter()
                .all(|kv| kv.key != "rpc.grpc.status_code"),
            "an unseen status is left out"
        );
        assert_eq!(client[0].bucket_counts[10], 1); // 2 s in (1, 2.5]
    }

    #[test]
    fn delta_series_start_over_and_exited_processes_go() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Delta);
        let span = call_span(SpanKind::Server, "Get", Some(0), 3);
        red.record(&span, None, &resource, 1);
        assert!(red.export(10).is_some());
        assert!(red.export(20).is_none(), "nothing new, nothing sent");
        red.record(&span, None, &resource, 25);
        red.forget_process(9);
        let request = red.export(30).unwrap_or_default();
        let counted: u64 = metrics(&request)
            .iter()
            .flat_map(|m| points(m))
            .map(|p| p.count)
            .sum();
        assert_eq!(counted, 1);
        assert!(red.rpc.is_empty(), "the exited process's series are gone");
    }
}
