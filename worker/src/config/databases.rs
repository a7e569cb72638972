//! Which database and messaging protocols are decoded and where their spans
//! and metrics go (OBI's `instrumentations` lists: `sql`, `redis`,
//! `memcached`, `mongo`, `kafka`), and whether
//! spans carry the sanitized query text (`db.query.text`: OBI's
//! `attributes.select.traces`, and `ZEROTRACE_DB_QUERY_TEXT`).
//!
//! Each list (`otel_traces_export`, `otel_metrics_export`, `prometheus_export`,
//! and the top-level `metrics` as the default of the two metric exporters)
//! selects, for its exporter, the database protocols among `sql` (PostgreSQL
//! and MySQL/MariaDB), `redis`, `memcached` and `mongo` (MongoDB), and Kafka
//! (`kafka`), MQTT (`mqtt`), RabbitMQ (`amqp`) and NATS (`nats`); `*` is all. A protocol no
//! list selects is not decoded at all. HTTP and gRPC are not filtered by the
//! lists (a list must still name `http` or `*`: see `obi_keys.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::environment::env_value;
use super::error::ConfigError;
use super::obi_keys::INSTRUMENTATIONS_HINT;
use super::trace_select::TraceSelection;
use super::values::StringList;

/// A database (or messaging: Kafka) instrumentation of OBI's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbInstrumentation {
    /// PostgreSQL, MySQL and MariaDB.
    Sql,
    Redis,
    Memcached,
    /// MongoDB clients.
    Mongo,
    /// Kafka clients (PRODUCER and CONSUMER spans, `messaging.client.operation.duration`).
    Kafka,
    /// MQTT clients (PRODUCER spans for publishes, CONSUMER spans for deliveries).
    Mqtt,
    /// AMQP 0-9-1 (RabbitMQ) clients.
    Amqp,
    /// NATS clients.
    Nats,
}

impl DbInstrumentation {
    pub const ALL: [DbInstrumentation; 8] = [
        Self::Sql,
        Self::Redis,
        Self::Memcached,
        Self::Mongo,
        Self::Kafka,
        Self::Mqtt,
        Self::Amqp,
        Self::Nats,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::Redis => "redis",
            Self::Memcached => "memcached",
            Self::Mongo => "mongo",
            Self::Kafka => "kafka",
            Self::Mqtt => "mqtt",
            Self::Amqp => "amqp",
            Self::Nats => "nats",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of database instrumentations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSelection(u8);

impl DbSelection {
    pub const ALL: Self = Self(0b1111_1111);
    pub const NONE: Self = Self(0);

    pub fn contains(self, instrumentation: DbInstrumentation) -> bool {
        self.0 & instrumentation.bit() != 0
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// What an `instrumentations` list selects: `*` is everything.
    fn of_list(names: &[String]) -> Self {
        let mut selection = Self::NONE;
        for name in names {
            let name = name.trim().to_ascii_lowercase();
            if name == "*" {
                return Self::ALL;
            }
            for instrumentation in DbInstrumentation::ALL {
                if name == instrumentation.name() {
                    selection.0 |= instrumentation.bit();
                }
            }
        }
        selection
    }

    /// The list as written in the configuration (`[sql, redis]`).
    pub fn names(self) -> Vec<&'static str> {
        DbInstrumentation::ALL
            .into_iter()
            .filter(|i| self.contains(*i))
            .map(DbInstrumentation::name)
            .collect()
    }
}

/// Where database operations go, and what their spans carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// Spans to the trace exporters and the trace printer.
    pub traces: DbSelection,
    /// `db.client.operation.duration` over OTLP.
    pub otlp_metrics: DbSelection,
    /// `db_client_operation_duration_seconds` on the Prometheus endpoint
    /// (none when there is no endpoint).
    pub prometheus: DbSelection,
    /// Spans carry `db.query.text` (always sanitized: literals are `?`).
    pub query_text: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            traces: DbSelection::ALL,
            otlp_metrics: DbSelection::ALL,
            prometheus: DbSelection::ALL,
            query_text: true,
        }
    }
}

impl DatabaseSettings {
    /// The protocols some destination wants, so decoded at all.
    pub fn decoded(&self) -> DbSelection {
        self.traces.union(self.otlp_metrics).union(self.prometheus)
    }
}

/// One entry of `attributes.select`: the attributes to add and to remove.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAttributeSelection {
    pub(super) include: Option<StringList>,
    pub(super) exclude: Option<StringList>,
}

/// `attributes.select`, keyed by metric name or `traces`.
pub(super) type RawSelect = BTreeMap<String, RawAttributeSelection>;

/// The `instrumentations` lists as the file wrote them.
#[derive(Default)]
pub(super) struct RawInstrumentations<'a> {
    pub(super) traces: Option<&'a StringList>,
    pub(super) otlp_metrics: Option<&'a StringList>,
    pub(super) prometheus: Option<&'a StringList>,
    /// The top-level `metrics` section: the default of both metric exporters.
    pub(super) metrics: Option<&'a StringList>,
}

/// A list from the variable `var` if set (it must name `http` or `*`, as
/// the file's lists must), else from the file.
fn list(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    file: Option<&StringList>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(value) = env_value(env, var) else {
        return Ok(file.map(|l| l.0.clone()));
    };
    let names: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if !names.iter().any(|n| n == "http" || n == "*") {
        return Err(ConfigError::Env(format!(
            "{var}={value:?} selects nothing zerotrace produces ({INSTRUMENTATIONS_HINT})"
        )));
    }
    Ok(Some(names))
}

/// The variables over the file: `OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS`,
/// `OTEL_EBPF_OTEL_METRICS_INSTRUMENTATIONS`, `OTEL_EBPF_PROMETHEUS_INSTRUMENTATIONS`,
/// `OTEL_EBPF_METRICS_INSTRUMENTATIONS` (the top-level `metrics`), and
/// `ZEROTRACE_DB_QUERY_TEXT` over `attributes.select.traces`.
pub(super) fn database_settings(
    raw: RawInstrumentations<'_>,
    select: Option<&TraceSelection>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DatabaseSettings, ConfigError> {
    let selection =
        |names: Option<Vec<String>>| names.map_or(DbSelection::ALL, |n| DbSelection::of_list(&n));
    let metrics = list(env, "OTEL_EBPF_METRICS_INSTRUMENTATIONS", raw.metrics)?;
    let traces = list(env, "OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", raw.traces)?;
    let otlp_metrics = list(
        env,
        "OTEL_EBPF_OTEL_METRICS_INSTRUMENTATIONS",
        raw.otlp_metrics,
    )?
    .or_else(|| metrics.clone());
    let prometheus =
        list(env, "OTEL_EBPF_PROMETHEUS_INSTRUMENTATIONS", raw.prometheus)?.or(metrics);
    let from_file = match select {
        Some(select) => select.query_text,
        None => None,
    };
    let query_text = match env_value(env, "ZEROTRACE_DB_QUERY_TEXT") {
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(ConfigError::Env(format!(
                    "ZEROTRACE_DB_QUERY_TEXT={value:?}: expected true or false"
                )))
            }
        },
        None => from_file.unwrap_or(true),
    };
    Ok(DatabaseSettings {
        traces: selection(traces),
        otlp_metrics: selection(otlp_metrics),
        prometheus: selection(prometheus),
        query_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support;

    /// The file with something to instrument.
    fn ok(yaml: &str, env: &[(&str, &str)]) -> crate::config::EffectiveConfig {
        test_support::ok(&format!("{yaml}open_port: 8080\n"), env)
    }

    fn err(yaml: &str, env: &[(&str, &str)]) -> String {
        test_support::err(&format!("{yaml}open_port: 8080\n"), env)
    }

    #[test]
    fn every_database_is_decoded_with_its_query_text_by_default() {
        let config = ok("prometheus_export:\n  port: 9400\n", &[]);
        assert_eq!(config.databases, DatabaseSettings::default());
        assert_eq!(config.databases.decoded(), DbSelection::ALL);
        // Without a Prometheus endpoint its list selects nothing.
        assert_eq!(ok("", &[]).databases.prometheus, DbSelection::NONE);
    }

    #[test]
    fn instrumentation_lists_select_the_databases_per_destination() {
        let yaml = "\
otel_traces_export:
  instrumentations: [http, sql]
prometheus_export:
  port: 9400
  instrumentations: ['*']
metrics:
  instrumentations: [http, redis]
";
        let databases = ok(yaml, &[]).databases;
        assert_eq!(databases.traces.names(), ["sql"]);
        assert_eq!(databases.otlp_metrics.names(), ["redis"]);
        assert_eq!(databases.prometheus, DbSelection::ALL);
        let env = [
            ("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,memcached"),
            ("OTEL_EBPF_PROMETHEUS_INSTRUMENTATIONS", "http"),
        ];
        let databases = ok(yaml, &env).databases;
        assert_eq!(databases.traces.names(), ["memcached"]);
        assert_eq!(databases.prometheus, DbSelection::NONE);
        assert_eq!(databases.decoded().names(), ["redis", "memcached"]);
        let kafka = [("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,kafka")];
        assert_eq!(ok(yaml, &kafka).databases.traces.names(), ["kafka"]);
    }

    #[test]
    fn the_query_text_follows_attributes_select_and_the_variable() {
        let off = "attributes:\n  select:\n    traces:\n      exclude: [db.query.text]\n";
        assert!(!ok(off, &[]).databases.query_text);
        assert!(
            ok(off, &[("ZEROTRACE_DB_QUERY_TEXT", "true")])
                .databases
                .query_text
        );
        let on = "attributes:\n  select:\n    traces:\n      include: ['db.*']\n";
        assert!(ok(on, &[]).databases.query_text);
        assert!(
            !ok("", &[("ZEROTRACE_DB_QUERY_TEXT", "false")])
                .databases
                .query_text
        );
        assert!(err("", &[("ZEROTRACE_DB_QUERY_TEXT", "maybe")]).contains("true or false"));
        let env = [("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "sql")];
        assert!(err("", &env).contains("selects nothing"));
        let other = "attributes:\n  select:\n    traces:\n      exclude: [server.address]\n";
        assert!(err(other, &[]).contains("attributes.select.traces.exclude"));
        // Metrics' entries are the metrics' own (config/metric_select.rs).
        let metric = "attributes:\n  select:\n    http_server_request_duration:\n      exclude: [url.path]\n";
        assert!(ok(metric, &[]).databases.query_text);
    }
}
