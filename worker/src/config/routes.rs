//! OBI's `routes` section as settings ([`RouteSettings`]: patterns, ignored
//! patterns and their mode, what unmatched paths become) and the pattern
//! syntax, checked here so a bad pattern is refused with its key when the
//! configuration loads. The matching itself (a segment trie and the
//! heuristic) is `crate::routes`, which compiles patterns with
//! [`parse_pattern`].

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::error::{ConfigError, Ctx};

/// OBI's default replacement for a high-cardinality path segment.
pub const DEFAULT_WILDCARD_CHAR: char = '*';
/// OBI's default for `max_path_segment_cardinality`.
pub const DEFAULT_MAX_PATH_SEGMENT_CARDINALITY: usize = 10;

/// Which events a path matching `ignored_patterns` is dropped from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IgnoreMode {
    /// Both traces and metrics (OBI's default; also for an empty value).
    #[default]
    All,
    Traces,
    Metrics,
}

impl IgnoreMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "all" | "" => Ok(Self::All),
            "traces" => Ok(Self::Traces),
            "metrics" => Ok(Self::Metrics),
            other => Err(format!(
                "{other:?} is not an ignore mode (expected all, traces or metrics)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Traces => "traces",
            Self::Metrics => "metrics",
        }
    }

    pub fn drops_traces(self) -> bool {
        matches!(self, Self::All | Self::Traces)
    }

    pub fn drops_metrics(self) -> bool {
        matches!(self, Self::All | Self::Metrics)
    }
}

/// What `http.route` becomes for a path that matches no pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmatchedMode {
    Unset,
    Path,
    Wildcard,
    #[default]
    Heuristic,
    LowCardinality,
}

impl UnmatchedMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "unset" => Ok(Self::Unset),
            "path" => Ok(Self::Path),
            // OBI treats an explicitly empty value as `wildcard`.
            "wildcard" | "" => Ok(Self::Wildcard),
            "heuristic" => Ok(Self::Heuristic),
            "low-cardinality" => Ok(Self::LowCardinality),
            other => Err(format!(
                "{other:?} is not an unmatched mode (expected unset, path, wildcard, heuristic \
                 or low-cardinality)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Path => "path",
            Self::Wildcard => "wildcard",
            Self::Heuristic => "heuristic",
            Self::LowCardinality => "low-cardinality",
        }
    }
}

/// A string-valued setting parsed by `parse`; YAML `null` reads as `""`.
fn deserialize_parsed<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    let text = deserializer.deserialize_str(Text)?;
    parse(&text).map_err(de::Error::custom)
}

impl<'de> Deserialize<'de> for IgnoreMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, Self::parse)
    }
}

impl<'de> Deserialize<'de> for UnmatchedMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, Self::parse)
    }
}

/// A list that may be written as YAML `null` (an empty list, as in OBI).
fn nullable_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The `routes` section, with OBI's key names and defaults. When the whole
/// section is absent OBI uses these defaults (the heuristic decorator).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSettings {
    #[serde(deserialize_with = "nullable_list")]
    pub patterns: Vec<String>,
    #[serde(deserialize_with = "nullable_list")]
    pub ignored_patterns: Vec<String>,
    pub ignore_mode: IgnoreMode,
    pub unmatched: UnmatchedMode,
    /// One ASCII character (empty means `*`); checked by [`check`].
    pub wildcard_char: String,
    /// For `low-cardinality`; 0 disables the cap.
    pub max_path_segment_cardinality: usize,
    /// The `instrument` entries' own `routes`, in the order of the entries
    /// that have them ([`super::ServiceExport::routes`] is an index here).
    #[serde(skip)]
    pub services: Vec<ServiceRoutes>,
}

/// An `instrument` entry's own `routes` (OBI's per-service routes): tried
/// after the section's `patterns`, on its processes' server requests
/// (`incoming`) and on their client calls (`outgoing`). Same syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceRoutes {
    #[serde(deserialize_with = "nullable_list")]
    pub incoming: Vec<String>,
    #[serde(deserialize_with = "nullable_list")]
    pub outgoing: Vec<String>,
}

impl ServiceRoutes {
    /// Each list's patterns checked; the error names the list and the index:
    /// `incoming[1] "/x{": ...`.
    pub fn check(&self) -> Result<(), String> {
        for (key, patterns) in [("incoming", &self.incoming), ("outgoing", &self.outgoing)] {
            for (index, pattern) in patterns.iter().enumerate() {
                parse_pattern(pattern)
                    .map_err(|why| format!("{key}[{index}] {pattern:?}: {why}"))?;
            }
        }
        Ok(())
    }
}

impl Default for RouteSettings {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            ignored_patterns: Vec::new(),
            ignore_mode: IgnoreMode::All,
            unmatched: UnmatchedMode::Heuristic,
            wildcard_char: DEFAULT_WILDCARD_CHAR.to_string(),
            max_path_segment_cardinality: DEFAULT_MAX_PATH_SEGMENT_CARDINALITY,
            services: Vec::new(),
        }
    }
}

pub fn parse_wildcard_char(text: &str) -> Result<char, String> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(DEFAULT_WILDCARD_CHAR),
        (Some(c), None) if c.is_ascii_graphic() && c != '/' => Ok(c),
        _ => Err(format!(
            "{text:?} is not a single printable ASCII character other than \"/\" (expected e.g. \"*\")"
        )),
    }
}

// ---------------------------------------------------------------------------
// Pattern syntax
// ---------------------------------------------------------------------------

/// One compiled segment of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternSegment<'a> {
    Literal(&'a str),
    /// One whole segment that starts with `prefix` ("" matches any segment;
    /// a non-empty prefix needs at least one more character).
    Param {
        prefix: &'a str,
    },
    /// Zero or more segments at the end, one or more in the middle.
    Rest,
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_segment(segment: &str) -> Result<PatternSegment<'_>, String> {
    if segment == "*" || segment == "**" {
        return Ok(PatternSegment::Rest);
    }
    if let Some(inner) = segment.strip_prefix('{') {
        let Some(inner) = inner.strip_suffix('}') else {
            return Err(format!(
                "{segment:?} has no closing \"}}\" (a placeholder fills a whole segment, e.g. {{id}})"
            ));
        };
        let (rest, inner) = match inner.strip_prefix("**").or_else(|| inner.strip_prefix('*')) {
            Some(after) => (true, after),
            None => (false, inner),
        };
        let name_end = inner.find([':', '?', '=', '<']).unwrap_or(inner.len());
        let (name, constraint) = inner.split_at(name_end);
        if !is_param_name(name) {
            return Err(format!(
                "{segment:?} needs a parameter name (letters, digits, _), e.g. {{id}}"
            ));
        }
        let path_converter = constraint
            .strip_prefix(':')
            .is_some_and(|c| c.split('(').next() == Some("path"));
        return Ok(if rest || path_converter {
            PatternSegment::Rest
        } else {
            PatternSegment::Param { prefix: "" }
        });
    }
    if let Some(inner) = segment.strip_prefix('<') {
        let Some(inner) = inner.strip_suffix('>') else {
            return Err(format!(
                "{segment:?} has no closing \">\" (e.g. <id> or <path:file>)"
            ));
        };
        let (converter, name) = inner.split_once(':').unwrap_or(("", inner));
        if !is_param_name(name) || (inner.contains(':') && converter.is_empty()) {
            return Err(format!(
                "{segment:?} needs a parameter name, e.g. <id> or <int:id>"
            ));
        }
        return Ok(if converter == "path" {
            PatternSegment::Rest
        } else {
            PatternSegment::Param { prefix: "" }
        });
    }
    if let Some(name) = segment.strip_prefix(':') {
        if !is_param_name(name) {
            return Err(format!(
                "{segment:?}: \":\" must be followed by a parameter name, e.g. :id"
            ));
        }
        return Ok(PatternSegment::Param { prefix: "" });
    }
    if segment.contains(['{', '}', '<', '>']) {
        return Err(format!(
            "{segment:?}: a placeholder must fill a whole segment (e.g. /files/{{name}}, \
             or prefix:name for a segment with a fixed start)"
        ));
    }
    if segment.contains('*') {
        return Err(format!(
            "{segment:?}: \"*\" matches whole segments only (e.g. /static/*)"
        ));
    }
    if let Some((prefix, name)) = segment.split_once(':') {
        if name.is_empty() {
            return Err(format!(
                "{segment:?}: \":\" must be followed by a parameter name, e.g. @:user"
            ));
        }
        return Ok(PatternSegment::Param { prefix });
    }
    Ok(PatternSegment::Literal(segment))
}

/// Splits a path into its segments the way OBI does: one leading and one
/// trailing `/` are not segments; empty inner segments are.
pub fn path_body(path: &str) -> Option<&str> {
    let body = path.strip_prefix('/').unwrap_or(path);
    if body.is_empty() {
        return None;
    }
    Some(body.strip_suffix('/').unwrap_or(body))
}

/// One pattern's segments; the error says what is wrong with it (the caller
/// names the key and the pattern).
pub fn parse_pattern(pattern: &str) -> Result<Vec<PatternSegment<'_>>, String> {
    if pattern.trim().is_empty() {
        return Err("empty pattern (expected e.g. /users/{id})".into());
    }
    let query = pattern.split('/').any(|segment| {
        !(segment.starts_with('{') && segment.ends_with('}')) && segment.contains(['?', '#'])
    });
    if query {
        return Err("patterns match the path only; remove the query string or fragment".into());
    }
    let segments = match path_body(pattern) {
        Some(body) => body
            .split('/')
            .map(parse_segment)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if segments
        .iter()
        .filter(|s| **s == PatternSegment::Rest)
        .count()
        > 1
    {
        return Err(
            "at most one multi-segment placeholder (*, {name:path}, <path:name>) per pattern"
                .into(),
        );
    }
    Ok(segments)
}

/// Checks the section the way `RouteMatcher::new` compiles it; the error
/// names the key first: `patterns[2] "/x{": ...` or `wildcard_char: ...`.
pub fn check(settings: &RouteSettings) -> Result<(), String> {
    parse_wildcard_char(&settings.wildcard_char).map_err(|e| format!("wildcard_char: {e}"))?;
    for (key, patterns) in [
        ("patterns", &settings.patterns),
        ("ignored_patterns", &settings.ignored_patterns),
    ] {
        for (index, pattern) in patterns.iter().enumerate() {
            parse_pattern(pattern).map_err(|why| format!("{key}[{index}] {pattern:?}: {why}"))?;
        }
    }
    Ok(())
}

/// Checks the patterns once so a bad pattern is reported now, with its key.
pub(super) fn checked_routes(
    ctx: &Ctx,
    routes: Option<RouteSettings>,
) -> Result<RouteSettings, ConfigError> {
    let routes = routes.unwrap_or_default();
    if let Err(e) = check(&routes) {
        let (key, rest) = e.split_once(' ').unwrap_or((e.as_str(), ""));
        return Err(ctx.err(format!("routes.{}", key.trim_end_matches(':')), rest.trim()));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn routes_section_is_read() {
        let config = ok(
            "open_port: 80\nroutes:\n  patterns: ['/users/{id}']\n  ignored_patterns: [/health]\n  ignore_mode: traces\n  unmatched: wildcard\n",
            &[],
        );
        assert_eq!(config.routes.patterns, vec!["/users/{id}".to_string()]);
        assert_eq!(config.routes.ignore_mode.as_str(), "traces");
    }
}
