//! The gRPC part of a span: the call, and the HTTP/2 exchange that carried it.

use serde_json::{json, Map, Value};

use super::http::HttpExchange;

/// Status code names, indexed by code.
const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `NOT_FOUND` for 5; codes outside the table (servers may send any number) are `CODE_<n>`.
pub fn status_name(code: u32) -> std::borrow::Cow<'static, str> {
    match STATUS_NAMES.get(code as usize) {
        Some(name) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(format!("CODE_{code}")),
    }
}

/// What a gRPC call adds to its HTTP/2 exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// Fully qualified service, `package.Service` (from `:path`).
    pub service: String,
    /// The method's name within the service.
    pub method: String,
    /// The call's status code: `grpc-status` from the trailers (or a
    /// trailers-only response), else derived from a non-200 `:status`;
    /// None when the call ended without either (reset, not captured).
    pub status_code: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub message: Option<String>,
}

/// A gRPC call as a span's protocol part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcExchange {
    pub call: GrpcCall,
    pub http: HttpExchange,
}

impl GrpcCall {
    /// `package.Service/Method`: the fully qualified method.
    pub fn full_method(&self) -> String {
        format!("{}/{}", self.service, self.method)
    }
}

impl GrpcExchange {
    /// The HTTP/2 exchange's text, then ` grpc=NOT_FOUND` when the status is known.
    pub fn printer_text(&self) -> (String, String) {
        let (summary, mut details) = self.http.printer_text();
        if let Some(code) = self.call.status_code {
            details.push_str(&format!(" grpc={}", status_name(code)));
        }
        (summary, details)
    }

    pub fn printer_json(&self, tls: bool, out: &mut Map<String, Value>) {
        self.http.printer_json(tls, out);
        let call = &self.call;
        out.insert(
            "grpc".into(),
            json!({
                "service": call.service,
                "method": call.method,
                "status_code": call.status_code,
                "status": call.status_code.map(status_name),
                "message": call.message,
            }),
        );
    }
}
