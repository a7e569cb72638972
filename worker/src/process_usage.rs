//! What procfs says of an instrumented process's resource use, for the
//! process metrics (OBI's `application_process` feature): CPU time, memory,
//! threads, page faults from `/proc/PID/stat`, context switches and the CPUs
//! it may run on from `/proc/PID/status`. Both files are readable by any
//! user (no ptrace access needed), so the unprivileged worker reads them
//! itself. `/proc/PID/io` (disk bytes) and `/proc/PID/fd` are not: they need
//! ptrace access to the process, which the worker must not have.

use std::io;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessUsage {
    pub user_seconds: f64,
    pub system_seconds: f64,
    /// Resident set size.
    pub resident_bytes: u64,
    /// Virtual memory size.
    pub virtual_bytes: u64,
    pub threads: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// CPUs the process may run on (`Cpus_allowed_list`), at least 1.
    pub cpus_allowed: u32,
    /// When the process started, in clock ticks after boot.
    pub start_ticks: u64,
}

/// The fields of `/proc/PID/stat` that the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct StatFields {
    minor_faults: u64,
    major_faults: u64,
    user_ticks: u64,
    system_ticks: u64,
    threads: u64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses (a process names itself), so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<StatFields> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is index 0 here.
    let mut fields = after_name.split_ascii_whitespace();
    let mut next_after = |skip: usize| -> Option<u64> { fields.nth(skip)?.parse().ok() };
    let minor_faults = next_after(7)?; // field 10
    let major_faults = next_after(1)?; // field 12
    let user_ticks = next_after(1)?; // field 14
    let system_ticks = next_after(0)?; // field 15
    let threads = next_after(4)?; // field 20
    let start_ticks = next_after(1)?; // field 22
    let virtual_bytes = next_after(0)?; // field 23
    let resident_pages = next_after(0)?; // field 24
    Some(StatFields {
        minor_faults,
        major_faults,
        user_ticks,
        system_ticks,
        threads,
        start_ticks,
        virtual_bytes,
        resident_pages,
    })
}

/// The fields of `/proc/PID/status` that the metrics use: (voluntary,
/// involuntary context switches, CPUs allowed).
fn parse_status(text: &str) -> (u64, u64, u32) {
    let mut voluntary = 0;
    let mut involuntary = 0;
    let mut cpus = 1;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "voluntary_ctxt_switches" => voluntary = value.parse().unwrap_or(0),
            "nonvoluntary_ctxt_switches" => involuntary = value.parse().unwrap_or(0),
            "Cpus_allowed_list" => cpus = cpu_list_len(value).max(1),
            _ => {}
        }
    }
    (voluntary, involuntary, cpus)
}

/// The number of CPUs in a kernel CPU list (`0-3,8,10-11`); 0 when unreadable.
fn cpu_list_len(list: &str) -> u32 {
    let mut count: u32 = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
            None => (part.trim().parse::<u32>(), part.trim().parse::<u32>()),
        };
        match (first, last) {
            (Ok(first), Ok(last)) if last >= first => {
                count = count.saturating_add(last - first + 1)
            }
            _ => return 0,
        }
    }
    count
}

/// Reads processes' usage: the system's clock tick and page size once.
#[derive(Debug, Clone, Copy)]
pub struct UsageReader {
    ticks_per_second: u64,
    page_size: u64,
    /// When the system booted, in Unix nanoseconds (`btime` of `/proc/stat`).
    boot_unix_ns: u64,
}

impl UsageReader {
    pub fn new() -> Self {
        // SAFETY: sysconf has no memory effects.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let boot_seconds = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                stat.lines()
                    .find_map(|line| line.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Self {
            ticks_per_second: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
            page_size: u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
            boot_unix_ns: boot_seconds.saturating_mul(1_000_000_000),
        }
    }

    /// One process's usage now.
    pub fn read(&self, pid: u32) -> io::Result<ProcessUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        self.usage(&stat, &status).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat has not the fields of a process"),
            )
        })
    }

    fn usage(&self, stat: &str, status: &str) -> Option<ProcessUsage> {
        let fields = parse_stat(stat)?;
        let (voluntary_switches, involuntary_switches, cpus_allowed) = parse_status(status);
        let seconds = |ticks: u64| ticks as f64 / self.ticks_per_second as f64;
        Some(ProcessUsage {
            user_seconds: seconds(fields.user_ticks),
            system_seconds: seconds(fields.system_ticks),
            resident_bytes: fields.resident_pages.saturating_mul(self.page_size),
            virtual_bytes: fields.virtual_bytes,
            threads: fields.threads,
            minor_faults: fields.minor_faults,
            major_faults: fields.major_faults,
            voluntary_switches,
            involuntary_switches,
            cpus_allowed,
            start_ticks: fields.start_ticks,
        })
    }

    /// When a process of this usage started, in Unix nanoseconds (to the
    /// second of `btime`).
    pub fn start_unix_ns(&self, usage: &ProcessUsage) -> u64 {
        let after_boot =
            u128::from(usage.start_ticks) * 1_000_000_000 / u128::from(self.ticks_per_second);
        self.boot_unix_ns
            .saturating_add(u64::try_from(after_boot).unwrap_or(u64::MAX))
    }
}

impl Default for UsageReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads the instrumented processes' usage when the process metrics are on,
/// counting what could not be read.
#[derive(Debug, Default)]
pub struct ProcessSampler {
    reader: UsageReader,
    /// Reads that failed for another reason than the process being gone
    /// (procfs mounted with `hidepid`, a foreign format).
    pub failed_reads: u64,
    warned: bool,
}

impl ProcessSampler {
    /// Each process's usage and start (Unix ns); processes gone meanwhile are skipped.
    pub fn sample(&mut self, pids: impl Iterator<Item = u32>) -> Vec<(u32, ProcessUsage, u64)> {
        let mut readings = Vec::new();
        for pid in pids {
            match self.reader.read(pid) {
                Ok(usage) => readings.push((pid, usage, self.reader.start_unix_ns(&usage))),
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    self.failed_reads += 1;
                    if !self.warned {
                        self.warned = true;
                        tracing::warn!(
                            "process metrics: cannot read /proc/{pid}/stat or status ({e}); such processes get no process metrics"
                        );
                    }
                }
            }
        }
        readings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's own stat and status, as the kernel writes them.
    fn own_thread_files() -> (String, String) {
        // SAFETY: gettid has no memory effects.
        let tid = unsafe { libc::gettid() };
        let read = |file: &str| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/{file}"))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        (read("stat"), read("status"))
    }

    #[test]
    fn this_process_reads_as_the_kernel_counts_it() {
        let reader = UsageReader::new();
        let pid = std::process::id();
        // Some CPU time and some resident memory of our own.
        let mut touched = vec![1u8; 32 << 20];
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let at = (x as usize) % touched.len();
            touched[at] = x as u8;
        }
        let usage = reader.read(pid).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            usage.user_seconds + usage.system_seconds >= 0.25,
            "{usage:?}"
        );
        let vm_rss_kib: u64 = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        assert!(usage.resident_bytes >= 32 << 20, "{usage:?}");
        let difference = usage.resident_bytes.abs_diff(vm_rss_kib * 1024);
        assert!(
            difference < 8 << 20,
            "{usage:?} against VmRSS {vm_rss_kib} kB"
        );
        assert!(usage.virtual_bytes >= usage.resident_bytes, "{usage:?}");
        assert!(usage.threads >= 1, "{usage:?}");
        assert!(usage.minor_faults > 0, "{usage:?}");
        assert!(usage.voluntary_switches + usage.involuntary_switches > 0);
        let online = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert!(usage.cpus_allowed >= 1 && usage.cpus_allowed <= online.max(1) * 64);
        // Started within the last hour of the test run, in Unix time.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let start = reader.start_unix_ns(&usage);
        assert!(start <= now + 1_000_000_000, "{start} > {now}");
        assert!(now - start < 3_600_000_000_000, "{start} vs {now}");
        assert!(touched.iter().any(|b| *b != 1) || x == 0);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        // A thread may name itself anything (15 bytes): the kernel writes it as is.
        let handle = std::thread::spawn(|| {
            let name = c"a) 1 2 (b) 3";
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of ours.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
            own_thread_files()
        });
        let (stat, status) = handle.join().unwrap_or_else(|_| panic!("thread"));
        assert!(stat.contains("(a) 1 2 (b) 3)"), "{stat}");
        let reader = UsageReader::new();
        let usage = reader
            .usage(&stat, &status)
            .unwrap_or_else(|| panic!("{stat}"));
        let plain = {
            let (stat, status) = own_thread_files();
            reader
                .usage(&stat, &status)
                .unwrap_or_else(|| panic!("{stat}"))
        };
        // The same process (its start), and its sizes where they belong,
        // however it was named (other tests' threads come and go meanwhile).
        assert_eq!(usage.start_ticks, plain.start_ticks, "{stat}");
        assert!(usage.virtual_bytes >= usage.resident_bytes, "{stat}");
        assert!(usage.resident_bytes > 1 << 20, "{stat}");
        assert!(usage.threads >= 2, "{stat}");
    }

    #[test]
    fn truncated_or_foreign_text_reads_as_nothing() {
        let (stat, status) = own_thread_files();
        let reader = UsageReader::new();
        for cut in 0..stat.len() {
            // A cut inside a number still parses, as a smaller number: no panic.
            let _ = reader.usage(&stat[..cut], &status);
        }
        // Through field 24 (rss) it reads; one field fewer, it does not.
        let name_end = stat.rfind(')').unwrap_or(0) + 1;
        let fields: Vec<&str> = stat[name_end..].split_ascii_whitespace().collect();
        let through = |last_field: usize| {
            format!(
                "{} {}",
                &stat[..name_end],
                fields[..last_field - 2].join(" ")
            )
        };
        assert!(parse_stat(&through(24)).is_some(), "{stat}");
        assert!(parse_stat(&through(23)).is_none(), "{stat}");
        assert!(parse_stat("1 (x) R 1 2 3").is_none());
        assert!(parse_stat("no parenthesis at all").is_none());
        assert!(parse_stat("1 (x) R 1 2 3 4 5 6 a b c d e f g h i j k l m n").is_none());
        assert_eq!(
            parse_status("garbage\n:\nvoluntary_ctxt_switches:\tx\n"),
            (0, 0, 1)
        );
    }

    #[test]
    fn cpu_lists_count_their_cpus() {
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len("0-1"), 2);
        assert_eq!(cpu_list_len("0-3,8,10-11"), 7);
        assert_eq!(cpu_list_len("3-1"), 0);
        assert_eq!(cpu_list_len("x"), 0);
        assert_eq!(parse_status("Cpus_allowed_list:\t0-3\n").2, 4);
        assert_eq!(parse_status("Cpus_allowed_list:\tbad\n").2, 1);
    }
}
