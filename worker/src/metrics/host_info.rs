//! `traces_host_info`: one gauge, always 1, naming the host by its
//! `grafana.host.id` (Prometheus: `grafana_host_id`), sent beside the span
//! metrics and the service graph metrics as OBI sends it (Grafana's
//! Application Observability counts hosts by it). On the agent's resource.

use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::otel::resource::string_attribute;

pub const NAME: &str = "traces_host_info";
pub const HELP: &str = "The host the spans and service graph metrics come from.";
/// The attribute that names the host (OTLP).
pub const HOST_ID_ATTRIBUTE: &str = "grafana.host.id";
/// The same, as a Prometheus label.
pub const HOST_ID_LABEL: &str = "grafana_host_id";

/// The gauge over OTLP, on `resource` (the agent's).
pub fn to_otlp(host_id: &str, resource: &Resource, now_unix_ns: u64) -> ResourceMetrics {
    let point = NumberDataPoint {
        attributes: vec![string_attribute(HOST_ID_ATTRIBUTE, host_id)],
        start_time_unix_nano: 0,
        time_unix_nano: now_unix_ns,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(number_data_point::Value::AsInt(1)),
    };
    ResourceMetrics {
        resource: Some(resource.clone()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(super::red::scope()),
            metrics: vec![Metric {
                name: NAME.to_owned(),
                description: HELP.to_owned(),
                unit: String::new(),
                metadata: Vec::new(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![point],
                })),
            }],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::resource::attribute_text;

    #[test]
    fn one_point_of_one_naming_the_host() {
        let agent = Resource {
            attributes: vec![string_attribute("service.name", "zerotrace")],
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        };
        let exported = to_otlp("rack-7", &agent, 42);
        let resource = exported.resource.clone().unwrap_or_default();
        assert_eq!(
            attribute_text(&resource, "service.name").as_deref(),
            Some("zerotrace")
        );
        let metric = &exported.scope_metrics[0].metrics[0];
        assert_eq!(metric.name, "traces_host_info");
        let Some(metric::Data::Gauge(gauge)) = &metric.data else {
            panic!("{metric:?}");
        };
        let point = &gauge.data_points[0];
        assert_eq!(point.value, Some(number_data_point::Value::AsInt(1)));
        assert_eq!(point.time_unix_nano, 42);
        assert_eq!(point.attributes[0].key, "grafana.host.id");
    }
}
