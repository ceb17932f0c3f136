//! The lines of `metrics.jsonl`, written and read by the same types: one `StepRecord` every 10
//! optimizer steps (and the first), one `EvalRecordLine` per evaluation. A resumed run appends, so a
//! step may appear twice; readers keep the later line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One loss term of a step: its value, and its value times its weight in the total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TermRecord {
    pub raw: f32,
    pub weighted: f32,
}

/// What an optimizer step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub epoch: f64,
    /// The total loss the step differentiated (before any f16 loss scale).
    pub loss: f32,
    /// Each term by name (`ce`, `kd`, `hidden_mse`, `mlm`, ...).
    pub terms: BTreeMap<String, TermRecord>,
    pub lr: f64,
    pub grad_norm: f64,
    /// Under f16 only: the loss scale the step used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Under f16 only: whether the step's update was skipped (its gradients overflowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<bool>,
}

/// An evaluation on the held-out set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLine {
    pub step: usize,
    pub epoch: f64,
    /// Every metric of the task by name.
    pub dev: BTreeMap<String, f64>,
    /// The metric that picks the best checkpoint.
    pub dev_main: f64,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    Eval(EvalLine),
    Step(StepRecord),
}

/// Reads a metrics log; a line that is not a record (a torn last line of a killed run) is skipped.
pub fn read(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Appends records to a metrics log.
pub struct MetricsLog {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl MetricsLog {
    /// Opens `path`, appending when `append` (a resumed run), else starting it anew.
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, r: &Record) -> Result<()> {
        let line = serde_json::to_string(r).map_err(|e| Error::Msg(e.to_string()))?;
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written() {
        let step = Record::Step(StepRecord {
            step: 10,
            epoch: 0.5,
            loss: 0.7,
            terms: [(
                "ce".to_string(),
                TermRecord {
                    raw: 0.7,
                    weighted: 0.35,
                },
            )]
            .into(),
            lr: 1e-4,
            grad_norm: 1.5,
            loss_scale: Some(65536.0),
            skipped: Some(false),
        });
        let eval = Record::Eval(EvalLine {
            step: 10,
            epoch: 0.5,
            dev: [("accuracy".to_string(), 0.8)].into(),
            dev_main: 0.8,
        });
        let text = [&step, &eval]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(read(&format!("{text}\n{{\"step\": 3")), vec![step, eval]);
    }
}
