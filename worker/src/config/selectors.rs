//! What discovery decides with: the facts known about a process, the
//! selectors (`discovery.instrument` entries and exclusions) and
//! [`decide`], and the container id read from `/proc/PID/cgroup`.

use zerotrace_shared::ports::PortSelection;

use super::glob::{ExePattern, Glob};
use super::otel_sdk::SamplerSetting;
use super::routes::ServiceRoutes;

/// What discovery knows about a process, for [`Selector::matches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: u32,
    /// Full path of the executable, when known (`/proc/PID/exe`, or the loader's
    /// `DescribeProcess`). Without it no `exe_path` criterion matches.
    pub exe_path: Option<String>,
    pub comm: String,
    /// TCP ports the process listens on.
    pub open_ports: Vec<u16>,
    /// From [`container_id_from_cgroup`].
    pub container_id: Option<String>,
    /// The program's language (`go`, `python`…, [`crate::process_language`]),
    /// when a selector asks. Without it no `languages` criterion matches.
    pub language: Option<&'static str>,
}

/// One `discovery.instrument` (or exclusion) entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// Where it came from: `discovery.instrument[0]`, `OTEL_EBPF_OPEN_PORT`, ...
    pub origin: String,
    /// `service.name` for matched processes.
    pub name: Option<String>,
    /// `service.namespace` for matched processes.
    pub namespace: Option<String>,
    pub open_ports: Option<PortSelection>,
    pub exe_path: Option<ExePattern>,
    pub containers_only: bool,
    pub target_pids: Vec<u32>,
    /// OBI's `languages`: a glob over the program's language name.
    pub languages: Option<Glob>,
    /// The entry's `exports` and `sampler`: what its processes send.
    pub export: ServiceExport,
    /// The entry's own `routes`; `export.routes` is their place among
    /// every entry's (`RouteSettings::services`).
    pub routes: Option<ServiceRoutes>,
}

/// What an `instrument` entry's `exports` and `sampler` say about the
/// processes it selects. The default (neither written) changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceExport {
    /// `exports` written without `traces`: no spans of these processes
    /// reach the trace export (the trace printer still shows them).
    pub traces_blocked: bool,
    /// `exports` written without `metrics`: their spans count in no metric
    /// (RED, span metrics, service graph), and their process metrics stay out.
    pub metrics_blocked: bool,
    /// Their own sampler, in place of `otel_traces_export.sampler`.
    pub sampler: Option<SamplerSetting>,
    /// Their own route patterns: an index in `RouteSettings::services`.
    pub routes: Option<u16>,
}

impl ServiceExport {
    /// True when it changes nothing: the process needs no entry of its own.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Selector {
    /// Ports, executable, PIDs and languages are criteria; `containers_only`
    /// only narrows them.
    pub fn has_criteria(&self) -> bool {
        self.open_ports.is_some()
            || self.exe_path.is_some()
            || !self.target_pids.is_empty()
            || self.languages.is_some()
    }

    /// True when every criterion given matches (an entry without criteria matches nothing).
    pub fn matches(&self, p: &ProcessFacts) -> bool {
        self.has_criteria()
            && self
                .open_ports
                .as_ref()
                .is_none_or(|ports| p.open_ports.iter().any(|&port| ports.contains(port)))
            && self.exe_path.as_ref().is_none_or(|pattern| {
                p.exe_path
                    .as_deref()
                    .is_some_and(|exe| pattern.matches(exe))
            })
            && (self.target_pids.is_empty() || self.target_pids.contains(&p.pid))
            && self
                .languages
                .as_ref()
                .is_none_or(|glob| p.language.is_some_and(|language| glob.matches(language)))
            && (!self.containers_only || p.container_id.is_some())
    }
}

/// The instrument entry a process matches first, unless an exclusion matches it.
pub fn decide<'a>(
    instrument: &'a [Selector],
    exclude: &[Selector],
    p: &ProcessFacts,
) -> Option<&'a Selector> {
    if exclude.iter().any(|s| s.matches(p)) {
        return None;
    }
    instrument.iter().find(|s| s.matches(p))
}

/// The container id in `/proc/PID/cgroup` contents (cgroup v1 `N:ctrl:/path`
/// lines or v2 `0::/path`): the innermost path segment that is a 64-hex id,
/// bare (`/docker/<id>`, `/kubepods/.../<id>`) or in a systemd scope
/// (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope`). Container monitors (`libpod-conmon-…`,
/// `crio-conmon-…`) are not containers.
pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.rsplit('/').find_map(container_id_of_segment)
    })
}

fn container_id_of_segment(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    if name.contains("conmon") {
        return None;
    }
    let id = [
        "docker-",
        "cri-containerd-",
        "crio-",
        "libpod-",
        "containerd-",
    ]
    .iter()
    .find_map(|prefix| name.strip_prefix(prefix))
    .unwrap_or(name);
    let is_id = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_id.then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::SamplerSetting;

    #[test]
    fn selector_logic_and_or_ranges_exclude() {
        let config = ok(
            "discovery:
  instrument:
    - open_ports: 8000-8999
      exe_path: '*/python3*'
    - open_ports: 443
  exclude_instrument:
    - open_ports: 8500-8599
    - exe_path: '*/debug-*'
",
            &[],
        );
        // AND within an entry: port range and exe glob.
        assert!(config
            .decide(&facts(1, "/usr/bin/python3.11", &[8000], false))
            .is_some());
        assert!(config
            .decide(&facts(2, "/usr/bin/python3.11", &[8999], false))
            .is_some());
        assert!(config
            .decide(&facts(3, "/usr/bin/python3.11", &[9000], false))
            .is_none());
        assert!(config
            .decide(&facts(4, "/usr/bin/node", &[8000], false))
            .is_none());
        // OR across entries.
        let second = config.decide(&facts(5, "/usr/bin/node", &[22, 443], false));
        assert_eq!(
            second.map(|s| s.origin.as_str()),
            Some("discovery.instrument[1]")
        );
        // Exclusions win.
        assert!(config
            .decide(&facts(6, "/usr/bin/python3", &[8550], false))
            .is_none());
        assert!(config
            .decide(&facts(7, "/opt/debug-server", &[443], false))
            .is_none());
        // Default exclusion: other agents.
        assert!(config
            .decide(&facts(8, "/usr/bin/otelcol-contrib", &[443], false))
            .is_none());
        // Unknown executable: an exe criterion cannot match.
        let mut unknown = facts(9, "/x", &[8000], false);
        unknown.exe_path = None;
        assert!(config.decide(&unknown).is_none());
        unknown.open_ports = vec![443];
        assert!(config.decide(&unknown).is_some());
    }

    #[test]
    fn languages_are_a_glob_over_the_program_s_language() {
        let config = ok(
            "discovery:
  instrument:
    - languages: '{java,go}'
    - languages: python
      open_ports: 8000-8999
  exclude_instrument:
    - languages: go
      exe_path: '*/debug-*'
",
            &[],
        );
        let of = |exe: &str, ports: &[u16], language: Option<&'static str>| {
            let mut f = facts(1, exe, ports, false);
            f.language = language;
            config.decide(&f).map(|s| s.origin.clone())
        };
        let first = Some("discovery.instrument[0]".to_owned());
        assert_eq!(of("/opt/app/server", &[], Some("go")), first);
        assert_eq!(of("/usr/bin/java", &[], Some("java")), first);
        // Unknown (not judged): no languages criterion matches.
        assert_eq!(of("/usr/bin/java", &[], None), None);
        // AND within an entry.
        assert_eq!(of("/usr/bin/python3", &[22], Some("python")), None);
        assert_eq!(
            of("/usr/bin/python3", &[8080], Some("python")),
            Some("discovery.instrument[1]".to_owned())
        );
        assert_eq!(of("/usr/sbin/nginx", &[8080], Some("generic")), None);
        // An exclusion by language and path.
        assert_eq!(of("/opt/debug-server", &[], Some("go")), None);
        // Printed and read back.
        let again = ok(&config.to_yaml(), &[]);
        assert_eq!(again.instrument, config.instrument);
        // The environment's selector, AND with the port.
        let env = ok(
            "",
            &[
                ("OTEL_EBPF_AUTO_TARGET_LANGUAGE", "nodejs"),
                ("OTEL_EBPF_OPEN_PORT", "3000"),
            ],
        );
        let mut node = facts(2, "/usr/bin/node", &[3000], false);
        assert!(env.decide(&node).is_none());
        node.language = Some("nodejs");
        assert!(env.decide(&node).is_some());
        // A glob that names no language zerotrace tells: warned, or refused in the variable.
        let typo = ok(
            "discovery:\n  instrument:\n    - languages: pyhton\n      open_ports: 80\n",
            &[],
        );
        assert!(
            typo.warnings
                .iter()
                .any(|w| w.contains("discovery.instrument[0].languages") && w.contains("none")),
            "{:?}",
            typo.warnings
        );
        assert!(err("", &[("OTEL_EBPF_AUTO_TARGET_LANGUAGE", "rust")]).contains("rust"));
        assert!(
            err("discovery:\n  instrument:\n    - languages: '{go'\n", &[])
                .contains("discovery.instrument[0].languages")
        );
    }

    #[test]
    fn entries_without_criteria_match_nothing() {
        let empty = Selector {
            origin: "x".into(),
            name: None,
            namespace: None,
            open_ports: None,
            exe_path: None,
            containers_only: true,
            target_pids: Vec::new(),
            languages: None,
            export: ServiceExport::default(),
            routes: None,
        };
        assert!(!empty.matches(&facts(1, "/bin/a", &[80], true)));
        assert!(decide(&[empty], &[], &facts(1, "/bin/a", &[80], true)).is_none());
        let message = err(
            "discovery:\n  instrument:\n    - containers_only: true\n",
            &[],
        );
        assert!(
            message.contains("discovery.instrument[0]")
                && message.contains("no selection criteria"),
            "{message}"
        );
    }

    #[test]
    fn an_entry_s_exports_and_sampler_are_its_processes_own() {
        let config = ok(
            "discovery:
  instrument:
    - open_ports: 8001
      exports: [traces]
    - open_ports: 8002
      exports: metrics
    - open_ports: 8003
      exports: []
    - open_ports: 8004
      exports: [logs, traces, metrics]
      sampler: {name: traceidratio, arg: '0.25'}
    - open_ports: 8005
      exports: null
      sampler: {name: always_off}
    - open_ports: 8006
      sampler: {}
    - open_ports: 8007
      routes: {incoming: ['/items/{id}']}
    - open_ports: 8008
      routes: {outgoing: ['/api/:v/users'], incoming: null}
    - open_ports: 8009
      routes: {}
  exclude_instrument:
    - exe_path: '*/debug-*'
      exports: [traces]
",
            &[],
        );
        let warnings = config.warnings.join("\n");
        let export_of = |port: u16| {
            config
                .decide(&facts(1, "/usr/bin/app", &[port], false))
                .map(|s| s.export)
        };
        let export = |traces_blocked, metrics_blocked, sampler| {
            Some(ServiceExport {
                traces_blocked,
                metrics_blocked,
                sampler,
                routes: None,
            })
        };
        assert_eq!(export_of(8001), export(false, true, None));
        assert_eq!(export_of(8002), export(true, false, None));
        assert_eq!(export_of(8003), export(true, true, None));
        assert_eq!(
            export_of(8004),
            export(false, false, Some(SamplerSetting::TraceIdRatio(0.25)))
        );
        assert_eq!(
            export_of(8005),
            export(false, false, Some(SamplerSetting::AlwaysOff))
        );
        // As OTEL_TRACES_SAMPLER without a name.
        assert_eq!(
            export_of(8006),
            export(false, false, Some(SamplerSetting::ParentBasedAlwaysOn))
        );
        assert!(export_of(8005).is_some_and(|e| !e.is_default()));
        // Entries with routes are numbered for the route matcher; empty ones are none.
        assert_eq!(export_of(8007).and_then(|e| e.routes), Some(0));
        assert_eq!(export_of(8008).and_then(|e| e.routes), Some(1));
        assert_eq!(export_of(8009).and_then(|e| e.routes), None);
        assert_eq!(config.routes.services.len(), 2);
        assert_eq!(
            config.routes.services[1].outgoing,
            vec!["/api/:v/users".to_owned()]
        );
        // Meaningless in an exclusion: said, not refused.
        assert!(
            warnings.contains("discovery.exclude_instrument[0].exports"),
            "{warnings}"
        );
        for (yaml, path, words) in [
            (
                "exports: [trace]",
                "discovery.instrument[0].exports",
                "\"trace\" is not a signal",
            ),
            (
                "sampler: {name: sometimes}",
                "discovery.instrument[0].sampler.name",
                "always_on",
            ),
            (
                "sampler: {name: traceidratio, arg: '1.5'}",
                "discovery.instrument[0].sampler.arg",
                "probability",
            ),
            (
                "sampler: {name: always_on, ratio: 1}",
                "discovery.instrument[0].sampler",
                "ratio",
            ),
        ] {
            let message = err(
                &format!("discovery:\n  instrument:\n    - open_ports: 80\n      {yaml}\n"),
                &[],
            );
            assert!(message.contains(path), "{path} not in {message}");
            assert!(message.contains(words), "{words} not in {message}");
        }
    }

    #[test]
    fn cgroup_formats_give_container_ids() {
        let id = "3f2a9c0b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
        let with_id = [
            format!("0::/system.slice/docker-{id}.scope"),
            format!("12:memory:/docker/{id}\n11:cpu,cpuacct:/docker/{id}\n1:name=systemd:/docker/{id}"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/cri-containerd-{id}.scope"),
            format!("11:devices:/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/{id}"),
            format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{id}.scope"),
            format!("0::/machine.slice/libpod-{id}.scope"),
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope/container"),
            format!("5:pids:/\n4:cpuset:/ecs/task-1/{id}\n0::/"),
        ];
        for text in &with_id {
            assert_eq!(
                container_id_from_cgroup(text).as_deref(),
                Some(id),
                "{text}"
            );
        }
        for text in [
            "0::/user.slice/user-1000.slice/session-2.scope".to_string(),
            "0::/system.slice/nginx.service".to_string(),
            format!("0::/machine.slice/libpod-conmon-{id}.scope"),
            format!("0::/system.slice/crio-conmon-{id}.scope"),
            "12:memory:/\n0::/".to_string(),
            format!("0::/docker/{}", &id[..63]),
            format!("0::/docker/{}", id.to_uppercase()),
            String::new(),
        ] {
            assert_eq!(container_id_from_cgroup(&text), None, "{text}");
        }
        let nested = format!("0::/docker/{id}/docker/{}", "b".repeat(64));
        assert_eq!(
            container_id_from_cgroup(&nested),
            Some("b".repeat(64)),
            "the innermost container"
        );
    }
}
