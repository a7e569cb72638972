use super::server::*;
use super::*;
use crate::spans::{HttpExchange, Protocol, SpanKind, SpanOrigin};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;

fn span_origin(kind: SpanKind) -> SpanOrigin {
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
    SpanOrigin {
        kind,
        pid: 42,
        process_name: "app".into(),
        local: addr,
        peer: addr,
        tls: false,
    }
}

fn exchange(target: &str, status: u16) -> HttpExchange {
    HttpExchange {
        method: "GET".into(),
        target: target.into(),
        status,
        protocol_version: "1.1",
        ..HttpExchange::default()
    }
}

fn span(kind: SpanKind, target: &str, status: u16, duration_ns: u64) -> Span {
    Span::new(
        span_origin(kind),
        (1_000, 1_000 + duration_ns),
        false,
        Protocol::Http(exchange(target, status)),
    )
}

/// The span with its matched route.
fn routed(mut span: Span, route: &str) -> Span {
    if let Some(http) = span.http_mut() {
        http.route = Some(route.into());
    }
    span
}

fn at(origin: Instant, seconds: f64) -> Instant {
    origin + Duration::from_secs_f64(seconds)
}

fn route<'a>(snapshot: &'a LiveSnapshot, kind: LiveKind, name: &str) -> &'a LiveRow {
    snapshot
        .routes
        .iter()
        .find(|r| r.kind == kind && r.route == name)
        .unwrap_or_else(|| panic!("no {kind:?} row {name}: {snapshot:#?}"))
}

fn close(actual: Option<f64>, expected: f64, tolerance: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() <= expected * tolerance)
}

proptest::proptest! {
    /// A batch counts exactly as its spans one by one: the same rows, rates,
    /// percentiles, totals and histogram entries, whatever the mix of rows
    /// (more than a batch groups, whose extra spans are counted one by one)
    /// and the seconds the batches fall in.
    #[test]
    fn a_batch_counts_as_its_spans_one_by_one(
        batches in proptest::collection::vec(
            (
                0u64..30,
                proptest::collection::vec(
                    (
                        proptest::bool::ANY,
                        0usize..12,
                        0usize..2,
                        proptest::bool::ANY,
                        1u64..5_000_000_000,
                    ),
                    0..40,
                ),
            ),
            1..8,
        )
    ) {
        let origin = Instant::now();
        let mut one_by_one = LiveView::starting_at(origin);
        let mut batched = LiveView::starting_at(origin);
        let mut second = 0;
        for (advance, spans) in batches {
            second += advance;
            let now = at(origin, second as f64 + 0.5);
            let spans: Vec<(Span, &str)> = spans
                .iter()
                .map(|&(client, route, service, failed, duration_ns)| {
                    let kind = if client { SpanKind::Client } else { SpanKind::Server };
                    let route = format!("/r/{route}");
                    let status = if failed { 503 } else { 200 };
                    let span = routed(span(kind, &route, status, duration_ns), &route);
                    (span, ["svc", "other"][service])
                })
                .collect();
            for (span, service) in &spans {
                one_by_one.record(span, service, now);
            }
            batched.record_batch(spans.iter().map(|(span, service)| (span, *service)), now);
        }
        let now = at(origin, second as f64 + 0.9);
        proptest::prop_assert_eq!(one_by_one.snapshot(now), batched.snapshot(now));
        proptest::prop_assert_eq!(one_by_one.histogram_entries(), batched.histogram_entries());
        proptest::prop_assert_eq!(one_by_one.rows(), batched.rows());
    }
}

#[test]
fn buckets_are_monotonic_and_precise() {
    let mut last = 0;
    for ns in (0..200_000u64).chain((1..2_000).map(|i| i * 1_000_003)) {
        let bucket = bucket_of(ns);
        assert!(bucket >= last, "bucket({ns}) = {bucket} < {last}");
        last = bucket;
        let value = bucket_value_ns(bucket);
        let error = (value - ns as f64).abs() / (ns as f64).max(1.0);
        assert!(error <= 0.0160, "{ns} ns -> {value} ({error})");
    }
    // Huge values are clamped, not wrapped.
    assert_eq!(usize::from(bucket_of(u64::MAX)), BUCKETS - 1);
    assert!(bucket_of(u64::MAX) >= bucket_of(1 << 40));
    assert_eq!(bucket_of(u64::MAX), bucket_of(1 << 45));
}

#[test]
fn rates_error_rates_and_totals_over_the_window() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    // 100 seconds of 20 requests/s on /a (one in four fails), 5/s on /b.
    for second in 0..100 {
        for i in 0..20 {
            let status = if i % 4 == 0 { 503 } else { 200 };
            let now = at(origin, second as f64 + i as f64 / 20.0);
            view.record(
                &span(SpanKind::Server, "/a?x=1", status, 1_000_000),
                "svc",
                now,
            );
        }
        for i in 0..5 {
            let now = at(origin, second as f64 + i as f64 / 5.0);
            view.record(&span(SpanKind::Server, "/b", 404, 1_000_000), "svc", now);
        }
    }
    let snapshot = view.snapshot(at(origin, 100.0));
    assert_eq!(snapshot.version, LIVE_PROTOCOL_VERSION);
    let a = route(&snapshot, LiveKind::Server, "/a");
    assert!((a.requests_per_second - 20.0).abs() < 0.5, "{a:?}");
    assert!((a.error_rate - 0.25).abs() < 0.01, "{a:?}");
    assert_eq!(a.requests_total, 2_000);
    assert_eq!(a.errors_total, 500);
    assert_eq!(a.history.len(), HISTORY_SECONDS);
    assert_eq!(a.history[..59], [20; 59]);
    let b = route(&snapshot, LiveKind::Server, "/b");
    assert!((b.requests_per_second - 5.0).abs() < 0.2, "{b:?}");
    assert_eq!(b.error_rate, 0.0, "404 is not a server error");
    assert!((snapshot.server.requests_per_second - 25.0).abs() < 0.6);
    assert_eq!(snapshot.server.requests_total, 2_500);
    assert_eq!(snapshot.server.errors_total, 500);
    assert_eq!(snapshot.client.requests_total, 0);
    assert_eq!(snapshot.services.len(), 1);
    let service = &snapshot.services[0];
    assert_eq!(
        (service.service.as_str(), service.route.as_str()),
        ("svc", "")
    );
    assert!((service.requests_per_second - 25.0).abs() < 0.6);
    assert!((service.error_rate - 0.2).abs() < 0.01);
    assert_eq!(service.requests_total, 2_500);
    assert_eq!(service.history[..59], [25; 59]);
    assert!(close(service.p50_ms, 1.0, 0.02), "{service:?}");
    assert!(close(service.p99_ms, 1.0, 0.02), "{service:?}");
}

#[test]
fn client_errors_include_4xx_and_kinds_are_separate() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let now = at(origin, 30.5);
    view.record(
        &routed(span(SpanKind::Client, "/x", 404, 1_000), "/x"),
        "svc",
        now,
    );
    view.record(
        &routed(span(SpanKind::Client, "/x", 200, 1_000), "/x"),
        "svc",
        now,
    );
    view.record(
        &routed(span(SpanKind::Server, "/x", 404, 1_000), "/x"),
        "svc",
        now,
    );
    let snapshot = view.snapshot(now);
    assert_eq!(route(&snapshot, LiveKind::Client, "/x").error_rate, 0.5);
    assert_eq!(route(&snapshot, LiveKind::Server, "/x").error_rate, 0.0);
    assert_eq!(snapshot.services.len(), 2);
}

#[test]
fn grpc_calls_count_errors_by_the_rpc_rules() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let now = at(origin, 30.5);
    let call = |kind, code| {
        let call = crate::spans::GrpcCall {
            service: "shop.Catalog".into(),
            method: "Get".into(),
            status_code: Some(code),
            message: None,
        };
        let http = exchange("/shop.Catalog/Get", 200);
        Span::new(
            span_origin(kind),
            (1_000, 2_000),
            false,
            Protocol::Grpc(crate::spans::GrpcExchange { call, http }),
        )
    };
    for kind in [SpanKind::Server, SpanKind::Client] {
        // NOT_FOUND: the caller's error only; UNAVAILABLE: both sides'.
        view.record(&call(kind, 5), "svc", now);
        view.record(&call(kind, 14), "svc", now);
    }
    let snapshot = view.snapshot(now);
    let path = "/shop.Catalog/Get";
    assert_eq!(route(&snapshot, LiveKind::Server, path).error_rate, 0.5);
    assert_eq!(route(&snapshot, LiveKind::Client, path).error_rate, 1.0);
}

#[test]
fn database_clients_are_rows_of_the_client_view_by_span_name() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let now = at(origin, 30.5);
    let query = |collection: &str, error: Option<&str>| {
        let db = crate::spans::DbExchange {
            system: crate::spans::DbSystem::Postgresql,
            operation: "SELECT".into(),
            collection: Some(collection.into()),
            namespace: Some("shop".into()),
            query_text: Some(format!("SELECT * FROM {collection} WHERE id = ?")),
            status_code: error.map(str::to_owned),
            error_type: error.map(str::to_owned),
            error_message: None,
            rows: None,
            rows_returned: false,
            request_bytes: 0,
            response_bytes: 0,
            name: String::new(),
        }
        .named();
        Span::new(
            span_origin(SpanKind::Client),
            (1_000, 2_000),
            false,
            Protocol::Db(db),
        )
    };
    view.record(&query("accounts", None), "svc", now);
    view.record(&query("accounts", None), "svc", now);
    view.record(&query("missing", Some("42P01")), "svc", now);
    let snapshot = view.snapshot(now);
    assert_eq!(
        route(&snapshot, LiveKind::Client, "SELECT accounts").error_rate,
        0.0
    );
    assert_eq!(
        route(&snapshot, LiveKind::Client, "SELECT missing").error_rate,
        1.0
    );
    assert!(snapshot.routes.iter().all(|r| r.kind == LiveKind::Client));
}

#[test]
fn a_known_route_groups_paths() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let now = at(origin, 1.0);
    for id in 0..50 {
        let path = format!("/users/{id}");
        view.record(
            &routed(span(SpanKind::Server, &path, 200, 1_000), "/users/:id"),
            "svc",
            now,
        );
    }
    let snapshot = view.snapshot(now);
    assert_eq!(snapshot.routes.len(), 1);
    assert_eq!(
        route(&snapshot, LiveKind::Server, "/users/:id").requests_total,
        50
    );
}

#[test]
fn percentiles_are_within_two_percent() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    // 1..=1000 ms, uniformly, spread over the last 5 seconds.
    for i in 1..=1000u64 {
        let now = at(origin, 55.0 + (i % 5) as f64);
        view.record(
            &span(SpanKind::Server, "/slow", 200, i * 1_000_000),
            "svc",
            now,
        );
    }
    let row = route(&view.snapshot(at(origin, 59.9)), LiveKind::Server, "/slow").clone();
    assert!(close(row.p50_ms, 500.0, 0.02), "{row:?}");
    assert!(close(row.p95_ms, 950.0, 0.02), "{row:?}");
    assert!(close(row.p99_ms, 990.0, 0.02), "{row:?}");

    // Sub-millisecond latencies keep their precision too.
    let mut view = LiveView::starting_at(origin);
    for i in 1..=200u64 {
        view.record(
            &span(SpanKind::Server, "/fast", 200, 100_000 + i * 1_000),
            "svc",
            at(origin, 3.0),
        );
    }
    let row = route(&view.snapshot(at(origin, 3.5)), LiveKind::Server, "/fast").clone();
    assert!(close(row.p50_ms, 0.200, 0.02), "{row:?}");
    assert!(close(row.p99_ms, 0.298, 0.02), "{row:?}");
}

#[test]
fn old_seconds_leave_the_window_and_the_history() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    for _ in 0..100 {
        view.record(
            &span(SpanKind::Server, "/a", 500, 5_000_000),
            "svc",
            at(origin, 10.2),
        );
    }
    let row = route(&view.snapshot(at(origin, 15.5)), LiveKind::Server, "/a").clone();
    assert!(
        (row.requests_per_second - 100.0 / 9.5).abs() < 0.01,
        "{row:?}"
    );
    assert_eq!(row.error_rate, 1.0);
    assert!(close(row.p50_ms, 5.0, 0.02));
    assert_eq!(row.history[HISTORY_SECONDS - 6], 100);

    // 30 s later: out of the 10 s window, still in the minute's history.
    let row = route(&view.snapshot(at(origin, 40.5)), LiveKind::Server, "/a").clone();
    assert_eq!(row.requests_per_second, 0.0);
    assert_eq!(row.error_rate, 0.0);
    assert_eq!(row.p99_ms, None);
    assert_eq!(row.history.iter().sum::<u32>(), 100);
    assert_eq!(row.requests_total, 100);

    // Past a minute the row is no longer sent; past ten it is forgotten.
    assert!(view.snapshot(at(origin, 75.0)).routes.is_empty());
    assert_eq!(view.rows(), 1);
    view.record(
        &span(SpanKind::Server, "/b", 200, 1),
        "svc",
        at(origin, 700.0),
    );
    assert_eq!(view.rows(), 1);
    let snapshot = view.snapshot(at(origin, 700.0));
    assert_eq!(snapshot.routes.len(), 1);
    assert_eq!(snapshot.server.requests_total, 101);
}

#[test]
fn the_first_seconds_are_not_diluted() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    for i in 0..30 {
        view.record(
            &span(SpanKind::Server, "/a", 200, 1),
            "svc",
            at(origin, i as f64 / 20.0),
        );
    }
    let snapshot = view.snapshot(at(origin, 1.5));
    assert!((snapshot.window_seconds - 1.5).abs() < 1e-9);
    assert!((route(&snapshot, LiveKind::Server, "/a").requests_per_second - 20.0).abs() < 1e-6);
}

#[test]
fn rows_are_bounded_and_the_least_recent_evicted() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let now = at(origin, 5.0);
    view.record(&span(SpanKind::Server, "/keep", 200, 1_000), "svc", now);
    for i in 0..(MAX_ROWS * 3) {
        view.record(
            &span(
                SpanKind::Server,
                &format!("/scan/{i}"),
                404,
                1_000 + i as u64,
            ),
            "svc",
            now,
        );
        if i % 100 == 0 {
            view.record(&span(SpanKind::Server, "/keep", 200, 1_000), "svc", now);
        }
        assert!(view.rows() <= MAX_ROWS);
    }
    let snapshot = view.snapshot(now);
    assert!(
        snapshot.rows_evicted >= (MAX_ROWS * 2) as u64,
        "{}",
        snapshot.rows_evicted
    );
    assert_eq!(
        route(&snapshot, LiveKind::Server, "/keep").requests_total,
        1 + (MAX_ROWS * 3 / 100) as u64
    );
    assert!(snapshot
        .routes
        .iter()
        .any(|r| r.route == format!("/scan/{}", MAX_ROWS * 3 - 1)));
    assert_eq!(
        snapshot.server.requests_total,
        1 + (MAX_ROWS * 3 + MAX_ROWS * 3 / 100) as u64
    );
    // The entry count matches what the rows hold.
    let held: usize = view.rows.values().map(Row::entries).sum();
    assert_eq!(held, view.histogram_entries());
}

#[test]
fn long_routes_and_services_are_cut() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let long = format!("/{}", "é".repeat(1_000));
    view.record(
        &span(SpanKind::Server, &long, 200, 1),
        &"s".repeat(1_000),
        origin,
    );
    let snapshot = view.snapshot(origin);
    assert!(snapshot.routes[0].route.len() <= MAX_ROUTE_BYTES);
    assert!(snapshot.routes[0].service.len() <= MAX_SERVICE_BYTES);
}

#[test]
fn histogram_memory_is_capped_and_counts_stay_exact() {
    let mut slot = LatencySlot::new();
    assert_eq!(
        slot.add(100, 1, false),
        1,
        "an empty second always gets one entry"
    );
    assert_eq!(slot.add(300, 1, false), 0);
    assert_eq!(slot.add(50, 1, false), 0);
    assert_eq!(slot.sorted(), vec![(100, 3)]);
    assert_eq!(slot.add(300, 1, true), 1);
    assert_eq!(slot.add(290, 1, false), 0);
    assert_eq!(slot.add(120, 1, false), 0);
    assert_eq!(slot.sorted(), vec![(100, 4), (300, 2)]);
    // Several values of one bucket at once, as a batch's tally adds them.
    assert_eq!(slot.add(300, 5, false), 0);
    assert_eq!(slot.add(700, 3, false), 0);
    assert_eq!(slot.sorted(), vec![(100, 4), (300, 10)]);
}

#[test]
fn snapshots_round_trip_through_json() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    view.record(
        &span(SpanKind::Server, "/a", 200, 1_000_000),
        "svc",
        at(origin, 2.0),
    );
    let snapshot = view.snapshot(at(origin, 2.5));
    let text = serde_json::to_string(&snapshot).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("\"kind\":\"server\""), "{text}");
    let back: LiveSnapshot = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, snapshot);
    // Fields added later are optional for older readers, and the other way round.
    let minimal: LiveSnapshot =
        serde_json::from_str(r#"{"version":1,"routes":[{"service":"s","route":"/","extra":1}]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minimal.routes[0].service, "s");
}

/// Recording and snapshot costs (run with --ignored --release to measure).
#[test]
#[ignore]
fn record_cost() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let spans: Vec<Span> = (0..64)
        .map(|i| {
            span(
                SpanKind::Server,
                &format!("/route/{i}"),
                200,
                100_000 + i * 7_919,
            )
        })
        .collect();
    let n = 2_000_000u64;
    let started = Instant::now();
    for i in 0..n {
        let now = origin + Duration::from_micros(i);
        view.record(&spans[(i % 64) as usize], "python3", now);
    }
    let per = started.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("record, 64 routes: {per:.0} ns per span");

    // Every span a new path: rows are created and evicted all the time.
    let unique: Vec<Span> = (0..200_000u64)
        .map(|i| span(SpanKind::Server, &format!("/scan/{i}"), 404, 100_000 + i))
        .collect();
    let started = Instant::now();
    for (i, span) in unique.iter().enumerate() {
        view.record(span, "python3", origin + Duration::from_micros(i as u64));
    }
    let per = started.elapsed().as_nanos() as f64 / unique.len() as f64;
    eprintln!("record, a new path every span: {per:.0} ns per span");

    // A full view: MAX_ROWS rows, each with 10 s of varied latencies.
    let mut view = LiveView::starting_at(origin);
    let rows: Vec<Span> = (0..MAX_ROWS as u64)
        .map(|i| span(SpanKind::Server, &format!("/r/{i}"), 200, 1))
        .collect();
    for second in 0..10u64 {
        for (i, row) in rows.iter().enumerate() {
            for k in 0..20u64 {
                let mut span = row.clone();
                span.end_monotonic_ns =
                    span.start_monotonic_ns + 50_000 * (1 + (i as u64 + k * 37) % 400);
                view.record(&span, "python3", origin + Duration::from_secs(second));
            }
        }
    }
    let started = Instant::now();
    let snapshot = view.snapshot(origin + Duration::from_millis(9_900));
    let took = started.elapsed();
    let bytes = serde_json::to_vec(&snapshot).map(|v| v.len()).unwrap_or(0);
    eprintln!(
        "snapshot of {} rows, {} histogram entries: {took:?}, {bytes} bytes of JSON",
        snapshot.routes.len(),
        view.histogram_entries()
    );
}

fn socket_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("zerotrace-live-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn shared_view() -> Arc<Mutex<LiveView>> {
    let mut view = LiveView::new();
    let now = Instant::now();
    view.record(
        &span(SpanKind::Server, "/hello", 200, 450_000),
        "python3",
        now,
    );
    view.record(
        &span(SpanKind::Server, "/status/500", 500, 450_000),
        "python3",
        now,
    );
    Arc::new(Mutex::new(view))
}

fn read_line(stream: &UnixStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line
}

#[test]
fn serves_snapshots_to_the_same_uid_with_mode_0600() {
    let dir = socket_dir("ok");
    let path = dir.join("live.sock");
    serve(&path, shared_view()).unwrap_or_else(|e| panic!("{e}"));
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let stream = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
    let first: LiveSnapshot =
        serde_json::from_str(&read_line(&stream)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.version, LIVE_PROTOCOL_VERSION);
    assert_eq!(
        route(&first, LiveKind::Server, "/status/500").error_rate,
        1.0
    );
    // The next one comes about a second later.
    let started = Instant::now();
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let second: LiveSnapshot =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(second.uptime_seconds > first.uptime_seconds);
    assert!(started.elapsed() > Duration::from_millis(500));
    drop(reader);
    drop(stream);

    // A stale socket (nobody listening) is replaced; a live one is not taken over.
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap_or_else(|e| panic!("{e}")));
    serve(&stale, shared_view()).unwrap_or_else(|e| panic!("{e}"));
    let err = serve(&stale, shared_view()).err().unwrap_or_default();
    assert!(err.contains("already served"), "{err}");
    // A path that is not a socket is never replaced.
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap_or_else(|e| panic!("{e}"));
    assert!(serve(&file, shared_view()).is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), "x");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_a_uid_the_policy_does_not_allow() {
    let dir = socket_dir("refused");
    let path = dir.join("live.sock");
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    let policy = PeerPolicy {
        own_uid: own.wrapping_add(1),
        allow_root: false,
    };
    serve_with(&path, shared_view(), policy).unwrap_or_else(|e| panic!("{e}"));
    let stream = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
    let line = read_line(&stream);
    let refusal: LiveRefusal =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(refusal.refused.contains(&format!("uid {own}")), "{line}");
    // Then the server closes.
    assert_eq!(read_line(&stream), "");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policy_allows_root_and_the_own_uid_only() {
    let policy = PeerPolicy {
        own_uid: 65534,
        allow_root: true,
    };
    assert!(policy.allows(0));
    assert!(policy.allows(65534));
    assert!(!policy.allows(1000));
    assert!(!policy.allows(65533));
}

#[test]
fn a_client_that_writes_is_dropped_and_clients_are_capped() {
    let dir = socket_dir("cap");
    let path = dir.join("live.sock");
    serve(&path, shared_view()).unwrap_or_else(|e| panic!("{e}"));
    let talker = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(read_line(&talker).starts_with('{'));
    let _ = (&talker).write_all(b"GET / HTTP/1.0\r\n\r\n");
    // The server hangs up instead of sending the next snapshot.
    let mut reader = BufReader::new(&talker);
    let mut rest = String::new();
    let _ = reader.read_line(&mut rest);
    assert_eq!(rest, "");

    // The talker's slot is released when its serving thread ends, which
    // may be a moment after the hang-up: retry until all slots are free.
    let clients = wait_until(|| {
        let clients: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let served = clients
            .iter()
            .all(|client| read_line(client).contains("\"version\""));
        if served {
            Some(clients)
        } else {
            drop(clients);
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    })
    .unwrap_or_else(|| panic!("never got {MAX_CLIENTS} clients served"));
    let extra = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(read_line(&extra).contains("too many"));
    drop(clients);
    // Slots are given back when clients leave.
    let again = wait_until(|| {
        let client = UnixStream::connect(&path).ok()?;
        read_line(&client).contains("\"version\"").then_some(())
    });
    assert!(again.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn call(client: &str, server: &str, failed: bool) -> EdgeObservation {
    use crate::service_graph::{ConnectionType, EdgeKey, GraphNode};
    EdgeObservation {
        edge: EdgeKey {
            client: GraphNode::new(client, ""),
            server: GraphNode::new(server, ""),
            connection_type: ConnectionType::Direct,
        },
        client_seconds: Some(0.01),
        server_seconds: Some(0.005),
        failed,
    }
}

#[test]
fn calls_are_counted_per_edge_busiest_first_and_bounded() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    for i in 0..10 {
        view.record_call(&call("front", "back", i == 0), at(origin, 1.0));
    }
    view.record_call(&call("127.0.0.1", "front", false), at(origin, 1.0));
    let snapshot = view.snapshot(at(origin, 2.0));
    assert_eq!(snapshot.calls.len(), 2);
    let first = &snapshot.calls[0];
    assert_eq!(
        (first.client.as_str(), first.server.as_str()),
        ("front", "back")
    );
    assert_eq!((first.requests_total, first.errors_total), (10, 1));
    assert!((first.error_rate - 0.1).abs() < 1e-9);
    for i in 0..(MAX_CALLS + 10) {
        view.record_call(&call(&format!("c{i}"), "back", false), at(origin, 3.0));
    }
    assert!(view.snapshot(at(origin, 3.0)).calls.len() <= MAX_CALLS);
}

#[test]
fn a_run_of_calls_counts_as_its_requests_one_by_one() {
    let origin = Instant::now();
    let (mut together, mut one_by_one) =
        (LiveView::starting_at(origin), LiveView::starting_at(origin));
    let calls: Vec<EdgeObservation> = (0..7).map(|i| call("front", "back", i % 3 == 0)).collect();
    let samples: Vec<_> = calls.iter().map(EdgeObservation::sample).collect();
    together.record_calls(&calls[0].edge, &samples, at(origin, 1.0));
    for call in &calls {
        one_by_one.record_call(call, at(origin, 1.0));
    }
    let (a, b) = (
        together.snapshot(at(origin, 2.0)).calls,
        one_by_one.snapshot(at(origin, 2.0)).calls,
    );
    assert_eq!((a[0].requests_total, a[0].errors_total), (7, 3));
    assert_eq!(a, b);
}

/// Recording cost as under load: one route, durations spread over 50 us ..
/// 6 ms (xorshift), ~220 latency buckets per second (run with --ignored
/// --release to measure).
#[test]
#[ignore]
fn record_cost_spread() {
    let origin = Instant::now();
    let mut view = LiveView::starting_at(origin);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let spans: Vec<Span> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let exp = 50_000f64 * (120f64).powf((x % 10_000) as f64 / 10_000.0);
            span(SpanKind::Server, "/", 200, exp as u64)
        })
        .collect();
    let n = 4_000_000u64;
    let started = Instant::now();
    for i in 0..n {
        let now = origin + Duration::from_nanos(i * 8_000);
        view.record(&spans[(i % 4096) as usize], "nginx", now);
    }
    let per = started.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "record, one route, spread latencies: {per:.1} ns per span, {} entries",
        view.histogram_entries()
    );
}
