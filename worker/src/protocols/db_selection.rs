//! The configuration's database and messaging instrumentations (`sql`,
//! `redis`, `memcached`, `mongo`, `kafka`, `mqtt`, `amqp`, `nats`) applied: which registry protocols
//! detection may pick, and which destinations their spans go to.

use super::registry::{Protocol, ProtocolSelection};
use crate::config::{DatabaseSettings, DbInstrumentation, DbSelection};
use crate::spans::{DbSystem, MessagingSystem, Protocol as SpanProtocol, Span};

/// The instrumentation that selects a database system.
pub fn instrumentation_of(system: DbSystem) -> DbInstrumentation {
    match system {
        DbSystem::Postgresql | DbSystem::Mysql | DbSystem::Mariadb => DbInstrumentation::Sql,
        DbSystem::Redis => DbInstrumentation::Redis,
        DbSystem::Memcached => DbInstrumentation::Memcached,
        DbSystem::Mongodb => DbInstrumentation::Mongo,
    }
}

/// The registry protocols of an instrumentation.
fn protocols_of(instrumentation: DbInstrumentation) -> &'static [Protocol] {
    match instrumentation {
        DbInstrumentation::Sql => &[Protocol::Postgres, Protocol::MySql],
        DbInstrumentation::Redis => &[Protocol::Redis],
        DbInstrumentation::Memcached => &[Protocol::Memcached],
        DbInstrumentation::Mongo => &[Protocol::Mongo],
        DbInstrumentation::Kafka => &[Protocol::Kafka],
        DbInstrumentation::Mqtt => &[Protocol::Mqtt],
        DbInstrumentation::Amqp => &[Protocol::Amqp],
        DbInstrumentation::Nats => &[Protocol::Nats],
    }
}

/// Every protocol but the database ones no destination wants.
pub fn protocol_selection(decoded: DbSelection) -> ProtocolSelection {
    DbInstrumentation::ALL
        .into_iter()
        .filter(|i| !decoded.contains(*i))
        .flat_map(protocols_of)
        .fold(ProtocolSelection::ALL, |selection, protocol| {
            selection.without(*protocol)
        })
}

/// Where a span may go by the instrumentation lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destinations {
    /// Trace exporters and the trace printer.
    pub traces: bool,
    pub otlp_metrics: bool,
    pub prometheus: bool,
}

/// The destinations of a database or messaging span (None for other
/// protocols, which the lists do not filter).
pub fn destinations(span: &Span, databases: &DatabaseSettings) -> Option<Destinations> {
    let instrumentation = match &span.protocol {
        SpanProtocol::Db(db) => instrumentation_of(db.system),
        SpanProtocol::Messaging(messaging) => match messaging.system {
            MessagingSystem::Kafka => DbInstrumentation::Kafka,
            MessagingSystem::Mqtt => DbInstrumentation::Mqtt,
            MessagingSystem::Rabbitmq => DbInstrumentation::Amqp,
            MessagingSystem::Nats => DbInstrumentation::Nats,
        },
        SpanProtocol::Http(_) | SpanProtocol::Grpc(_) => return None,
    };
    Some(Destinations {
        traces: databases.traces.contains(instrumentation),
        otlp_metrics: databases.otlp_metrics.contains(instrumentation),
        prometheus: databases.prometheus.contains(instrumentation),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{DbExchange, HttpExchange, SpanKind, SpanOrigin};

    fn span(protocol: SpanProtocol) -> Span {
        let addr = "127.0.0.1:6379".parse().unwrap_or_else(|e| panic!("{e}"));
        let origin = SpanOrigin {
            kind: SpanKind::Client,
            pid: 1,
            process_name: "app".into(),
            local: addr,
            peer: addr,
            tls: false,
        };
        Span::new(origin, (0, 1), false, protocol)
    }

    #[test]
    fn database_spans_go_where_their_instrumentation_is_listed() {
        let redis = DbExchange {
            system: DbSystem::Redis,
            operation: "GET".into(),
            collection: None,
            namespace: Some("0".into()),
            query_text: None,
            status_code: None,
            error_type: None,
            error_message: None,
            rows: None,
            rows_returned: false,
            request_bytes: 0,
            response_bytes: 0,
            name: String::new(),
        };
        let settings = DatabaseSettings {
            traces: DbSelection::ALL,
            otlp_metrics: DbSelection::NONE,
            prometheus: DbSelection::ALL,
            query_text: true,
        };
        assert_eq!(
            destinations(&span(SpanProtocol::Db(redis)), &settings),
            Some(Destinations {
                traces: true,
                otlp_metrics: false,
                prometheus: true
            })
        );
        let http = span(SpanProtocol::Http(HttpExchange::default()));
        assert_eq!(destinations(&http, &settings), None, "HTTP is not filtered");
    }

    #[test]
    fn an_instrumentation_no_destination_wants_is_not_detected() {
        assert_eq!(protocol_selection(DbSelection::ALL), ProtocolSelection::ALL);
        let none = protocol_selection(DbSelection::NONE);
        for protocol in Protocol::DETECTION_ORDER {
            let database = matches!(
                protocol,
                Protocol::Postgres
                    | Protocol::MySql
                    | Protocol::Redis
                    | Protocol::Memcached
                    | Protocol::Mongo
                    | Protocol::Mqtt
                    | Protocol::Amqp
                    | Protocol::Nats
                    | Protocol::Kafka
            );
            assert_eq!(none.contains(*protocol), !database, "{protocol:?}");
        }
    }
}
