//! Config errors a user can act on. A serde error at a key is laid on the `--set` argument that put the
//! value there, else on the file; a single value where a section belongs (`--set train=5`) says that a
//! section's keys are set one at a time, naming them from the config type's JSON Schema instead of the
//! serde type behind it (`expected struct Partial`); bytes that are not UTF-8 are named by line and column.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use schemars::JsonSchema;
use serde_json::Value as Json;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::schema::resolve;

/// The file's text; bytes that are not UTF-8 are an error naming FILE:LINE:COLUMN (the column in
/// characters, from 1) and the byte's offset, as a text editor would point at them.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("config {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Everything before `at` is valid UTF-8, so the line's start to `at` counts in characters.
        let column = std::str::from_utf8(&before[line_start..])
            .map_or(at - line_start, |s| s.chars().count())
            + 1;
        let byte = bytes.get(at).map_or(String::new(), |b| format!("0x{b:02X} "));
        anyhow!(
            "config {}:{line}:{column}: not valid UTF-8 (byte {byte}at offset {at}); save the file as UTF-8",
            path.display()
        )
    })
}

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The message of a serde error at a key of `merged` (the file's tree `file` with `overrides` applied,
/// both before `${VAR}` expansion), for the config type `T`.
pub fn explain<T: JsonSchema>(
    path: &Path,
    file: &Value,
    merged: &Value,
    overrides: &[String],
    err: &serde_path_to_error::Error<serde_yaml::Error>,
) -> anyhow::Error {
    let key = err.path().to_string();
    let steps: Option<Vec<Step>> = err
        .path()
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect();
    let inner = plain(&err.inner().to_string());
    let Some(steps) = steps else {
        return anyhow!("config {}: {key}: {inner}", path.display());
    };
    let set = blamed(overrides, &steps, file, merged);
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Json::Null);
    let keys = section_keys(&schema, &steps);
    let value = at(merged, &steps);
    let scalar = value.filter(|v| !v.is_mapping());
    match (set, keys, scalar) {
        (Some(o), Some(keys), Some(v)) if override_key(o) == key => {
            let raw = o.split_once('=').map_or("", |(_, r)| r);
            let example = example_key(&keys, &schema, &steps, at(file, &steps), v);
            anyhow!(
                "--set {o}: `{key}` is a section whose keys are set one at a time, e.g. `--set \
                 {key}.{example}={raw}` (its keys: {})",
                names(&keys)
            )
        }
        (blame, Some(keys), Some(v)) => {
            let place = match blame {
                Some(o) => format!("--set {o}"),
                None => format!("config {}", path.display()),
            };
            anyhow!(
                "{place}: {key}: must be a section of keys ({}), not {}",
                names(&keys),
                describe(v)
            )
        }
        (Some(o), _, _) => anyhow!("--set {o}: {}{inner}", prefix(&key)),
        (None, _, _) => anyhow!("config {}: {}{inner}", path.display(), prefix(&key)),
    }
}

/// `key: ` before a message, or nothing at the top level (serde_path_to_error's `.`).
fn prefix(key: &str) -> String {
    if key == "." {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// serde's message without the name of a Rust type (`expected struct Partial`), which means nothing to
/// whoever wrote the YAML.
fn plain(msg: &str) -> String {
    match msg.find("expected struct ") {
        Some(i) => {
            let rest = &msg[i + "expected struct ".len()..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            format!("{}expected a section of keys{}", &msg[..i], &rest[end..])
        }
        None => msg.to_string(),
    }
}

/// The key path of a `--set key.path=value` argument.
fn override_key(o: &str) -> &str {
    o.split_once('=').map_or(o, |(k, _)| k)
}

/// The last `--set` to blame for an error at `steps`, if any (else the file is to blame): one that set
/// the value there, or a tree holding it, to something other than the file's; or one that set a key
/// inside it where the file has no section (the `--set` made it, e.g. a section missing a required key).
fn blamed<'a>(
    overrides: &'a [String],
    steps: &[Step],
    file: &Value,
    merged: &Value,
) -> Option<&'a String> {
    let in_file = at(file, steps);
    let changed = in_file != at(merged, steps);
    overrides.iter().rev().find(|o| {
        let parts: Vec<&str> = override_key(o).split('.').collect();
        let on_the_path = parts.iter().zip(steps).all(|(p, s)| match s {
            Step::Key(k) => k == p,
            Step::Index(_) => false,
        });
        let inside = parts.len() > steps.len();
        on_the_path
            && if inside {
                !in_file.is_some_and(Value::is_mapping)
            } else {
                changed
            }
    })
}

/// The value at `steps` in a YAML tree.
fn at<'a>(mut v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for s in steps {
        v = match s {
            Step::Key(k) => v.as_mapping()?.get(Value::String(k.clone()))?,
            Step::Index(i) => v.as_sequence()?.get(*i)?,
        };
    }
    Some(v)
}

/// The schema at `steps`, if it is a section (an object with properties): its keys.
fn section_keys(root: &Json, steps: &[Step]) -> Option<Vec<String>> {
    let node = schema_at(root, steps)?;
    let props = node.get("properties")?.as_object()?;
    Some(props.keys().cloned().collect())
}

fn schema_at<'a>(root: &'a Json, steps: &[Step]) -> Option<&'a Json> {
    let mut node = resolve(root, root);
    for s in steps {
        node = match s {
            Step::Key(k) => resolve(root, node.get("properties")?.get(k)?),
            Step::Index(_) => resolve(root, node.get("items")?),
        };
    }
    Some(node)
}

/// A key of the section to show in the example: the first the file itself sets there that takes a value
/// of `value`'s kind, else the first such key of the section, else its first key.
fn example_key(
    keys: &[String],
    root: &Json,
    steps: &[Step],
    in_file: Option<&Value>,
    value: &Value,
) -> String {
    let file_keys: Vec<String> = in_file
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let takes = |k: &String| {
        let mut path: Vec<Step> = steps.iter().map(copy).collect();
        path.push(Step::Key(k.clone()));
        schema_at(root, &path).is_some_and(|s| accepts(root, s, value))
    };
    file_keys
        .iter()
        .filter(|k| keys.contains(k))
        .chain(keys)
        .find(|k| takes(k))
        .or(keys.first())
        .cloned()
        .unwrap_or_default()
}

fn copy(s: &Step) -> Step {
    match s {
        Step::Key(k) => Step::Key(k.clone()),
        Step::Index(i) => Step::Index(*i),
    }
}

/// Whether a schema's `type` admits a YAML scalar of `value`'s kind (an integer is also a number).
fn accepts(root: &Json, schema: &Json, value: &Value) -> bool {
    let kinds: &[&str] = match value {
        Value::Number(n) if n.is_f64() => &["number"],
        Value::Number(_) => &["integer", "number"],
        Value::Bool(_) => &["boolean"],
        Value::String(_) => &["string"],
        _ => return false,
    };
    let schema = resolve(root, schema);
    match schema.get("type") {
        Some(Json::String(t)) => kinds.contains(&t.as_str()),
        Some(Json::Array(ts)) => ts
            .iter()
            .any(|t| t.as_str().is_some_and(|t| kinds.contains(&t))),
        _ => false,
    }
}

fn names(keys: &[String]) -> String {
    keys.join(", ")
}

/// `integer `5``, `string `fast``, `an empty value`: what was given instead of a section.
fn describe(v: &Value) -> String {
    let shown = |v: &Value| {
        serde_yaml::to_string(v)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    match v {
        Value::Null => "an empty value".into(),
        Value::Bool(_) => format!("boolean `{}`", shown(v)),
        Value::Number(n) if n.is_f64() => format!("number `{}`", shown(v)),
        Value::Number(_) => format!("integer `{}`", shown(v)),
        Value::String(_) => format!("string `{}`", shown(v)),
        Value::Sequence(_) => "a sequence (a list)".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => format!("`{}`", shown(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;

    fn tree(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn serde_type_names_are_replaced() {
        assert_eq!(
            plain("invalid type: integer `5`, expected struct Partial"),
            "invalid type: integer `5`, expected a section of keys"
        );
        assert_eq!(plain("unknown field `x`"), "unknown field `x`");
    }

    #[test]
    fn a_section_set_as_one_value_names_the_set_and_a_key_of_the_file() {
        let file = tree("task: sst2\ntrain: {epochs: 3, batch_size: 16}\n");
        let mut merged = file.clone();
        merged["train"] = Value::from(5);
        let err = serde_path_to_error::deserialize::<_, RunConfig>(merged.clone()).unwrap_err();
        let msg = explain::<RunConfig>(
            Path::new("c.yaml"),
            &file,
            &merged,
            &["train=5".to_string()],
            &err,
        )
        .to_string();
        assert!(
            msg.contains("--set train=5: `train` is a section whose keys are set one at a time, e.g. `--set train.epochs=5`"),
            "{msg}"
        );
        assert!(msg.contains("learning_rate"), "{msg}");
        assert!(!msg.contains("Partial") && !msg.contains("c.yaml"), "{msg}");
    }

    #[test]
    fn a_section_written_as_one_value_in_the_file_names_the_file() {
        let file =
            tree("task: sst2\noutput_dir: o\ndata: {dir: d}\nteacher: {model: m}\ntrain: fast\n");
        let err = serde_path_to_error::deserialize::<_, RunConfig>(file.clone()).unwrap_err();
        let msg = explain::<RunConfig>(Path::new("c.yaml"), &file, &file, &[], &err).to_string();
        assert!(
            msg.starts_with("config c.yaml: train: must be a section of keys ("),
            "{msg}"
        );
        assert!(msg.ends_with("not string `fast`"), "{msg}");
    }

    #[test]
    fn a_key_missing_from_the_file_is_not_laid_on_an_unrelated_set() {
        let file = tree("output_dir: o\n");
        let mut merged = file.clone();
        merged["output_dir"] = Value::from("elsewhere");
        let sets = ["output_dir=elsewhere".to_string()];
        let err = serde_path_to_error::deserialize::<_, RunConfig>(merged.clone()).unwrap_err();
        let msg = explain::<RunConfig>(Path::new("c.yaml"), &file, &merged, &sets, &err);
        assert_eq!(msg.to_string(), "config c.yaml: missing field `task`");
        // A section the `--set` made is its own: the missing key is laid on it.
        let file = tree("task: sst2\noutput_dir: o\ndata: {dir: d}\n");
        let mut merged = file.clone();
        merged["teacher"] = tree("revision: v2");
        let sets = ["teacher.revision=v2".to_string()];
        let err = serde_path_to_error::deserialize::<_, RunConfig>(merged.clone()).unwrap_err();
        let msg = explain::<RunConfig>(Path::new("c.yaml"), &file, &merged, &sets, &err);
        assert_eq!(
            msg.to_string(),
            "--set teacher.revision=v2: teacher: missing field `model`"
        );
    }

    #[test]
    fn invalid_utf8_is_named_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latin1.yaml");
        std::fs::write(&p, b"task: sst2\n# d\xc3\xa9j\xc3\xa0 caf\xe9\n").unwrap();
        let msg = read_text(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("latin1.yaml:2:11: not valid UTF-8 (byte 0xE9 at offset 23); save the file as UTF-8"),
            "{msg}"
        );
    }
}
