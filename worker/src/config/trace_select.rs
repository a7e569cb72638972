//! `attributes.select.traces`: which optional span attributes go out. Only
//! `db.query.text` and `user_agent.original` can be selected (OBI's trace
//! attribute selection names more; an exclusion of anything else is refused,
//! since ignoring it would export what it removes, and an inclusion of
//! anything else is ignored with a warning). The section's other entries
//! are the metrics' (`metric_select.rs`).

use super::databases::RawSelect;
use super::error::{child, ConfigError, Ctx};

const SELECTABLE: [&str; 2] = ["db.query.text", "user_agent.original"];

/// What `attributes.select.traces` says of the selectable attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TraceSelection {
    /// `db.query.text`, when the selection names it.
    pub(super) query_text: Option<bool>,
    /// `user_agent.original` (on unless excluded).
    pub(super) user_agent: bool,
}

/// Whether a selection pattern names `attribute` (`*`, a prefix and `*`, or itself).
fn names(pattern: &str, attribute: &str) -> bool {
    let pattern = pattern.trim();
    pattern == attribute
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| attribute.starts_with(prefix))
}

pub(super) fn trace_selection(
    ctx: &mut Ctx,
    select: &RawSelect,
) -> Result<TraceSelection, ConfigError> {
    let mut selection = TraceSelection {
        query_text: None,
        user_agent: true,
    };
    let Some(traces) = select.get("traces") else {
        return Ok(selection);
    };
    let at = child("attributes.select", "traces");
    if let Some(include) = &traces.include {
        for item in &include.0 {
            if names(item, SELECTABLE[0]) {
                selection.query_text = Some(true);
            }
            if !SELECTABLE.iter().any(|attribute| names(item, attribute)) {
                ctx.warn(
                    &child(&at, "include"),
                    format!(
                        "{item:?} ignored: only {} can be selected",
                        SELECTABLE.join(" and ")
                    ),
                );
            }
        }
    }
    if let Some(exclude) = &traces.exclude {
        for item in &exclude.0 {
            if !SELECTABLE.iter().any(|attribute| names(item, attribute)) {
                return Err(ctx.err(
                    child(&at, "exclude"),
                    format!(
                        "not supported by zerotrace: {item:?} cannot be excluded (only {})",
                        SELECTABLE.join(" and ")
                    ),
                ));
            }
            if names(item, SELECTABLE[0]) {
                selection.query_text = Some(false);
            }
            if names(item, SELECTABLE[1]) {
                selection.user_agent = false;
            }
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn the_user_agent_and_the_query_text_can_be_excluded_from_spans() {
        let select =
            |traces: &str| format!("open_port: 80\nattributes:\n  select:\n    traces: {traces}\n");
        let config = ok(&select("{exclude: [user_agent.original]}"), &[]);
        assert!(!config.span_user_agent);
        assert!(config.databases.query_text);
        // --print-config says so, in a form that loads again.
        let again = ok(&config.to_yaml(), &[]);
        assert!(!again.span_user_agent && again.databases.query_text);
        let config = ok(&select("{exclude: [db.query.text]}"), &[]);
        assert!(config.span_user_agent);
        assert!(!config.databases.query_text);
        let config = ok(&select("{exclude: ['*']}"), &[]);
        assert!(!config.span_user_agent && !config.databases.query_text);
        let config = ok(&select("{exclude: ['user_agent.*']}"), &[]);
        assert!(!config.span_user_agent && config.databases.query_text);
        assert!(ok("open_port: 80\n", &[]).span_user_agent);
        let message = err(&select("{exclude: [url.path]}"), &[]);
        assert!(
            message.contains("attributes.select.traces.exclude"),
            "{message}"
        );
        assert!(message.contains("user_agent.original"), "{message}");
    }
}
