//! OTLP attributes (key and typed value), as every convention writes them,
//! and the sink a span's attributes are written to: OTLP messages, or the
//! protobuf bytes of the trace export directly (`otel::span_wire`).

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

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

/// Where a span's attributes go, in the order the conventions name them.
pub trait AttributeSink {
    fn string(&mut self, key: &'static str, value: &str);
    fn int(&mut self, key: &'static str, value: i64);
    /// The attributes `write` writes, which are computed from `key` and
    /// nothing else: the same for every request of a connection. A sink may
    /// write again what it wrote for an equal key instead of calling `write`.
    fn connection_block(
        &mut self,
        key: &ConnectionKey<'_>,
        write: &mut dyn FnMut(&mut dyn AttributeSink),
    );
}

/// Everything a span's connection attributes are computed from (see
/// [`AttributeSink::connection_block`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionKey<'a> {
    pub outgoing: bool,
    pub tls: bool,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The request's Host, which names the server when present.
    pub host: Option<&'a str>,
    pub protocol_version: &'static str,
}

impl AttributeSink for Vec<KeyValue> {
    fn string(&mut self, key: &'static str, value: &str) {
        self.push(string_attribute(key, value));
    }

    fn int(&mut self, key: &'static str, value: i64) {
        self.push(int_attribute(key, value));
    }

    fn connection_block(
        &mut self,
        _key: &ConnectionKey<'_>,
        write: &mut dyn FnMut(&mut dyn AttributeSink),
    ) {
        write(self);
    }
}

/// An address as text, as `IpAddr`'s `Display` writes it, on the stack: a
/// span's addresses are written without an allocation.
pub struct IpString {
    bytes: [u8; IpString::MAX],
    len: usize,
}

impl IpString {
    /// The longest text of an address (`ffff:ffff:…:255.255.255.255`).
    const MAX: usize = 45;

    pub fn of(ip: IpAddr) -> Self {
        let mut text = Self {
            bytes: [0; Self::MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl Write for IpString {
    /// Text past [`IpString::MAX`] bytes is an error (no address is that long).
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::IpString;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    proptest! {
        #[test]
        fn an_address_reads_as_display_writes_it(v4 in any::<u32>(), v6 in any::<u128>()) {
            for ip in [
                IpAddr::V4(Ipv4Addr::from(v4)),
                IpAddr::V6(Ipv6Addr::from(v6)),
                IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped()),
            ] {
                let text = IpString::of(ip);
                prop_assert_eq!(text.as_str(), ip.to_string());
            }
        }
    }

    #[test]
    fn the_longest_addresses_fit() {
        for ip in [
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "1:2:3:4:5:6:7:8",
        ] {
            let parsed: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
            assert_eq!(IpString::of(parsed).as_str(), parsed.to_string());
        }
    }
}
