//! Unlabelled sentences for embedding distillation (sentence-transformers' distillation recipe learns
//! the teacher's embeddings of plain text): plain-text files (one sentence a line), TSV/CSV files with
//! a header and JSONL files (the named columns or keys), a Hub dataset's Parquet files (the named
//! columns), and both texts of a GLUE task's training file (its labels unread). Errors name the file and line; duplicates are dropped, first occurrence kept.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hub::{read_texts, HubDataset};
use crate::tasks::{csv_records, header_index, jsonl_records, tsv_records, TaskSpec};
use crate::{Error, Result};

/// One source of `data.sentences`: a `file`, a GLUE task's training file (`glue` and `dir`), or a Hub
/// dataset's split (`hub`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentenceSource {
    /// Plain text (one sentence a line), or `.tsv`/`.csv` with a header, or `.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The file's layout (default: by extension; anything but .tsv, .csv, .jsonl is plain text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SentenceFormat>,
    /// TSV/CSV/JSONL/Hub Parquet: the columns (keys) that hold sentences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// A GLUE task name (`sst2`, `mrpc`, ...): every text of its training file in `dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glue: Option<String>,
    /// The GLUE task's folder (`../shared/glue/SST-2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A Hub dataset's split, read from its Parquet files (the local hub cache, else downloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubSentences>,
}

/// `hub:` of a sentence source: `{repo: stsb_multi_mt, config: en, split: train}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubSentences {
    /// The dataset's id.
    pub repo: String,
    /// Its configuration (the folder of its Parquet files).
    #[serde(default = "default_config")]
    pub config: String,
    #[serde(default = "default_split")]
    pub split: String,
    /// Branch, tag or commit.
    #[serde(default = "default_revision")]
    pub revision: String,
}

fn default_config() -> String {
    "default".into()
}
fn default_split() -> String {
    "train".into()
}
fn default_revision() -> String {
    "main".into()
}

impl HubSentences {
    fn dataset(&self) -> HubDataset {
        HubDataset {
            repo: self.repo.clone(),
            config: Some(self.config.clone()),
            revision: self.revision.clone(),
            train_split: self.split.clone(),
            dev_split: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SentenceFormat {
    Text,
    Tsv,
    Csv,
    Jsonl,
}

impl SentenceSource {
    /// What is wrong with this source's keys, naming the key (`None`: nothing).
    pub fn problem(&self) -> Option<String> {
        match (&self.file, &self.glue, &self.dir, &self.hub) {
            (Some(_), None, None, None) => {
                let f = self.format();
                if f != SentenceFormat::Text && self.columns.is_empty() {
                    Some(
                        "columns: a TSV, CSV or JSONL file needs the columns that hold sentences"
                            .into(),
                    )
                } else if f == SentenceFormat::Text && !self.columns.is_empty() {
                    Some("columns: a plain-text file has no columns".into())
                } else {
                    None
                }
            }
            (None, Some(task), Some(_), None) => match TaskSpec::glue(task) {
                Some(_) if self.columns.is_empty() && self.format.is_none() => None,
                Some(_) => Some("glue: `columns` and `format` are for files".into()),
                None => Some(format!("glue: `{task}` is not a GLUE task")),
            },
            (None, Some(_), None, None) => {
                Some("dir: a GLUE source needs the task's folder".into())
            }
            (None, None, None, Some(_)) if self.columns.is_empty() => {
                Some("columns: a Hub source needs the columns that hold sentences".into())
            }
            (None, None, None, Some(_)) if self.format.is_some() => {
                Some("format: a Hub source is Parquet".into())
            }
            (None, None, None, Some(_)) => None,
            _ => Some("give one of `file`, `glue` with `dir`, or `hub`".into()),
        }
    }

    /// Whether the source is read from local files (a Hub source may be downloaded).
    pub fn is_local(&self) -> bool {
        self.hub.is_none()
    }

    fn format(&self) -> SentenceFormat {
        self.format.unwrap_or_else(|| {
            match self
                .file
                .as_ref()
                .and_then(|f| f.extension())
                .and_then(|e| e.to_str())
            {
                Some("tsv") => SentenceFormat::Tsv,
                Some("csv") => SentenceFormat::Csv,
                Some("jsonl") => SentenceFormat::Jsonl,
                _ => SentenceFormat::Text,
            }
        })
    }

    /// The file this source reads.
    pub fn path(&self) -> PathBuf {
        match (&self.file, &self.glue, &self.dir) {
            (Some(f), _, _) => f.clone(),
            (None, Some(task), Some(dir)) => {
                let spec = TaskSpec::glue(task);
                dir.join(spec.map_or("train.tsv".to_string(), |s| s.train_file))
            }
            _ => PathBuf::new(),
        }
    }

    /// The source's sentences in file order (blank ones skipped).
    pub fn read(&self) -> Result<Vec<String>> {
        if let Some(h) = &self.hub {
            let mut out = Vec::new();
            for f in h.dataset().files(&h.config, &h.split)? {
                out.extend(read_texts(&f, &self.columns)?);
            }
            if out.is_empty() {
                return Err(Error::Msg(format!(
                    "hub: {} {}/{}: no sentences",
                    h.repo, h.config, h.split
                )));
            }
            return Ok(out);
        }
        let path = self.path();
        if let Some(task) = &self.glue {
            let spec = TaskSpec::glue(task)
                .ok_or_else(|| Error::Msg(format!("`{task}` is not a GLUE task")))?;
            let rows = spec.read(&path)?;
            let mut out = Vec::with_capacity(rows.len() * 2);
            for e in rows {
                out.push(e.text_a);
                out.extend(e.text_b);
            }
            return Ok(out.into_iter().filter(|s| !s.trim().is_empty()).collect());
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let out = match self.format() {
            SentenceFormat::Text => text_lines(&path, bytes)?,
            SentenceFormat::Tsv => columns(&path, tsv_records(&path, bytes)?, &self.columns)?,
            SentenceFormat::Csv => columns(&path, csv_records(&path, bytes)?, &self.columns)?,
            SentenceFormat::Jsonl => jsonl(&path, bytes, &self.columns)?,
        };
        if out.is_empty() {
            return Err(Error::file(&path, "no sentences in file"));
        }
        Ok(out)
    }
}

/// Every source's sentences, in order, each sentence once.
pub fn read_all(sources: &[SentenceSource]) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in sources {
        for t in s.read()? {
            if seen.insert(t.clone()) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

fn text_lines(path: &Path, bytes: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            line: i + 1,
            msg: format!("not valid UTF-8 ({e})"),
        })?;
        let line = line.trim();
        if !line.is_empty() {
            out.push(line.to_string());
        }
    }
    Ok(out)
}

fn columns(path: &Path, rows: Vec<(usize, Vec<String>)>, names: &[String]) -> Result<Vec<String>> {
    let mut rows = rows.into_iter();
    let header = rows
        .next()
        .map(|(_, h)| h)
        .ok_or_else(|| Error::file(path, "empty file (a header row was expected)"))?;
    let idx = names
        .iter()
        .map(|n| header_index(path, &header, n))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (line, cols) in rows {
        for &i in &idx {
            let cell = cols.get(i).ok_or_else(|| Error::Data {
                path: path.to_path_buf(),
                line,
                msg: format!("expected at least {} columns, found {}", i + 1, cols.len()),
            })?;
            if !cell.trim().is_empty() {
                out.push(cell.clone());
            }
        }
    }
    Ok(out)
}

fn jsonl(path: &Path, bytes: &[u8], keys: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (line, v) in jsonl_records(path, bytes)? {
        let bad = |msg: String| Error::Data {
            path: path.to_path_buf(),
            line,
            msg,
        };
        for k in keys {
            match v.get(k) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => out.push(s.clone()),
                Some(serde_json::Value::String(_)) => {}
                Some(other) => return Err(bad(format!("field `{k}` is not a string: {other}"))),
                None => return Err(bad(format!("missing field `{k}`"))),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> SentenceSource {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        SentenceSource {
            file: Some(p),
            format: None,
            columns: Vec::new(),
            glue: None,
            dir: None,
            hub: None,
        }
    }

    #[test]
    fn reads_every_layout_and_drops_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let txt = file(
            d.path(),
            "a.txt",
            "Héllo World\n\n  Ünïcode 日本語 \nHéllo World\n",
        );
        let mut tsv = file(
            d.path(),
            "b.tsv",
            "id\ttext\n1\tA tab row\n2\tHéllo World\n",
        );
        tsv.columns = vec!["text".into()];
        let mut csv = file(d.path(), "c.csv", "text,other\n\"a, quoted\",x\n");
        csv.columns = vec!["text".into(), "other".into()];
        let mut js = file(
            d.path(),
            "d.jsonl",
            "{\"t\": \"json one\"}\n\n{\"t\": \"json two\"}\n",
        );
        js.columns = vec!["t".into()];
        let all = read_all(&[txt, tsv, csv, js]).unwrap();
        assert_eq!(
            all,
            [
                "Héllo World",
                "Ünïcode 日本語",
                "A tab row",
                "a, quoted",
                "x",
                "json one",
                "json two"
            ]
        );
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let mut js = file(d.path(), "d.jsonl", "{\"t\": \"ok\"}\n{\"u\": 1}\n");
        js.columns = vec!["t".into()];
        let e = js.read().unwrap_err().to_string();
        assert!(
            e.contains("d.jsonl") && e.contains(":2") && e.contains("`t`"),
            "{e}"
        );
        let mut tsv = file(d.path(), "b.tsv", "id\ttext\n1\tx\n");
        tsv.columns = vec!["sentence".into()];
        let e = tsv.read().unwrap_err().to_string();
        assert!(
            e.contains("b.tsv") && e.contains("no column `sentence`"),
            "{e}"
        );
        let mut bad = file(d.path(), "x.txt", "x");
        bad.columns = vec!["a".into()];
        assert!(bad.problem().unwrap().contains("plain-text"));
    }

    #[test]
    fn glue_sources_read_both_texts_of_the_training_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("train.tsv"),
            "sentence1\tsentence2\tscore\nA man plays.\tA man is playing.\t4.2\nA man plays.\tA dog.\t0.5\n",
        )
        .unwrap();
        let s = SentenceSource {
            file: None,
            format: None,
            columns: Vec::new(),
            glue: Some("stsb".into()),
            dir: Some(d.path().to_path_buf()),
            hub: None,
        };
        assert_eq!(s.problem(), None);
        assert_eq!(
            read_all(&[s]).unwrap(),
            ["A man plays.", "A man is playing.", "A dog."]
        );
    }
}
