//! The trace printer (`OTEL_EBPF_TRACE_PRINTER`): one line per span on
//! stdout, as readable text (like an access log) or as one JSON object.

use std::io::Write;

use serde_json::{json, Value};

use crate::clock::{format_utc, WallClock};
use crate::config::PrinterFormat;
use crate::spans::ids::to_hex;
use crate::spans::Span;

fn human_duration(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 1000.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// `2026-01-30 13:35:17.123 server python3[4863] 127.0.0.1:8199 <- 127.0.0.1:35800 "GET /hello HTTP/1.1" 404 185B 1.27ms`;
/// a gRPC call ends with its status: `… "POST /shop.Catalog/GetItem HTTP/2" 200 0B 1.02ms grpc=NOT_FOUND`.
/// The quoted part and what follows the duration are the protocol's (`spans/`).
/// Each line ends with the trace it is in (`trace=4bf92f35`, the id's first 8
/// hex digits) and, for a child, its parent span (`parent=00f067aa`).
pub fn text_line(span: &Span, clock: &WallClock) -> String {
    let arrow = if span.kind.is_outgoing() { "->" } else { "<-" };
    let (summary, details) = span.printer_text();
    let mut line = format!(
        "{} {} {}[{}] {} {} {} {} {}{}",
        format_utc(clock.to_unix_ns(span.start_monotonic_ns)),
        span.kind.as_str(),
        span.process_name,
        span.pid,
        span.local,
        arrow,
        span.peer,
        summary,
        human_duration(span.duration_ns()),
        details,
    );
    if span.tls {
        line.push_str(" tls");
    }
    if span.partial {
        line.push_str(" (partial)");
    }
    line.push_str(" trace=");
    line.push_str(&short_id(&span.ids.trace_id));
    if let Some(parent) = span.ids.parent_span_id {
        line.push_str(" parent=");
        line.push_str(&short_id(&parent));
    }
    line
}

/// An id's first 4 bytes in hex: enough to tell a screen's traces apart.
fn short_id(id: &[u8]) -> String {
    to_hex(id.get(..4).unwrap_or(id))
}

/// One JSON object: the common fields, then the protocol's.
pub fn json_value(span: &Span, clock: &WallClock) -> Value {
    let mut value = json!({
        "start_unix_nanos": clock.to_unix_ns(span.start_monotonic_ns),
        "duration_nanos": span.duration_ns(),
        "kind": span.kind.as_str(),
        "pid": span.pid,
        "process": &*span.process_name,
        "local_address": span.local.ip().to_string(),
        "local_port": span.local.port(),
        "peer_address": span.peer.ip().to_string(),
        "peer_port": span.peer.port(),
        "partial": span.partial,
        "trace_id": to_hex(&span.ids.trace_id),
        "span_id": to_hex(&span.ids.span_id),
        "parent_span_id": span.ids.parent_span_id.map(|id| to_hex(&id)),
    });
    if let Value::Object(fields) = &mut value {
        span.printer_json(fields);
    }
    value
}

pub struct TracePrinter<W: Write> {
    format: PrinterFormat,
    out: W,
}

impl<W: Write> TracePrinter<W> {
    pub fn new(format: PrinterFormat, out: W) -> Self {
        Self { format, out }
    }

    /// A line about the agent itself (losses), in the text format only: the
    /// JSON format stays one span per line.
    pub fn notice(&mut self, line: &str) {
        if self.format == PrinterFormat::Text {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    /// Writes the spans; a closed stdout is not an error worth dying for.
    pub fn print<'a>(&mut self, spans: impl IntoIterator<Item = &'a Span>, clock: &WallClock) {
        if self.format == PrinterFormat::Disabled {
            return;
        }
        let mut any = false;
        for span in spans {
            any = true;
            let line = match self.format {
                PrinterFormat::Json => json_value(span, clock).to_string(),
                _ => text_line(span, clock),
            };
            let _ = writeln!(self.out, "{line}");
        }
        if any {
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{GrpcCall, GrpcExchange, HttpExchange, Protocol, SpanKind, SpanOrigin};

    fn grpc_span(status_code: Option<u32>) -> Span {
        let http = HttpExchange {
            method: "POST".into(),
            target: "/shop.Catalog/GetItem".into(),
            status: 200,
            protocol_version: "2",
            request_body_bytes: 7,
            ..HttpExchange::default()
        };
        let call = GrpcCall {
            service: "shop.Catalog".into(),
            method: "GetItem".into(),
            status_code,
            message: Some("no such item".into()),
        };
        Span::new(
            SpanOrigin {
                kind: SpanKind::Client,
                pid: 4,
                process_name: "shop".into(),
                local: "127.0.0.1:41876".parse().unwrap_or_else(|e| panic!("{e}")),
                peer: "127.0.0.1:50051".parse().unwrap_or_else(|e| panic!("{e}")),
                tls: false,
            },
            (0, 2_000_000),
            false,
            Protocol::Grpc(GrpcExchange { call, http }),
        )
    }

    #[test]
    fn grpc_calls_show_their_status() {
        let clock = WallClock::new();
        let line = text_line(&grpc_span(Some(5)), &clock);
        assert!(
            line.contains(
                "\"POST /shop.Catalog/GetItem HTTP/2\" 200 0B 2.00ms req=7B grpc=NOT_FOUND trace="
            ),
            "{line}"
        );
        assert!(line.contains(" client shop[4] 127.0.0.1:41876 -> 127.0.0.1:50051 "));
        assert!(!text_line(&grpc_span(None), &clock).contains("grpc="));
        let json = json_value(&grpc_span(Some(5)), &clock);
        assert_eq!(json["grpc"]["service"], "shop.Catalog");
        assert_eq!(json["grpc"]["method"], "GetItem");
        assert_eq!(json["grpc"]["status_code"], 5);
        assert_eq!(json["grpc"]["status"], "NOT_FOUND");
        assert_eq!(json["grpc"]["message"], "no such item");
        assert_eq!(json["method"], "POST");
        assert_eq!(json["scheme"], "http");
        assert_eq!(json["kind"], "client");
        assert_eq!(json["trace_id"].as_str().map(str::len), Some(32));
        let unseen = json_value(&grpc_span(None), &clock);
        assert!(unseen["grpc"]["status"].is_null());
    }

    #[test]
    fn lines_show_a_short_trace_id_and_the_parent_of_a_child() {
        let clock = WallClock::new();
        let mut span = grpc_span(None);
        span.ids.trace_id = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        span.ids.parent_span_id = None;
        let root = text_line(&span, &clock);
        assert!(root.ends_with(" 2.00ms req=7B trace=4bf92f35"), "{root}");
        span.ids.parent_span_id = Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        let child = text_line(&span, &clock);
        assert!(
            child.ends_with(" trace=4bf92f35 parent=00f067aa"),
            "{child}"
        );
    }
}
