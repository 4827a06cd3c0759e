//! The RBAC the backend needs (reference `kubernetes-backend.md` §9, plus `patch` on Jobs for
//! expiring failed Jobs and marking reported ones), as data: `check` asks a
//! SelfSubjectAccessReview per verb, a 403 names the rule that grants it, and the docs and the
//! Helm chart render the same Role.

use serde_json::{Value, json};

use super::message::text;

/// One rule of the namespaced Role the backend needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `""` is the core group.
    pub api_group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// What the backend does with it (for `check` diagnostics and docs).
    pub why: &'static str,
}

/// Everything the backend does in its namespace. `GET /version` and
/// `SelfSubjectAccessReview` are allowed to every authenticated user by the default cluster roles.
pub const ROLE_RULES: &[Rule] = &[
    Rule {
        api_group: "batch",
        resource: "jobs",
        verbs: &["create", "get", "list", "watch", "delete", "patch"],
        why: "create task and preflight Jobs, follow them, delete them on success or \
              cancellation, expire failed ones and mark reported ones",
    },
    Rule {
        api_group: "",
        resource: "pods",
        verbs: &["get", "list", "watch"],
        why: "follow the pods of task Jobs",
    },
    Rule {
        api_group: "",
        resource: "pods/log",
        verbs: &["get"],
        why: "log the output of failed tasks",
    },
    Rule {
        api_group: "",
        resource: "events",
        verbs: &["list"],
        why: "diagnose pending pods (mount and pod creation failures)",
    },
];

/// The rule granting `verb` on `resource`, for a 403 diagnosis.
pub fn rule_for(resource: &str, verb: &str) -> Option<&'static Rule> {
    ROLE_RULES
        .iter()
        .find(|r| r.resource == resource && r.verbs.contains(&verb))
}

/// `apiGroups: [..], resources: [..], verbs: [..]` as a Role would say it, for messages.
pub fn describe(rule: &Rule) -> String {
    format!(
        "apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [{}]",
        rule.api_group,
        rule.resource,
        rule.verbs
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The Role manifest (the chart renders the same rules).
pub fn role(name: &str, namespace: &str) -> Value {
    let rules: Vec<Value> = ROLE_RULES
        .iter()
        .map(|r| json!({ "apiGroups": [r.api_group], "resources": [r.resource], "verbs": r.verbs }))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": name, "namespace": namespace },
        "rules": rules,
    })
}

/// One `SelfSubjectAccessReview` body per verb and resource the backend needs, for `check`.
pub fn access_reviews(namespace: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for r in ROLE_RULES {
        let (resource, subresource) = match r.resource.split_once('/') {
            Some((res, sub)) => (res, sub),
            None => (r.resource, ""),
        };
        for verb in r.verbs {
            let mut attrs = json!({
                "namespace": namespace,
                "verb": verb,
                "group": r.api_group,
                "resource": resource,
            });
            if !subresource.is_empty() {
                attrs["subresource"] = json!(subresource);
            }
            out.push(json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": { "resourceAttributes": attrs },
            }));
        }
    }
    out
}

/// What to tell the operator when the API refused `verb` on `resource` (a 403, or a
/// SelfSubjectAccessReview that says no): what is missing and the Role rule that grants it.
pub fn denied(verb: &str, resource: &str, namespace: &str) -> String {
    let mut s = format!(
        "the worker's service account may not {verb} {resource} in namespace {namespace:?}"
    );
    if let Some(rule) = rule_for(resource, verb) {
        s.push_str(&format!(
            "; the backend needs it to {}: add the Role rule {{{}}}",
            rule.why,
            describe(rule)
        ));
    }
    s
}

/// The denial in a SelfSubjectAccessReview response, if it says no.
pub fn review_denial(response: &Value) -> Option<String> {
    if response.pointer("/status/allowed").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let attrs = response.pointer("/spec/resourceAttributes")?;
    let resource = match text(attrs, "/subresource") {
        "" => text(attrs, "/resource").to_owned(),
        sub => format!("{}/{sub}", text(attrs, "/resource")),
    };
    let mut s = denied(text(attrs, "/verb"), &resource, text(attrs, "/namespace"));
    let reason = text(response, "/status/reason");
    if !reason.is_empty() {
        s.push_str(&format!(" (the API server says: {})", reason.trim()));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_rules_cover_the_backend_and_explain_a_403() {
        let role = role("oz-agent-worker", "agents");
        assert_eq!(role["kind"], "Role");
        assert_eq!(role["rules"][0]["apiGroups"], json!(["batch"]));
        assert!(
            role["rules"][0]["verbs"]
                .as_array()
                .unwrap()
                .contains(&json!("patch"))
        );
        let rule = rule_for("jobs", "create").unwrap();
        assert_eq!(
            describe(rule),
            "apiGroups: [\"batch\"], resources: [\"jobs\"], verbs: [\"create\", \"get\", \
             \"list\", \"watch\", \"delete\", \"patch\"]"
        );
        assert!(
            rule_for("pods", "create").is_none(),
            "the Job controller creates pods"
        );
        assert_eq!(rule_for("pods/log", "get").unwrap().api_group, "");
    }

    #[test]
    fn access_reviews_name_every_verb() {
        let reviews = access_reviews("agents");
        let total: usize = ROLE_RULES.iter().map(|r| r.verbs.len()).sum();
        assert_eq!(reviews.len(), total);
        let log = reviews
            .iter()
            .find(|r| r["spec"]["resourceAttributes"]["subresource"] == "log")
            .unwrap();
        assert_eq!(log["spec"]["resourceAttributes"]["resource"], "pods");
        assert_eq!(log["spec"]["resourceAttributes"]["verb"], "get");
        assert_eq!(log["spec"]["resourceAttributes"]["namespace"], "agents");
    }

    #[test]
    fn denials_name_the_missing_rule() {
        let msg = denied("patch", "jobs", "agents");
        assert!(
            msg.starts_with(
                "the worker's service account may not patch jobs in namespace \"agents\""
            ),
            "{msg}"
        );
        assert!(
            msg.contains(
                "verbs: [\"create\", \"get\", \"list\", \"watch\", \"delete\", \"patch\"]"
            )
        );
        let allowed =
            json!({"spec": {"resourceAttributes": {"verb": "get"}}, "status": {"allowed": true}});
        assert_eq!(review_denial(&allowed), None);
        let refused = json!({
            "spec": {"resourceAttributes": {"namespace": "agents", "verb": "get", "resource": "pods", "subresource": "log"}},
            "status": {"allowed": false, "reason": "no RBAC policy matched"},
        });
        let msg = review_denial(&refused).unwrap();
        assert!(
            msg.contains("may not get pods/log in namespace \"agents\""),
            "{msg}"
        );
        assert!(msg.contains("log the output of failed tasks"));
        assert!(msg.ends_with("(the API server says: no RBAC policy matched)"));
        assert!(
            !denied("create", "secrets", "x").contains("Role rule"),
            "not a rule we need"
        );
    }
}
