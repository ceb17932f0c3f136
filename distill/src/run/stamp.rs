//! Stage stamps: a record of everything a stage's output was computed from, one type per stage, written
//! to `stamp.json` beside the output and read back by the same type. The stamp says which inputs a
//! (possibly unfinished) stage belongs to; comparing it with the current inputs tells fresh from stale,
//! and names the inputs that changed.

use std::path::Path;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use student::init::StudentConfig;
use teacher::Fingerprint;
use train::TrainSettings;

use crate::config::DistillConfig;

/// What a fine-tuned teacher was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherStamp {
    /// SHA-256 of the pre-trained teacher's weights.
    pub teacher_weights: String,
    /// SHA-256 of its tokenizer file.
    pub tokenizer: String,
    pub max_seq_len: usize,
    /// Hashes of the training and dev sets.
    pub data: String,
    pub finetune: TrainSettings,
    pub seed: u64,
    pub labels: Vec<String>,
}

/// What a trained student was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentStamp {
    /// The fingerprint of the teacher targets it learnt from (none for token-level terms alone).
    pub targets: Option<Fingerprint>,
    pub student: StudentConfig,
    pub train: TrainSettings,
    pub distill: DistillConfig,
    /// SHA-256 of the student's tokenizer file.
    pub tokenizer: String,
    /// Hashes of the training and dev sets.
    pub data: String,
    pub max_seq_len: usize,
    pub seed: u64,
    pub student_seed: u64,
    /// SHA-256 of the online teacher's weights (token-level terms only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_teacher: Option<String>,
    /// SHA-256 of the online teacher's tokenizer, when it differs from the student's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_teacher_tokenizer: Option<String>,
    /// SHA-256 of the weights `student.init` names, when it is a local folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<String>,
}

pub enum Freshness {
    Missing,
    Fresh,
    Stale(String),
}

/// Reads a stamp file as `T` (`None` when it is missing or of another shape).
pub fn read_stamp<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Compares `dir/stamp.json` with `stamp`, naming the fields that changed.
pub fn check_stamp<T: Serialize + DeserializeOwned + PartialEq>(
    dir: &Path,
    stamp: &T,
) -> Freshness {
    let path = dir.join("stamp.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Freshness::Missing;
    };
    let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Freshness::Stale("unreadable stamp.json".into());
    };
    if serde_json::from_value::<T>(old.clone()).is_ok_and(|o| o == *stamp) {
        return Freshness::Fresh;
    }
    let new = serde_json::to_value(stamp).unwrap_or_default();
    let changed: Vec<String> = new
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

pub fn write_stamp<T: Serialize>(dir: &Path, stamp: &T) -> Result<()> {
    write_stamp_as(&dir.join("stamp.json"), stamp)
}

pub fn write_stamp_as<T: Serialize>(path: &Path, stamp: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(stamp)?;
    modeling::write_atomic(path, text.as_bytes())?;
    Ok(())
}
