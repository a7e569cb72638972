//! A stand-in worker for `tests/tests/isolation.rs`: started by the real
//! loader (`--worker-path`), it reports, before doing anything else, how the
//! loader exec'd it: whether the kernel started it dumpable, its real,
//! effective and saved gids, its environment's names, and what the start-up
//! data holds. Then it exits 78, so the loader does not restart it.

use serde_json::json;
use zerotrace_integration_tests::stand_in::startup_data;

fn main() {
    // First: the state exec left us in, before anything can change it.
    // SAFETY: prctl with integer arguments returns the flag.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    let (mut real, mut effective, mut saved) = (0, 0, 0);
    // SAFETY: getresgid writes three gid_t into our locals.
    unsafe { libc::getresgid(&mut real, &mut effective, &mut saved) };
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let startup = startup_data("startup report");
    println!(
        "{}",
        json!({
            "dumpable_at_start": dumpable,
            "gids": [real, effective, saved],
            "environment": names,
            "startup_variables": startup.environment.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "otlp_headers": startup.var("OTEL_EXPORTER_OTLP_HEADERS"),
            "config_file": startup.config_file.as_ref().map(|f| f.path.clone()),
            "config_bytes": startup.config_file.as_ref().map(|f| f.contents.len()),
        })
    );
    std::process::exit(78);
}
