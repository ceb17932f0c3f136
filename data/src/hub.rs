//! Task data from a Hugging Face Hub dataset: its Parquet files (`CONFIG/SPLIT-NNNNN-of-NNNNN.parquet`, as
//! the Hub's `nyu-mll/glue` lays them out), found in the local hub cache or downloaded through hf-hub, and
//! read row by row with the `parquet` crate (no arrow). Text columns by name; the label column holds class
//! ids (mapped to the task's labels by the ClassLabel names the file's metadata carries, else by position)
//! or scores.

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tasks::{Example, Label, TaskSpec};
use crate::{Error, Result};

/// A Hub dataset to read a task from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubDataset {
    /// The dataset's id, e.g. `nyu-mll/glue`.
    pub repo: String,
    /// Its configuration (the folder of its Parquet files), e.g. `sst2`; default: the task's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Branch, tag or commit (default `main`).
    #[serde(default = "main")]
    pub revision: String,
    /// The training split (default `train`).
    #[serde(default = "train")]
    pub train_split: String,
    /// The dev split (default `validation`; MNLI's matched one is `validation_matched`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_split: Option<String>,
}

fn main() -> String {
    "main".into()
}

fn train() -> String {
    "train".into()
}

impl HubDataset {
    /// The training and dev examples of `spec`.
    pub fn read(&self, spec: &TaskSpec) -> Result<(Vec<Example>, Vec<Example>)> {
        let config = self.config.clone().unwrap_or_else(|| spec.name.clone());
        let dev = self.dev_split.clone().unwrap_or_else(|| {
            if spec.name == "mnli" {
                "validation_matched".into()
            } else {
                "validation".into()
            }
        });
        let read = |split: &str| -> Result<Vec<Example>> {
            let mut out = Vec::new();
            for f in self.files(&config, split)? {
                out.extend(read_file(spec, &f)?);
            }
            if out.is_empty() {
                return Err(Error::Msg(format!(
                    "data.hub: {} {config}/{split}: no rows",
                    self.repo
                )));
            }
            Ok(out)
        };
        Ok((read(&self.train_split)?, read(&dev)?))
    }

    /// The Parquet files of one split: from the hub cache when a snapshot there has them, else listed
    /// and downloaded (unless `HF_HUB_OFFLINE=1`).
    pub(crate) fn files(&self, config: &str, split: &str) -> Result<Vec<PathBuf>> {
        let err = |msg: String| {
            Error::Msg(format!(
                "data.hub: {} (revision {}) {config}/{split}: {msg}",
                self.repo, self.revision
            ))
        };
        let prefix = format!("{split}-");
        let wanted = |name: &str| name.starts_with(&prefix) && name.ends_with(".parquet");
        let cache = modeling::hub::hub_cache();
        let repo = Repo::with_revision(self.repo.clone(), RepoType::Dataset, self.revision.clone());
        let folder = cache.path().join(repo.folder_name());
        // A branch or tag names a commit through refs/; a commit is its own snapshot.
        let commit = std::fs::read_to_string(folder.join("refs").join(&self.revision))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| self.revision.clone());
        let dir = folder.join("snapshots").join(commit).join(config);
        let mut cached: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.file_name().is_some_and(|n| wanted(&n.to_string_lossy())))
                    .collect()
            })
            .unwrap_or_default();
        if !cached.is_empty() {
            cached.sort();
            return Ok(cached);
        }
        let remote = modeling::hub::remote(&cache, repo).map_err(err)?;
        let info = remote.info().map_err(|e| err(e.to_string()))?;
        let mut names: Vec<String> = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|n| {
                n.strip_prefix(&format!("{config}/"))
                    .is_some_and(|rest| !rest.contains('/') && wanted(rest))
            })
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(err("the dataset has no such Parquet files".into()));
        }
        names
            .iter()
            .map(|n| remote.get(n).map_err(|e| err(format!("{n}: {e}"))))
            .collect()
    }
}

/// One Parquet file's rows as examples of `spec`.
fn read_file(spec: &TaskSpec, path: &Path) -> Result<Vec<Example>> {
    let bad = |msg: String| Error::file(path, msg);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| bad(format!("not a Parquet file: {e}")))?;
    let names = class_names(&reader);
    let column = |c: &crate::tasks::Column| match c {
        crate::tasks::Column::Name(n) => n.clone(),
        crate::tasks::Column::Index(i) => i.to_string(),
    };
    let glue = crate::glue::task(&spec.name);
    let (a, b) = match glue.map(|t| t.hub_text) {
        Some((a, b)) => (a.to_string(), b.map(str::to_string)),
        None => (column(&spec.text_a), spec.text_b.as_ref().map(column)),
    };
    let label = match &spec.label {
        crate::tasks::Column::Name(n) if glue.is_none() => n.clone(),
        _ => "label".to_string(),
    };
    // Class ids map through the file's ClassLabel names when the task's labels (as the files spell them,
    // or their names: SST-2's 0/1 are negative/positive) have them all, else by position.
    let shown = spec.label_names();
    let by_name: Option<Vec<usize>> = names.as_ref().and_then(|n| {
        n.iter()
            .map(|name| {
                (spec.labels.iter().position(|l| l == name))
                    .or_else(|| shown.iter().position(|l| l == name))
            })
            .collect()
    });
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| bad(format!("cannot read rows: {e}")))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row_err = |msg: String| bad(format!("row {}: {msg}", i + 1));
        let row = row.map_err(|e| row_err(e.to_string()))?;
        let get = |name: &str| {
            row.get_column_iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, f)| f.clone())
        };
        let text = |name: &str| match get(name) {
            Some(Field::Str(s)) => Ok(s),
            Some(other) => Err(row_err(format!("column `{name}` is not text ({other})"))),
            None => Err(row_err(format!("no column `{name}`"))),
        };
        let text_a = text(&a)?;
        let text_b = b.as_deref().map(text).transpose()?;
        let raw = get(&label).ok_or_else(|| row_err(format!("no column `{label}`")))?;
        let label = if spec.is_regression() {
            match raw {
                Field::Float(v) if v.is_finite() => Label::Score(v),
                Field::Double(v) if v.is_finite() => Label::Score(v as f32),
                other => return Err(row_err(format!("score `{other}` is not a finite number"))),
            }
        } else {
            let id = match raw {
                Field::Long(v) => v,
                Field::Int(v) => i64::from(v),
                Field::Short(v) => i64::from(v),
                Field::Byte(v) => i64::from(v),
                other => return Err(row_err(format!("label `{other}` is not a class id"))),
            };
            let k = usize::try_from(id)
                .ok()
                .and_then(|k| match &by_name {
                    Some(map) => map.get(k).copied(),
                    None => (k < spec.labels.len()).then_some(k),
                })
                .ok_or_else(|| {
                    row_err(format!(
                        "label {id} is not a class of the task (labels {:?}; -1 marks an unlabelled test row)",
                        spec.labels
                    ))
                })?;
            Label::Class(k)
        };
        out.push(Example {
            text_a,
            text_b,
            label,
        });
    }
    Ok(out)
}

/// The text of the named `columns` of every row of a Parquet file, in row order (empty cells skipped):
/// the sentences of an embedding run's Hub source.
pub(crate) fn read_texts(path: &Path, columns: &[String]) -> Result<Vec<String>> {
    let bad = |msg: String| Error::file(path, msg);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| bad(format!("not a Parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| bad(format!("cannot read rows: {e}")))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        for name in columns {
            match row.get_column_iter().find(|(n, _)| n.as_str() == name) {
                Some((_, Field::Str(s))) if !s.trim().is_empty() => out.push(s.clone()),
                Some((_, Field::Str(_) | Field::Null)) => {}
                Some((_, other)) => {
                    return Err(bad(format!(
                        "row {}: column `{name}` is not text ({other})",
                        i + 1
                    )))
                }
                None => return Err(bad(format!("row {}: no column `{name}`", i + 1))),
            }
        }
    }
    Ok(out)
}

/// The label column's class names from the `huggingface` key of the file's metadata (the `datasets`
/// library's features), when present.
fn class_names(reader: &SerializedFileReader<std::fs::File>) -> Option<Vec<String>> {
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let json = kv.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let names = v
        .pointer("/info/features/label/names")
        .or_else(|| v.pointer("/info/features/label/_names"))?;
    names
        .as_array()?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}
