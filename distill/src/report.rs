//! The comparison report: teacher and student on the dev set with the task's official metric, % of
//! teacher retained, prediction agreement, parameter counts, size on disk and inference throughput,
//! written as report.json and report.md.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use student::Scores;

use crate::pipeline::{timed_logits, tokenise, Plan};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub dev: Scores,
    pub parameters: usize,
    pub size_bytes: u64,
    /// Dev-set inference throughput on this run's device.
    pub examples_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub task: String,
    pub dev_examples: usize,
    pub device: String,
    pub teacher: ModelSummary,
    pub student: ModelSummary,
    /// Student main dev score as a percentage of the teacher's.
    pub retained_percent: f64,
    /// Share of dev examples on which both predict the same label.
    pub agreement: f64,
}

impl Report {
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        teacher::write_atomic(&dir.join("report.json"), json.as_bytes())?;
        teacher::write_atomic(&dir.join("report.md"), self.markdown().as_bytes())?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# {} — teacher vs student\n\nDev set: {} examples. Device: {}.\n\n",
            self.task, self.dev_examples, self.device
        );
        let metrics: Vec<&String> = self.teacher.dev.values.keys().collect();
        s.push_str("| model | ");
        for m in &metrics {
            s.push_str(&format!("{m} | "));
        }
        s.push_str("parameters | size on disk | dev examples/s |\n|---|");
        for _ in &metrics {
            s.push_str("---|");
        }
        s.push_str("---|---|---|\n");
        for m in [&self.teacher, &self.student] {
            s.push_str(&format!("| {} | ", m.name));
            for k in &metrics {
                let v = m.dev.values.get(*k).copied().unwrap_or(f64::NAN);
                s.push_str(&format!("{:.2} | ", v * 100.0));
            }
            s.push_str(&format!(
                "{:.1}M | {:.1} MB | {:.1} |\n",
                m.parameters as f64 / 1e6,
                m.size_bytes as f64 / 1e6,
                m.examples_per_second
            ));
        }
        let retained = if self.retained_percent.is_finite() {
            format!("**{:.1}%**", self.retained_percent)
        } else {
            "an undefined share (the teacher scores 0)".into()
        };
        s.push_str(&format!(
            "\nStudent retains {retained} of the teacher's score; the two agree on {:.1}% of dev predictions. \
             The student is {:.1}x smaller and {:.1}x faster here.\n",
            self.agreement * 100.0,
            self.teacher.parameters as f64 / self.student.parameters.max(1) as f64,
            self.student.examples_per_second / self.teacher.examples_per_second.max(1e-9),
        ));
        s
    }
}

/// Scores teacher and student on dev with the same metric code and writes the report.
pub fn compare(p: &Plan) -> Result<Report> {
    let (_, dev) = p.read_data()?;
    let (t_model, t_tok, t_files) = p.teacher_model()?;
    let t_dev = tokenise(&t_tok, &dev)?;
    let bs = p.cfg.teacher.batch_size;
    let (t_logits, t_speed) = timed_logits(&t_model, &t_dev.ids, t_tok.pad_id(), bs)?;
    let t_scores = student::eval::score(&t_logits, &t_dev.labels, p.spec.metric)?;

    let best = p.student_dir().join("best");
    let s_files = teacher::ModelSource::Local(best.clone())
        .resolve(false)
        .with_context(|| "no trained student: run `distill train` first".to_string())?;
    let (s_model, _) =
        teacher::Classifier::load(&s_files, Some(p.spec.num_outputs()), p.cfg.seed, &p.device)?;
    let s_tok = p.student_tokenizer()?;
    let s_dev = tokenise(&s_tok, &dev)?;
    let (s_logits, s_speed) = timed_logits(&s_model, &s_dev.ids, s_tok.pad_id(), bs)?;
    let mut s_scores = student::eval::score(&s_logits, &s_dev.labels, p.spec.metric)?;

    // Further dev sets (MNLI mismatched) add their metrics with a suffix; the main score becomes the
    // mean of all of them, as the GLUE leaderboard averages MNLI-m and MNLI-mm.
    let mut t_scores = t_scores;
    for (suffix, file) in &p.spec.extra_dev {
        let path = p.cfg.data.dir.join(file);
        let extra = p.spec.read(&path).context("data.dir")?;
        let labels: Vec<_> = extra.iter().map(|e| e.label).collect();
        for (model, tok, scores) in [
            (&t_model, &t_tok, &mut t_scores),
            (&s_model, &s_tok, &mut s_scores),
        ] {
            let enc = tokenise(tok, &extra)?;
            let logits = student::eval::logits(model, &enc.ids, tok.pad_id(), bs)?;
            let more = student::eval::score(&logits, &labels, p.spec.metric)?;
            for (k, v) in more.values {
                scores.values.insert(format!("{k}_{suffix}"), v);
            }
            scores.main = scores.values.values().sum::<f64>() / scores.values.len() as f64;
        }
    }

    let report = Report {
        task: p.spec.name.clone(),
        dev_examples: dev.len(),
        device: format!("{:?}", p.device),
        retained_percent: if t_scores.main > 0.0 {
            100.0 * s_scores.main / t_scores.main
        } else {
            f64::NAN
        },
        agreement: student::eval::agreement(&t_logits, &s_logits)?,
        teacher: ModelSummary {
            name: format!("teacher ({})", p.cfg.teacher.model),
            dev: t_scores,
            parameters: t_model.num_parameters(),
            size_bytes: t_files.weights_size(),
            examples_per_second: t_speed,
        },
        student: ModelSummary {
            name: "student".into(),
            dev: s_scores,
            parameters: s_model.num_parameters(),
            size_bytes: s_files.weights_size(),
            examples_per_second: s_speed,
        },
    };
    report.write(&p.out)?;
    Ok(report)
}
