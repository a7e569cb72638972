//! One OpenTelemetry resource per instrumented process: `service.name` from
//! the executable (unless overridden), process and host identity, and the
//! telemetry distribution. Read from world-readable procfs files only.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::discovery::ServiceIdentity;
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
            command_line: (!args.is_empty()).then(|| args.join(" ")),
        }
    }
}

/// Builds and caches the resource of each process.
pub struct ResourceCatalog {
    host_name: String,
    service_name_override: Option<String>,
    extra_attributes: Vec<(String, String)>,
    include_command_line: bool,
    by_pid: HashMap<u32, Arc<Resource>>,
    /// Names and container ids discovery assigned to processes.
    identities: HashMap<u32, ServiceIdentity>,
}

impl ResourceCatalog {
    pub fn new(
        service_name_override: Option<String>,
        extra_attributes: Vec<(String, String)>,
        include_command_line: bool,
    ) -> Self {
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Self {
            host_name,
            service_name_override,
            extra_attributes,
            include_command_line,
            by_pid: HashMap::new(),
            identities: HashMap::new(),
        }
    }

    /// A selector's `name`/`namespace` (they win over OTEL_SERVICE_NAME) and the container id.
    pub fn set_identity(&mut self, pid: u32, identity: ServiceIdentity) {
        self.by_pid.remove(&pid);
        self.identities.insert(pid, identity);
    }

    pub fn resource_for(&mut self, pid: u32, comm: &str) -> Arc<Resource> {
        if let Some(resource) = self.by_pid.get(&pid) {
            return Arc::clone(resource);
        }
        let identity = ProcessIdentity::read(pid, comm);
        let mut resource = self.build(&identity);
        if let Some(service) = self.identities.get(&pid) {
            apply_service_identity(&mut resource, service);
        }
        let resource = Arc::new(resource);
        self.by_pid.insert(pid, Arc::clone(&resource));
        resource
    }

    pub fn build(&self, identity: &ProcessIdentity) -> Resource {
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
            int_attribute("process.pid", i64::from(identity.pid)),
            string_attribute("process.executable.name", identity.executable_name.clone()),
            string_attribute("telemetry.sdk.name", "zerotrace"),
            string_attribute("telemetry.sdk.language", "rust"),
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
    fn service_name_comes_from_the_executable_unless_overridden() {
        let identity = ProcessIdentity {
            pid: 42,
            executable_name: "nginx".into(),
            command_line: Some("nginx -g daemon off;".into()),
        };
        let plain = ResourceCatalog::new(None, vec![], false).build(&identity);
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
        .build(&identity);
        assert_eq!(
            value_of(&custom, "service.name"),
            Some(&any_value::Value::StringValue("checkout".into()))
        );
        assert!(value_of(&custom, "deployment.environment").is_some());
        assert!(value_of(&custom, "process.command_line").is_some());
    }

    #[test]
    fn reads_its_own_process() {
        let identity = ProcessIdentity::read(std::process::id(), "zerotrace_worke");
        assert!(identity.command_line.is_some());
        assert!(!identity.executable_name.is_empty());
    }
}
