//! The comparison report: teacher and student on the dev set with the task's official metric
//! and its percentile-bootstrap 95% interval, calibration (ECE and reliability bins, Guo et al. 2017),
//! % of the teacher retained, prediction agreement, parameters, size on disk, batch-1 latency (p50/p99)
//! and throughput at the config batch size on the run's device (the students in our encoder, or with
//! `--runtime onnxruntime` as ONNX graphs in onnxruntime); with `--runs`, the mean ± std of the
//! metrics over the students of several runs (seeds). Written as report.json and report.md, with the
//! figures of plots.rs in `plots/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use candle_core::Tensor;
use inference::{Engine, Latency, Runtime};
use modeling::{Classifier, ModelFiles, TextTokenizer};
use serde::{Deserialize, Serialize};
use train::bootstrap::{bootstrap, BootstrapConfig, Interval};
use train::calibration::{calibration, Calibration, ECE_BINS};
use train::eval::{score_dev_sets, Predictions};
use train::Scores;

use data::{Example, TaskSpec, Tokenised};

mod figures;
mod measure;
pub mod plots;

use figures::figures;
use measure::{gold_classes, run_model, student_engine, summarise, tokenise_sets, Measured};

/// What the report needs of a run, and nothing else of it: the compare stage fills it in from the run's
/// plan, so that the report reads no config and calls no stage.
pub struct Context {
    pub spec: TaskSpec,
    /// The dev sets scored: the main one first (suffix ""), then `extra_dev` (MNLI mismatched).
    pub dev_sets: Vec<(String, Vec<Example>)>,
    /// Seeds the bootstrap; the models load with it.
    pub seed: u64,
    pub device: candle_core::Device,
    /// The batch of the throughput pass.
    pub batch_size: usize,
    /// How the report names the teacher (its config's `teacher.model`).
    pub teacher_name: String,
    /// The trained student's folder (`student/best`) and its tokenizer.
    pub student: PathBuf,
    pub student_tokenizer: TextTokenizer,
    /// The student's training log (`metrics.jsonl`) for the learning curves; none for a sweep's parent
    /// run (its student is a trial's copy).
    pub training_log: Option<String>,
    /// Where report.json, report.md and plots/ go.
    pub out: PathBuf,
}

/// Bootstrap resamples for every interval of the report.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// The training-curves figure (PNG) of a student's `metrics.jsonl` text: its loss terms, and its dev
/// scores beside `references` (the teacher's, as fractions, named as the dev scores are). The embedding
/// run's report draws its curves with it too.
pub fn training_curves(log: &str, references: &[(String, f64)]) -> Result<Vec<u8>> {
    let (losses, dev) = figures::training_series(log);
    plots::training_curves(&losses, &dev, references)
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub dev: Scores,
    /// Bootstrap interval of each value of `dev` and of its main score (key `main`).
    pub dev_interval: BTreeMap<String, Interval>,
    /// ECE and the reliability-diagram bins on the main dev set; None for regression.
    pub calibration: Option<Calibration>,
    /// Counts [true class][predicted class] on the main dev set; None for regression.
    pub confusion: Option<Vec<Vec<usize>>>,
    pub parameters: usize,
    pub size_bytes: u64,
    /// Dev-set throughput at `Report::batch_size` on this run's device.
    pub examples_per_second: f64,
    pub latency: Latency,
}

/// The student of one run, for the mean ± std over runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRun {
    pub output_dir: PathBuf,
    pub dev: Scores,
    pub ece: Option<f64>,
    pub agreement: f64,
    pub retained_percent: f64,
}

/// The students of this run and of `--runs`, each scored like the main student.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedSummary {
    /// Runs counted, this run's first.
    pub runs: Vec<SeedRun>,
    /// Mean and sample standard deviation (n - 1; 0 for one run) over `runs` of each dev value, `main`,
    /// `ece` (classification), `agreement` and `retained_percent`.
    pub mean: BTreeMap<String, f64>,
    pub std: BTreeMap<String, f64>,
    /// `--runs` left out because their student has the same weights as one already counted (a sweep
    /// copies its best trial to the parent's student/best).
    pub duplicates: Vec<PathBuf>,
}

/// A figure in `plots/`, linked from report.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plot {
    pub title: String,
    /// Relative to the report, e.g. `plots/confusion.png`.
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub task: String,
    pub dev_examples: usize,
    pub device: String,
    /// What ran the students: `candle`, or `onnxruntime (LIBRARY FILE)` (their ONNX graphs, on the CPU). The
    /// teacher always runs in candle.
    #[serde(default = "candle")]
    pub runtime: String,
    /// Class names in index order (empty for regression).
    pub labels: Vec<String>,
    /// Batch size of the throughput measurement (the config's `teacher.batch_size`).
    pub batch_size: usize,
    /// How every interval was computed (percentile bootstrap over dev examples).
    pub bootstrap: BootstrapConfig,
    pub teacher: ModelSummary,
    pub student: ModelSummary,
    /// The student in dynamic int8 (`predict --int8`), on the CPU; its `size_bytes` are the int8 weights'
    /// bytes in memory (in onnxruntime: the int8 graph's). None on a GPU device with the candle runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_int8: Option<ModelSummary>,
    /// Share of dev examples on which the int8 and f32 students predict the same label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_agreement: Option<f64>,
    /// Student main dev score as a percentage of the teacher's.
    pub retained_percent: f64,
    /// Paired bootstrap interval of `retained_percent` (teacher and student scored on the same
    /// resamples); None when the teacher scores 0.
    pub retained_interval: Option<Interval>,
    /// Share of dev examples on which both predict the same label.
    pub agreement: f64,
    /// Mean ± std over several runs' students; None without `--runs`.
    pub seeds: Option<SeedSummary>,
    pub plots: Vec<Plot>,
}

/// ×100 with `d` decimals, or n/a.
fn pct(v: f64, d: usize) -> String {
    if v.is_finite() {
        format!("{:.*}", d, 100.0 * v)
    } else {
        "n/a".into()
    }
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n.max(1.0);
    let std = if values.len() > 1 {
        (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, std)
}

impl Report {
    /// The models compared, in table and figure order.
    pub fn models(&self) -> Vec<&ModelSummary> {
        let mut v = vec![&self.teacher, &self.student];
        v.extend(self.student_int8.as_ref());
        v
    }

    pub fn write(&self, dir: &Path, figures: &[(String, Vec<u8>)]) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        modeling::write_atomic(&dir.join("report.json"), json.as_bytes())?;
        modeling::write_atomic(&dir.join("report.md"), self.markdown().as_bytes())?;
        for (file, png) in figures {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
            }
            modeling::write_atomic(&path, png)?;
        }
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let b = &self.bootstrap;
        let mut s = format!(
            "# {} — teacher vs student\n\nDev set: {} examples. Device: {}. Scores ×100 with {:.0}% \
             intervals (percentile bootstrap over dev examples, {} resamples, seed {}).\n\n",
            self.task,
            self.dev_examples,
            self.device,
            100.0 * b.level,
            b.resamples,
            b.seed
        );
        let onnx = self.runtime != "candle";
        if onnx {
            s.push_str(&format!(
                "The students run in {}: their ONNX graphs (as `distill export --format onnx --int8` writes them), \
                 on the CPU; the teacher runs in candle.\n\n",
                self.runtime
            ));
        }
        let metrics: Vec<&String> = self.teacher.dev.values.keys().collect();
        let classification = self.teacher.calibration.is_some();
        s.push_str("| model | ");
        for m in &metrics {
            s.push_str(&format!("{m} | "));
        }
        if classification {
            s.push_str("ECE | ");
        }
        s.push_str(&format!(
            "parameters | size on disk | batch-1 latency p50 / p99 | examples/s (batch {}) |\n|---|",
            self.batch_size
        ));
        for _ in 0..metrics.len() + usize::from(classification) + 4 {
            s.push_str("---|");
        }
        s.push('\n');
        for m in self.models() {
            s.push_str(&format!("| {} | ", m.name));
            for k in &metrics {
                let v = m.dev.values.get(*k).copied().unwrap_or(f64::NAN);
                match m.dev_interval.get(*k) {
                    Some(i) => s.push_str(&format!(
                        "{} [{}, {}] | ",
                        pct(v, 2),
                        pct(i.low, 1),
                        pct(i.high, 1)
                    )),
                    None => s.push_str(&format!("{} | ", pct(v, 2))),
                }
            }
            if classification {
                let ece = m.calibration.as_ref().map_or(f64::NAN, |c| c.ece);
                s.push_str(&format!("{}% | ", pct(ece, 1)));
            }
            s.push_str(&format!(
                "{:.1}M | {:.1} MB | {:.1} / {:.1} ms | {:.1} |\n",
                m.parameters as f64 / 1e6,
                m.size_bytes as f64 / 1e6,
                m.latency.p50_ms,
                m.latency.p99_ms,
                m.examples_per_second
            ));
        }
        if let Some(seeds) = &self.seeds {
            let ms = |k: &str| {
                let (m, sd) = (
                    seeds.mean.get(k).copied().unwrap_or(f64::NAN),
                    seeds.std.get(k).copied().unwrap_or(f64::NAN),
                );
                format!("{} ± {}", pct(m, 2), pct(sd, 2))
            };
            s.push_str(&format!("| student ({} seeds) | ", seeds.runs.len()));
            for k in &metrics {
                s.push_str(&format!("{} | ", ms(k)));
            }
            if classification {
                s.push_str(&format!("{}% | ", ms("ece")));
            }
            s.push_str("| | | |\n");
        }
        let retained = if self.retained_percent.is_finite() {
            let ci = self
                .retained_interval
                .map(|i| format!(" ({:.1}–{:.1}%)", i.low, i.high))
                .unwrap_or_default();
            format!("**{:.1}%**{ci}", self.retained_percent)
        } else {
            "an undefined share (the teacher scores 0)".into()
        };
        let ratio = |a: f64, b: f64| a / b.max(1e-12);
        s.push_str(&format!(
            "\nStudent retains {retained} of the teacher's score; the two agree on {:.1}% of dev predictions. \
             Student / teacher here: parameters {:.2}x, batch-1 latency (p50) {:.2}x, throughput {:.2}x.\n",
            self.agreement * 100.0,
            ratio(self.student.parameters as f64, self.teacher.parameters as f64),
            ratio(self.student.latency.p50_ms, self.teacher.latency.p50_ms),
            ratio(self.student.examples_per_second, self.teacher.examples_per_second),
        ));
        if let (Some(q), Some(agree)) = (&self.student_int8, self.int8_agreement) {
            s.push_str(&format!(
                "\nThe int8 student (dynamic quantization, as `predict --int8{}`) scores {:+.2} points against the f32 \
                 student and agrees with it on {:.1}% of dev predictions; its weights take {:.2}x the bytes, its \
                 batch-1 latency (p50) is {:.2}x and its throughput {:.2}x the f32 student's.\n",
                if onnx { " --runtime onnxruntime" } else { "" },
                100.0 * (q.dev.main - self.student.dev.main),
                100.0 * agree,
                ratio(q.size_bytes as f64, self.student.size_bytes as f64),
                ratio(q.latency.p50_ms, self.student.latency.p50_ms),
                ratio(q.examples_per_second, self.student.examples_per_second),
            ));
        }
        if let Some(seeds) = &self.seeds {
            let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
            s.push_str(&format!(
                "\nOver the {} students (this run first: {}): retained {:.1} ± {:.1}%, agreement {} ± {}%.",
                seeds.runs.len(),
                seeds
                    .runs
                    .iter()
                    .map(|r| format!("`{}`", r.output_dir.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
                get(&seeds.mean, "retained_percent"),
                get(&seeds.std, "retained_percent"),
                pct(get(&seeds.mean, "agreement"), 1),
                pct(get(&seeds.std, "agreement"), 1),
            ));
            if !seeds.duplicates.is_empty() {
                s.push_str(&format!(
                    " Left out as copies of a student already counted: {}.",
                    seeds
                        .duplicates
                        .iter()
                        .map(|d| format!("`{}`", d.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            s.push('\n');
        }
        if !self.plots.is_empty() {
            s.push_str("\n## Plots\n");
            for p in &self.plots {
                s.push_str(&format!(
                    "\n### {}\n\n![{}]({})\n",
                    p.title, p.title, p.file
                ));
            }
        }
        s
    }
}

/// Student main score over teacher main score, ×100 (NaN when the teacher scores 0).
fn retained(student: f64, teacher: f64) -> f64 {
    if teacher > 0.0 {
        100.0 * student / teacher
    } else {
        f64::NAN
    }
}

/// Paired bootstrap of the retained share: teacher and student scored on the same resampled examples.
fn retained_interval(
    t: &[(String, Predictions)],
    s: &[(String, Predictions)],
    metric: data::Metric,
    cfg: &BootstrapConfig,
) -> Option<Interval> {
    let sizes: Vec<usize> = t.iter().map(|(_, p)| p.len()).collect();
    let pick = |sets: &[(String, Predictions)], idx: &[Vec<usize>]| -> Vec<(String, Predictions)> {
        sets.iter()
            .zip(idx)
            .map(|((k, p), i)| (k.clone(), p.select(i)))
            .collect()
    };
    let iv = bootstrap(&sizes, cfg, |idx| {
        let (ts, ss) = (
            score_dev_sets(&pick(t, idx), metric).main,
            score_dev_sets(&pick(s, idx), metric).main,
        );
        let r = retained(ss, ts);
        // A resample on which the teacher scores 0 has no ratio; leaving it out biases nothing
        // visible at the sizes of GLUE dev sets, and keeps NaN out of the percentiles.
        if r.is_finite() {
            BTreeMap::from([("retained".to_string(), r)])
        } else {
            BTreeMap::new()
        }
    });
    iv.get("retained").copied()
}

/// The student of another run of this task (`OUT/student/best`), scored on the same dev sets.
fn seed_run(
    ctx: &Context,
    dir: &Path,
    tok: &TextTokenizer,
    enc: &[(String, Tokenised)],
    teacher_logits: &Tensor,
    teacher_main: f64,
) -> Result<(SeedRun, String)> {
    let best = dir.join("student").join("best");
    if !best.join("model.safetensors").is_file() {
        bail!(
            "--runs {}: no trained student there ({} is missing); give the output_dir of a run or of a sweep trial",
            dir.display(),
            best.join("model.safetensors").display()
        );
    }
    let hash = modeling::io::hash_files(&[&best.join("model.safetensors")])?;
    let files = modeling::ModelSource::Local(best.clone()).resolve(false)?;
    let (model, _) = Classifier::load(&files, Some(ctx.spec.num_outputs()), ctx.seed, &ctx.device)
        .with_context(|| format!("--runs {}", dir.display()))?;
    tok.check_vocab(model.config.vocab_size, &files.config)
        .with_context(|| format!("--runs {}: not a student of this config", dir.display()))?;
    let out = run_model(&Engine::Candle(model), tok.pad_id(), enc, ctx.batch_size)?;
    let dev = score_dev_sets(&out.predictions, ctx.spec.metric);
    let ece = gold_classes(&out.predictions).map(|g| calibration(&out.rows, g, ECE_BINS).ece);
    let run = SeedRun {
        output_dir: dir.to_path_buf(),
        retained_percent: retained(dev.main, teacher_main),
        agreement: train::eval::agreement(teacher_logits, &out.logits)?,
        dev,
        ece,
    };
    Ok((run, hash))
}

fn seed_summary(runs: Vec<SeedRun>, duplicates: Vec<PathBuf>) -> SeedSummary {
    let mut columns: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &runs {
        let mut add = |k: &str, v: f64| columns.entry(k.to_string()).or_default().push(v);
        for (k, v) in &r.dev.values {
            add(k, *v);
        }
        add("main", r.dev.main);
        if let Some(e) = r.ece {
            add("ece", e);
        }
        add("agreement", r.agreement);
        if r.retained_percent.is_finite() {
            add("retained_percent", r.retained_percent);
        }
    }
    let (mut mean, mut std) = (BTreeMap::new(), BTreeMap::new());
    for (k, v) in columns {
        let (m, s) = mean_std(&v);
        mean.insert(k.clone(), m);
        std.insert(k, s);
    }
    SeedSummary {
        runs,
        mean,
        std,
        duplicates,
    }
}

/// Scores teacher and student on dev with the same metric code and writes the report; `runs` are the
/// output folders of further runs of this task (other seeds) whose students join a mean ± std row.
/// `runtime` runs the students (f32 and int8) in our encoder or as ONNX graphs in onnxruntime.
pub fn compare(
    ctx: &Context,
    teacher: (Classifier, TextTokenizer, ModelFiles),
    runs: &[PathBuf],
    runtime: Runtime,
) -> Result<Report> {
    // A missing onnxruntime library fails here, before any model runs.
    let runtime_name = runtime.describe()?;
    let sets = &ctx.dev_sets;
    let cfg = BootstrapConfig {
        resamples: BOOTSTRAP_RESAMPLES,
        level: 0.95,
        seed: ctx.seed,
    };
    // Both models run as `predict` and `serve` load them: dense weights packed for few-token batches.
    let (mut t_model, t_tok, t_files) = teacher;
    t_model.pack(modeling::Packing::F32)?;
    let teacher = Measured {
        parameters: t_model.num_parameters(),
        size_bytes: t_files.weights_size(),
        engine: Engine::Candle(t_model),
    };
    let name = format!("teacher ({})", ctx.teacher_name);
    let (t_sum, t_out) = summarise(ctx, name, &teacher, &t_tok, sets, &cfg)?;
    drop(teacher);

    let best = &ctx.student;
    let s_files = modeling::ModelSource::Local(best.clone())
        .resolve(false)
        .with_context(|| "no trained student: run `distill train` first".to_string())?;
    let s_tok = &ctx.student_tokenizer;
    let student = |int8: bool| student_engine(ctx, &s_files, int8, runtime);
    let f32_student = student(false)?;
    let (s_sum, s_out) = summarise(ctx, "student".into(), &f32_student, s_tok, sets, &cfg)?;
    drop(f32_student);
    // Candle's int8 inference runs on the CPU (see kernels::quant); on a GPU run it is left out.
    let (student_int8, int8_agreement) = if ctx.device.is_cpu() || runtime == Runtime::Onnxruntime {
        let q = student(true)?;
        let (q_sum, q_out) = summarise(ctx, "student int8".into(), &q, s_tok, sets, &cfg)?;
        let agree = train::eval::agreement(&s_out.logits, &q_out.logits)?;
        (Some(q_sum), Some(agree))
    } else {
        (None, None)
    };

    let retained_percent = retained(s_sum.dev.main, t_sum.dev.main);
    let agreement = train::eval::agreement(&t_out.logits, &s_out.logits)?;
    let seeds = if runs.is_empty() {
        None
    } else {
        let enc = tokenise_sets(s_tok, sets)?;
        let this = SeedRun {
            output_dir: ctx.out.clone(),
            dev: s_sum.dev.clone(),
            ece: s_sum.calibration.as_ref().map(|c| c.ece),
            agreement,
            retained_percent,
        };
        let mut seen = vec![modeling::io::hash_files(
            &[&best.join("model.safetensors")],
        )?];
        let (mut counted, mut duplicates) = (vec![this], Vec::new());
        for dir in runs {
            let (run, hash) = seed_run(ctx, dir, s_tok, &enc, &t_out.logits, t_sum.dev.main)?;
            if seen.contains(&hash) {
                duplicates.push(dir.clone());
            } else {
                seen.push(hash);
                counted.push(run);
            }
        }
        Some(seed_summary(counted, duplicates))
    };

    let mut report = Report {
        task: ctx.spec.name.clone(),
        dev_examples: sets[0].1.len(),
        device: format!("{:?}", ctx.device),
        runtime: runtime_name,
        labels: ctx.spec.label_names(),
        batch_size: ctx.batch_size,
        bootstrap: cfg,
        retained_percent,
        retained_interval: retained_interval(
            &t_out.predictions,
            &s_out.predictions,
            ctx.spec.metric,
            &cfg,
        ),
        agreement,
        teacher: t_sum,
        student: s_sum,
        student_int8,
        int8_agreement,
        seeds,
        plots: Vec::new(),
    };
    let figs = figures(&report, ctx.training_log.as_deref())?;
    report.plots = figs.iter().map(|(plot, _)| plot.clone()).collect();
    let files: Vec<(String, Vec<u8>)> = figs
        .into_iter()
        .map(|(plot, png)| (plot.file, png))
        .collect();
    report.write(&ctx.out, &files)?;
    Ok(report)
}
fn candle() -> String {
    "candle".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[0.8, 0.82, 0.84]);
        assert!((m - 0.82).abs() < 1e-12 && (s - 0.02).abs() < 1e-12);
        assert_eq!(mean_std(&[0.5]), (0.5, 0.0));
    }
}
