//! The OpenTelemetry RPC semantic conventions for gRPC calls (v1.37, the
//! attribute set OBI and most backends read): span name, `rpc.*`
//! attributes, and which status codes make a span an error.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::resource::{int_attribute, string_attribute};
use crate::protocols::grpc::{
    status_name, DATA_LOSS, DEADLINE_EXCEEDED, INTERNAL, OK, UNAVAILABLE, UNIMPLEMENTED, UNKNOWN,
};
use crate::spans::{GrpcCall, SpanKind};

/// `rpc.system` of every call we decode.
pub const RPC_SYSTEM: &str = "grpc";

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

/// `package.Service/Method`.
pub fn span_name(call: &GrpcCall) -> String {
    format!("{}/{}", call.service, call.method)
}

/// Server spans: only the codes in [`SERVER_ERRORS`]; client spans: any code
/// but OK. A call whose status was not seen is not called an error.
pub fn is_error(kind: SpanKind, call: &GrpcCall) -> bool {
    match (kind, call.status_code) {
        (_, None) => false,
        (SpanKind::Server, Some(code)) => SERVER_ERRORS.contains(&code),
        (SpanKind::Client, Some(code)) => code != OK,
    }
}

/// `rpc.system`, `rpc.service`, `rpc.method` and, when known, `rpc.grpc.status_code`.
pub fn attributes(call: &GrpcCall) -> Vec<KeyValue> {
    let mut attributes = vec![
        string_attribute("rpc.system", RPC_SYSTEM),
        string_attribute("rpc.service", call.service.clone()),
        string_attribute("rpc.method", call.method.clone()),
    ];
    if let Some(code) = call.status_code {
        attributes.push(int_attribute("rpc.grpc.status_code", i64::from(code)));
    }
    attributes
}

/// `error.type` of a failed call: the status code's name (`UNAVAILABLE`).
pub fn error_type(call: &GrpcCall) -> Option<String> {
    call.status_code.map(|code| status_name(code).into_owned())
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
        assert_eq!(span_name(&not_found), "shop.Catalog/GetItem");
        let attributes = attributes(&not_found);
        let keys: Vec<&str> = attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rpc.system",
                "rpc.service",
                "rpc.method",
                "rpc.grpc.status_code"
            ]
        );
        assert_eq!(error_type(&not_found).as_deref(), Some("NOT_FOUND"));
        assert_eq!(
            super::attributes(&call(None)).len(),
            3,
            "no status, no code"
        );
    }
}
