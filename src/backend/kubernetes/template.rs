//! The operator's `pod_template` and how worker-generated parts merge into it (reference
//! `kubernetes-backend.md` §3.5 resources and §3.6).
//!
//! The template stays a JSON value merged by key: fields this worker does not know pass through
//! to the API server untouched (the Go worker decoded into its PodSpec type and silently dropped
//! unknown fields; the API server's field validation now reports them as warnings instead).

use serde_json::{Map, Value, json};

use crate::protocol::InstanceShape;

/// Names the worker gives its own init containers and volumes: a template object with one of
/// these names would make the pod invalid (duplicate name), which the Go worker only discovered
/// when the API server refused the Job. We refuse the template up front, naming the clash.
fn reserved_init_container(name: &str) -> bool {
    name == "setup" || numbered(name, "copy-sidecar-", "")
}

fn reserved_volume(name: &str) -> bool {
    name == "workspace"
        || name == "preflight-image"
        || numbered(name, "sidecar-", "-data")
        || numbered(name, "sidecar-", "-image")
}

/// `<prefix><digits><suffix>`.
fn numbered(name: &str, prefix: &str, suffix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn names(list: Option<&Value>) -> impl Iterator<Item = &str> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("name").and_then(Value::as_str))
}

/// Checks a `pod_template` once (at startup and before each build): a mapping whose list fields
/// are lists and whose names do not clash with the worker's. The message names the key and the fix.
pub fn validate(template: &Value) -> Result<(), String> {
    const KEY: &str = "backend.kubernetes.pod_template";
    let obj = template
        .as_object()
        .ok_or_else(|| format!("{KEY} must be a mapping (a PodSpec)"))?;
    for field in ["containers", "initContainers", "volumes"] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_array() && !v.is_null()) {
            return Err(format!("{KEY}.{field} must be a list, not {}", kind_of(v)));
        }
    }
    if let Some(name) = names(obj.get("initContainers")).find(|n| reserved_init_container(n)) {
        return Err(format!(
            "{KEY}.initContainers: the name {name:?} is the worker's own init container; \
             rename the template's"
        ));
    }
    if let Some(name) = names(obj.get("volumes")).find(|n| reserved_volume(n)) {
        return Err(format!(
            "{KEY}.volumes: the name {name:?} is one of the worker's volumes; rename the \
             template's"
        ));
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The template as a pod spec map to build on (an absent template is an empty PodSpec).
pub fn base(template: Option<&Value>) -> Map<String, Value> {
    template
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Takes a list field out of `spec` (absent or null is empty).
pub fn take_list(spec: &mut Map<String, Value>, field: &str) -> Vec<Value> {
    match spec.remove(field) {
        Some(Value::Array(v)) => v,
        _ => Vec::new(),
    }
}

/// The `metadata` of a Job and of its pod template: both carry the same labels and (when there
/// are any) annotations; the Job's adds its name and namespace.
pub fn job_metadata(
    name: &str,
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> (Value, Value) {
    let mut template = json!({ "labels": labels });
    if !annotations.is_empty() {
        template["annotations"] = json!(annotations);
    }
    let mut job = template.clone();
    job["name"] = json!(name);
    job["namespace"] = json!(namespace);
    (job, template)
}

/// Requests and limits from an instance shape: each positive axis sets both, `cpu` in whole
/// vCPUs and `memory` in GiB. `None` when the shape sets nothing.
pub fn shape_resources(shape: Option<&InstanceShape>) -> Option<Map<String, Value>> {
    let shape = shape?;
    let mut amounts = Map::new();
    if shape.vcpus > 0 {
        amounts.insert("cpu".into(), json!(shape.vcpus.to_string()));
    }
    if shape.memory_gb > 0 {
        amounts.insert("memory".into(), json!(format!("{}Gi", shape.memory_gb)));
    }
    (!amounts.is_empty()).then_some(amounts)
}

/// Merges shape-derived amounts into a container's `resources`: they overwrite the same resource
/// names in `requests` and `limits`; every other template entry stays.
pub fn merge_resources(resources: Option<Value>, amounts: &Map<String, Value>) -> Value {
    let mut resources = match resources {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for side in ["requests", "limits"] {
        let entry = resources
            .entry(side)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Some(m) = entry.as_object_mut() {
            for (k, v) in amounts {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_refused_with_the_fix() {
        for (template, needle) in [
            (json!({"initContainers": [{"name": "setup"}]}), "\"setup\""),
            (
                json!({"initContainers": [{"name": "copy-sidecar-3"}]}),
                "copy-sidecar-3",
            ),
            (json!({"volumes": [{"name": "workspace"}]}), "\"workspace\""),
            (
                json!({"volumes": [{"name": "sidecar-0-data"}]}),
                "sidecar-0-data",
            ),
            (
                json!({"volumes": [{"name": "sidecar-12-image"}]}),
                "sidecar-12-image",
            ),
            (json!({"containers": {"name": "task"}}), "must be a list"),
            (json!(["not", "a", "map"]), "must be a mapping"),
        ] {
            let err = validate(&template).unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(err.starts_with("backend.kubernetes.pod_template"), "{err}");
        }
    }

    #[test]
    fn ordinary_templates_pass() {
        let template = json!({
            "serviceAccountName": "agent",
            "initContainers": [{"name": "copy-sidecar-x"}, {"name": "warmup"}],
            "volumes": [{"name": "cache"}, {"name": "sidecar-data"}],
            "containers": [{"name": "task"}, {"name": "proxy"}],
        });
        assert_eq!(validate(&template), Ok(()));
        assert_eq!(validate(&json!({})), Ok(()));
    }

    #[test]
    fn shape_sets_only_positive_axes() {
        assert_eq!(shape_resources(None), None);
        let none = InstanceShape {
            vcpus: 0,
            memory_gb: -1,
        };
        assert_eq!(shape_resources(Some(&none)), None);
        let full = InstanceShape {
            vcpus: 2,
            memory_gb: 8,
        };
        assert_eq!(
            Value::Object(shape_resources(Some(&full)).unwrap()),
            json!({"cpu": "2", "memory": "8Gi"})
        );
        let cpu = InstanceShape {
            vcpus: 4,
            memory_gb: 0,
        };
        assert_eq!(
            Value::Object(shape_resources(Some(&cpu)).unwrap()),
            json!({"cpu": "4"})
        );
    }

    #[test]
    fn shape_overrides_template_resources_and_keeps_the_rest() {
        let amounts = shape_resources(Some(&InstanceShape {
            vcpus: 4,
            memory_gb: 16,
        }))
        .unwrap();
        let template = json!({
            "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
            "limits": {"nvidia.com/gpu": "1"},
        });
        assert_eq!(
            merge_resources(Some(template), &amounts),
            json!({
                "requests": {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "1Gi"},
                "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            })
        );
        let cpu_only = shape_resources(Some(&InstanceShape {
            vcpus: 4,
            memory_gb: 0,
        }))
        .unwrap();
        assert_eq!(
            merge_resources(
                Some(json!({"requests": {"cpu": "500m", "memory": "1Gi"}})),
                &cpu_only
            ),
            json!({"requests": {"cpu": "4", "memory": "1Gi"}, "limits": {"cpu": "4"}})
        );
    }

    #[test]
    fn base_and_take_list() {
        let mut spec = base(Some(
            &json!({"volumes": [{"name": "a"}], "nodeSelector": {"x": "y"}}),
        ));
        assert_eq!(take_list(&mut spec, "volumes").len(), 1);
        assert!(take_list(&mut spec, "initContainers").is_empty());
        assert_eq!(spec["nodeSelector"], json!({"x": "y"}));
        assert!(base(None).is_empty());
    }
}
