//! What a run's cases exercise: which policies determined at least one case and which never
//! did, and the actions and resource types (those the schema's actions apply to) that no case
//! touches. Computed over the cases that ran (a `--filter` narrows it).

use std::collections::BTreeSet;

use verdict_core::Snapshot;

use super::TestRun;

/// A policy and where it is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PolicyRef {
    pub(super) id: String,
    /// `file:line`, when known.
    pub(super) location: Option<String>,
}

/// The coverage of one run.
#[derive(Debug)]
pub(super) struct Coverage {
    pub(super) determining: Vec<PolicyRef>,
    pub(super) never_determining: Vec<PolicyRef>,
    pub(super) actions: usize,
    pub(super) untouched_actions: Vec<String>,
    pub(super) resource_types: usize,
    pub(super) untouched_resource_types: Vec<String>,
}

impl Coverage {
    pub(super) fn of(snapshot: &Snapshot, run: &TestRun) -> Self {
        let determined: BTreeSet<&str> = run
            .results()
            .flat_map(|r| r.determining.iter().map(String::as_str))
            .collect();
        let (mut determining, mut never_determining) = (Vec::new(), Vec::new());
        for policy in snapshot.policies().policies() {
            let id = policy.id().to_string();
            let location = snapshot
                .policy_location(&id)
                .map(|l| format!("{}:{}", l.path.display(), l.line));
            let entry = PolicyRef {
                id: id.clone(),
                location,
            };
            if determined.contains(id.as_str()) {
                determining.push(entry);
            } else {
                never_determining.push(entry);
            }
        }
        determining.sort();
        never_determining.sort();

        let actions_in_cases: BTreeSet<&str> = run.results().map(|r| r.action.as_str()).collect();
        let untouched_actions = snapshot
            .known_actions()
            .iter()
            .filter(|uid| {
                let full = uid.to_string();
                !actions_in_cases.contains(uid.id().unescaped())
                    && !actions_in_cases.contains(full.as_str())
            })
            .map(ToString::to_string)
            .collect();

        let types_in_cases: BTreeSet<&str> =
            run.results().map(|r| r.resource_type.as_str()).collect();
        let resource_types = snapshot.resource_types();
        let untouched_resource_types = resource_types
            .iter()
            .filter(|t| !types_in_cases.contains(t.as_str()))
            .cloned()
            .collect();
        Self {
            determining,
            never_determining,
            actions: snapshot.known_actions().len(),
            untouched_actions,
            resource_types: resource_types.len(),
            untouched_resource_types,
        }
    }

    /// Returns the report as text lines.
    pub(super) fn text(&self) -> String {
        let policies = self.determining.len() + self.never_determining.len();
        let mut text = format!(
            "coverage:\n  policies: {} of {policies} determined at least one case\n",
            self.determining.len()
        );
        for policy in &self.never_determining {
            text.push_str(&format!(
                "    never determined: {}{}\n",
                policy.id,
                policy
                    .location
                    .as_ref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            ));
        }
        text.push_str(&format!(
            "  actions: {} of {} touched by a case\n",
            self.actions - self.untouched_actions.len(),
            self.actions
        ));
        for action in &self.untouched_actions {
            text.push_str(&format!("    untouched: {action}\n"));
        }
        if self.resource_types == 0 {
            text.push_str("  resource types: unknown without a schema\n");
        } else {
            text.push_str(&format!(
                "  resource types: {} of {} touched by a case\n",
                self.resource_types - self.untouched_resource_types.len(),
                self.resource_types
            ));
        }
        for resource_type in &self.untouched_resource_types {
            text.push_str(&format!("    untouched: {resource_type}\n"));
        }
        text
    }

    /// Returns the report as a JSON value.
    pub(super) fn json(&self) -> serde_json::Value {
        let policies = |list: &[PolicyRef]| {
            list.iter()
                .map(|p| serde_json::json!({"id": p.id, "location": p.location}))
                .collect::<Vec<_>>()
        };
        serde_json::json!({
            "determining_policies": policies(&self.determining),
            "never_determining_policies": policies(&self.never_determining),
            "actions": self.actions,
            "untouched_actions": self.untouched_actions,
            "resource_types": self.resource_types,
            "untouched_resource_types": self.untouched_resource_types,
        })
    }
}
