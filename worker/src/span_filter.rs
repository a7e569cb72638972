//! OBI's attribute filters (`filter.application`, `config/filters.rs`)
//! applied to spans: a span goes on to the traces, the metrics and the live
//! view only when every condition holds for the value of its attribute. The
//! values are the ones the span is exported with (its semantic-convention
//! attributes and its process's resource), as text; an attribute the span
//! does not carry is the empty string, as in OBI, so `match` drops such
//! spans and `not_match` keeps them.

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::filters::SPAN_ATTRIBUTES;
use crate::config::AttributeFilter;
use crate::metrics::span_metrics::{kind_name, status_name};
use crate::otel::resource::attribute_text;
use crate::semconv::attribute::{AttributeSink, ConnectionKey};
use crate::spans::Span;

/// The filters, and what they dropped.
#[derive(Debug)]
pub struct SpanFilter {
    filters: Vec<AttributeFilter>,
    /// Whether a filter names a span attribute: only then are the span's
    /// attributes written out for it.
    reads_span_attributes: bool,
    /// Spans a condition did not hold for.
    pub spans_filtered: u64,
}

/// Collects the values of the attributes the filters name, as the span's
/// conventions write them.
struct WantedValues<'a> {
    filters: &'a [AttributeFilter],
    values: Vec<Option<String>>,
}

impl WantedValues<'_> {
    /// The value of `key`, made only when a filter names it.
    fn set(&mut self, key: &str, value: impl FnOnce() -> String) {
        let mut make = Some(value);
        let mut made: Option<String> = None;
        for (filter, slot) in self.filters.iter().zip(&mut self.values) {
            if filter.attribute == key {
                let text =
                    made.get_or_insert_with(|| make.take().map_or_else(String::new, |f| f()));
                *slot = Some(text.clone());
            }
        }
    }
}

impl AttributeSink for WantedValues<'_> {
    fn string(&mut self, key: &'static str, value: &str) {
        self.set(key, || value.to_owned());
    }

    fn int(&mut self, key: &'static str, value: i64) {
        self.set(key, || value.to_string());
    }

    fn connection_block(
        &mut self,
        _key: &ConnectionKey<'_>,
        write: &mut dyn FnMut(&mut dyn AttributeSink),
    ) {
        write(self);
    }
}

impl SpanFilter {
    /// None when there is nothing to filter on.
    pub fn new(filters: Vec<AttributeFilter>) -> Option<Self> {
        let reads_span_attributes = filters
            .iter()
            .any(|f| SPAN_ATTRIBUTES.contains(&f.attribute));
        (!filters.is_empty()).then_some(Self {
            filters,
            reads_span_attributes,
            spans_filtered: 0,
        })
    }

    /// Whether every condition holds for the span (counted when not).
    pub fn passes(&mut self, span: &Span, resource: &Resource) -> bool {
        let passes = self.holds(span, resource);
        if !passes {
            self.spans_filtered += 1;
        }
        passes
    }

    fn holds(&self, span: &Span, resource: &Resource) -> bool {
        let mut wanted = WantedValues {
            filters: &self.filters,
            values: vec![None; self.filters.len()],
        };
        if self.reads_span_attributes {
            let error = crate::semconv::error(span);
            crate::semconv::write_span_attributes(span, error.as_ref(), &mut wanted);
        }
        let values = wanted.values;
        self.filters.iter().zip(values).all(|(filter, value)| {
            let value = value.or_else(|| match filter.attribute {
                "span.name" => Some(crate::semconv::span_name(span)),
                "span.kind" => Some(kind_name(span.kind).to_owned()),
                "status.code" => Some(status_name(crate::semconv::is_error(span)).to_owned()),
                other => attribute_text(resource, other),
            });
            filter.passes(value.as_deref().unwrap_or(""))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::filters::filterable_attribute;
    use crate::config::Glob;
    use crate::protocols::db::fixture::Cut;
    use crate::semconv::attribute::{int_attribute, string_attribute};
    use crate::spans::grpc::{GrpcCall, GrpcExchange};
    use crate::spans::{HttpExchange, Protocol, SpanKind, SpanOrigin};

    fn http_span(kind: SpanKind, path: &str, status: u16) -> Span {
        let http = HttpExchange {
            method: "GET".into(),
            target: path.into(),
            status,
            protocol_version: "1.1",
            route: Some(path.into()),
            ..HttpExchange::default()
        };
        span_of(kind, Protocol::Http(http))
    }

    fn span_of(kind: SpanKind, protocol: Protocol) -> Span {
        Span::new(
            SpanOrigin::for_test(kind, 7, "10.0.0.9:50000"),
            (0, 1_000_000),
            false,
            protocol,
        )
    }

    fn resource() -> Resource {
        Resource {
            attributes: vec![
                string_attribute("service.name", "shop"),
                int_attribute("process.pid", 7),
            ],
            ..Resource::default()
        }
    }

    fn filter(attribute: &str, glob: &str, negate: bool) -> AttributeFilter {
        AttributeFilter {
            attribute: filterable_attribute(attribute).unwrap_or_else(|| panic!("{attribute}")),
            glob: Glob::new(glob).unwrap_or_else(|e| panic!("{e}")),
            negate,
        }
    }

    fn passing(filters: Vec<AttributeFilter>, spans: &[Span]) -> Vec<bool> {
        let mut filter = SpanFilter::new(filters).unwrap_or_else(|| panic!("no filter"));
        let resource = resource();
        let passed: Vec<bool> = spans.iter().map(|s| filter.passes(s, &resource)).collect();
        assert_eq!(
            filter.spans_filtered,
            passed.iter().filter(|p| !**p).count() as u64
        );
        passed
    }

    #[test]
    fn a_span_passes_when_every_condition_holds() {
        let spans = [
            http_span(SpanKind::Server, "/api/users", 200),
            http_span(SpanKind::Server, "/health", 200),
            http_span(SpanKind::Server, "/api/orders", 503),
        ];
        assert_eq!(
            passing(vec![filter("url.path", "/api/*", false)], &spans),
            [true, false, true]
        );
        assert_eq!(
            passing(
                vec![
                    filter("url_path", "/health", true),
                    filter("http_response_status_code", "5*", true)
                ],
                &spans
            ),
            [true, false, false]
        );
        // The resource's attributes, and what the span is.
        assert_eq!(
            passing(vec![filter("service_name", "sh*", false)], &spans),
            [true, true, true]
        );
        assert_eq!(
            passing(vec![filter("process.pid", "8", false)], &spans),
            [false, false, false]
        );
        assert_eq!(
            passing(
                vec![filter("status.code", "STATUS_CODE_ERROR", true)],
                &spans
            ),
            [true, true, false]
        );
        assert_eq!(
            passing(vec![filter("span.name", "GET /api/*", false)], &spans),
            [true, false, true]
        );
        assert_eq!(
            passing(vec![filter("span.kind", "SPAN_KIND_SERVER", false)], &spans),
            [true, true, true]
        );
    }

    #[test]
    fn an_attribute_the_span_lacks_is_empty() {
        let grpc = span_of(
            SpanKind::Client,
            Protocol::Grpc(GrpcExchange {
                call: GrpcCall {
                    service: "shop.Cart".into(),
                    method: "Add".into(),
                    status_code: Some(0),
                    message: None,
                },
                http: HttpExchange::default(),
            }),
        );
        // A gRPC call has no http.route: `match` drops it, `not_match` keeps it.
        assert_eq!(
            passing(
                vec![filter("http.route", "/*", false)],
                std::slice::from_ref(&grpc)
            ),
            [false]
        );
        assert_eq!(
            passing(
                vec![filter("http.route", "/health", true)],
                std::slice::from_ref(&grpc)
            ),
            [true]
        );
        assert_eq!(
            passing(vec![filter("rpc.method", "*Add", false)], &[grpc]),
            [true]
        );
    }

    /// Records every key a span's conventions write.
    #[derive(Default)]
    struct Keys(std::collections::BTreeSet<&'static str>);

    impl AttributeSink for Keys {
        fn string(&mut self, key: &'static str, _: &str) {
            self.0.insert(key);
        }
        fn int(&mut self, key: &'static str, _: i64) {
            self.0.insert(key);
        }
        fn connection_block(
            &mut self,
            _: &ConnectionKey<'_>,
            write: &mut dyn FnMut(&mut dyn AttributeSink),
        ) {
            write(self);
        }
    }

    #[test]
    fn every_attribute_a_recorded_span_carries_can_be_filtered_on() {
        let mut spans = vec![
            http_span(SpanKind::Server, "/a?b=c", 500),
            http_span(SpanKind::Client, "/a?b=c", 404),
        ];
        if let Some(http) = spans[0].http_mut() {
            http.user_agent = Some(std::sync::Arc::new("curl/8.4.0".into()));
        }
        // Every recording of a real client (databases, caches, messaging).
        let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut recordings = 0;
        for dir in std::fs::read_dir(&testdata).unwrap_or_else(|e| panic!("{e}")) {
            let dir = dir.unwrap_or_else(|e| panic!("{e}")).path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
                let path = file.unwrap_or_else(|e| panic!("{e}")).path();
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
                recordings += 1;
                spans.extend(crate::db_replay_tests::replay_fixture(
                    &text,
                    40001,
                    Cut::Whole,
                ));
            }
        }
        assert!(
            recordings >= 20 && spans.len() > 50,
            "{recordings} {}",
            spans.len()
        );
        let mut keys = Keys::default();
        for span in &spans {
            let error = crate::semconv::error(span);
            crate::semconv::write_span_attributes(span, error.as_ref(), &mut keys);
        }
        let unknown: Vec<&&str> = keys
            .0
            .iter()
            .filter(|k| !SPAN_ATTRIBUTES.contains(k))
            .collect();
        assert!(unknown.is_empty(), "not filterable: {unknown:?}");
        assert!(keys.0.len() >= 30, "{:?}", keys.0);
    }
}
