//! `attributes.select` applied to the RED metrics (the entries are read by
//! `config/metric_select.rs`): each instrument's points keep the attributes
//! its matching entries select, and points that then share a process and
//! attribute set are merged into one histogram, so a removed attribute's
//! series add up instead of repeating a label set. The rule is OBI's: the
//! entries naming an instrument apply in the order of their names; the first
//! one's `include` (or, without one, the instrument's own attributes) is the
//! start, each later `include` adds, each `exclude` removes. zerotrace's
//! instruments carry only their default attributes, so `include` can only
//! keep or restore those.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::red::{HistogramState, Point};
use crate::config::metric_select::attribute_prometheus_form;
use crate::config::MetricSelection;
use crate::hashing::FastMap;
use crate::semconv::Instrument;

/// The overflow series' marker: never removed.
const OVERFLOW: &str = "otel.metric.overflow";

/// Which entries apply to which instrument.
#[derive(Debug, Default)]
pub struct AttributeSelector {
    by_instrument: FastMap<&'static str, Vec<Arc<MetricSelection>>>,
}

impl AttributeSelector {
    /// The entries that apply to each of `instruments`; None when none does.
    /// Entries that name no instrument are said once in the log.
    pub fn new(
        selections: &[MetricSelection],
        instruments: impl IntoIterator<Item = &'static Instrument>,
    ) -> Option<Self> {
        if selections.is_empty() {
            return None;
        }
        let shared: Vec<Arc<MetricSelection>> = selections.iter().cloned().map(Arc::new).collect();
        let mut used = vec![false; shared.len()];
        let mut by_instrument = FastMap::default();
        for instrument in instruments {
            let matching: Vec<Arc<MetricSelection>> = shared
                .iter()
                .enumerate()
                .filter(|(_, s)| s.applies_to(instrument.name))
                .map(|(i, s)| {
                    used[i] = true;
                    Arc::clone(s)
                })
                .collect();
            if !matching.is_empty() {
                by_instrument.insert(instrument.name, matching);
            }
        }
        for (selection, used) in shared.iter().zip(used) {
            if !used {
                tracing::warn!(
                    "attributes.select.{}: names no metric zerotrace exports (ignored)",
                    selection.pattern
                );
            }
        }
        Some(Self { by_instrument })
    }

    /// Whether the instrument keeps the attribute. `limited`: the first
    /// entry's `include` names some attribute of the point, so it is the
    /// start (otherwise, as in OBI, the metric's own attributes are).
    fn keeps(entries: &[Arc<MetricSelection>], key: &str, limited: bool) -> bool {
        if key == OVERFLOW {
            return true;
        }
        let name = attribute_prometheus_form(key);
        let mut kept = true;
        for (i, entry) in entries.iter().enumerate() {
            if i == 0 && limited {
                kept = entry.includes(&name);
            } else if entry.includes(&name) {
                kept = true;
            }
            if entry.excludes(&name) {
                kept = false;
            }
        }
        kept
    }

    /// Whether the first entry's `include` names one of the attributes.
    fn limits(entries: &[Arc<MetricSelection>], attributes: &[KeyValue]) -> bool {
        entries.first().is_some_and(|first| {
            attributes
                .iter()
                .any(|kv| first.includes(&attribute_prometheus_form(&kv.key)))
        })
    }

    /// The points with their selected attributes, merged where they now
    /// share a process, instrument and attribute set (in first-seen order).
    pub fn apply<'a>(&self, points: Vec<Point<'a>>) -> Vec<Point<'a>> {
        let mut out: Vec<Point<'a>> = Vec::with_capacity(points.len());
        let mut index: FastMap<(u32, &'static str, String), usize> = FastMap::default();
        for mut point in points {
            let Some(entries) = self.by_instrument.get(point.instrument.name) else {
                out.push(point);
                continue;
            };
            let limited = Self::limits(entries, &point.attributes);
            point
                .attributes
                .retain(|kv| Self::keeps(entries, &kv.key, limited));
            let key = (
                point.pid,
                point.instrument.name,
                attribute_text(&point.attributes),
            );
            match index.get(&key) {
                Some(&at) => merge(&mut out[at], point),
                None => {
                    index.insert(key, out.len());
                    out.push(point);
                }
            }
        }
        out
    }
}

/// An attribute set as one comparable text.
fn attribute_text(attributes: &[KeyValue]) -> String {
    let mut text = String::new();
    for kv in attributes {
        text.push_str(&kv.key);
        text.push('\u{1f}');
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => text.push_str(s),
            Some(other) => text.push_str(&format!("{other:?}")),
            None => {}
        }
        text.push('\u{1e}');
    }
    text
}

/// Adds `other`'s histogram into `into` (same instrument, same bounds).
fn merge(into: &mut Point<'_>, other: Point<'_>) {
    into.start_unix_ns = into.start_unix_ns.min(other.start_unix_ns);
    let state: &mut HistogramState = into.state.to_mut();
    state.merge(&other.state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Temporality;
    use crate::metrics::red::{MetricStore, RedMetrics};
    use crate::semconv::attribute::string_attribute;
    use crate::spans::{HttpExchange, Protocol, Span, SpanKind, SpanOrigin};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn span(kind: SpanKind, method: &'static str, route: &str, status: u16, ms: u64) -> Span {
        let http = HttpExchange {
            method: method.into(),
            target: route.into(),
            status,
            protocol_version: "1.1",
            route: Some(route.into()),
            ..HttpExchange::default()
        };
        Span::new(
            SpanOrigin::for_test(kind, 7, "127.0.0.1:50000"),
            (0, ms * 1_000_000),
            false,
            Protocol::Http(http),
        )
    }

    fn selections(yaml: &str) -> Vec<MetricSelection> {
        let config = crate::config::load_str(
            &format!("open_port: 80\nattributes:\n  select:\n{yaml}"),
            "test.yaml",
            &|_: &str| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        config.metric_selections
    }

    fn recorded() -> RedMetrics {
        let mut red = RedMetrics::new(Temporality::Cumulative);
        let resource = Arc::new(Resource {
            attributes: vec![string_attribute("service.name", "shop")],
            ..Resource::default()
        });
        for (method, route, status, ms) in [
            ("GET", "/a", 200, 5),
            ("GET", "/b", 200, 40),
            ("POST", "/a", 200, 2000),
            ("GET", "/a", 500, 1),
        ] {
            red.record(
                &span(SpanKind::Server, method, route, status, ms),
                &resource,
                1,
            );
        }
        red
    }

    fn durations<'a>(points: &'a [Point<'a>]) -> Vec<(Vec<String>, u64)> {
        let mut out: Vec<(Vec<String>, u64)> = points
            .iter()
            .filter(|p| p.instrument.name == "http.server.request.duration")
            .map(|p| {
                let attributes = p
                    .attributes
                    .iter()
                    .map(|kv| format!("{}={:?}", kv.key, kv.value))
                    .collect();
                (attributes, p.state.count)
            })
            .collect();
        out.sort();
        out
    }

    fn instruments() -> impl Iterator<Item = &'static Instrument> {
        crate::semconv::http::INSTRUMENTS.iter()
    }

    #[test]
    fn an_excluded_attribute_s_series_add_up() {
        let red = recorded();
        let selector = AttributeSelector::new(
            &selections("    http_server_request_duration_seconds: {exclude: [http.route, http_request_method]}\n"),
            instruments(),
        )
        .unwrap_or_else(|| panic!("no selector"));
        let points = selector.apply(red.http.points());
        let merged = durations(&points);
        // 200s of any route and method together; the 500 apart (its status and error.type).
        let counts: Vec<u64> = merged.iter().map(|(_, c)| *c).collect();
        assert_eq!(counts.iter().sum::<u64>(), 4, "{merged:?}");
        assert_eq!(merged.len(), 2, "{merged:?}");
        for (attributes, _) in &merged {
            assert!(
                attributes.iter().all(
                    |a| !a.starts_with("http.route=") && !a.starts_with("http.request.method=")
                ),
                "{attributes:?}"
            );
        }
        // The merged histogram is the sum of its parts.
        let ok = points
            .iter()
            .find(|p| p.instrument.name == "http.server.request.duration" && p.state.count == 3)
            .unwrap_or_else(|| panic!("{merged:?}"));
        assert!((ok.state.sum - 2.045).abs() < 1e-9, "{}", ok.state.sum);
        assert_eq!(ok.state.explicit_counts().iter().sum::<u64>(), 3);
        assert!((ok.state.min - 0.005).abs() < 1e-12 && (ok.state.max - 2.0).abs() < 1e-12);
        // Other instruments keep every attribute.
        assert!(points
            .iter()
            .filter(|p| p.instrument.name == "http.server.response.body.size")
            .all(|p| p.attributes.iter().any(|kv| kv.key == "http.route")));
    }

    #[test]
    fn the_first_include_limits_later_ones_add_and_excludes_remove() {
        let red = recorded();
        // http.* first (sorted): keep only the method; then the server's own
        // entry adds the route back and removes the status.
        let selector = AttributeSelector::new(
            &selections("    http_*: {include: [http_request_method, http_response_status_code]}\n    http.server.request.duration: {include: [http.route], exclude: ['http_response_*']}\n"),
            instruments(),
        )
        .unwrap_or_else(|| panic!("no selector"));
        let points = selector.apply(red.http.points());
        let keys = |name: &str| -> Vec<Vec<String>> {
            let mut keys: Vec<Vec<String>> = points
                .iter()
                .filter(|p| p.instrument.name == name)
                .map(|p| p.attributes.iter().map(|kv| kv.key.clone()).collect())
                .collect();
            keys.sort();
            keys.dedup();
            keys
        };
        assert_eq!(
            keys("http.server.request.duration"),
            vec![vec![
                "http.request.method".to_owned(),
                "http.route".to_owned()
            ]]
        );
        assert_eq!(
            keys("http.server.response.body.size"),
            vec![vec![
                "http.request.method".to_owned(),
                "http.response.status_code".to_owned()
            ]]
        );
        let merged = durations(&points);
        let counts: Vec<u64> = merged.iter().map(|(_, c)| *c).collect();
        // GET /a (200 and 500 together), GET /b, POST /a.
        assert_eq!(counts, vec![2, 1, 1], "{merged:?}");
    }

    #[test]
    fn no_entry_no_selector_and_the_overflow_marker_stays() {
        assert!(AttributeSelector::new(&[], instruments()).is_none());
        let entries: Vec<Arc<MetricSelection>> = selections("    '*': {include: [nothing]}\n")
            .into_iter()
            .map(Arc::new)
            .collect();
        assert!(AttributeSelector::keeps(&entries, OVERFLOW, true));
        assert!(!AttributeSelector::keeps(&entries, "http.route", true));
        // An include that names none of the point's attributes starts from them all, as in OBI.
        let route = [string_attribute("http.route", "/a")];
        assert!(!AttributeSelector::limits(&entries, &route));
        assert!(AttributeSelector::keeps(&entries, "http.route", false));
    }
}
