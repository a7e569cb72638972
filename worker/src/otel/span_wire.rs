//! The trace export written straight to protobuf bytes: each span, as it is
//! recorded, becomes the bytes of an OTLP `Span` in its process's batch, and
//! a batch the bytes of an `ExportTraceServiceRequest`. Building the
//! generated messages instead (`span_encoding::encode_span`) allocated each
//! attribute's key and value, and serialising them computed each nested
//! message's length once per level above it: about 28,000 instructions per
//! span against the rest of the worker's ~7,400 (docs/benchmarks.md).
//!
//! The bytes are those the generated messages serialise to (fields in tag
//! order, proto3 defaults left out, oneof members always written): the tests
//! compare them with prost's encoding of `encode_span`.
//!
//! Field numbers: opentelemetry/proto/trace/v1/trace.proto and
//! common/v1/common.proto.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::attribute_blocks::AttributeBlocks;
use super::span_encoding::{otlp_kind, status_code};
use crate::clock::WallClock;
use crate::semconv;
use crate::semconv::attribute::{AttributeSink, ConnectionKey};
use crate::spans::Span;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

#[inline]
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // 7 bits a byte; 0 takes one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The key of a field numbered below 16, which takes one byte.
const fn one_byte_key(field: u32, wire_type: u32) -> u8 {
    (field << 3 | wire_type) as u8
}

#[inline]
fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from(field << 3 | wire_type));
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// A length-delimited field holding `bytes`.
#[inline]
fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The size of a length-delimited field of `len` bytes.
fn len_field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// A string field, left out when empty (a proto3 default).
#[inline]
fn string_field(out: &mut Vec<u8>, field: u32, text: &str) {
    if !text.is_empty() {
        len_field(out, field, text.as_bytes());
    }
}

fn string_field_len(field: u32, text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        len_field_len(field, text.len())
    }
}

mod field {
    /// `Span`.
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START_TIME: u32 = 7;
    pub const END_TIME: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
    /// `Status`.
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    /// `KeyValue`, and `AnyValue`'s members.
    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
    pub const STRING_VALUE: u32 = 1;
    pub const INT_VALUE: u32 = 3;
    /// `ExportTraceServiceRequest`, `ResourceSpans`, `ScopeSpans`.
    pub const RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE: u32 = 1;
    pub const SCOPE_SPANS: u32 = 2;
    pub const SCOPE: u32 = 1;
    pub const SPANS: u32 = 2;
}

/// Attributes written as the `KeyValue`s of a span's `attributes` field;
/// a connection's are copied from what was written for it before.
struct WireAttributes<'a> {
    out: &'a mut Vec<u8>,
    blocks: &'a mut AttributeBlocks,
}

impl WireAttributes<'_> {
    /// One `KeyValue` whose `AnyValue` is `value_len` bytes, written by `value`.
    #[inline]
    fn key_value(&mut self, name: &str, value_len: usize, value: impl FnOnce(&mut Vec<u8>)) {
        let out = &mut *self.out;
        // Nearly every attribute: the pair is under 128 bytes, so each
        // length in it takes one byte, and none needs computing.
        let short_pair_len = 2 + name.len() + 2 + value_len;
        if short_pair_len < 0x80 && !name.is_empty() {
            out.reserve(2 + short_pair_len);
            out.extend_from_slice(&[
                one_byte_key(field::ATTRIBUTES, LEN),
                short_pair_len as u8,
                one_byte_key(field::KEY, LEN),
                name.len() as u8,
            ]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&[one_byte_key(field::VALUE, LEN), value_len as u8]);
        } else {
            let pair_len =
                string_field_len(field::KEY, name) + len_field_len(field::VALUE, value_len);
            out.reserve(len_field_len(field::ATTRIBUTES, pair_len));
            key(out, field::ATTRIBUTES, LEN);
            varint(out, pair_len as u64);
            string_field(out, field::KEY, name);
            key(out, field::VALUE, LEN);
            varint(out, value_len as u64);
        }
        value(out);
    }
}

impl AttributeSink for WireAttributes<'_> {
    fn string(&mut self, name: &'static str, value: &str) {
        // A oneof member is written even when empty.
        let value_len = len_field_len(field::STRING_VALUE, value.len());
        self.key_value(name, value_len, |out| {
            len_field(out, field::STRING_VALUE, value.as_bytes())
        });
    }

    fn int(&mut self, name: &'static str, value: i64) {
        let value_len = key_len(field::INT_VALUE) + varint_len(value as u64);
        self.key_value(name, value_len, |out| {
            key(out, field::INT_VALUE, VARINT);
            varint(out, value as u64);
        });
    }

    fn connection_block(
        &mut self,
        key: &ConnectionKey<'_>,
        write: &mut dyn FnMut(&mut dyn AttributeSink),
    ) {
        if let Some(bytes) = self.blocks.get(key) {
            self.out.extend_from_slice(bytes);
            return;
        }
        let start = self.out.len();
        write(self);
        let written = self.out.get(start..).unwrap_or_default();
        self.blocks.insert(key, written);
    }
}

/// The bytes a span's length takes, written before the span is: 128 bytes
/// to 16 KiB, as nearly every span is. Any other length moves the span once.
const SPAN_LEN_BYTES: usize = 2;

/// Appends `span` to `out` as one element of a `ScopeSpans`' `spans`,
/// written in place (its length filled in after it); its connection's
/// attributes are copied from `blocks` when they were written before.
pub fn append_span(
    span: &Span,
    clock: &WallClock,
    blocks: &mut AttributeBlocks,
    out: &mut Vec<u8>,
) {
    key(out, field::SPANS, LEN);
    let len_at = out.len();
    out.extend_from_slice(&[0; SPAN_LEN_BYTES]);
    write_span(span, clock, blocks, out);
    let body_len = out.len() - len_at - SPAN_LEN_BYTES;
    if varint_len(body_len as u64) == SPAN_LEN_BYTES {
        if let Some(slot) = out.get_mut(len_at..len_at + SPAN_LEN_BYTES) {
            slot.copy_from_slice(&[body_len as u8 | 0x80, (body_len >> 7) as u8]);
        }
    } else {
        let mut len = Vec::new();
        varint(&mut len, body_len as u64);
        out.splice(len_at..len_at + SPAN_LEN_BYTES, len);
    }
}

/// The `Span` message's fields.
fn write_span(span: &Span, clock: &WallClock, blocks: &mut AttributeBlocks, body: &mut Vec<u8>) {
    let ids = &span.ids;
    len_field(body, field::TRACE_ID, &ids.trace_id);
    len_field(body, field::SPAN_ID, &ids.span_id);
    if let Some(parent) = &ids.parent_span_id {
        len_field(body, field::PARENT_SPAN_ID, parent);
    }
    let name = semconv::span_name_parts(span);
    let name_len: usize = name.iter().map(|part| part.len()).sum();
    if name_len > 0 {
        key(body, field::NAME, LEN);
        varint(body, name_len as u64);
        for part in name {
            body.extend_from_slice(part.as_bytes());
        }
    }
    let kind = otlp_kind(span.kind) as i32;
    if kind != 0 {
        key(body, field::KIND, VARINT);
        varint(body, kind as u64);
    }
    for (field, ns) in [
        (field::START_TIME, clock.to_unix_ns(span.start_monotonic_ns)),
        (field::END_TIME, clock.to_unix_ns(span.end_monotonic_ns)),
    ] {
        if ns != 0 {
            key(body, field, FIXED64);
            body.extend_from_slice(&ns.to_le_bytes());
        }
    }
    let error = semconv::error(span);
    semconv::write_span_attributes(
        span,
        error.as_ref(),
        &mut WireAttributes { out: body, blocks },
    );
    // The status is always there, even when empty.
    let message = error.as_ref().map_or("", |e| e.message.as_str());
    let code = status_code(error.is_some()) as i32;
    let code_len = if code == 0 {
        0
    } else {
        key_len(field::STATUS_CODE) + varint_len(code as u64)
    };
    key(body, field::STATUS, LEN);
    varint(
        body,
        (string_field_len(field::STATUS_MESSAGE, message) + code_len) as u64,
    );
    string_field(body, field::STATUS_MESSAGE, message);
    if code != 0 {
        key(body, field::STATUS_CODE, VARINT);
        varint(body, code as u64);
    }
    key(body, field::FLAGS, FIXED32);
    body.extend_from_slice(&super::span_encoding::span_flags(span).to_le_bytes());
}

/// One process's spans waiting for the next export: their `Span` messages
/// as the `spans` fields of a `ScopeSpans`, and its resource.
pub struct ProcessSpans {
    pub resource: Arc<Resource>,
    pub spans: Vec<u8>,
    pub count: u64,
}

impl ProcessSpans {
    pub fn new(resource: Arc<Resource>) -> Self {
        Self {
            resource,
            spans: Vec::new(),
            count: 0,
        }
    }
}

/// The instrumentation scope, serialised once.
pub fn scope_bytes(scope: &InstrumentationScope) -> Vec<u8> {
    scope.encode_to_vec()
}

/// The serialised `ExportTraceServiceRequest` of these processes' spans,
/// each process its own `ResourceSpans` with one `ScopeSpans`.
pub fn export_request<'a>(
    processes: impl IntoIterator<Item = &'a ProcessSpans>,
    scope: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    for process in processes {
        let resource = process.resource.encode_to_vec();
        let scope_spans_len = len_field_len(field::SCOPE, scope.len()) + process.spans.len();
        let resource_spans_len = len_field_len(field::RESOURCE, resource.len())
            + len_field_len(field::SCOPE_SPANS, scope_spans_len);
        out.reserve(len_field_len(field::RESOURCE_SPANS, resource_spans_len));
        key(&mut out, field::RESOURCE_SPANS, LEN);
        varint(&mut out, resource_spans_len as u64);
        len_field(&mut out, field::RESOURCE, &resource);
        key(&mut out, field::SCOPE_SPANS, LEN);
        varint(&mut out, scope_spans_len as u64);
        len_field(&mut out, field::SCOPE, scope);
        out.extend_from_slice(&process.spans);
    }
    out
}

#[cfg(test)]
mod tests;
