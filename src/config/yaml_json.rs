//! Converts an opaque YAML subtree (`pod_template`, `preflight_resources`) to JSON, the form
//! the Kubernetes backend merges into generated objects.

use serde_json::{Map, Number, Value as Json};
use serde_norway::Value as Yaml;

/// Converts `v`; errors name the offending path below `root`.
pub fn to_json(v: &Yaml, root: &str) -> Result<Json, String> {
    convert(v, root)
}

fn convert(v: &Yaml, path: &str) -> Result<Json, String> {
    Ok(match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Json::Number(u.into())
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Json::Number(
                    Number::from_f64(f)
                        .ok_or_else(|| format!("{path}: {n} is not a finite number"))?,
                )
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut out = Map::new();
            for (k, val) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Bool(b) => b.to_string(),
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Null => "null".to_owned(),
                    other => {
                        return Err(format!(
                            "{path}: mapping keys must be scalars, not {}",
                            kind_of(other)
                        ));
                    }
                };
                let child = convert(val, &format!("{path}.{key}"))?;
                out.insert(key, child);
            }
            Json::Object(out)
        }
        Yaml::Tagged(t) => {
            return Err(format!("{path}: YAML tags ({}) are not supported", t.tag));
        }
    })
}

pub(crate) fn kind_of(v: &serde_norway::Value) -> &'static str {
    match v {
        serde_norway::Value::Null => "null",
        serde_norway::Value::Bool(_) => "a boolean",
        serde_norway::Value::Number(_) => "a number",
        serde_norway::Value::String(_) => "a string",
        serde_norway::Value::Sequence(_) => "a sequence",
        serde_norway::Value::Mapping(_) => "a mapping",
        serde_norway::Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Yaml {
        serde_norway::from_str(s).unwrap()
    }

    #[test]
    fn converts_scalars_sequences_and_mappings() {
        let v = yaml(
            "a: 1\nb: -2\nc: 2.5\nd: true\ne: null\nf: [x, 'y', 3]\ng: {h: {i: \"j\"}}\n\
             k: 18446744073709551615\n",
        );
        let j = to_json(&v, "pod_template").unwrap();
        assert_eq!(
            j,
            serde_json::json!({
                "a": 1, "b": -2, "c": 2.5, "d": true, "e": null,
                "f": ["x", "y", 3], "g": {"h": {"i": "j"}},
                "k": 18446744073709551615u64
            })
        );
    }

    #[test]
    fn scalar_keys_become_strings() {
        let v = yaml("1: a\ntrue: b\n~: c\n");
        assert_eq!(
            to_json(&v, "x").unwrap(),
            serde_json::json!({"1": "a", "true": "b", "null": "c"})
        );
    }

    #[test]
    fn rejects_tags_non_scalar_keys_and_non_finite_numbers() {
        let err = to_json(&yaml("a: {b: !secret x}\n"), "pod_template").unwrap_err();
        assert_eq!(
            err,
            "pod_template.a.b: YAML tags (!secret) are not supported"
        );
        let err = to_json(&yaml("? [a]\n: b\n"), "pod_template").unwrap_err();
        assert_eq!(
            err,
            "pod_template: mapping keys must be scalars, not a sequence"
        );
        let err = to_json(&yaml("a: [1, .inf]\n"), "pod_template").unwrap_err();
        assert!(err.starts_with("pod_template.a[1]: "), "{err}");
        assert!(err.ends_with("is not a finite number"), "{err}");
        let err = to_json(&yaml("a: .nan\n"), "p").unwrap_err();
        assert!(err.starts_with("p.a: "), "{err}");
    }
}
