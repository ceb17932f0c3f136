//! Stage stamps: a JSON record of everything a stage's output was computed from. `stamp.json` beside the
//! output says which inputs a (possibly unfinished) stage belongs to; comparing it with the current
//! inputs tells fresh from stale, and names the inputs that changed.

use std::path::Path;

use anyhow::Result;

pub enum Freshness {
    Missing,
    Fresh,
    Stale(String),
}

pub fn check_stamp(dir: &Path, stamp: &serde_json::Value) -> Freshness {
    let path = dir.join("stamp.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Freshness::Missing;
    };
    let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Freshness::Stale("unreadable stamp.json".into());
    };
    if old == *stamp {
        return Freshness::Fresh;
    }
    let changed: Vec<String> = stamp
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    Freshness::Stale(format!("changed: {}", changed.join(", ")))
}

pub fn write_stamp(dir: &Path, stamp: &serde_json::Value) -> Result<()> {
    write_stamp_as(&dir.join("stamp.json"), stamp)
}

pub fn write_stamp_as(path: &Path, stamp: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(stamp)?;
    modeling::write_atomic(path, text.as_bytes())?;
    Ok(())
}
