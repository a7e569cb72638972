//! The view's state and its keys, without any terminal: what is shown,
//! sorted how, filtered by what.

use std::cmp::Ordering;
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use zerotrace_worker::live_view::{LiveCall, LiveKind, LiveRow, LiveSnapshot};

use crate::client::Update;

/// The sortable columns, in screen order (keys 1 to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Service,
    Route,
    Rate,
    Errors,
    P50,
    P95,
    P99,
    Total,
}

impl Column {
    pub const ALL: [Column; 8] = [
        Column::Service,
        Column::Route,
        Column::Rate,
        Column::Errors,
        Column::P50,
        Column::P95,
        Column::P99,
        Column::Total,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Service => "SERVICE",
            Column::Route => "ROUTE",
            Column::Rate => "REQ/S",
            Column::Errors => "ERR%",
            Column::P50 => "P50",
            Column::P95 => "P95",
            Column::P99 => "P99",
            Column::Total => "TOTAL",
        }
    }

    /// Text sorts A→Z first, numbers biggest first.
    fn descending_by_default(self) -> bool {
        !matches!(self, Column::Service | Column::Route)
    }

    fn index(self) -> usize {
        Column::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connected,
    Disconnected(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

pub struct App {
    /// Where the data comes from (shown in the header).
    pub source: String,
    pub snapshot: LiveSnapshot,
    pub updated: Instant,
    pub connection: Connection,
    pub kind: LiveKind,
    /// Showing the calls view (who calls whom) instead of services and routes.
    pub calls: bool,
    pub sort: Column,
    pub descending: bool,
    /// Service filter (case-insensitive substring); empty shows all.
    pub filter: String,
    /// Some while typing a filter after `/`.
    pub editing: Option<String>,
    /// Selected row of the route table.
    pub selected: usize,
    /// Set in zero-setup mode: what the agent top started is doing.
    pub agent_note: Option<String>,
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// None (no latency in the window) sorts after every value, both ways.
fn cmp_latency(a: Option<f64>, b: Option<f64>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => cmp_f64(b, a),
        (Some(a), Some(b)) => cmp_f64(a, b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn compare(a: &LiveRow, b: &LiveRow, column: Column, descending: bool) -> Ordering {
    let flip = |o: Ordering| if descending { o.reverse() } else { o };
    let primary = match column {
        Column::Service => flip(a.service.cmp(&b.service)),
        Column::Route => flip(a.route.cmp(&b.route)),
        Column::Rate => flip(cmp_f64(a.requests_per_second, b.requests_per_second)),
        Column::Errors => flip(cmp_f64(a.error_rate, b.error_rate)),
        Column::P50 => cmp_latency(a.p50_ms, b.p50_ms, descending),
        Column::P95 => cmp_latency(a.p95_ms, b.p95_ms, descending),
        Column::P99 => cmp_latency(a.p99_ms, b.p99_ms, descending),
        Column::Total => flip(a.requests_total.cmp(&b.requests_total)),
    };
    primary
        .then_with(|| a.service.cmp(&b.service))
        .then_with(|| a.route.cmp(&b.route))
}

impl App {
    pub fn new(source: String, first: LiveSnapshot) -> Self {
        Self {
            source,
            snapshot: first,
            updated: Instant::now(),
            connection: Connection::Connected,
            kind: LiveKind::Server,
            calls: false,
            sort: Column::Rate,
            descending: true,
            filter: String::new(),
            editing: None,
            selected: 0,
            agent_note: None,
        }
    }

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Snapshot(snapshot) => {
                self.snapshot = *snapshot;
                self.updated = Instant::now();
                self.connection = Connection::Connected;
            }
            Update::Connected => self.connection = Connection::Connected,
            Update::Disconnected(reason) => self.connection = Connection::Disconnected(reason),
        }
    }

    /// The filter in effect (the one being typed applies as you type).
    pub fn active_filter(&self) -> &str {
        self.editing.as_deref().unwrap_or(&self.filter)
    }

    fn visible<'a>(&self, rows: &'a [LiveRow]) -> Vec<&'a LiveRow> {
        let filter = self.active_filter().to_lowercase();
        let mut rows: Vec<&LiveRow> = rows
            .iter()
            .filter(|r| r.kind == self.kind)
            .filter(|r| filter.is_empty() || r.service.to_lowercase().contains(&filter))
            .collect();
        rows.sort_by(|a, b| compare(a, b, self.sort, self.descending));
        rows
    }

    /// Route rows of the current kind, filtered and sorted.
    pub fn routes(&self) -> Vec<&LiveRow> {
        self.visible(&self.snapshot.routes)
    }

    /// Service rows of the current kind, filtered and sorted.
    pub fn services(&self) -> Vec<&LiveRow> {
        self.visible(&self.snapshot.services)
    }

    /// Service graph edges whose client or server matches the filter, busiest first.
    pub fn calls(&self) -> Vec<&LiveCall> {
        let filter = self.active_filter().to_lowercase();
        self.snapshot
            .calls
            .iter()
            .filter(|c| {
                filter.is_empty()
                    || c.client.to_lowercase().contains(&filter)
                    || c.server.to_lowercase().contains(&filter)
            })
            .collect()
    }

    fn sort_by(&mut self, column: Column) {
        self.sort = column;
        self.descending = column.descending_by_default();
    }

    fn move_selection(&mut self, delta: isize) {
        let last = self.routes().len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d'))
        {
            return Action::Quit;
        }
        if let Some(text) = self.editing.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    self.filter = std::mem::take(text);
                    self.editing = None;
                }
                KeyCode::Esc => {
                    self.filter.clear();
                    self.editing = None;
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !c.is_control() && text.len() < 128 => text.push(c),
                _ => {}
            }
            self.selected = 0;
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => return Action::Quit,
            KeyCode::Char('g') => {
                self.calls = !self.calls;
                self.selected = 0;
            }
            KeyCode::Char('c') | KeyCode::Tab | KeyCode::BackTab => {
                self.calls = false;
                self.kind = match self.kind {
                    LiveKind::Server => LiveKind::Client,
                    LiveKind::Client => LiveKind::Server,
                };
                self.selected = 0;
            }
            KeyCode::Char('s') => {
                let next = (self.sort.index() + 1) % Column::ALL.len();
                self.sort_by(Column::ALL[next]);
            }
            KeyCode::Char('S') => {
                let previous = (self.sort.index() + Column::ALL.len() - 1) % Column::ALL.len();
                self.sort_by(Column::ALL[previous]);
            }
            KeyCode::Char(c @ '1'..='8') => {
                let index = c as usize - '1' as usize;
                self.sort_by(Column::ALL[index]);
            }
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Esc => {
                self.filter.clear();
                self.selected = 0;
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(20),
            KeyCode::PageUp => self.move_selection(-20),
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.move_selection(isize::MAX),
            _ => {}
        }
        Action::Continue
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn row(service: &str, route: &str, rate: f64, errors: f64, p99: Option<f64>) -> LiveRow {
        LiveRow {
            service: service.into(),
            kind: LiveKind::Server,
            route: route.into(),
            requests_per_second: rate,
            error_rate: errors,
            p50_ms: p99.map(|p| p / 4.0),
            p95_ms: p99.map(|p| p / 2.0),
            p99_ms: p99,
            requests_total: (rate * 100.0) as u64,
            errors_total: (rate * errors * 100.0) as u64,
            history: vec![1; 60],
        }
    }

    pub fn sample() -> LiveSnapshot {
        let mut client = row("python3", "/hello", 3.0, 0.0, Some(2.0));
        client.kind = LiveKind::Client;
        LiveSnapshot {
            routes: vec![
                row("python3", "/hello", 40.0, 0.0, Some(1.5)),
                row("python3", "/status/500", 8.0, 1.0, Some(0.9)),
                row("nginx", "/", 120.0, 0.02, None),
                client,
            ],
            services: vec![
                row("python3", "", 48.0, 1.0 / 6.0, Some(1.4)),
                row("nginx", "", 120.0, 0.02, None),
            ],
            ..LiveSnapshot::default()
        }
    }

    #[test]
    fn g_switches_to_the_calls_view_and_the_filter_matches_either_end() {
        let mut snapshot = sample();
        let call = |client: &str, server: &str| LiveCall {
            client: client.into(),
            server: server.into(),
            requests_per_second: 1.0,
            ..LiveCall::default()
        };
        snapshot.calls = vec![call("front", "back"), call("127.0.0.1", "front")];
        let mut app = App::new("test".into(), snapshot);
        press(&mut app, KeyCode::Char('g'));
        assert!(app.calls);
        app.filter = "back".into();
        assert_eq!(app.calls().len(), 1);
        app.filter = "FRONT".into();
        assert_eq!(app.calls().len(), 2);
        press(&mut app, KeyCode::Char('c'));
        assert!(!app.calls, "c goes back to the spans views");
        press(&mut app, KeyCode::Char('g'));
        press(&mut app, KeyCode::Char('g'));
        assert!(!app.calls);
    }

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn routes(app: &App) -> Vec<String> {
        app.routes().iter().map(|r| r.route.clone()).collect()
    }

    #[test]
    fn sorts_by_rate_first_then_by_any_column_and_reverses() {
        let mut app = App::new("test".into(), sample());
        assert_eq!(routes(&app), ["/", "/hello", "/status/500"]);
        press(&mut app, KeyCode::Char('4')); // errors
        assert_eq!(routes(&app), ["/status/500", "/", "/hello"]);
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(routes(&app), ["/hello", "/", "/status/500"]);
        press(&mut app, KeyCode::Char('2')); // route, A→Z
        assert_eq!(routes(&app), ["/", "/hello", "/status/500"]);
        press(&mut app, KeyCode::Char('s')); // next column: rate
        assert_eq!(app.sort, Column::Rate);
        press(&mut app, KeyCode::Char('7')); // p99: no latency sorts last both ways
        assert_eq!(routes(&app), ["/hello", "/status/500", "/"]);
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(routes(&app), ["/status/500", "/hello", "/"]);
        for _ in 0..8 {
            press(&mut app, KeyCode::Char('s'));
        }
        assert_eq!(app.sort, Column::P99, "s cycles through all columns");
    }

    #[test]
    fn filters_by_service_and_switches_kind() {
        let mut app = App::new("test".into(), sample());
        press(&mut app, KeyCode::Char('/'));
        for c in "PYT".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        assert_eq!(routes(&app).len(), 2, "the filter applies while typing");
        assert_eq!(
            press(&mut app, KeyCode::Char('q')),
            Action::Continue,
            "q is text here"
        );
        press(&mut app, KeyCode::Backspace);
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.filter, "PYT");
        assert_eq!(app.services().len(), 1);
        press(&mut app, KeyCode::Char('c'));
        assert_eq!(app.kind, LiveKind::Client);
        assert_eq!(routes(&app), ["/hello"]);
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "");
        assert_eq!(routes(&app).len(), 3);
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Char('x'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.editing, None);
        assert_eq!(routes(&app).len(), 3, "Esc clears the filter");
    }

    #[test]
    fn quits_on_q_and_ctrl_c() {
        let mut app = App::new("test".into(), sample());
        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), Action::Quit);
    }

    #[test]
    fn selection_stays_within_rows() {
        let mut app = App::new("test".into(), sample());
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::PageUp);
        assert_eq!(app.selected, 0);
    }
}
