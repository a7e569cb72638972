//! One OpenTelemetry resource per instrumented process: `service.name` from
//! the executable (unless overridden), process and host identity, and the
//! telemetry distribution. Read from world-readable procfs files only.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::discovery::ServiceIdentity;
use crate::process_language::{self, LanguageClues};
pub use crate::semconv::attribute::{bool_attribute, int_attribute, string_attribute};

/// A resource attribute's value as text (numbers and booleans written out);
/// None when the resource does not carry it.
pub fn attribute_text(resource: &Resource, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let value = resource
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        _ => String::new(),
    })
}

fn set_string(resource: &mut Resource, key: &str, value: &str) {
    resource.attributes.retain(|a| a.key != key);
    resource.attributes.push(string_attribute(key, value));
}

fn apply_service_identity(resource: &mut Resource, service: &ServiceIdentity) {
    if let Some(name) = &service.name {
        set_string(resource, "service.name", name);
    }
    if let Some(namespace) = &service.namespace {
        set_string(resource, "service.namespace", namespace);
    }
    if let Some(container) = &service.container_id {
        set_string(resource, "container.id", container);
    }
}

/// What procfs tells about a process, as far as an unprivileged reader can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Base name of argv[0], else the kernel's comm.
    pub executable_name: String,
    /// argv[0] as the process wrote it.
    pub argv0: Option<String>,
    pub command_line: Option<String>,
}

impl ProcessIdentity {
    pub fn read(pid: u32, comm: &str) -> Self {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let executable_name = args
            .first()
            .and_then(|argv0| argv0.rsplit('/').next())
            .filter(|name| !name.is_empty() && comm.starts_with(&name[..name.len().min(15)]))
            .map(str::to_owned)
            .unwrap_or_else(|| comm.to_owned());
        Self {
            pid,
            executable_name,
            argv0: args.first().cloned(),
            command_line: (!args.is_empty()).then(|| args.join(" ")),
        }
    }
}

/// Builds and caches the resource of each process.
pub struct ResourceCatalog {
    host_name: String,
    /// `host.id` ([`super::host_id`]).
    host_id: String,
    service_name_override: Option<String>,
    extra_attributes: Vec<(String, String)>,
    include_command_line: bool,
    by_pid: HashMap<u32, Arc<Resource>>,
    /// Names, container ids and languages discovery assigned to processes.
    identities: HashMap<u32, ServiceIdentity>,
}

impl ResourceCatalog {
    pub fn new(
        service_name_override: Option<String>,
        extra_attributes: Vec<(String, String)>,
        include_command_line: bool,
    ) -> Self {
        let host_name = super::host_id::host_name();
        Self {
            host_id: host_name.clone(),
            host_name,
            service_name_override,
            extra_attributes,
            include_command_line,
            by_pid: HashMap::new(),
            identities: HashMap::new(),
        }
    }

    /// Sets `host.id` (the host name until then).
    pub fn with_host_id(mut self, host_id: String) -> Self {
        self.host_id = host_id;
        self
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// A selector's `name`/`namespace` (they win over OTEL_SERVICE_NAME), the
    /// container id and the program's language.
    /// A changed identity's process gets a new resource.
    pub fn set_identity(&mut self, pid: u32, identity: ServiceIdentity) {
        if self.identities.get(&pid) != Some(&identity) {
            self.by_pid.remove(&pid);
            self.identities.insert(pid, identity);
        }
    }

    pub fn resource_for(&mut self, pid: u32, comm: &str) -> Arc<Resource> {
        if let Some(resource) = self.by_pid.get(&pid) {
            return Arc::clone(resource);
        }
        let identity = ProcessIdentity::read(pid, comm);
        let judged = self.identities.get(&pid).and_then(|i| i.language);
        let language = judged.unwrap_or_else(|| {
            process_language::judge(LanguageClues {
                argv0: identity.argv0.as_deref(),
                ..LanguageClues::default()
            })
        });
        let mut resource = self.build(&identity, language.as_str());
        if let Some(service) = self.identities.get(&pid) {
            apply_service_identity(&mut resource, service);
        }
        let resource = Arc::new(resource);
        self.by_pid.insert(pid, Arc::clone(&resource));
        resource
    }

    /// The resource of a process whose program is written in `language`
    /// (`telemetry.sdk.language`, as OBI reports it: the instrumented
    /// program's, not the agent's).
    pub fn build(&self, identity: &ProcessIdentity, language: &str) -> Resource {
        let service_name = self
            .service_name_override
            .clone()
            .unwrap_or_else(|| identity.executable_name.clone());
        let mut attributes = vec![
            string_attribute("service.name", service_name),
            string_attribute(
                "service.instance.id",
                format!("{}-{}", self.host_name, identity.pid),
            ),
            string_attribute("host.name", self.host_name.clone()),
            string_attribute("host.id", self.host_id.clone()),
            int_attribute("process.pid", i64::from(identity.pid)),
            string_attribute("process.executable.name", identity.executable_name.clone()),
            string_attribute("telemetry.sdk.name", "zerotrace"),
            string_attribute("telemetry.sdk.language", language),
            string_attribute("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
            string_attribute("telemetry.distro.name", "zerotrace"),
            string_attribute("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
        ];
        if self.include_command_line {
            if let Some(command_line) = &identity.command_line {
                attributes.push(string_attribute(
                    "process.command_line",
                    command_line.clone(),
                ));
            }
        }
        for (key, value) in &self.extra_attributes {
            attributes.retain(|a| &a.key != key);
            attributes.push(string_attribute(key, value.clone()));
        }
        Resource {
            attributes,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        }
    }

    /// The process exited: a new process with its pid gets a new resource.
    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
        self.identities.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_language::Language;
    use opentelemetry_proto::tonic::common::v1::any_value;

    fn value_of<'a>(resource: &'a Resource, key: &str) -> Option<&'a any_value::Value> {
        resource
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn a_discovery_entry_s_namespace_wins_over_the_global_one() {
        let mut catalog = ResourceCatalog::new(
            None,
            vec![("service.namespace".into(), "global".into())],
            false,
        );
        let pid = std::process::id();
        let global = catalog.resource_for(pid, "test");
        assert_eq!(
            value_of(&global, "service.namespace"),
            Some(&any_value::Value::StringValue("global".into()))
        );
        catalog.set_identity(
            pid,
            ServiceIdentity {
                namespace: Some("shop".into()),
                ..ServiceIdentity::default()
            },
        );
        let named = catalog.resource_for(pid, "test");
        let namespaces: Vec<_> = named
            .attributes
            .iter()
            .filter(|a| a.key == "service.namespace")
            .collect();
        assert_eq!(namespaces.len(), 1, "{named:?}");
        assert_eq!(
            value_of(&named, "service.namespace"),
            Some(&any_value::Value::StringValue("shop".into()))
        );
    }

    #[test]
    fn service_name_comes_from_the_executable_unless_overridden() {
        let identity = ProcessIdentity {
            pid: 42,
            executable_name: "nginx".into(),
            argv0: Some("nginx".into()),
            command_line: Some("nginx -g daemon off;".into()),
        };
        let plain = ResourceCatalog::new(None, vec![], false).build(&identity, "generic");
        assert_eq!(
            value_of(&plain, "service.name"),
            Some(&any_value::Value::StringValue("nginx".into()))
        );
        assert_eq!(
            value_of(&plain, "process.pid"),
            Some(&any_value::Value::IntValue(42))
        );
        assert_eq!(
            value_of(&plain, "telemetry.distro.name"),
            Some(&any_value::Value::StringValue("zerotrace".into()))
        );
        assert!(value_of(&plain, "process.command_line").is_none());

        let custom = ResourceCatalog::new(
            Some("checkout".into()),
            vec![("deployment.environment".into(), "prod".into())],
            true,
        )
        .build(&identity, "generic");
        assert_eq!(
            value_of(&custom, "service.name"),
            Some(&any_value::Value::StringValue("checkout".into()))
        );
        assert!(value_of(&custom, "deployment.environment").is_some());
        assert!(value_of(&custom, "process.command_line").is_some());
    }

    #[test]
    fn host_id_and_language_are_the_catalog_s() {
        let me = std::process::id();
        let mut catalog = ResourceCatalog::new(None, vec![], false).with_host_id("rack-7".into());
        let text = |r: &Resource, key: &str| attribute_text(r, key).unwrap_or_default();
        let first = catalog.resource_for(me, "zerotrace_worke");
        assert_eq!(text(&first, "host.id"), "rack-7");
        // Not judged yet: argv[0] (this test binary) names no runtime.
        assert_eq!(text(&first, "telemetry.sdk.language"), "generic");
        let python = ServiceIdentity {
            language: Some(Language::Python),
            ..ServiceIdentity::default()
        };
        catalog.set_identity(me, python.clone());
        let judged = catalog.resource_for(me, "zerotrace_worke");
        assert_eq!(text(&judged, "telemetry.sdk.language"), "python");
        assert!(Arc::ptr_eq(
            &judged,
            &catalog.resource_for(me, "zerotrace_worke")
        ));
        catalog.set_identity(me, python);
        assert!(Arc::ptr_eq(
            &judged,
            &catalog.resource_for(me, "zerotrace_worke")
        ));
        catalog.forget(me);
        let again = catalog.resource_for(me, "zerotrace_worke");
        assert_eq!(text(&again, "telemetry.sdk.language"), "generic");
    }

    #[test]
    fn reads_its_own_process() {
        let identity = ProcessIdentity::read(std::process::id(), "zerotrace_worke");
        assert!(identity.command_line.is_some());
        assert!(!identity.executable_name.is_empty());
    }
}
