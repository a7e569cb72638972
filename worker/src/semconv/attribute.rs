//! OTLP attributes (key and typed value), as every convention writes them.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn string_attribute(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

pub fn int_attribute(key: &str, value: i64) -> KeyValue {
    attribute(key, any_value::Value::IntValue(value))
}

pub fn bool_attribute(key: &str, value: bool) -> KeyValue {
    attribute(key, any_value::Value::BoolValue(value))
}
