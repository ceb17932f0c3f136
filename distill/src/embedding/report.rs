//! The embedding run's comparison, as MTEB scores STS: each pair's two embeddings compared by cosine,
//! Spearman (MTEB's main score) and Pearson against the gold scores, with bootstrap intervals; the
//! teacher and the student side by side, with how closely the student's embeddings agree with the
//! teacher's (mean cosine over the set's sentences), batch-1 latency and batch-32 throughput. Written as
//! report.json and report.md, and as the export's model card.

use std::path::Path;

use anyhow::{Context, Result};
use data::tasks::{Column, Format};
use data::{Label, Metric, TaskSpec};
use inference::Forward;
use modeling::sentence::row_cosines;
use modeling::{Encoded, TextTokenizer};
use serde::{Deserialize, Serialize};
use train::bootstrap::{bootstrap, BootstrapConfig, Interval};
use train::metrics::{pearson, spearman};

use super::Teacher;
use crate::config::embedding::EmbeddingConfig;

/// Scored pairs, as text.
pub(crate) struct StsText {
    pub a: Vec<String>,
    pub b: Vec<String>,
    pub scores: Vec<f64>,
}

/// One model's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRow {
    pub name: String,
    pub parameters: usize,
    pub dimensions: usize,
    /// Cosine Spearman and Pearson × 100 with 95% bootstrap intervals (absent without an STS set).
    pub spearman: Option<f64>,
    pub spearman_ci: Option<Interval>,
    pub pearson: Option<f64>,
    pub pearson_ci: Option<Interval>,
    /// Batch-1 latency, p50 in ms, over the first STS sentences.
    pub batch1_ms: Option<f64>,
    /// Sentences per second embedding the STS set in batches of 32.
    pub batch32_per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingReport {
    /// `plots/training_curves.png` beside the report, when the student trained.
    #[serde(default)]
    pub curves: Option<String>,
    pub teacher: ModelRow,
    pub student: ModelRow,
    /// Mean cosine between the student's and the teacher's embeddings of the STS set's sentences.
    pub teacher_agreement: Option<f64>,
    pub sts_file: Option<String>,
    pub sts_pairs: usize,
    pub training_sentences: usize,
    pub train_steps: usize,
    pub train_seconds: f64,
    pub best_step: Option<usize>,
}

/// The STS set of `eval:`, when one is configured.
pub(crate) fn read_sts(cfg: &EmbeddingConfig) -> Result<Option<StsText>> {
    let Some(e) = &cfg.eval else {
        return Ok(None);
    };
    let col = |s: &str| Column::Name(s.to_string());
    let spec = TaskSpec {
        name: "sts".into(),
        format: Format::Tsv,
        header: true,
        text_a: col(&e.columns[0]),
        text_b: Some(col(&e.columns[1])),
        label: col(&e.columns[2]),
        labels: Vec::new(),
        metric: Metric::PearsonSpearman,
        train_file: String::new(),
        dev_file: String::new(),
        extra_dev: Vec::new(),
    };
    let mut rows = spec.read(&e.file).context("eval.file")?;
    if e.max_pairs > 0 {
        rows.truncate(e.max_pairs);
    }
    let mut out = StsText {
        a: Vec::new(),
        b: Vec::new(),
        scores: Vec::new(),
    };
    for r in rows {
        out.a.push(r.text_a);
        out.b.push(r.text_b.unwrap_or_default());
        out.scores.push(match r.label {
            Label::Score(s) => s as f64,
            Label::Class(c) => c as f64,
        });
    }
    Ok(Some(out))
}

/// The student as the report measures it: any embedding model, its tokenizer and size.
pub(crate) struct Student<'a, M: Forward> {
    pub model: &'a M,
    pub tok: &'a TextTokenizer,
    pub parameters: usize,
    pub dimensions: usize,
}

/// What one model answers on the STS set: the embeddings of both sides, the row.
struct Measured {
    row: ModelRow,
    a: candle_core::Tensor,
    b: candle_core::Tensor,
}

fn measure<M: Forward>(name: &str, s: &Student<M>, sts: &StsText, seed: u64) -> Result<Measured> {
    let (model, tok) = (s.model, s.tok);
    let enc = |t: &[String]| -> Result<Vec<Encoded>> {
        t.iter()
            .map(|s| tok.encode(s, None).map_err(Into::into))
            .collect()
    };
    let (ea, eb) = (enc(&sts.a)?, enc(&sts.b)?);
    let both: Vec<Encoded> = ea.iter().chain(&eb).cloned().collect();
    let pass = inference::logits(model, &both, tok.pad_id(), 32, Some(name))?;
    let n = ea.len();
    let (a, b) = (pass.logits.narrow(0, 0, n)?, pass.logits.narrow(0, n, n)?);
    let cos: Vec<f64> = row_cosines(&a, &b)?.into_iter().map(f64::from).collect();
    let cfg = BootstrapConfig {
        seed,
        ..Default::default()
    };
    let ci = bootstrap(&[n], &cfg, |idx| {
        let (c, g): (Vec<f64>, Vec<f64>) = idx[0].iter().map(|&i| (cos[i], sts.scores[i])).unzip();
        [("spearman", spearman(&c, &g)), ("pearson", pearson(&c, &g))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), 100.0 * v))
            .collect()
    });
    let latency = inference::batch1_latency(model, &ea, tok.pad_id())?;
    let row = ModelRow {
        name: name.to_string(),
        parameters: s.parameters,
        dimensions: s.dimensions,
        spearman: Some(100.0 * spearman(&cos, &sts.scores)),
        spearman_ci: ci.get("spearman").cloned(),
        pearson: Some(100.0 * pearson(&cos, &sts.scores)),
        pearson_ci: ci.get("pearson").cloned(),
        batch1_ms: Some(latency.p50_ms),
        batch32_per_second: Some(pass.examples_per_second),
    };
    Ok(Measured { row, a, b })
}

/// Teacher and student on the STS set (rows of names and sizes only, without one).
pub(crate) fn compare<M: Forward>(
    cfg: &EmbeddingConfig,
    teacher: &Teacher,
    student: &Student<M>,
    sts: Option<&StsText>,
) -> Result<EmbeddingReport> {
    let t = Student {
        model: &teacher.model,
        tok: &teacher.tok,
        parameters: teacher
            .model
            .named_vars()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum(),
        dimensions: teacher.model.dim(),
    };
    let bare = |name: &str, parameters: usize, dimensions: usize| ModelRow {
        name: name.to_string(),
        parameters,
        dimensions,
        spearman: None,
        spearman_ci: None,
        pearson: None,
        pearson_ci: None,
        batch1_ms: None,
        batch32_per_second: None,
    };
    let (trow, srow, agreement) = match sts {
        Some(sts) => {
            let tm = measure("teacher", &t, sts, cfg.seed)?;
            let sm = measure("student", student, sts, cfg.seed)?;
            // Agreement needs one space: a static student's PCA axes are not the teacher's.
            let agreement = if tm.row.dimensions == sm.row.dimensions && cfg.static_model.is_none()
            {
                let mut cos = row_cosines(&sm.a, &tm.a)?;
                cos.extend(row_cosines(&sm.b, &tm.b)?);
                Some(cos.iter().map(|&c| c as f64).sum::<f64>() / cos.len().max(1) as f64)
            } else {
                None
            };
            (tm.row, sm.row, agreement)
        }
        None => (
            bare("teacher", t.parameters, t.dimensions),
            bare("student", student.parameters, student.dimensions),
            None,
        ),
    };
    Ok(EmbeddingReport {
        curves: None,
        teacher: ModelRow {
            name: cfg.teacher.model.clone(),
            ..trow
        },
        student: ModelRow {
            name: if cfg.static_model.is_some() {
                "static student".into()
            } else {
                "student".into()
            },
            ..srow
        },
        teacher_agreement: agreement,
        sts_file: cfg.eval.as_ref().map(|e| e.file.display().to_string()),
        sts_pairs: sts.map_or(0, |s| s.scores.len()),
        training_sentences: 0,
        train_steps: 0,
        train_seconds: 0.0,
        best_step: None,
    })
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn interval(x: &Option<Interval>) -> String {
    x.as_ref()
        .map_or(String::new(), |i| format!(" [{:.2}, {:.2}]", i.low, i.high))
}

impl EmbeddingReport {
    /// The table: one row per model.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.sts_file {
            s.push_str(&format!(
                "STS: {f}, {} pairs, cosine similarity (95% bootstrap intervals)\n\n",
                self.sts_pairs
            ));
        }
        s.push_str("| model | parameters | dims | Spearman | Pearson | batch-1 p50 ms | batch-32 sentences/s |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for r in [&self.teacher, &self.student] {
            s.push_str(&format!(
                "| {} | {:.1}M | {} | {}{} | {}{} | {} | {} |\n",
                r.name,
                r.parameters as f64 / 1e6,
                r.dimensions,
                num(r.spearman, 2),
                interval(&r.spearman_ci),
                num(r.pearson, 2),
                interval(&r.pearson_ci),
                num(r.batch1_ms, 3),
                num(r.batch32_per_second, 1),
            ));
        }
        if let (Some(t), Some(s_)) = (self.teacher.spearman, self.student.spearman) {
            s.push_str(&format!(
                "\nThe student keeps {:.1}% of the teacher's Spearman",
                100.0 * s_ / t
            ));
            if let (Some(tb), Some(sb)) = (self.teacher.batch1_ms, self.student.batch1_ms) {
                s.push_str(&format!(", {:.1}x as fast at batch 1", tb / sb));
            }
            s.push('.');
        }
        if let Some(a) = self.teacher_agreement {
            s.push_str(&format!(
                " Mean cosine between the student's and the teacher's embeddings: {a:.4}."
            ));
        }
        s.push_str(&if self.train_steps == 0 {
            format!(
                "\n\nMade from the teacher's vocabulary in {:.0} s, without training data.\n",
                self.train_seconds
            )
        } else {
            format!(
                "\n\nTrained on {} sentences, {} steps in {:.0} s; best checkpoint at step {} (agreement with the teacher on held-out sentences).\n",
                self.training_sentences,
                self.train_steps,
                self.train_seconds,
                self.best_step.map_or("–".into(), |b| b.to_string())
            )
        });
        if let Some(c) = &self.curves {
            s.push_str(&format!("\n![Training curves]({c})\n"));
        }
        s
    }

    /// The export's README.md: metadata the Hub and the loading library read, usage, the table.
    pub fn card(&self, cfg: &EmbeddingConfig) -> String {
        let (library, what, usage) = if cfg.static_model.is_some() {
            (
                "model2vec",
                "a static embedding model (model2vec's format: a vector per token, a sentence the mean of its tokens' vectors) made from the outputs of",
                "from model2vec import StaticModel\nmodel = StaticModel.from_pretrained(\"path/to/this/folder\")",
            )
        } else {
            (
                "sentence-transformers",
                "a sentence-embedding model trained by `distill` (config `task: embedding`) to reproduce on unlabelled sentences the embeddings of",
                "from sentence_transformers import SentenceTransformer\nmodel = SentenceTransformer(\"path/to/this/folder\")",
            )
        };
        format!(
            "---\nlibrary_name: {library}\npipeline_tag: sentence-similarity\ntags:\n- {library}\n- feature-extraction\n- sentence-similarity\n- distill\n---\n\n# Sentence embeddings distilled from {teacher}\n\n{dims} dimensions, {params:.1}M parameters: {what} `{teacher}`.\n\n```python\n{usage}\nembeddings = model.encode([\"A man is playing a guitar.\", \"Someone plays an instrument.\"])\n```\n\nOr with distill: `distill embed path/to/this/folder \"A man is playing a guitar.\"`.\n\n## Evaluation\n\n{table}",
            teacher = cfg.teacher.model,
            dims = self.student.dimensions,
            params = self.student.parameters as f64 / 1e6,
            // The figure stays beside the report, not in the export.
            table = EmbeddingReport {
                curves: None,
                ..self.clone()
            }
            .markdown()
        )
    }

    /// Draws the student's training curves from `out/student/metrics.jsonl` into `out/plots/` (the
    /// teacher's STS scores as the dashed references) and names the figure in the report.
    pub fn draw_curves(&mut self, out: &Path) -> Result<()> {
        let Ok(log) = std::fs::read_to_string(out.join("student").join("metrics.jsonl")) else {
            return Ok(());
        };
        let refs: Vec<(String, f64)> = [
            ("sts_spearman", self.teacher.spearman),
            ("sts_pearson", self.teacher.pearson),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (format!("teacher {k}"), v / 100.0)))
        .collect();
        let png = crate::report::training_curves(&log, &refs)?;
        let file = "plots/training_curves.png";
        modeling::write_atomic(&out.join(file), &png)?;
        self.curves = Some(file.into());
        Ok(())
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        modeling::write_atomic(
            &out.join("report.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        modeling::write_atomic(&out.join("report.md"), self.markdown().as_bytes())?;
        Ok(())
    }
}
