//! The database part of a span (PostgreSQL, MySQL/MariaDB, Redis,
//! memcached): one operation a client made, and how the trace printer shows it.

use serde_json::{json, Map, Value};

/// `db.system.name` of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbSystem {
    Postgresql,
    Mysql,
    Mariadb,
    Redis,
    Memcached,
    Mongodb,
}

impl DbSystem {
    /// The semantic-conventions value of `db.system.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbSystem::Postgresql => "postgresql",
            DbSystem::Mysql => "mysql",
            DbSystem::Mariadb => "mariadb",
            DbSystem::Redis => "redis",
            DbSystem::Memcached => "memcached",
            DbSystem::Mongodb => "mongodb",
        }
    }
}

/// What one database or cache operation adds to its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbExchange {
    pub system: DbSystem,
    /// `db.operation.name` (`SELECT`, `GET`, `get`); empty when not known.
    pub operation: String,
    /// `db.collection.name`: the table of a simple statement.
    pub collection: Option<String>,
    /// `db.namespace`: the database, or Redis's database index.
    pub namespace: Option<String>,
    /// `db.query.text`, literals replaced by `?`; None when not seen or not exported.
    pub query_text: Option<String>,
    /// `db.response.status_code` (SQLSTATE, MySQL error number, Redis error prefix).
    pub status_code: Option<String>,
    /// `error.type` when the operation failed.
    pub error_type: Option<String>,
    /// The server's error message (bounded).
    pub error_message: Option<String>,
    /// Rows returned or affected, when the server said.
    pub rows: Option<u64>,
    /// Whether [`Self::rows`] counts rows returned (a result's, a `get`'s
    /// hits), exported as `db.response.returned_rows`, rather than rows
    /// affected (an `INSERT`'s, an `UPDATE`'s), which no convention names.
    pub rows_returned: bool,
    /// Bytes the client wrote and read for this operation.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// [`DbExchange::summary`], computed once when the exchange is built:
    /// the span name, and what the live view groups by.
    pub name: String,
}

impl DbExchange {
    /// The span name as the conventions build it: `{operation} {target}`,
    /// the target being the collection, else the namespace; the target alone
    /// without an operation; `db.system.name` when neither is known.
    pub fn summary(&self) -> String {
        let target = self.collection.as_deref().or(self.namespace.as_deref());
        match (self.operation.is_empty(), target) {
            (false, Some(target)) => {
                // Built by hand: `format!` costs more than the copy on this path.
                let mut name = String::with_capacity(self.operation.len() + 1 + target.len());
                name.push_str(&self.operation);
                name.push(' ');
                name.push_str(target);
                name
            }
            (false, None) => self.operation.clone(),
            (true, Some(target)) => target.to_owned(),
            (true, None) => self.system.as_str().to_owned(),
        }
    }

    /// Sets [`DbExchange::name`] from the other fields.
    pub fn named(mut self) -> Self {
        self.name = self.summary();
        self
    }

    /// The printer's text: `postgresql "SELECT accounts"` before the duration,
    /// ` rows=3`, ` error=42P01` after it.
    pub fn printer_text(&self) -> (String, String) {
        let summary = format!("{} \"{}\"", self.system.as_str(), self.name.escape_debug());
        let mut details = String::new();
        if let Some(rows) = self.rows {
            details.push_str(&format!(" rows={rows}"));
        }
        // Only a failure's code: memcached's `STORED` is a status, not an error.
        if let Some(error) = self.error_type.as_deref() {
            details.push_str(&format!(" error={}", error.escape_debug()));
        }
        (summary, details)
    }

    /// The printer's JSON fields of a database operation (under `db`).
    pub fn printer_json(&self, out: &mut Map<String, Value>) {
        out.insert(
            "db".into(),
            json!({
                "system": self.system.as_str(),
                "operation": (!self.operation.is_empty()).then_some(&self.operation),
                "collection": self.collection,
                "namespace": self.namespace,
                "query_text": self.query_text,
                "status_code": self.status_code,
                "error_type": self.error_type,
                "error_message": self.error_message,
                "rows": self.rows,
                "request_bytes": self.request_bytes,
                "response_bytes": self.response_bytes,
                "name": self.name,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> DbExchange {
        DbExchange {
            system: DbSystem::Postgresql,
            operation: String::new(),
            collection: None,
            namespace: None,
            query_text: None,
            status_code: None,
            error_type: None,
            error_message: None,
            rows: None,
            rows_returned: false,
            request_bytes: 0,
            response_bytes: 0,
            name: String::new(),
        }
    }

    #[test]
    fn the_summary_names_what_is_known() {
        let mut db = exchange();
        assert_eq!(db.summary(), "postgresql");
        db.namespace = Some("shop".into());
        assert_eq!(db.summary(), "shop");
        db.operation = "SELECT".into();
        assert_eq!(db.summary(), "SELECT shop");
        db.collection = Some("accounts".into());
        assert_eq!(db.summary(), "SELECT accounts");
    }

    #[test]
    fn the_printer_shows_the_system_the_summary_and_the_error() {
        let mut db = exchange();
        db.operation = "SELECT".into();
        db.collection = Some("missing".into());
        db.status_code = Some("42P01".into());
        db.error_type = Some("42P01".into());
        let db = db.named();
        let (summary, details) = db.printer_text();
        assert_eq!(summary, "postgresql \"SELECT missing\"");
        assert_eq!(details, " error=42P01");
        let stored = DbExchange {
            system: DbSystem::Memcached,
            operation: "set".into(),
            status_code: Some("STORED".into()),
            ..exchange()
        }
        .named();
        assert_eq!(
            stored.printer_text(),
            ("memcached \"set\"".into(), String::new())
        );
    }
}
