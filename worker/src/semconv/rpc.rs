//! The OpenTelemetry RPC semantic conventions for gRPC calls (as of
//! opentelemetry-semantic-conventions 0.66b2, schema 1.40): span name,
//! `rpc.*` attributes, which status codes make a span an error, and the
//! `rpc.{server,client}.call.duration` histograms with their attributes.
//! `rpc.system`, `rpc.service`, `rpc.grpc.status_code` and
//! `rpc.{server,client}.duration` are deprecated there and not emitted.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::attribute::{int_attribute, string_attribute, AttributeSink};
use super::{BucketKind, Conventions, Instrument, SpanError, DURATION_BOUNDS_SECONDS};
use crate::protocols::grpc::{
    status_name, DATA_LOSS, DEADLINE_EXCEEDED, INTERNAL, OK, UNAVAILABLE, UNIMPLEMENTED, UNKNOWN,
};
use crate::spans::{GrpcCall, GrpcExchange, Span, SpanKind};

/// `rpc.system.name` of every call we decode.
pub const RPC_SYSTEM_NAME: &str = "grpc";

/// The duration histograms of served calls, then of calls made.
pub static INSTRUMENTS: [Instrument; 2] = [
    Instrument {
        name: "rpc.server.call.duration",
        prometheus_name: "rpc_server_call_duration_seconds",
        unit: "s",
        prometheus_unit: "seconds",
        description: "Measures the duration of an incoming Remote Procedure Call (RPC).",
        bounds: &DURATION_BOUNDS_SECONDS,
        buckets: BucketKind::Duration,
    },
    Instrument {
        name: "rpc.client.call.duration",
        prometheus_name: "rpc_client_call_duration_seconds",
        unit: "s",
        prometheus_unit: "seconds",
        description: "Measures the duration of an outgoing Remote Procedure Call (RPC).",
        bounds: &DURATION_BOUNDS_SECONDS,
        buckets: BucketKind::Duration,
    },
];

/// The duration instrument of a span kind.
pub fn instrument(kind: SpanKind) -> &'static Instrument {
    let [server, client] = &INSTRUMENTS;
    if kind.is_outgoing() {
        client
    } else {
        server
    }
}

/// Codes that are a server's own failure; the others (NOT_FOUND,
/// INVALID_ARGUMENT, CANCELLED…) describe the request and leave the status unset.
const SERVER_ERRORS: [u32; 6] = [
    UNKNOWN,
    DEADLINE_EXCEEDED,
    UNIMPLEMENTED,
    INTERNAL,
    UNAVAILABLE,
    DATA_LOSS,
];

/// `package.Service/Method`: the span name, and `rpc.method`.
pub fn span_name_parts(call: &GrpcCall) -> [&str; 3] {
    [&call.service, "/", &call.method]
}

/// Server spans: only the codes in [`SERVER_ERRORS`]; client spans: any code
/// but OK. A call whose status was not seen is not called an error.
pub fn is_error(kind: SpanKind, call: &GrpcCall) -> bool {
    match call.status_code {
        None => false,
        Some(code) if kind.is_outgoing() => code != OK,
        Some(code) => SERVER_ERRORS.contains(&code),
    }
}

/// `rpc.system.name`, `rpc.method` (fully qualified) and, when known,
/// `rpc.response.status_code` (the code's name, `NOT_FOUND`).
pub fn attributes(call: &GrpcCall) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(3);
    write_attributes(call, &mut attributes);
    attributes
}

/// [`attributes`], written to `out`.
fn write_attributes(call: &GrpcCall, out: &mut dyn AttributeSink) {
    out.string("rpc.system.name", RPC_SYSTEM_NAME);
    out.string("rpc.method", &call.full_method());
    if let Some(code) = call.status_code {
        out.string("rpc.response.status_code", &status_name(code));
    }
}

/// `error.type` of a failed call: the status code's name (`UNAVAILABLE`).
pub fn error_type(call: &GrpcCall) -> Option<String> {
    call.status_code.map(|code| status_name(code).into_owned())
}

impl Conventions for GrpcExchange {
    fn span_name_parts<'a>(&'a self, _span: &'a Span) -> [&'a str; 3] {
        span_name_parts(&self.call)
    }

    /// The HTTP/2 exchange's attributes that still apply, then the call's.
    fn span_attributes(&self, span: &Span, out: &mut dyn AttributeSink) {
        super::http::span_attributes(span, &self.http, out);
        write_attributes(&self.call, out);
    }

    fn error(&self, span: &Span) -> Option<SpanError> {
        if !self.is_error(span) {
            return None;
        }
        Some(SpanError {
            error_type: error_type(&self.call)?,
            message: self.call.message.clone().unwrap_or_default(),
        })
    }

    fn is_error(&self, span: &Span) -> bool {
        is_error(span.kind, &self.call)
    }
}

/// The attributes of one `rpc.*` metric series.
pub fn metric_attributes(
    (service, method): (&str, &str),
    status_code: Option<u32>,
    server: (&str, u16),
) -> Vec<KeyValue> {
    let mut attributes = vec![
        string_attribute("rpc.system.name", RPC_SYSTEM_NAME),
        string_attribute("rpc.method", format!("{service}/{method}")),
        string_attribute("server.address", server.0),
        int_attribute("server.port", i64::from(server.1)),
    ];
    if let Some(code) = status_code {
        attributes.push(string_attribute(
            "rpc.response.status_code",
            status_name(code),
        ));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(status_code: Option<u32>) -> GrpcCall {
        GrpcCall {
            service: "shop.Catalog".into(),
            method: "GetItem".into(),
            status_code,
            message: None,
        }
    }

    #[test]
    fn server_errors_are_only_the_servers_own_failures() {
        let errors: Vec<u32> = (0..=16)
            .filter(|code| is_error(SpanKind::Server, &call(Some(*code))))
            .collect();
        assert_eq!(errors, vec![2, 4, 12, 13, 14, 15]);
        assert!(!is_error(SpanKind::Server, &call(None)));
        assert!(!is_error(SpanKind::Server, &call(Some(99))));
    }

    #[test]
    fn client_errors_are_every_code_but_ok() {
        let errors: Vec<u32> = (0..=16)
            .filter(|code| is_error(SpanKind::Client, &call(Some(*code))))
            .collect();
        assert_eq!(errors, (1..=16).collect::<Vec<u32>>());
        assert!(!is_error(SpanKind::Client, &call(None)));
    }

    #[test]
    fn names_and_attributes_follow_the_conventions() {
        let not_found = call(Some(5));
        assert_eq!(span_name_parts(&not_found).concat(), "shop.Catalog/GetItem");
        let attributes = attributes(&not_found);
        let keys: Vec<&str> = attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            ["rpc.system.name", "rpc.method", "rpc.response.status_code"]
        );
        let values: Vec<String> = attributes
            .iter()
            .map(|kv| format!("{:?}", kv.value))
            .collect();
        assert!(values[1].contains("\"shop.Catalog/GetItem\""), "{values:?}");
        assert!(values[2].contains("\"NOT_FOUND\""), "{values:?}");
        assert_eq!(error_type(&not_found).as_deref(), Some("NOT_FOUND"));
        assert_eq!(
            super::attributes(&call(None)).len(),
            2,
            "no status, no code"
        );
    }
}
