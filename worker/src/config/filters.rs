//! OBI's `filter` section: spans pass only when each named attribute's value
//! matches its glob (`match`) or does not (`not_match`). Attribute names are
//! accepted in their OpenTelemetry (`url.path`) or Prometheus (`url_path`)
//! form, as OBI accepts them, and must be attributes zerotrace's spans or
//! resources carry: a name it would never see is refused, not left to drop
//! every span. `filter.network` is accepted with a warning: zerotrace makes
//! no network metrics for it to filter. The filters are applied by
//! `crate::span_filter`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::{child, ConfigError, Ctx};
use super::glob::Glob;
use super::values::{Extra, Text};

/// The resource attributes a filter may name (the process's).
pub const RESOURCE_ATTRIBUTES: [&str; 10] = [
    "service.name",
    "service.namespace",
    "service.instance.id",
    "host.name",
    "host.id",
    "telemetry.sdk.language",
    "process.pid",
    "process.executable.name",
    "process.command_line",
    "container.id",
];

/// The span attributes a filter may name: those every protocol's semantic
/// conventions write (`crate::semconv`; a test keeps the two equal).
pub const SPAN_ATTRIBUTES: [&str; 39] = [
    "client.address",
    "client.port",
    "server.address",
    "server.port",
    "network.peer.address",
    "network.peer.port",
    "network.protocol.name",
    "network.protocol.version",
    "error.type",
    "url.full",
    "url.path",
    "url.query",
    "url.scheme",
    "http.route",
    "http.request.method",
    "http.request.method_original",
    "http.response.status_code",
    "http.request.body.size",
    "http.response.body.size",
    "user_agent.original",
    "rpc.system.name",
    "rpc.method",
    "rpc.response.status_code",
    "db.system.name",
    "db.namespace",
    "db.collection.name",
    "db.operation.name",
    "db.query.summary",
    "db.query.text",
    "db.response.status_code",
    "db.response.returned_rows",
    "messaging.system",
    "messaging.operation.name",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.destination.partition.id",
    "messaging.client.id",
    "messaging.batch.message_count",
    "messaging.rabbitmq.destination.routing_key",
];

/// What the span is, as OBI's span metrics name it (filterable there too).
pub const SPAN_DESCRIPTION: [&str; 3] = ["span.name", "span.kind", "status.code"];

/// Every attribute a filter may name.
pub fn filterable_attributes() -> impl Iterator<Item = &'static str> {
    RESOURCE_ATTRIBUTES
        .into_iter()
        .chain(SPAN_ATTRIBUTES)
        .chain(SPAN_DESCRIPTION)
}

/// An attribute name in its Prometheus form: every character that is not a
/// letter or digit becomes `_`.
fn prometheus_form(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The attribute a user's name stands for, in its OpenTelemetry form.
pub fn filterable_attribute(name: &str) -> Option<&'static str> {
    let wanted = prometheus_form(name.trim());
    filterable_attributes().find(|known| prometheus_form(known) == wanted)
}

/// One condition: the attribute's value (its text; empty when a span does
/// not carry it) matches `glob`, or with `negate` does not.
#[derive(Debug, Clone)]
pub struct AttributeFilter {
    pub attribute: &'static str,
    pub glob: Glob,
    pub negate: bool,
}

/// Equal when they name the same attribute, glob and sense.
impl PartialEq for AttributeFilter {
    fn eq(&self, other: &Self) -> bool {
        self.attribute == other.attribute
            && self.glob.as_str() == other.glob.as_str()
            && self.negate == other.negate
    }
}

impl AttributeFilter {
    pub fn passes(&self, value: &str) -> bool {
        self.glob.matches(value) != self.negate
    }
}

/// OBI's `filter` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawFilters {
    application: Option<BTreeMap<String, RawMatch>>,
    network: Option<BTreeMap<String, RawMatch>>,
    #[serde(flatten)]
    other: Extra,
}

/// One attribute's condition as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMatch {
    #[serde(rename = "match")]
    matches: Option<Text>,
    not_match: Option<Text>,
    #[serde(flatten)]
    other: Extra,
}

/// The application filters, checked: every key known, each attribute with
/// exactly one of `match` and `not_match`, each glob valid.
pub(super) fn checked_filters(
    ctx: &mut Ctx,
    raw: Option<RawFilters>,
) -> Result<Vec<AttributeFilter>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if let Some(key) = raw.other.keys().next() {
        return Err(ctx.err(
            child("filter", key),
            "unknown key (expected application or network)",
        ));
    }
    if raw.network.as_ref().is_some_and(|n| !n.is_empty()) {
        ctx.warn(
            "filter.network",
            "ignored: zerotrace makes no network metrics to filter",
        );
    }
    let mut filters = Vec::new();
    for (name, condition) in raw.application.unwrap_or_default() {
        let at = child("filter.application", &name);
        let Some(attribute) = filterable_attribute(&name) else {
            return Err(ctx.err(
                at,
                "not an attribute zerotrace's spans or resources carry (see docs/configuration.md, \"Filters\")",
            ));
        };
        if let Some(key) = condition.other.keys().next() {
            return Err(ctx.err(child(&at, key), "unknown key (expected match or not_match)"));
        }
        let (pattern, negate, key) = match (condition.matches, condition.not_match) {
            (Some(glob), None) => (glob.0, false, "match"),
            (None, Some(glob)) => (glob.0, true, "not_match"),
            (Some(_), Some(_)) => {
                return Err(ctx.err(at, "give match or not_match, not both"));
            }
            (None, None) => return Err(ctx.err(at, "give match or not_match")),
        };
        if pattern.is_empty() {
            return Err(ctx.err(child(&at, key), "an empty glob"));
        }
        let glob = Glob::new(&pattern).map_err(|e| ctx.err(child(&at, key), e))?;
        filters.push(AttributeFilter {
            attribute,
            glob,
            negate,
        });
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    #[test]
    fn filters_are_read_in_either_naming() {
        let config = ok(
            &format!(
                "{BASE}filter:\n  application:\n    url.path: {{match: '/api/*'}}\n    http_response_status_code: {{not_match: '5*'}}\n"
            ),
            &[],
        );
        let filters: Vec<(&str, &str, bool)> = config
            .filters
            .iter()
            .map(|f| (f.attribute, f.glob.as_str(), f.negate))
            .collect();
        assert_eq!(
            filters,
            vec![
                ("http.response.status_code", "5*", true),
                ("url.path", "/api/*", false)
            ]
        );
        assert!(config.filters[1].passes("/api/users"));
        assert!(!config.filters[1].passes("/health"));
        assert!(!config.filters[0].passes("503"));
        assert!(config.filters[0].passes("200"));
        assert!(ok(BASE, &[]).filters.is_empty());
    }

    #[test]
    fn a_bad_filter_is_refused_with_its_key() {
        let cases = [
            (
                "    k8s.namespace.name: {match: dev}\n",
                "filter.application.k8s.namespace.name",
            ),
            ("    url.path: {}\n", "filter.application.url.path"),
            (
                "    url.path: {match: a, not_match: b}\n",
                "filter.application.url.path",
            ),
            (
                "    url.path: {match: '[a'}\n",
                "filter.application.url.path.match",
            ),
            (
                "    url.path: {matches: a}\n",
                "filter.application.url.path.matches",
            ),
            (
                "    url.path: {match: ''}\n",
                "filter.application.url.path.match",
            ),
        ];
        for (entry, key) in cases {
            let message = err(&format!("{BASE}filter:\n  application:\n{entry}"), &[]);
            assert!(message.contains(key), "{entry}: {message}");
        }
        let message = err(&format!("{BASE}filter:\n  apps: {{}}\n"), &[]);
        assert!(message.contains("filter.apps"), "{message}");
    }

    #[test]
    fn prometheus_and_opentelemetry_names_are_one_attribute() {
        assert_eq!(filterable_attribute("url_path"), Some("url.path"));
        assert_eq!(filterable_attribute("url.path"), Some("url.path"));
        assert_eq!(
            filterable_attribute("http_request_method_original"),
            Some("http.request.method_original")
        );
        assert_eq!(filterable_attribute("k8s_pod_name"), None);
        // No two names share a Prometheus form.
        let mut forms: Vec<String> = filterable_attributes().map(prometheus_form).collect();
        let count = forms.len();
        assert_eq!(count, 52);
        forms.sort();
        forms.dedup();
        assert_eq!(forms.len(), count);
    }
}
