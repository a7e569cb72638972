//! The OpenTelemetry semantic conventions as the PyPI package
//! opentelemetry-semantic-conventions defines them: which attribute and
//! metric names exist, and which are deprecated. Read by running
//! `tests/semconv/semconv_names.py` with the interpreter
//! `tests/semconv/ensure-venv.sh` prepares (it installs the package when missing).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// How the package defines a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Stable,
    Incubating,
    Deprecated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Definition {
    status: Status,
    /// A prefix: `<name>.<key>` names are its instances.
    template: bool,
}

/// Every name of one version of the package.
#[derive(Debug, Default)]
pub struct SemanticConventions {
    pub version: String,
    attributes: BTreeMap<String, Definition>,
    metrics: BTreeMap<String, Definition>,
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The folder of the Python references (`tests/semconv/`).
pub fn reference_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("semconv")
}

/// The interpreter of the venv with the Python references (semantic
/// conventions, SDK), installed from PyPI by `ensure-venv.sh` when missing.
pub fn reference_python() -> String {
    run(&mut Command::new(reference_dir().join("ensure-venv.sh")))
        .trim()
        .to_owned()
}

impl SemanticConventions {
    /// Installs the package if needed (PyPI) and reads its names.
    pub fn load() -> Self {
        let listing =
            run(Command::new(reference_python()).arg(reference_dir().join("semconv_names.py")));
        Self::parse(&listing)
    }

    /// Lines `attribute|metric NAME stable|incubating|deprecated [template]`
    /// after one `version V` line.
    pub fn parse(listing: &str) -> Self {
        let mut conventions = Self::default();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (kind, name, status) = match fields.as_slice() {
                ["version", version] => {
                    conventions.version = (*version).to_owned();
                    continue;
                }
                [kind, name, status, ..] => (*kind, *name, *status),
                _ => panic!("unexpected line from semconv_names.py: {line:?}"),
            };
            let status = match status {
                "stable" => Status::Stable,
                "incubating" => Status::Incubating,
                "deprecated" => Status::Deprecated,
                other => panic!("unknown status {other:?} in {line:?}"),
            };
            let definition = Definition {
                status,
                template: fields.get(3) == Some(&"template"),
            };
            let table = match kind {
                "attribute" => &mut conventions.attributes,
                "metric" => &mut conventions.metrics,
                other => panic!("unknown kind {other:?} in {line:?}"),
            };
            table.insert(name.to_owned(), definition);
        }
        assert!(
            !conventions.attributes.is_empty() && !conventions.metrics.is_empty(),
            "no names read:\n{listing}"
        );
        conventions
    }

    fn lookup(table: &BTreeMap<String, Definition>, name: &str) -> Option<Status> {
        if let Some(definition) = table.get(name) {
            return Some(definition.status);
        }
        // `rpc.request.metadata.<key>`: an instance of a template.
        table
            .iter()
            .filter(|(prefix, d)| {
                d.template
                    && name
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .map(|(_, d)| d.status)
            .next()
    }

    pub fn attribute(&self, name: &str) -> Option<Status> {
        Self::lookup(&self.attributes, name)
    }

    pub fn metric(&self, name: &str) -> Option<Status> {
        Self::lookup(&self.metrics, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_statuses_and_templates_are_read() {
        let conventions = SemanticConventions::parse(
            "version 0.66b2\n\
             attribute rpc.system deprecated \n\
             attribute rpc.system.name incubating \n\
             attribute rpc.request.metadata incubating template\n\
             attribute service.name stable \n\
             metric rpc.server.call.duration incubating \n",
        );
        assert_eq!(conventions.version, "0.66b2");
        assert_eq!(
            conventions.attribute("rpc.system"),
            Some(Status::Deprecated)
        );
        assert_eq!(
            conventions.attribute("rpc.request.metadata.x-id"),
            Some(Status::Incubating)
        );
        assert_eq!(conventions.attribute("rpc.request.metadataX"), None);
        assert_eq!(conventions.attribute("service.name"), Some(Status::Stable));
        assert_eq!(
            conventions.metric("rpc.server.call.duration"),
            Some(Status::Incubating)
        );
        assert_eq!(conventions.metric("rpc.server.duration"), None);
    }
}
