//! `docs/configuration.md`, generated from the config types: every key with its type, default and
//! meaning, read from the JSON Schema that `schemars` derives from the types and their doc comments.
//! A test fails when the committed file differs from what this writes, so the reference cannot drift
//! from the code (`DISTILL_WRITE_DOCS=1 cargo test -p distill --test configuration` rewrites it).

use schemars::{schema_for, JsonSchema};
use serde_json::{Map, Value};

use crate::config::embedding::EmbeddingConfig;
use crate::config::pretrain::PretrainConfig;
use crate::config::schema::{is_null, resolve};
use crate::config::RunConfig;

/// The whole page.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Configuration\n\n\
         Every key of the YAML configs, with its type, default and meaning. This page is generated from \
         the config types and their doc comments (`distill/src/config/doc.rs`); a test fails when it is \
         out of date, and `DISTILL_WRITE_DOCS=1 cargo test -p distill --test configuration` rewrites it.\n\n\
         Unknown keys are refused with the key named and the expected keys listed. `--set key.path=value` \
         overrides any key from the command line (the value is read as YAML; a section's keys are set one \
         at a time, `--set train.epochs=5`), and `${VAR}` / \
         `${VAR:-default}` in strings expand from the environment. A key nested in a section is written \
         with dots (`train.epochs`); `[]` marks the items of a list of sections.\n\n",
    );
    s += "## Task configs\n\nRead by `distill run`, `teacher`, `train`, `compare`, `export`, `sweep` and `glue`.\n\n";
    s += &table::<RunConfig>();
    s += "\n## Pre-training configs\n\nRead by `distill pretrain`.\n\n";
    s += &table::<PretrainConfig>();
    s += "\n## Embedding configs\n\nRead by `distill run` when `task` is `embedding` ([embeddings](embeddings.md)).\n\n";
    s += &table::<EmbeddingConfig>();
    s
}

/// One table of every key of `T`'s schema.
fn table<T: JsonSchema>() -> String {
    let root = serde_json::to_value(schema_for!(T)).unwrap_or(Value::Null);
    let mut rows = Vec::new();
    section(&root, &root, "", None, &mut rows);
    let mut s = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for r in rows {
        s += &format!("| `{}` | {} | {} | {} |\n", r.0, r.1, r.2, r.3);
    }
    s
}

/// The rows of an object schema's properties, `prefix` before each key; `defaults` are the values a
/// parent's default gives this section (they beat the section type's own defaults: pre-training's
/// `train` has other defaults than a task's).
fn section(
    root: &Value,
    node: &Value,
    prefix: &str,
    defaults: Option<&Value>,
    rows: &mut Vec<(String, String, String, String)>,
) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (key, prop) in props {
        let path = format!("{prefix}{key}");
        let target = resolve(root, prop);
        let default = defaults
            .and_then(|d| d.get(key))
            .or_else(|| prop.get("default"))
            .filter(|d| !d.is_null());
        let meaning = describe(prop)
            .or_else(|| describe(target))
            .unwrap_or_default();
        // A section's default is shown key by key in its own rows.
        let default_text = match default {
            Some(_) if is_section(root, target) => String::new(),
            Some(d) => format!("`{}`", compact(d)),
            None if required.contains(&key.as_str()) => "required".into(),
            None => String::new(),
        };
        if is_section(root, target) {
            rows.push((path.clone(), "section".into(), default_text, meaning));
            section(root, target, &format!("{path}."), default, rows);
        } else if let Some(item) = list_item_section(root, target) {
            rows.push((
                path.clone(),
                "list of sections".into(),
                default_text,
                meaning,
            ));
            section(root, item, &format!("{path}[]."), None, rows);
        } else {
            rows.push((path, type_name(root, prop), default_text, meaning));
        }
    }
}

fn is_section(root: &Value, v: &Value) -> bool {
    let v = resolve(root, v);
    v.get("properties").is_some()
}

fn list_item_section<'a>(root: &'a Value, v: &'a Value) -> Option<&'a Value> {
    let items = v.get("items")?;
    let item = resolve(root, items);
    item.get("properties").is_some().then_some(item)
}

/// A short type: `integer`, `string`, `list of number`, one of the enum's values, ...
fn type_name(root: &Value, v: &Value) -> String {
    let t = resolve(root, v);
    if let Some(values) = enum_values(t) {
        return format!("one of {}", values.join(", "));
    }
    if let Some(item) = t.get("items") {
        return format!("list of {}", type_name(root, item));
    }
    if t.get("prefixItems").is_some() {
        return "pair".into();
    }
    let optional = v
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "null"))
        || ["anyOf", "oneOf"].iter().any(|k| {
            v.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(is_null))
        });
    let base = match t.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "value".into(),
    };
    if optional {
        format!("{base} (optional)")
    } else {
        base
    }
}

/// The values of a string enum (`enum`, or `oneOf` of `const`s), as `code`.
fn enum_values(t: &Value) -> Option<Vec<String>> {
    if let Some(e) = t.get("enum").and_then(Value::as_array) {
        return Some(e.iter().map(|x| format!("`{}`", compact(x))).collect());
    }
    let alts = t.get("oneOf").and_then(Value::as_array)?;
    let mut out = Vec::new();
    for a in alts {
        if let Some(c) = a.get("const") {
            out.push(format!("`{}`", compact(c)));
        } else if let Some(e) = a.get("enum").and_then(Value::as_array) {
            out.extend(e.iter().map(|x| format!("`{}`", compact(x))));
        } else {
            return None;
        }
    }
    Some(out)
}

/// A description on one line, with table pipes escaped.
fn describe(v: &Value) -> Option<String> {
    let d = v.get("description")?.as_str()?;
    Some(
        d.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|"),
    )
}

/// A value as compact JSON (strings without quotes).
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => serde_json::to_string(&Map::clone(m)).unwrap_or_default(),
        other => other.to_string(),
    }
}
