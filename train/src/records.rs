//! The lines of `metrics.jsonl`, written and read by the same types: one `StepRecord` every
//! `logging_steps` optimizer steps (and the first), one `EvalLine` per evaluation. A resumed run appends,
//! so a step may appear twice; readers keep the later line. The same records go to TensorBoard event
//! files when the log has a TensorBoard folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::tensorboard::EventWriter;
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

impl Record {
    /// The record as TensorBoard scalars: `train/loss`, `train/lr`, `train/grad_norm`, `train/loss_scale`,
    /// `train/TERM` and `train/TERM_weighted` for a step; `dev/METRIC` for an evaluation.
    pub fn scalars(&self) -> (usize, Vec<(String, f64)>) {
        match self {
            Record::Step(s) => {
                let mut v = vec![
                    ("train/loss".to_string(), f64::from(s.loss)),
                    ("train/lr".to_string(), s.lr),
                    ("train/grad_norm".to_string(), s.grad_norm),
                ];
                if let Some(scale) = s.loss_scale {
                    v.push(("train/loss_scale".into(), scale));
                }
                for (name, t) in &s.terms {
                    v.push((format!("train/{name}"), f64::from(t.raw)));
                    v.push((format!("train/{name}_weighted"), f64::from(t.weighted)));
                }
                (s.step, v)
            }
            Record::Eval(e) => (
                e.step,
                e.dev
                    .iter()
                    .map(|(k, v)| (format!("dev/{k}"), *v))
                    .collect(),
            ),
        }
    }
}

/// Appends records to a metrics log, and to a TensorBoard event file beside it when asked.
pub struct MetricsLog {
    file: std::fs::File,
    path: std::path::PathBuf,
    tensorboard: Option<EventWriter>,
}

impl MetricsLog {
    /// Opens `path`, appending when `append` (a resumed run), else starting it anew. A last line without
    /// its newline (a process killed mid-write) is cut off first, so the log holds whole lines only.
    pub fn open(path: &Path, append: bool, tensorboard: Option<&Path>) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if append {
            let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole < text.len() {
                file.set_len(whole as u64).map_err(|e| Error::io(path, e))?;
            }
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            tensorboard: tensorboard.map(EventWriter::create).transpose()?,
        })
    }

    /// Appends one line, in one write; a write that fails half-way (a full disk) is cut back off, so the
    /// log never holds half a line.
    pub fn write(&mut self, r: &Record) -> Result<()> {
        let mut line = serde_json::to_string(r).map_err(|e| Error::Msg(e.to_string()))?;
        line.push('\n');
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        self.file.write_all(line.as_bytes()).map_err(|e| {
            let _ = self.file.set_len(len);
            Error::io(&self.path, e)
        })?;
        if let Some(tb) = &mut self.tensorboard {
            let (step, values) = r.scalars();
            tb.scalars(step, &values)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_drops_a_half_written_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1}\n{\"step\":2,\"lo").unwrap();
        let mut log = MetricsLog::open(&path, true, None).unwrap();
        let eval = Record::Eval(EvalLine {
            step: 3,
            epoch: 1.0,
            dev: [("accuracy".to_string(), 0.5)].into_iter().collect(),
            dev_main: 0.5,
        });
        log.write(&eval).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"step\":1}");
        assert!(lines[1].starts_with("{\"step\":3"), "{text}");
    }

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
