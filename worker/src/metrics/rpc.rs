//! RED metrics of gRPC calls: the RPC duration histograms (seconds, the HTTP
//! duration buckets) per process and attribute set. Names and attributes
//! come from `semconv/rpc.rs`; see docs/configuration.md.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::duration::{DurationKey, DurationSeries, DurationStore};
use super::red::overflow_attributes;
use crate::semconv::http::server_address_and_port;
use crate::semconv::rpc::{instrument, metric_attributes, INSTRUMENTS};
use crate::semconv::Instrument;
use crate::spans::{GrpcCall, HttpExchange, Span, SpanKind};

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
    pub fn of(span: &Span, call: &GrpcCall, http: &HttpExchange) -> Self {
        // As for HTTP: the listening socket keeps a server's cardinality bounded.
        let (server_address, server_port) = if span.kind.is_outgoing() {
            server_address_and_port(span, http)
        } else {
            (span.local.ip().to_string(), span.local.port())
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
}

impl DurationKey for RpcSeriesKey {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn instrument(&self) -> &'static Instrument {
        instrument(self.kind)
    }

    fn attributes(&self) -> Vec<KeyValue> {
        if self.overflow {
            return overflow_attributes();
        }
        metric_attributes(
            (&self.service, &self.method),
            self.status_code,
            (&self.server_address, self.server_port),
        )
    }
}

/// The RPC duration histograms of every process.
pub type RpcMetrics = DurationStore<RpcSeriesKey>;

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::new(&INSTRUMENTS)
    }
}

impl RpcMetrics {
    pub fn record(
        &mut self,
        span: &Span,
        call: &GrpcCall,
        http: &HttpExchange,
        resource: &Arc<Resource>,
        now_unix_ns: u64,
    ) {
        let mut key = RpcSeriesKey::of(span, call, http);
        if self.overflows(|series| series.contains_key(&key)) {
            key = RpcSeriesKey::overflow_of(span.pid, span.kind);
        }
        let bounds = instrument(span.kind).bounds_in(&self.buckets);
        self.series
            .entry(key)
            .or_insert_with(|| {
                DurationSeries::new(
                    resource,
                    now_unix_ns,
                    instrument(span.kind).layout_in(&self.buckets),
                )
            })
            .record(bounds, span, now_unix_ns, self.exemplars);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Temporality;
    use crate::metrics::red::MetricStore;
    use crate::metrics::red::RedMetrics;
    use crate::spans::{GrpcExchange, Protocol, SpanOrigin};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric, HistogramDataPoint, Metric};

    fn call_span(kind: SpanKind, method: &str, code: Option<u32>, duration_ms: u64) -> Span {
        let http = HttpExchange {
            method: "POST".into(),
            target: compact_str::format_compact!("/shop.Catalog/{method}"),
            status: 200,
            protocol_version: "2",
            request_body_bytes: 5,
            response_body_bytes: 7,
            ..HttpExchange::default()
        };
        let call = GrpcCall {
            service: "shop.Catalog".into(),
            method: method.into(),
            status_code: code,
            message: None,
        };
        Span::new(
            SpanOrigin {
                kind,
                pid: 9,
                process_name: "app".into(),
                local: "127.0.0.1:50051".parse().unwrap_or_else(|e| panic!("{e}")),
                peer: "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
                tls: false,
            },
            (0, duration_ms * 1_000_000),
            false,
            Protocol::Grpc(GrpcExchange { call, http }),
        )
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
            &resource,
            1,
        );
        red.record(
            &call_span(SpanKind::Server, "Get", Some(0), 40),
            &resource,
            1,
        );
        red.record(
            &call_span(SpanKind::Server, "Get", Some(5), 1),
            &resource,
            1,
        );
        red.record(
            &call_span(SpanKind::Client, "Watch", None, 2_000),
            &resource,
            1,
        );
        assert_eq!(
            red.http.series().count(),
            0,
            "no HTTP series for gRPC calls"
        );
        let request = red.export(10).unwrap_or_default();
        let metrics = metrics(&request);
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["rpc.server.call.duration", "rpc.client.call.duration"]
        );
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
            "rpc.system.name",
            "rpc.method",
            "rpc.response.status_code",
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
                .all(|kv| kv.key != "rpc.response.status_code"),
            "an unseen status is left out"
        );
        assert_eq!(client[0].bucket_counts[10], 1); // 2 s in (1, 2.5]
    }

    #[test]
    fn delta_series_start_over_and_exited_processes_go() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Delta);
        let span = call_span(SpanKind::Server, "Get", Some(0), 3);
        red.record(&span, &resource, 1);
        assert!(red.export(10).is_some());
        assert!(red.export(20).is_none(), "nothing new, nothing sent");
        red.record(&span, &resource, 25);
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

    #[test]
    fn series_not_updated_since_the_cutoff_expire_delta_or_not() {
        let resource = Arc::new(Resource::default());
        for temporality in [Temporality::Cumulative, Temporality::Delta] {
            let mut red = RedMetrics::new(temporality);
            let old = call_span(SpanKind::Server, "Old", Some(0), 3);
            let new = call_span(SpanKind::Server, "New", Some(0), 3);
            red.record(&old, &resource, 1_000);
            red.record(&new, &resource, 1_000);
            // An export (a delta reset included) is no update.
            assert!(red.export(4_000).is_some());
            red.record(&new, &resource, 5_000);
            red.expire(3_000);
            let methods: Vec<String> = red
                .rpc
                .series()
                .map(|(key, _)| format!("{key:?}"))
                .collect();
            assert_eq!(methods.len(), 1, "{methods:?}");
            assert!(methods[0].contains("New"), "{methods:?}");
            red.expire(6_000);
            assert!(red.rpc.is_empty());
        }
    }
}
