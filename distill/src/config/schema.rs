//! Reading the config types' JSON Schema (schemars): what a property stands for. The configuration
//! reference (`config_doc`) and the config errors that name a section's keys both read it.

use serde_json::Value;

/// The schema a property stands for: through `$ref`, and through `anyOf` / `oneOf` with `null` (an
/// optional value). Config errors use it too, to name a section's keys.
pub(crate) fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(t) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, t);
        }
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = v.get(k).and_then(Value::as_array) {
            let non_null: Vec<&Value> = alts.iter().filter(|a| !is_null(a)).collect();
            if non_null.len() == 1 && non_null[0].get("const").is_none() {
                return resolve(root, non_null[0]);
            }
        }
    }
    v
}

pub(crate) fn is_null(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}
