//! The `discovery` section (`instrument`, `exclude_instrument`,
//! `default_exclude_instrument`, OBI's older `services` forms) and the
//! selector of `OTEL_EBPF_OPEN_PORT` / `OTEL_EBPF_AUTO_TARGET_EXE` (or the
//! file's top-level `open_port` / `executable_path`), read into the
//! [`Selector`] lists discovery decides with.

use serde::Deserialize;
use zerotrace_shared::ports::PortSelection;

use super::environment::env_value;
use super::error::{child, ConfigError, Ctx};
use super::export::{service_sampler, RawSampler};
use super::glob::{compile_glob, compile_regex, ExeField, ExePattern, Glob, GlobField, RegexField};
use super::obi_keys::{unknown_key_message, vet, Obi, DISCOVERY, SELECTOR};
use super::routes::ServiceRoutes;
use super::selectors::{Selector, ServiceExport};
use super::values::{non_empty, present_list, Extra, PidList, PortList, StringList, Text};
use crate::process_language::LANGUAGE_NAMES;

/// OBI's default exclusion (plus zerotrace itself): other agents and collectors.
const BUILTIN_DEFAULT_EXCLUDE: &str =
    "{*beyla,*alloy,*prometheus-config-reloader,*ebpf-instrument,\
     *obi,*otelcol,*otelcol-contrib,*otelcol-contrib[!/]*,*zerotrace,*zerotrace-worker}";

/// The `discovery` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawDiscovery {
    #[serde(deserialize_with = "present_list")]
    instrument: Option<Vec<RawSelector<GlobField>>>,
    #[serde(deserialize_with = "present_list")]
    exclude_instrument: Option<Vec<RawSelector<GlobField>>>,
    #[serde(deserialize_with = "present_list")]
    default_exclude_instrument: Option<Vec<RawSelector<GlobField>>>,
    #[serde(deserialize_with = "present_list")]
    services: Option<Vec<RawSelector<RegexField>>>,
    #[serde(deserialize_with = "present_list")]
    exclude_services: Option<Vec<RawSelector<RegexField>>>,
    #[serde(deserialize_with = "present_list")]
    default_exclude_services: Option<Vec<RawSelector<RegexField>>>,
    exclude_otel_instrumented_services: Option<bool>,
    #[serde(flatten)]
    pub(super) other: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(default, bound(deserialize = "P: Deserialize<'de>"))]
struct RawSelector<P> {
    name: Option<Text>,
    namespace: Option<Text>,
    open_ports: Option<PortList>,
    exe_path: Option<P>,
    exe_path_regexp: Option<RegexField>,
    containers_only: bool,
    target_pids: Option<PidList>,
    languages: Option<Text>,
    /// OBI's per-service signals: absent or null, all; `[]`, none.
    exports: Option<StringList>,
    sampler: Option<RawSampler>,
    routes: Option<ServiceRoutes>,
    #[serde(flatten)]
    pub(super) other: Extra,
}

impl<P> Default for RawSelector<P> {
    fn default() -> Self {
        Self {
            name: None,
            namespace: None,
            open_ports: None,
            exe_path: None,
            exe_path_regexp: None,
            containers_only: false,
            target_pids: None,
            languages: None,
            exports: None,
            sampler: None,
            routes: None,
            other: Extra::new(),
        }
    }
}

/// The section's own keys: the OBI keys it does not read, and one it reads to warn.
pub(super) fn vet_discovery(ctx: &mut Ctx, discovery: &RawDiscovery) -> Result<(), ConfigError> {
    vet(ctx, &DISCOVERY, "discovery", &discovery.other)?;
    if discovery.exclude_otel_instrumented_services == Some(true) {
        ctx.warn(
            "discovery.exclude_otel_instrumented_services",
            "ignored: zerotrace cannot tell whether a process already exports OpenTelemetry data",
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Instrument,
    Exclude,
}

/// Checks an entry's untyped keys; `Some(reason)` when the entry can never match.
fn vet_selector(
    ctx: &mut Ctx,
    path: &str,
    extra: &Extra,
    kind: ListKind,
) -> Result<Option<String>, ConfigError> {
    let mut never = None;
    for key in extra.keys() {
        let at = child(path, key);
        match (SELECTOR.lookup(key), kind) {
            (Some(Obi::Unevaluable(why)), ListKind::Instrument) => {
                never.get_or_insert(format!("{key}: {why}"));
            }
            (Some(Obi::Unevaluable(why)), ListKind::Exclude) => {
                let why = format!("{why}, so this exclusion could not be honoured");
                return Err(ctx.err(at, format!("not supported by zerotrace: {why}")));
            }
            (Some(Obi::Ignored(why)), _) => ctx.warn(&at, format!("ignored: {why}")),
            (Some(Obi::Unsupported(why)), _) => {
                return Err(ctx.err(at, format!("not supported by zerotrace: {why}")))
            }
            (None, _) => return Err(ctx.err(at, unknown_key_message(key, &SELECTOR))),
        }
    }
    Ok(never)
}

/// One entry; `None` when it can never match (skipped, with a warning).
fn build_selector<P: ExeField>(
    ctx: &mut Ctx,
    path: &str,
    raw: RawSelector<P>,
    kind: ListKind,
) -> Result<Option<Selector>, ConfigError> {
    let never = vet_selector(ctx, path, &raw.other, kind)?;
    if raw.exe_path.is_some() && raw.exe_path_regexp.is_some() {
        return Err(ctx.err(
            child(path, "exe_path_regexp"),
            "set either exe_path or exe_path_regexp, not both",
        ));
    }
    let exe_path = match (raw.exe_path, raw.exe_path_regexp) {
        (Some(field), _) => Some(field.into_pattern()),
        (None, regexp) => regexp.map(|RegexField(pattern)| pattern),
    };
    let languages = match non_empty(raw.languages) {
        Some(text) => Some(language_glob(ctx, &child(path, "languages"), &text)?),
        None => None,
    };
    let export = service_export(ctx, path, raw.exports, raw.sampler.as_ref(), kind)?;
    let selector = Selector {
        origin: path.to_owned(),
        name: non_empty(raw.name),
        namespace: non_empty(raw.namespace),
        open_ports: raw.open_ports.map(|p| p.0).filter(|p| !p.is_empty()),
        exe_path,
        containers_only: raw.containers_only,
        target_pids: raw.target_pids.map(|p| p.0).unwrap_or_default(),
        languages,
        export,
        routes: service_routes(ctx, path, raw.routes, kind)?,
    };
    if let Some(reason) = never {
        ctx.warn(
            path,
            format!("never matches ({reason}); the entry is skipped"),
        );
        return Ok(None);
    }
    if !selector.has_criteria() {
        return Err(ctx.err(
            path,
            "defines no selection criteria (expected at least one of open_ports, exe_path, target_pids, languages)",
        ));
    }
    Ok(Some(selector))
}

/// An entry's `exports` (the signals its processes send: `traces`,
/// `metrics`; OBI's `logs` is accepted, zerotrace has no logs) and its own
/// `sampler`. In an exclusion they would mean nothing: warned about.
fn service_export(
    ctx: &mut Ctx,
    path: &str,
    exports: Option<StringList>,
    sampler: Option<&RawSampler>,
    kind: ListKind,
) -> Result<ServiceExport, ConfigError> {
    if kind == ListKind::Exclude {
        for (written, key) in [
            (exports.is_some(), "exports"),
            (sampler.is_some(), "sampler"),
        ] {
            if written {
                ctx.warn(
                    &child(path, key),
                    "ignored: an excluded process exports nothing",
                );
            }
        }
        return Ok(ServiceExport::default());
    }
    let mut export = ServiceExport::default();
    if let Some(StringList(signals)) = exports {
        let at = child(path, "exports");
        for signal in &signals {
            if !["traces", "metrics", "logs"].contains(&signal.as_str()) {
                return Err(ctx.err(
                    &at,
                    format!("{signal:?} is not a signal (expected traces, metrics or logs)"),
                ));
            }
        }
        export.traces_blocked = !signals.iter().any(|s| s == "traces");
        export.metrics_blocked = !signals.iter().any(|s| s == "metrics");
    }
    if let Some(raw) = sampler {
        export.sampler = Some(service_sampler(ctx, &child(path, "sampler"), raw)?);
    }
    Ok(export)
}

/// An entry's own `routes`, their patterns checked; in an exclusion they
/// would mean nothing: warned about.
fn service_routes(
    ctx: &mut Ctx,
    path: &str,
    routes: Option<ServiceRoutes>,
    kind: ListKind,
) -> Result<Option<ServiceRoutes>, ConfigError> {
    let Some(routes) = routes else {
        return Ok(None);
    };
    let at = child(path, "routes");
    if kind == ListKind::Exclude {
        ctx.warn(&at, "ignored: an excluded process has no routes");
        return Ok(None);
    }
    if let Err(e) = routes.check() {
        let (key, rest) = e.split_once(' ').unwrap_or((e.as_str(), ""));
        return Err(ctx.err(format!("{at}.{key}"), rest.trim()));
    }
    Ok((!routes.incoming.is_empty() || !routes.outgoing.is_empty()).then_some(routes))
}

/// A `languages` glob; one that names no language zerotrace tells is warned
/// about (it would never match).
fn language_glob(ctx: &mut Ctx, at: &str, text: &str) -> Result<Glob, ConfigError> {
    let glob = compile_glob(text).map_err(|e| ctx.err(at, e))?;
    if !LANGUAGE_NAMES.iter().any(|name| glob.matches(name)) {
        ctx.warn(
            at,
            format!(
                "matches none of the languages zerotrace tells ({}): the entry matches nothing",
                LANGUAGE_NAMES.join(", ")
            ),
        );
    }
    Ok(glob)
}

fn build_list<P: ExeField>(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<Vec<RawSelector<P>>>,
    kind: ListKind,
) -> Result<Vec<Selector>, ConfigError> {
    let mut out = Vec::new();
    for (i, entry) in raw.unwrap_or_default().into_iter().enumerate() {
        out.extend(build_selector(ctx, &format!("{path}[{i}]"), entry, kind)?);
    }
    Ok(out)
}

fn builtin_default_exclude() -> Result<Selector, ConfigError> {
    let glob = compile_glob(BUILTIN_DEFAULT_EXCLUDE).map_err(ConfigError::Invalid)?;
    Ok(Selector {
        origin: "discovery.default_exclude_instrument (built-in)".into(),
        name: None,
        namespace: None,
        open_ports: None,
        exe_path: Some(ExePattern::Glob(glob)),
        containers_only: false,
        target_pids: Vec::new(),
        languages: None,
        export: ServiceExport::default(),
        routes: None,
    })
}

/// The selector of `OTEL_EBPF_OPEN_PORT` / `OTEL_EBPF_AUTO_TARGET_EXE` (or the
/// file's top-level `open_port` / `executable_path`), both criteria together.
pub(super) fn env_selector(
    env: &dyn Fn(&str) -> Option<String>,
    open_port: Option<PortList>,
    executable_path: Option<RegexField>,
) -> Result<Option<Selector>, ConfigError> {
    let mut origin = Vec::new();
    let open_ports = match env_value(env, "OTEL_EBPF_OPEN_PORT") {
        Some(text) => {
            origin.push("OTEL_EBPF_OPEN_PORT");
            let ports = PortSelection::parse(&text)
                .map_err(|e| ConfigError::Env(format!("OTEL_EBPF_OPEN_PORT: {e}")))?;
            Some(ports)
        }
        None => open_port
            .map(|p| p.0)
            .filter(|p| !p.is_empty())
            .inspect(|_| origin.push("open_port")),
    };
    let exe_path = env_exe(env, &mut origin)?.or_else(|| {
        executable_path
            .map(|RegexField(p)| p)
            .inspect(|_| origin.push("executable_path"))
    });
    let languages = match env_value(env, "OTEL_EBPF_AUTO_TARGET_LANGUAGE") {
        Some(text) => {
            origin.push("OTEL_EBPF_AUTO_TARGET_LANGUAGE");
            let glob = compile_glob(text.trim())
                .map_err(|e| ConfigError::Env(format!("OTEL_EBPF_AUTO_TARGET_LANGUAGE: {e}")))?;
            if !LANGUAGE_NAMES.iter().any(|name| glob.matches(name)) {
                return Err(ConfigError::Env(format!(
                    "OTEL_EBPF_AUTO_TARGET_LANGUAGE={text:?} matches none of the languages \
                     zerotrace tells ({})",
                    LANGUAGE_NAMES.join(", ")
                )));
            }
            Some(glob)
        }
        None => None,
    };
    if open_ports.is_none() && exe_path.is_none() && languages.is_none() {
        return Ok(None);
    }
    Ok(Some(Selector {
        origin: origin.join(" + "),
        name: None,
        namespace: None,
        open_ports,
        exe_path,
        containers_only: false,
        target_pids: Vec::new(),
        languages,
        export: ServiceExport::default(),
        routes: None,
    }))
}

fn env_exe(
    env: &dyn Fn(&str) -> Option<String>,
    origin: &mut Vec<&'static str>,
) -> Result<Option<ExePattern>, ConfigError> {
    for var in ["OTEL_EBPF_AUTO_TARGET_EXE", "OTEL_GO_AUTO_TARGET_EXE"] {
        if let Some(text) = env_value(env, var) {
            origin.push(var);
            let glob = compile_glob(&text).map_err(|e| ConfigError::Env(format!("{var}: {e}")))?;
            return Ok(Some(ExePattern::Glob(glob)));
        }
    }
    if let Some(text) = env_value(env, "OTEL_EBPF_EXECUTABLE_PATH") {
        origin.push("OTEL_EBPF_EXECUTABLE_PATH");
        let regex = compile_regex(&text)
            .map_err(|e| ConfigError::Env(format!("OTEL_EBPF_EXECUTABLE_PATH: {e}")))?;
        return Ok(Some(ExePattern::Regex(regex)));
    }
    Ok(None)
}

/// `(instrument, exclude)`: the file's lists, the environment's selector last,
/// then the exclusions with the default ones last.
pub(super) fn selectors(
    ctx: &mut Ctx,
    raw: Option<RawDiscovery>,
    env_selector: Option<Selector>,
) -> Result<(Vec<Selector>, Vec<Selector>), ConfigError> {
    let raw = raw.unwrap_or_default();
    let use_services = raw.instrument.as_ref().is_none_or(Vec::is_empty) && raw.services.is_some();
    if !use_services && raw.services.as_ref().is_some_and(|s| !s.is_empty()) {
        ctx.warn(
            "discovery.services",
            "ignored: discovery.instrument is set (as in OBI)",
        );
    }
    let mut instrument = if use_services {
        build_list(
            ctx,
            "discovery.services",
            raw.services,
            ListKind::Instrument,
        )?
    } else {
        build_list(
            ctx,
            "discovery.instrument",
            raw.instrument,
            ListKind::Instrument,
        )?
    };
    instrument.extend(env_selector);
    let mut exclude = build_list(
        ctx,
        "discovery.exclude_instrument",
        raw.exclude_instrument,
        ListKind::Exclude,
    )?;
    exclude.extend(build_list(
        ctx,
        "discovery.exclude_services",
        raw.exclude_services,
        ListKind::Exclude,
    )?);
    match (raw.default_exclude_instrument, raw.default_exclude_services) {
        (Some(list), _) => exclude.extend(build_list(
            ctx,
            "discovery.default_exclude_instrument",
            Some(list),
            ListKind::Exclude,
        )?),
        (None, Some(list)) => exclude.extend(build_list(
            ctx,
            "discovery.default_exclude_services",
            Some(list),
            ListKind::Exclude,
        )?),
        (None, None) => exclude.push(builtin_default_exclude()?),
    }
    if instrument.is_empty() {
        return Err(ConfigError::Invalid(
            "nothing to instrument: set discovery.instrument in the configuration file, or \
             OTEL_EBPF_OPEN_PORT / OTEL_EBPF_AUTO_TARGET_EXE / OTEL_EBPF_AUTO_TARGET_LANGUAGE \
             (e.g. OTEL_EBPF_OPEN_PORT=8080)"
                .into(),
        ));
    }
    Ok((instrument, exclude))
}

#[cfg(test)]
mod tests {

    use crate::config::glob::ExePattern;
    use crate::config::test_support::*;
    use crate::config::PrinterFormat;

    #[test]
    fn every_selector_key_is_read() {
        let config = ok(
            "discovery:
  instrument:
    - open_ports: 80,443,8000-8999
      exe_path: '{/usr/sbin/nginx,/opt/*/bin/?pp}'
      containers_only: true
      target_pids: [1, 2]
      name: web
      namespace: edge
    - open_ports: [5678, 9000]
    - target_pids: 42
    - exe_path_regexp: python3?$
  exclude_instrument:
    - exe_path: '*prometheus*'
  default_exclude_instrument: []
",
            &[],
        );
        let s = &config.instrument[0];
        assert_eq!(
            s.open_ports.as_ref().map(ToString::to_string).as_deref(),
            Some("80,443,8000-8999")
        );
        assert_eq!(
            s.exe_path.as_ref().map(ExePattern::as_str),
            Some("{/usr/sbin/nginx,/opt/*/bin/?pp}")
        );
        assert!(s.containers_only);
        assert_eq!(s.target_pids, vec![1, 2]);
        let ports = config.instrument[1].open_ports.as_ref();
        assert!(ports.is_some_and(|p| p.contains(5678) && p.contains(9000) && !p.contains(5679)));
        assert_eq!(config.instrument[2].target_pids, vec![42]);
        assert!(matches!(
            config.instrument[3].exe_path,
            Some(ExePattern::Regex(_))
        ));
        assert_eq!(
            config.exclude.len(),
            1,
            "[] turns the default exclusion off"
        );
        assert_eq!(config.exclude[0].origin, "discovery.exclude_instrument[0]");
    }

    #[test]
    fn only_kubernetes_entries_leave_nothing_to_instrument() {
        let message = err("discovery:\n  instrument:\n    - k8s_namespace: '*'\n", &[]);
        assert!(message.contains("nothing to instrument"), "{message}");
    }

    #[test]
    fn deprecated_services_form_uses_regexes() {
        let config = ok(
            "discovery:\n  services:\n    - exe_path: nginx$\n      open_ports: 80\n  exclude_services:\n    - exe_path_regexp: ^/opt/\n",
            &[],
        );
        assert!(config
            .decide(&facts(1, "/usr/sbin/nginx", &[80], false))
            .is_some());
        assert!(config
            .decide(&facts(2, "/opt/nginx", &[80], false))
            .is_none());
        // With `instrument` present, `services` is ignored (as in OBI).
        let config = ok(
            "discovery:\n  instrument:\n    - open_ports: 81\n  services:\n    - open_ports: 80\n",
            &[],
        );
        assert!(config.decide(&facts(1, "/a", &[80], false)).is_none());
        assert!(config
            .warnings
            .iter()
            .any(|w| w.starts_with("discovery.services: ignored")));
        let message = err(
            "discovery:\n  instrument:\n    - exe_path: a\n      exe_path_regexp: b\n",
            &[],
        );
        assert!(
            message.contains("exe_path_regexp") && message.contains("not both"),
            "{message}"
        );
    }

    #[test]
    fn environment_selector_is_added_last() {
        let config = ok(
            "discovery:\n  instrument:\n    - open_ports: 80\n      name: front\n",
            &[
                ("OTEL_EBPF_OPEN_PORT", "8080,9000-9010"),
                ("OTEL_EBPF_AUTO_TARGET_EXE", "*/java"),
            ],
        );
        assert_eq!(config.instrument.len(), 2);
        let env = &config.instrument[1];
        assert_eq!(
            env.origin,
            "OTEL_EBPF_OPEN_PORT + OTEL_EBPF_AUTO_TARGET_EXE"
        );
        // Port AND executable, as in OBI.
        assert!(config
            .decide(&facts(1, "/usr/bin/java", &[9005], false))
            .is_some());
        assert!(config
            .decide(&facts(2, "/usr/bin/node", &[9005], false))
            .is_none());
        // The file's entries come first (their names win).
        let both = config.decide(&facts(3, "/usr/bin/java", &[80, 8080], false));
        assert_eq!(both.and_then(|s| s.name.as_deref()), Some("front"));

        let config = ok("", &[("OTEL_EBPF_OPEN_PORT", "8080")]);
        assert_eq!(config.instrument.len(), 1);
        assert_eq!(
            config.trace_printer,
            PrinterFormat::Text,
            "printer by default without exporters"
        );
        let config = ok("", &[("OTEL_GO_AUTO_TARGET_EXE", "*/app")]);
        assert!(config.decide(&facts(1, "/srv/app", &[], false)).is_some());
        let config = ok("executable_path: 'ngin.$'\n", &[]);
        assert!(config
            .decide(&facts(1, "/usr/sbin/nginx", &[], false))
            .is_some());
    }

    #[test]
    fn default_exclusion_and_its_override() {
        let config = ok("open_port: 4317\n", &[]);
        for exe in [
            "/usr/bin/otelcol-contrib",
            "/opt/beyla",
            "/usr/local/bin/obi",
            "/usr/bin/zerotrace-worker",
        ] {
            assert!(
                config.decide(&facts(1, exe, &[4317], false)).is_none(),
                "{exe}"
            );
        }
        assert!(config
            .decide(&facts(1, "/usr/bin/otelcol-contrib/x", &[4317], false))
            .is_some());
        let config = ok(
            "open_port: 4317\ndiscovery:\n  default_exclude_instrument:\n",
            &[],
        );
        assert!(
            config
                .decide(&facts(1, "/usr/bin/otelcol", &[4317], false))
                .is_some(),
            "null turns it off"
        );
        let config = ok(
            "open_port: 4317\ndiscovery:\n  default_exclude_services:\n    - exe_path: otel\n",
            &[],
        );
        assert!(config
            .decide(&facts(1, "/usr/bin/beyla", &[4317], false))
            .is_some());
        assert!(config
            .decide(&facts(1, "/usr/bin/otelcol", &[4317], false))
            .is_none());
    }
}
