//! Task data: GLUE's TSV layout for every GLUE task, and custom tasks in TSV/CSV/JSONL with columns named
//! in the config. Rows are read as bytes, so a bad row (wrong column count, unknown label, non-UTF-8) is
//! reported as `file:line` instead of aborting somewhere deeper.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Label {
    Class(usize),
    Score(f32),
}

/// The class of an example with no gold label (an augmented one): its `Label::Class`; becomes
/// `u32::MAX` in a label tensor, which the task loss skips (as PyTorch's `ignore_index`).
pub const NO_CLASS: usize = usize::MAX;

impl Label {
    /// The label of an example taught by the teacher's soft targets only: `NO_CLASS`, or a NaN score
    /// for regression. Every loss on gold labels skips it.
    pub fn soft(regression: bool) -> Self {
        if regression {
            Label::Score(f32::NAN)
        } else {
            Label::Class(NO_CLASS)
        }
    }

    /// Whether this is a gold label (not `Label::soft`).
    pub fn is_gold(&self) -> bool {
        match *self {
            Label::Class(c) => c != NO_CLASS,
            Label::Score(s) => !s.is_nan(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Label,
}

/// The task's official metric (GLUE's choice per task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Accuracy,
    /// F1 of the positive class and accuracy (MRPC, QQP).
    F1Accuracy,
    /// Matthews correlation (CoLA).
    Matthews,
    /// Pearson and Spearman correlation (STS-B).
    PearsonSpearman,
}

impl Metric {
    /// The names of the dev scores a training evaluation reports for this metric.
    pub fn names(&self) -> &'static [&'static str] {
        match self {
            Metric::Accuracy => &["accuracy"],
            Metric::F1Accuracy => &["f1", "accuracy"],
            Metric::Matthews => &["matthews"],
            Metric::PearsonSpearman => &["pearson", "spearman"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tsv,
    Csv,
    Jsonl,
}

/// A column by header name, or by 0-based index for files without a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Column {
    Index(usize),
    Name(String),
}

/// How to read one task: file layout, columns, label set (empty for regression) and metric.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    pub format: Format,
    pub header: bool,
    pub text_a: Column,
    pub text_b: Option<Column>,
    pub label: Column,
    /// Class names in index order; empty for a regression task.
    pub labels: Vec<String>,
    pub metric: Metric,
    pub train_file: String,
    pub dev_file: String,
    /// Further labelled dev sets scored by `compare`, as (metric-name suffix, file): MNLI's mismatched
    /// dev set (`accuracy_mm`). Model selection uses `dev_file` only.
    pub extra_dev: Vec<(String, String)>,
}

impl TaskSpec {
    pub fn is_regression(&self) -> bool {
        self.labels.is_empty()
    }

    /// Outputs of the model's head: the class count, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        self.labels.len().max(1)
    }

    /// Reads a labelled split file.
    pub fn read(&self, path: &Path) -> Result<Vec<Example>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::file(path, "empty file: no examples"));
        }
        // A UTF-8 byte-order mark (spreadsheet exports) is not part of the first column's name.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let rows = match self.format {
            Format::Jsonl => self.rows_jsonl(path, bytes)?,
            Format::Tsv => self.rows_delimited(path, bytes, b'\t')?,
            Format::Csv => self.rows_delimited(path, bytes, b',')?,
        };
        if rows.is_empty() {
            return Err(Error::file(path, "no examples in file"));
        }
        Ok(rows)
    }

    fn parse_label(&self, raw: &str, path: &Path, line: usize) -> Result<Label> {
        let raw = raw.trim();
        let bad = |msg: String| Error::Data {
            path: path.to_path_buf(),
            line,
            msg,
        };
        if self.is_regression() {
            let v: f32 = raw
                .parse()
                .map_err(|_| bad(format!("score `{raw}` is not a number")))?;
            if !v.is_finite() {
                return Err(bad(format!("score `{raw}` is not finite")));
            }
            return Ok(Label::Score(v));
        }
        self.labels
            .iter()
            .position(|l| l == raw)
            .map(Label::Class)
            .ok_or_else(|| bad(format!("label `{raw}` is not one of {:?}", self.labels)))
    }

    fn rows_delimited(&self, path: &Path, bytes: &[u8], sep: u8) -> Result<Vec<Example>> {
        let mut rows = if sep == b'\t' {
            tsv_records(path, bytes)?
        } else {
            csv_records(path, bytes)?
        }
        .into_iter();
        let header: Vec<String> = if self.header {
            match rows.next() {
                Some((_, h)) => h,
                None => return Err(Error::file(path, "empty file (a header row was expected)")),
            }
        } else {
            Vec::new()
        };
        let index = |c: &Column| -> Result<usize> {
            match c {
                Column::Index(i) => Ok(*i),
                Column::Name(name) => header_index(path, &header, name),
            }
        };
        let (ia, il) = (index(&self.text_a)?, index(&self.label)?);
        let ib = self.text_b.as_ref().map(index).transpose()?;
        let need = ia.max(il).max(ib.unwrap_or(0)) + 1;
        let mut out = Vec::new();
        for (line, cols) in rows {
            if cols.len() < need {
                return Err(Error::Data {
                    path: path.to_path_buf(),
                    line,
                    msg: format!("expected at least {need} columns, found {}", cols.len()),
                });
            }
            out.push(Example {
                text_a: cols[ia].clone(),
                text_b: ib.map(|b| cols[b].clone()),
                label: self.parse_label(&cols[il], path, line)?,
            });
        }
        Ok(out)
    }

    fn rows_jsonl(&self, path: &Path, bytes: &[u8]) -> Result<Vec<Example>> {
        let mut out = Vec::new();
        for (line, v) in jsonl_records(path, bytes)? {
            let bad = |msg: String| Error::Data {
                path: path.to_path_buf(),
                line,
                msg,
            };
            let field = |c: &Column| -> Result<String> {
                let Column::Name(name) = c else {
                    return Err(bad("JSONL columns must be named".into()));
                };
                match v.get(name) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Null) | None => {
                        Err(bad(format!("missing field `{name}`")))
                    }
                    Some(other) => Ok(other.to_string()),
                }
            };
            out.push(Example {
                text_a: field(&self.text_a)?,
                text_b: self.text_b.as_ref().map(field).transpose()?,
                label: self.parse_label(&field(&self.label)?, path, line)?,
            });
        }
        Ok(out)
    }
}

/// The position of the column `name` in a file's `header` row; an error naming the file and the columns
/// it has when there is none.
pub(crate) fn header_index(path: &Path, header: &[String], name: &str) -> Result<usize> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| Error::Data {
            path: path.to_path_buf(),
            line: 1,
            msg: format!("no column `{name}` in the header (columns: {header:?})"),
        })
}

/// The JSON object of every non-blank line of a JSONL file, with its 1-based line number; a line that is
/// not UTF-8 or not JSON is an error naming it.
pub(crate) fn jsonl_records(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, serde_json::Value)>> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let bad = |msg: String| Error::Data {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let text = std::str::from_utf8(raw).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// An unlabelled row of a test file: its `index` (or `id`) and texts.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRow {
    pub index: String,
    pub text_a: String,
    pub text_b: Option<String>,
}

/// Reads a GLUE test file (header with `index`/`id` and the named text columns).
pub fn read_test(path: &Path, text_a: &str, text_b: Option<&str>) -> Result<Vec<TestRow>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut lines = bytes.split(|&b| b == b'\n').enumerate();
    let header = match lines.next() {
        Some((_, h)) => split_row(path, 1, h)?,
        None => return Err(Error::file(path, "empty file")),
    };
    let col = |name: &str| header_index(path, &header, name);
    let ii = col("index").or_else(|_| col("id"))?;
    let ia = col(text_a)?;
    let ib = text_b.map(col).transpose()?;
    let need = ii.max(ia).max(ib.unwrap_or(0)) + 1;
    let mut out = Vec::new();
    for (i, raw) in lines {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let cols = split_row(path, i + 1, raw)?;
        if cols.len() < need {
            return Err(Error::Data {
                path: path.to_path_buf(),
                line: i + 1,
                msg: format!("expected at least {need} columns, found {}", cols.len()),
            });
        }
        out.push(TestRow {
            index: cols[ii].clone(),
            text_a: cols[ia].clone(),
            text_b: ib.map(|b| cols[b].clone()),
        });
    }
    Ok(out)
}

/// One tab-separated line's columns. GLUE's TSVs are not quoted: quotes are part of the text.
fn split_row(path: &Path, line: usize, raw: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(raw).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        line,
        msg: format!("not valid UTF-8 ({e})"),
    })?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.split('\t').map(str::to_string).collect())
}

/// The non-empty lines of a TSV file with their line numbers, split into columns.
pub(crate) fn tsv_records(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if !raw.is_empty() {
            out.push((i + 1, split_row(path, i + 1, raw)?));
        }
    }
    Ok(out)
}

/// The records of an RFC 4180 CSV file (the `csv` crate: quoted fields may hold commas, quotes as `""`,
/// and newlines), each with the line it starts on. A quote left open runs to the end of the file, which
/// the reader accepts silently; it is reported here, with the line of the record it opened in.
pub(crate) fn csv_records(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    // The reader counts records, not the newlines inside quoted fields: lines come from byte offsets.
    let (mut counted_to, mut line_at) = (0usize, 1usize);
    // Where the last record started (byte, line).
    let mut last = (0usize, 1usize);
    let mut line_of = |byte: usize| {
        // A record's position may point at the line ending before it (the `\n` of a `\r\n`).
        let mut byte = byte.min(bytes.len());
        while bytes.get(byte).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            byte += 1;
        }
        if byte >= counted_to {
            line_at += bytes[counted_to..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted_to = byte;
        }
        line_at
    };
    loop {
        let start = reader.position().clone();
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| Error::Data {
                path: path.to_path_buf(),
                line: line_of(e.position().map_or(start.byte(), |p| p.byte()) as usize),
                msg: format!("malformed CSV: {e}"),
            })?;
        if !more {
            break;
        }
        let line = line_of(record.position().map_or(start.byte(), |p| p.byte()) as usize);
        last = (start.byte() as usize, line);
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        let cols = record
            .iter()
            .map(|f| {
                std::str::from_utf8(f)
                    .map(|t| t.strip_suffix('\r').unwrap_or(t).to_string())
                    .map_err(|e| Error::Data {
                        path: path.to_path_buf(),
                        line,
                        msg: format!("not valid UTF-8 ({e})"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push((line, cols));
    }
    // An odd number of quotes from the last record's start means one never closed.
    let (from, line) = last;
    if bytes[from.min(bytes.len())..]
        .iter()
        .filter(|&&b| b == b'"')
        .count()
        % 2
        == 1
    {
        return Err(Error::Data {
            path: path.to_path_buf(),
            line,
            msg: "a quote opened in this record is never closed".into(),
        });
    }
    Ok(out)
}

/// The train and dev files of a task under `dir`.
pub fn split_paths(spec: &TaskSpec, dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(&spec.train_file), dir.join(&spec.dev_file))
}

/// SHA-256 of a dataset's texts and labels, hex.
pub fn hash_examples(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for e in examples {
        h.update(e.text_a.as_bytes());
        h.update([0u8]);
        if let Some(b) = &e.text_b {
            h.update(b.as_bytes());
        }
        h.update([1u8]);
        match e.label {
            Label::Class(c) => h.update((c as u64).to_le_bytes()),
            Label::Score(s) => h.update(s.to_le_bytes()),
        }
    }
    modeling::io::hex(&h.finalize())
}
