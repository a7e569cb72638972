//! The YAML value types every section shares, each read the way OBI reads
//! it: a scalar as text, port lists, process ids, comma-separated lists, Go
//! durations, lists that may be written `null`, and the untyped keys
//! ([`Extra`]) checked afterwards against the OBI key table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use zerotrace_shared::ports::PortSelection;

pub(super) const PORT_HINT: &str = "expected e.g. 80,443,8000-8999";
pub(super) const DURATION_HINT: &str = "expected a duration such as 500ms, 5s or 1m";

pub(super) fn expecting(f: &mut fmt::Formatter<'_>, what: &str) -> fmt::Result {
    f.write_str(what)
}

/// A scalar read as text (`name: 2024` is the string "2024").
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Text(pub(super) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                expecting(f, "a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `open_ports`: `8080`, `"80,443,8000-8999"` or `[80, 443]`; empty means unset.
#[derive(Debug, Clone, Default)]
pub(super) struct PortList(pub(super) PortSelection);

pub(super) fn port_list<E: de::Error>(text: &str) -> Result<PortList, E> {
    if text.trim().is_empty() {
        return Ok(PortList::default());
    }
    PortSelection::parse(text).map(PortList).map_err(|e| {
        E::custom(format!(
            "{text:?} is not a port list: {} ({PORT_HINT})",
            e.reason
        ))
    })
}

impl<'de> Deserialize<'de> for PortList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                expecting(f, "a port list such as 80,443,8000-8999")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortList, E> {
                port_list(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortList, E> {
                port_list(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortList, E> {
                port_list(&v.to_string())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PortList, A::Error> {
                let mut items = Vec::new();
                while let Some(Text(item)) = seq.next_element::<Text>()? {
                    items.push(item);
                }
                port_list(&items.join(","))
            }
        }
        d.deserialize_any(V)
    }
}

/// `target_pids`: `1234` or `[1234, 5678]`.
#[derive(Debug, Clone, Default)]
pub(super) struct PidList(pub(super) Vec<u32>);

impl<'de> Deserialize<'de> for PidList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(u32),
            Many(Vec<u32>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(pid)) => Ok(PidList(vec![pid])),
            Ok(OneOrMany::Many(pids)) => Ok(PidList(pids)),
            Err(_) => Err(de::Error::custom(
                "expected a process id or a list of them, e.g. [1234, 5678]",
            )),
        }
    }
}

/// A list written as one comma-separated string or as a YAML list.
#[derive(Debug, Clone, Default)]
pub(super) struct StringList(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                expecting(f, "a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                let items = v.split(',').map(str::trim).filter(|s| !s.is_empty());
                Ok(StringList(items.map(str::to_owned).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::new();
                while let Some(Text(item)) = seq.next_element::<Text>()? {
                    items.push(item);
                }
                Ok(StringList(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Go duration (`500ms`, `5s`, `1m30s`, `1.5h`); `0` is zero.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GoDuration(pub(super) Duration);

pub(super) fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration ({DURATION_HINT})");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        nanos += number * scale;
    }
    if !nanos.is_finite() || nanos >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

pub(super) fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    match nanos {
        0 => "0s".into(),
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n => format!("{n}ns"),
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .map_err(de::Error::custom)
    }
}

/// A list key that is present: `null` and `""` read as an empty list (OBI's
/// way to turn `default_exclude_instrument` off).
pub(super) fn present_list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            expecting(f, "a list")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Some(Vec::new()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Some(Vec::new()))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.trim().is_empty() {
                Ok(Some(Vec::new()))
            } else {
                Err(E::invalid_type(de::Unexpected::Str(v), &self))
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Some(items))
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// Keys a section does not type: checked against the OBI catalog after parsing.
pub(super) type Extra = BTreeMap<String, IgnoredAny>;

pub(super) fn non_empty(text: Option<Text>) -> Option<String> {
    text.map(|t| t.0).filter(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_go_syntax() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("250us", Duration::from_micros(250)),
            ("10ns", Duration::from_nanos(10)),
        ] {
            assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "5", "5 s", "-1s", "s", "1d", "1..5s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2500ms");
    }
}
