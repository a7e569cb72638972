//! The service graph metrics (OBI's `application_service_graph` feature),
//! per edge (`client`, `server`, their namespaces, `connection_type`):
//! `traces_service_graph_request_total` and `…_failed_total` (counters),
//! `traces_service_graph_request_client` and `…_server` (histograms, s; on
//! Prometheus with the `_seconds` suffix). OBI's and the Collector's names:
//! dashboards built for them work unchanged. The edges come from
//! `service_graph::ServiceGraph`; they are the agent's view of the host, so
//! over OTLP they go on the agent's own resource, not on one process's.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::red::{histogram_data, overflow_attributes, HistogramState, MAX_SERIES};
use crate::config::HistogramBuckets;
use crate::config::Temporality;
use crate::hashing::FastMap;
use crate::semconv::attribute::string_attribute;
use crate::semconv::{duration_bounds, duration_layout, HistogramLayout};
use crate::service_graph::{EdgeKey, EdgeObservation, EdgeSample};

/// The OTLP names (Prometheus: the histograms get `_seconds`).
pub const REQUEST_TOTAL: &str = "traces_service_graph_request_total";
pub const REQUEST_FAILED_TOTAL: &str = "traces_service_graph_request_failed_total";
pub const REQUEST_CLIENT: &str = "traces_service_graph_request_client";
pub const REQUEST_SERVER: &str = "traces_service_graph_request_server";

/// One edge's running state.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSeries {
    pub start_unix_ns: u64,
    /// When a request last counted here (series not updated for OBI's `ttl` go).
    pub last_unix_ns: u64,
    pub total: u64,
    pub failed: u64,
    /// The client side's durations (requests whose client span was seen).
    pub client: HistogramState,
    /// The server side's durations (requests whose server span was seen).
    pub server: HistogramState,
}

impl EdgeSeries {
    fn new(start_unix_ns: u64, layout: HistogramLayout<'_>) -> Self {
        Self {
            start_unix_ns,
            last_unix_ns: start_unix_ns,
            total: 0,
            failed: 0,
            client: HistogramState::new(layout),
            server: HistogramState::new(layout),
        }
    }

    fn record(&mut self, sample: &EdgeSample, bounds: &[f64]) {
        self.total += 1;
        if sample.failed {
            self.failed += 1;
        }
        if let Some(seconds) = sample.client_seconds {
            self.client.record(bounds, seconds);
        }
        if let Some(seconds) = sample.server_seconds {
            self.server.record(bounds, seconds);
        }
    }
}

/// The labels of an edge, in the order they are written.
pub fn edge_labels(edge: &EdgeKey) -> [(&'static str, &str); 5] {
    [
        ("client", &edge.client.name),
        ("client_service_namespace", &edge.client.namespace),
        ("server", &edge.server.name),
        ("server_service_namespace", &edge.server.namespace),
        ("connection_type", edge.connection_type.as_str()),
    ]
}

fn attributes(edge: Option<&EdgeKey>) -> Vec<KeyValue> {
    match edge {
        Some(edge) => edge_labels(edge)
            .iter()
            .map(|(key, value)| string_attribute(key, *value))
            .collect(),
        None => overflow_attributes(),
    }
}

/// Every edge's series; past [`MAX_SERIES`] edges, new ones share one
/// overflow series (`otel.metric.overflow=true`).
pub struct ServiceGraphMetrics {
    temporality: Temporality,
    /// The duration histograms' buckets (OBI's `buckets.duration_histogram`,
    /// else the default; or exponential, OBI's `histogram_aggregation`).
    buckets: HistogramBuckets,
    /// Whether edges from a service to itself count (OBI's
    /// `allow_service_graph_self_references`; off by default, as in OBI).
    self_references: bool,
    edges: FastMap<EdgeKey, EdgeSeries>,
    overflow: Option<EdgeSeries>,
}

impl ServiceGraphMetrics {
    pub fn new(temporality: Temporality) -> Self {
        Self {
            temporality,
            buckets: HistogramBuckets::default(),
            self_references: false,
            edges: FastMap::default(),
            overflow: None,
        }
    }

    /// The duration histograms' bounds, configured (set before anything is recorded).
    pub fn with_buckets(mut self, buckets: &HistogramBuckets) -> Self {
        self.buckets = buckets.clone();
        self
    }

    /// Counts the edges from a service to itself too (OBI's
    /// `allow_service_graph_self_references`).
    pub fn with_self_references(mut self, allowed: bool) -> Self {
        self.self_references = allowed;
        self
    }

    /// Drops the edges last recorded before `cutoff_unix_ns` (OBI's `ttl`).
    pub fn expire(&mut self, cutoff_unix_ns: u64) {
        self.edges.retain(|_, s| s.last_unix_ns >= cutoff_unix_ns);
        if self
            .overflow
            .as_ref()
            .is_some_and(|s| s.last_unix_ns < cutoff_unix_ns)
        {
            self.overflow = None;
        }
    }

    /// The duration histograms' bounds.
    pub fn bounds(&self) -> &[f64] {
        duration_bounds(&self.buckets.duration)
    }

    pub fn record(&mut self, observation: &EdgeObservation, now_unix_ns: u64) {
        self.record_run(&observation.edge, &[observation.sample()], now_unix_ns);
    }

    /// Requests on one edge: its series is looked up once.
    pub fn record_run(&mut self, edge: &EdgeKey, samples: &[EdgeSample], now_unix_ns: u64) {
        if !self.self_references && edge.is_self_reference() {
            return;
        }
        let series = if let Some(series) = self.edges.get_mut(edge) {
            series
        } else if self.edges.len() < MAX_SERIES {
            self.edges
                .entry(edge.clone())
                .or_insert_with(|| EdgeSeries::new(now_unix_ns, duration_layout(&self.buckets)))
        } else {
            self.overflow
                .get_or_insert_with(|| EdgeSeries::new(now_unix_ns, duration_layout(&self.buckets)))
        };
        series.last_unix_ns = series.last_unix_ns.max(now_unix_ns);
        for sample in samples {
            series.record(sample, duration_bounds(&self.buckets.duration));
        }
    }

    /// Every series with its edge (None: the overflow series, last), in label order.
    pub fn series(&self) -> impl Iterator<Item = (Option<&EdgeKey>, &EdgeSeries)> {
        let mut edges: Vec<(&EdgeKey, &EdgeSeries)> = self.edges.iter().collect();
        edges.sort_unstable_by(|a, b| a.0.cmp(b.0));
        edges
            .into_iter()
            .map(|(edge, series)| (Some(edge), series))
            .chain(self.overflow.iter().map(|series| (None, series)))
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty() && self.overflow.is_none()
    }

    /// The four metrics on `resource` (cumulative: since each edge was first
    /// seen; delta: since the last export, then they start over). None
    /// when there is nothing to send.
    pub fn export(&mut self, resource: &Resource, now_unix_ns: u64) -> Option<ResourceMetrics> {
        let delta = self.temporality == Temporality::Delta;
        let temporality = match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        let counter = |value: u64, edge: Option<&EdgeKey>, start| NumberDataPoint {
            attributes: attributes(edge),
            start_time_unix_nano: start,
            time_unix_nano: now_unix_ns,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(value).unwrap_or(i64::MAX),
            )),
        };
        let (mut total, mut failed, mut client, mut server) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (edge, series) in self.series() {
            if delta && series.total == 0 {
                continue;
            }
            let start = series.start_unix_ns;
            total.push(counter(series.total, edge, start));
            failed.push(counter(series.failed, edge, start));
            for (state, points) in [(&series.client, &mut client), (&series.server, &mut server)] {
                if state.count > 0 {
                    points.push(state.data_point(
                        duration_layout(&self.buckets),
                        attributes(edge),
                        start,
                        now_unix_ns,
                    ));
                }
            }
        }
        if delta {
            for series in self.edges.values_mut().chain(self.overflow.as_mut()) {
                let last = series.last_unix_ns;
                *series = EdgeSeries::new(now_unix_ns, duration_layout(&self.buckets));
                series.last_unix_ns = last;
            }
        }
        if total.is_empty() {
            return None;
        }
        let sum = |name: &str, description: &str, data_points| Metric {
            name: name.into(),
            description: description.into(),
            unit: "{request}".into(),
            metadata: Vec::new(),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: temporality,
                is_monotonic: true,
            })),
        };
        let histogram = |name: &str, description: &str, data_points| Metric {
            name: name.into(),
            description: description.into(),
            unit: "s".into(),
            metadata: Vec::new(),
            data: Some(histogram_data(data_points, temporality)),
        };
        let metrics = vec![
            sum(REQUEST_TOTAL, HELP_TOTAL, total),
            sum(REQUEST_FAILED_TOTAL, HELP_FAILED, failed),
            histogram(REQUEST_CLIENT, HELP_CLIENT, client),
            histogram(REQUEST_SERVER, HELP_SERVER, server),
        ];
        Some(ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(super::red::scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
    }
}

pub const HELP_TOTAL: &str = "Requests between two services.";
pub const HELP_FAILED: &str = "Requests between two services that failed on either side.";
pub const HELP_CLIENT: &str = "Request duration between two services, as the client saw it.";
pub const HELP_SERVER: &str = "Request duration between two services, as the server saw it.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_graph::{ConnectionType, GraphNode};

    fn observation(client: &str, server: &str, failed: bool) -> EdgeObservation {
        EdgeObservation {
            edge: EdgeKey {
                client: GraphNode::new(client, ""),
                server: GraphNode::new(server, "shop"),
                connection_type: ConnectionType::Direct,
            },
            client_seconds: Some(0.02),
            server_seconds: (client != "10.0.0.9").then_some(0.01),
            failed,
        }
    }

    fn metric<'a>(resource: &'a ResourceMetrics, name: &str) -> &'a Metric {
        resource.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn a_service_calling_itself_counts_only_when_allowed() {
        let mut itself = observation("a", "a", false);
        itself.edge.client = GraphNode::new("a", "shop");
        assert!(itself.edge.is_self_reference());
        let totals = |graph: &mut ServiceGraphMetrics| {
            graph.record(&itself, 1);
            graph.record(&observation("a", "b", false), 1);
            graph.export(&Resource::default(), 5).map(|out| {
                match &metric(&out, REQUEST_TOTAL).data {
                    Some(metric::Data::Sum(total)) => total.data_points.len(),
                    _ => 0,
                }
            })
        };
        let mut default = ServiceGraphMetrics::new(Temporality::Cumulative);
        assert_eq!(totals(&mut default), Some(1), "OBI's default leaves it out");
        let mut allowed =
            ServiceGraphMetrics::new(Temporality::Cumulative).with_self_references(true);
        assert_eq!(totals(&mut allowed), Some(2));
    }

    #[test]
    fn otlp_carries_the_four_metrics_per_edge_with_obi_names_and_labels() {
        let mut graph = ServiceGraphMetrics::new(Temporality::Cumulative);
        graph.record(&observation("a", "b", false), 1);
        graph.record(&observation("a", "b", true), 1);
        graph.record(&observation("10.0.0.9", "b", false), 1);
        let out = graph
            .export(&Resource::default(), 5)
            .unwrap_or_else(|| panic!("nothing exported"));
        let Some(metric::Data::Sum(total)) = &metric(&out, REQUEST_TOTAL).data else {
            panic!("total is not a sum");
        };
        assert!(total.is_monotonic);
        assert_eq!(total.data_points.len(), 2);
        let ab = total
            .data_points
            .iter()
            .find(|p| p.attributes.contains(&string_attribute("client", "a")))
            .unwrap_or_else(|| panic!("no a->b"));
        assert_eq!(ab.value, Some(number_data_point::Value::AsInt(2)));
        for key in [
            "client",
            "client_service_namespace",
            "server",
            "server_service_namespace",
            "connection_type",
        ] {
            assert!(ab.attributes.iter().any(|kv| kv.key == key), "{key}");
        }
        assert!(ab
            .attributes
            .contains(&string_attribute("server_service_namespace", "shop")));
        let Some(metric::Data::Histogram(server)) = &metric(&out, REQUEST_SERVER).data else {
            panic!("server is not a histogram");
        };
        assert_eq!(
            server.data_points.len(),
            1,
            "the address->b edge has no server side"
        );
        assert_eq!(metric(&out, REQUEST_CLIENT).unit, "s");
        let Some(metric::Data::Sum(failed)) = &metric(&out, REQUEST_FAILED_TOTAL).data else {
            panic!("failed is not a sum");
        };
        let failures: i64 = failed
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsInt(n)) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(failures, 1);
    }

    #[test]
    fn a_run_records_as_its_requests_one_by_one() {
        let observations: Vec<EdgeObservation> = (0..5)
            .map(|i| observation(if i < 3 { "a" } else { "10.0.0.9" }, "b", i == 1))
            .collect();
        let mut one_by_one = ServiceGraphMetrics::new(Temporality::Cumulative);
        for o in &observations {
            one_by_one.record(o, 1);
        }
        let mut in_runs = ServiceGraphMetrics::new(Temporality::Cumulative);
        for run in [&observations[..3], &observations[3..]] {
            let samples: Vec<EdgeSample> = run.iter().map(EdgeObservation::sample).collect();
            in_runs.record_run(&run[0].edge, &samples, 1);
        }
        let series = |g: &ServiceGraphMetrics| -> Vec<(Option<EdgeKey>, EdgeSeries)> {
            g.series().map(|(k, s)| (k.cloned(), s.clone())).collect()
        };
        let runs = series(&in_runs);
        assert_eq!(runs, series(&one_by_one));
        // In label order: the caller "10.0.0.9" (2 requests), then "a" (3, one failed).
        let counts: Vec<(u64, u64)> = runs.iter().map(|(_, s)| (s.total, s.failed)).collect();
        assert_eq!(counts, vec![(2, 0), (3, 1)]);
    }

    #[test]
    fn delta_exports_start_over_and_skip_idle_edges() {
        let mut graph = ServiceGraphMetrics::new(Temporality::Delta);
        graph.record(&observation("a", "b", false), 1);
        assert!(graph.export(&Resource::default(), 2).is_some());
        assert!(
            graph.export(&Resource::default(), 3).is_none(),
            "no new request"
        );
    }

    #[test]
    fn edges_past_the_cap_share_the_overflow_series() {
        let mut graph = ServiceGraphMetrics::new(Temporality::Cumulative);
        for i in 0..=MAX_SERIES {
            graph.record(&observation(&format!("c{i}"), "b", false), 1);
        }
        let overflow: Vec<_> = graph.series().filter(|(edge, _)| edge.is_none()).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].1.total, 1);
    }
}
