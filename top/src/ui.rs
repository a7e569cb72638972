//! Drawing the view: a header (connection, totals, a sparkline of the
//! view's requests), a table per service, a table per route, the keys; or,
//! in the calls view, one table of who calls whom (the service graph).

use ratatui::layout::{Alignment, Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;
use zerotrace_worker::live_view::{LiveCall, LiveRow};

use crate::app::{App, Column, Connection};

const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const NUMBER_WIDTHS: [u16; 6] = [9, 7, 9, 9, 9, 9];
const MIN_ROUTE_WIDTH: u16 = 20;
const PREFERRED_ROUTE_WIDTH: u16 = 36;
/// Sparkline widths tried, widest first (one column per second).
const SPARK_SECONDS: [u16; 5] = [60, 45, 30, 20, 10];

pub fn rate(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

pub fn percent(ratio: f64) -> String {
    if ratio >= 1.0 {
        "100%".into()
    } else {
        format!("{:.1}%", ratio * 100.0)
    }
}

pub fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms >= 1000.0 => format!("{:.2}s", ms / 1000.0),
        Some(ms) if ms >= 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.2}ms"),
    }
}

pub fn count(n: u64) -> String {
    match n {
        0..=999_999 => n.to_string(),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The complete seconds of a history (its last entry is the current, partial second).
fn complete(history: &[u32]) -> &[u32] {
    &history[..history.len().saturating_sub(1)]
}

/// The last `width` seconds of `history` as block characters scaled to their maximum.
pub fn sparkline(history: &[u32], width: usize) -> String {
    let shown = &history[history.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|&v| {
            if v == 0 || max == 0 {
                ' '
            } else {
                let level = (u64::from(v) * 8).div_ceil(u64::from(max)).clamp(1, 8);
                SPARK_LEVELS[level as usize - 1]
            }
        })
        .collect()
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

/// Column widths: service, route, the six numbers, the sparkline (a round
/// number of seconds, as many as fit next to a route of a useful width).
fn widths(total: u16, service: u16) -> (u16, u16, u16) {
    let numbers: u16 = NUMBER_WIDTHS.iter().sum();
    let spacing = 8;
    let left = total.saturating_sub(service + numbers + spacing);
    let fits = |route: u16| {
        SPARK_SECONDS
            .into_iter()
            .find(|spark| left.saturating_sub(*spark) >= route)
    };
    let spark = fits(PREFERRED_ROUTE_WIDTH)
        .or_else(|| fits(MIN_ROUTE_WIDTH))
        .unwrap_or(0);
    (service, left - spark, spark)
}

fn header_row(app: &App, spark: u16, route_title: &str) -> Row<'static> {
    let arrow = if app.descending { "↓" } else { "↑" };
    let mut cells: Vec<Cell> = Column::ALL
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let title = match column {
                Column::Route => route_title.to_owned(),
                c => c.title().to_owned(),
            };
            let title = if *column == app.sort {
                format!("{title}{arrow}")
            } else {
                title
            };
            let style = if *column == app.sort {
                Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
            } else {
                Style::default().add_modifier(Modifier::BOLD)
            };
            let line = Line::from(Span::styled(title, style));
            Cell::from(if i >= 2 {
                line.alignment(Alignment::Right)
            } else {
                line
            })
        })
        .collect();
    if spark > 0 {
        cells.push(Cell::from(Span::styled(
            format!("LAST {}s", spark.min(60)),
            Style::default().add_modifier(Modifier::BOLD),
        )));
    }
    Row::new(cells)
}

fn table_row(row: &LiveRow, route: String, spark: u16) -> Row<'static> {
    let error_style = if row.error_rate > 0.0 {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    };
    let mut cells = vec![
        Cell::from(row.service.clone()),
        Cell::from(route),
        right(rate(row.requests_per_second)),
        Cell::from(Line::from(percent(row.error_rate)).alignment(Alignment::Right))
            .style(error_style),
        right(latency(row.p50_ms)),
        right(latency(row.p95_ms)),
        right(latency(row.p99_ms)),
        right(count(row.requests_total)),
    ];
    if spark > 0 {
        cells.push(
            Cell::from(sparkline(complete(&row.history), spark as usize))
                .style(Style::default().fg(Color::Cyan)),
        );
    }
    Row::new(cells)
}

fn table<'a>(
    rows: Vec<Row<'a>>,
    header: Row<'a>,
    (service, route, spark): (u16, u16, u16),
    title: String,
) -> Table<'a> {
    let mut constraints = vec![Constraint::Length(service), Constraint::Length(route)];
    constraints.extend(NUMBER_WIDTHS.iter().map(|w| Constraint::Length(*w)));
    if spark > 0 {
        constraints.push(Constraint::Length(spark));
    }
    Table::new(rows, constraints)
        .header(header)
        .column_spacing(1)
        .block(Block::default().borders(Borders::TOP).title(title))
}

fn header(app: &App) -> Vec<Line<'static>> {
    let snapshot = &app.snapshot;
    let totals = snapshot.totals(app.kind);
    let status = match &app.connection {
        Connection::Connected => Span::styled("● connected", Style::default().fg(Color::Green)),
        Connection::Disconnected(reason) => Span::styled(
            format!("○ disconnected: {reason} (retrying)"),
            Style::default().fg(Color::Red),
        ),
    };
    let first = vec![
        Span::styled(
            "zerotrace top",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw("  "),
        status,
        Span::raw(format!(
            "  {}  ·  agent up {}  ·  updated {}s ago",
            app.source,
            duration(snapshot.uptime_seconds),
            app.updated.elapsed().as_secs()
        )),
    ];
    let services = app.services().len();
    let routes = app.routes().len();
    let second = if app.calls {
        Line::from(vec![
            Span::styled("calls", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                ": {} client→server pair(s) seen in the last minute (a service, or the address of one that is not instrumented)",
                app.calls().len()
            )),
        ])
    } else {
        Line::from(vec![
        Span::styled(
            format!("{} spans", app.kind.as_str()),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            ": {} req/s  errors {}  over the last {}  ·  {} requests ({} errors) since start  ·  {services} service(s), {routes} route(s)",
            rate(totals.requests_per_second),
            percent(totals.error_rate),
            duration(snapshot.window_seconds.ceil()),
            count(totals.requests_total),
            count(totals.errors_total),
        )),
    ])
    };
    let filter = match (&app.editing, app.filter.is_empty()) {
        (Some(text), _) => format!("filter service: {text}▏ (Enter keeps, Esc clears)"),
        (None, false) => format!("filter service: {}", app.filter),
        (None, true) => "no filter".into(),
    };
    let arrow = if app.descending {
        "descending"
    } else {
        "ascending"
    };
    let sort = if app.calls {
        "sort: busiest first".to_owned()
    } else {
        format!("sort: {} {arrow}", app.sort.title())
    };
    let mut third = vec![Span::raw(format!("{sort}  ·  {filter}"))];
    if snapshot.rows_evicted > 0 {
        third.push(Span::raw(format!(
            "  ·  {} rows evicted (more routes than the agent keeps)",
            snapshot.rows_evicted
        )));
    }
    if let Some(note) = &app.agent_note {
        third.push(Span::styled(
            format!("  ·  {note}"),
            Style::default().fg(Color::Yellow),
        ));
    }
    let third = Line::from(third);
    vec![Line::from(first), second, third]
}

const KEYS: &str = "q quit · c/Tab server/client · g calls · s/S sort column · 1-8 pick column · r reverse · / filter service · Esc clear · ↑↓ select";

const CALL_NUMBER_WIDTHS: [u16; 3] = [9, 7, 9];
const CONNECTION_TYPE_WIDTH: u16 = 12;

/// The calls view: one row per service graph edge, busiest first.
fn draw_calls(frame: &mut Frame, app: &App, area: ratatui::layout::Rect) {
    let calls = app.calls();
    let name_width = |name: fn(&LiveCall) -> &str| {
        calls
            .iter()
            .map(|c| name(c).chars().count() as u16)
            .max()
            .unwrap_or(0)
            .clamp(6, 32)
    };
    let (client, server) = (name_width(|c| &c.client), name_width(|c| &c.server));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let title = |text: &'static str| Cell::from(Span::styled(text, bold));
    let right_title = |text: &'static str| {
        Cell::from(Line::from(Span::styled(text, bold)).alignment(Alignment::Right))
    };
    let header = Row::new(vec![
        title("CLIENT"),
        title("SERVER"),
        title("TYPE"),
        right_title("REQ/S"),
        right_title("ERR%"),
        right_title("TOTAL"),
    ]);
    let rows: Vec<Row> = calls
        .iter()
        .map(|call| {
            let error_style = if call.error_rate > 0.0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            let kind = if call.connection_type.is_empty() {
                "-".to_owned()
            } else {
                call.connection_type.clone()
            };
            Row::new(vec![
                Cell::from(call.client.clone()),
                Cell::from(call.server.clone()),
                Cell::from(kind),
                right(rate(call.requests_per_second)),
                Cell::from(Line::from(percent(call.error_rate)).alignment(Alignment::Right))
                    .style(error_style),
                right(count(call.requests_total)),
            ])
        })
        .collect();
    let mut constraints = vec![
        Constraint::Length(client),
        Constraint::Length(server),
        Constraint::Length(CONNECTION_TYPE_WIDTH),
    ];
    constraints.extend(CALL_NUMBER_WIDTHS.iter().map(|w| Constraint::Length(*w)));
    let mut state =
        TableState::default().with_selected(Some(app.selected.min(calls.len().saturating_sub(1))));
    frame.render_stateful_widget(
        Table::new(rows, constraints)
            .header(header)
            .column_spacing(1)
            .block(
                Block::default()
                    .borders(Borders::TOP)
                    .title(" calls (client → server, over the last 10s) "),
            )
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
        &mut state,
    );
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if app.calls {
        let [top, calls_area, keys_area] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(header(app)), top);
        draw_calls(frame, app, calls_area);
        frame.render_widget(
            Paragraph::new(Line::from(Span::styled(
                KEYS,
                Style::default().fg(Color::DarkGray),
            ))),
            keys_area,
        );
        return;
    }
    let services = app.services();
    let routes = app.routes();
    let services_height = (services.len() as u16 + 2).clamp(3, (area.height / 3).max(3));
    let [top, spark_area, services_area, routes_area, keys_area] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(services_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);

    frame.render_widget(Paragraph::new(header(app)), top);

    let history: Vec<u64> = complete(&app.snapshot.totals(app.kind).history)
        .iter()
        .map(|v| u64::from(*v))
        .collect();
    let shown = &history[history.len().saturating_sub(spark_area.width as usize)..];
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().title(format!(
                "{} requests per second over the last minute",
                app.kind.as_str()
            )))
            .data(shown)
            .style(Style::default().fg(Color::Cyan)),
        spark_area,
    );

    let service_width = services
        .iter()
        .chain(routes.iter())
        .map(|r| r.service.chars().count() as u16)
        .max()
        .unwrap_or(0)
        .clamp(7, 24);
    let widths = widths(area.width, service_width);
    let spark = widths.2;

    let service_rows = services
        .iter()
        .map(|row| {
            let n = routes.iter().filter(|r| r.service == row.service).count();
            table_row(
                row,
                format!("({n} route{})", if n == 1 { "" } else { "s" }),
                spark,
            )
        })
        .collect();
    frame.render_widget(
        table(
            service_rows,
            header_row(app, spark, "ROUTES"),
            widths,
            format!(" services ({}) ", app.kind.as_str()),
        ),
        services_area,
    );

    let route_rows = routes
        .iter()
        .map(|row| table_row(row, row.route.clone(), spark))
        .collect();
    let mut state =
        TableState::default().with_selected(Some(app.selected.min(routes.len().saturating_sub(1))));
    frame.render_stateful_widget(
        table(
            route_rows,
            header_row(app, spark, "ROUTE"),
            widths,
            format!(" routes ({}) ", app.kind.as_str()),
        )
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        routes_area,
        &mut state,
    );

    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(
            KEYS,
            Style::default().fg(Color::DarkGray),
        ))),
        keys_area,
    );
}

/// The area a terminal of this size gives (for tests).
#[cfg(test)]
fn screen(app: &App, width: u16, height: u16) -> String {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let mut terminal =
        Terminal::new(TestBackend::new(width, height)).unwrap_or_else(|e| panic!("{e}"));
    terminal
        .draw(|frame| draw(frame, app))
        .unwrap_or_else(|e| panic!("{e}"));
    let buffer = terminal.backend().buffer().clone();
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::sample;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    #[test]
    fn formats() {
        assert_eq!(rate(0.0), "0.00");
        assert_eq!(rate(12.345), "12.3");
        assert_eq!(rate(4321.0), "4321");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(0.452)), "0.45ms");
        assert_eq!(latency(Some(12.34)), "12.3ms");
        assert_eq!(latency(Some(2345.0)), "2.35s");
        assert_eq!(count(1234), "1234");
        assert_eq!(count(12_345_678), "12.3M");
        assert_eq!(duration(75.0), "1m15s");
        assert_eq!(duration(7300.0), "2h01m");
    }

    #[test]
    fn sparklines_scale_to_their_maximum() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 5), " ▁▂▄█");
        assert_eq!(sparkline(&[5, 0, 0], 2), "  ");
        assert_eq!(sparkline(&[1, 2, 3], 10), "▃▆█");
    }

    #[test]
    fn widths_fit_the_terminal() {
        let (service, route, spark) = widths(160, 10);
        assert_eq!(service + route + spark + 52 + 8, 160);
        assert_eq!((route, spark), (45, 45));
        assert_eq!(widths(200, 10), (10, 70, 60));
        assert_eq!(widths(110, 10), (10, 20, 20));
        assert_eq!(widths(90, 10), (10, 20, 0));
    }

    #[test]
    fn shows_services_routes_rates_errors_and_keys() {
        let mut app = App::new("/run/zerotrace/live.sock".into(), sample());
        let text = screen(&app, 160, 30);
        assert!(text.contains("zerotrace top"), "{text}");
        assert!(text.contains("● connected"), "{text}");
        let hello = text
            .lines()
            .find(|l| l.contains("/hello"))
            .unwrap_or_else(|| panic!("{text}"));
        let fields: Vec<&str> = hello.split_whitespace().collect();
        assert_eq!(
            fields[..8],
            ["python3", "/hello", "40.0", "0.0%", "0.38ms", "0.75ms", "1.50ms", "4000"],
            "{text}"
        );
        let failing = text
            .lines()
            .find(|l| l.contains("/status/500"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(failing.contains("100%"), "{text}");
        assert!(text.contains("(2 routes)"), "{text}");
        assert!(text.contains("q quit"), "{text}");

        // Client view and a filter.
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE));
        app.filter = "nginx".into();
        let text = screen(&app, 160, 30);
        assert!(!text.contains("/hello"), "{text}");
        assert!(text.contains("filter service: nginx"), "{text}");
        assert!(text.contains("client spans"), "{text}");

        app.connection = Connection::Disconnected("the agent closed the connection".into());
        assert!(screen(&app, 100, 20).contains("disconnected: the agent closed"));
    }

    #[test]
    fn the_calls_view_shows_who_calls_whom() {
        let mut snapshot = sample();
        snapshot.calls = vec![
            LiveCall {
                client: "front".into(),
                server: "back".into(),
                connection_type: String::new(),
                requests_per_second: 12.5,
                error_rate: 0.25,
                requests_total: 300,
                errors_total: 75,
            },
            LiveCall {
                client: "127.0.0.1".into(),
                server: "front".into(),
                connection_type: "virtual_node".into(),
                requests_per_second: 3.0,
                requests_total: 90,
                ..LiveCall::default()
            },
        ];
        let mut app = App::new("test".into(), snapshot);
        app.on_key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE));
        let text = screen(&app, 100, 20);
        assert!(text.contains("2 client→server pair(s)"), "{text}");
        let fields = |start: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("{start}: {text}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            fields("front "),
            ["front", "back", "-", "12.5", "25.0%", "300"]
        );
        assert_eq!(
            fields("127.0.0.1 "),
            ["127.0.0.1", "front", "virtual_node", "3.00", "0.0%", "90"]
        );
        assert!(!text.contains("/hello"), "no route table: {text}");
        assert!(text.contains("g calls"), "{text}");
    }
}
