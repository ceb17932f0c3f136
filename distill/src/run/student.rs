//! The student stage: the student built (random weights, a checkpoint, or selected from the teacher's),
//! then trained on the task loss and the teacher's targets, stage by stage when `stages:` says so; a
//! finished training whose inputs are unchanged (its stamp) is not redone.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Tensor;
use data::{hash_examples, tokenise, Example, Label};
use modeling::importance::Importance;
use modeling::io::hash_files;
use modeling::{Classifier, EncoderConfig, ModelFiles, ModelSource, TextTokenizer};
use student::init::{SelectionMethod, TeacherWeights};
use teacher::Targets;

use super::plan::Plan;
use super::preflight;
use super::stamp::{check_stamp, read_stamp, write_stamp, write_stamp_as, Freshness, StudentStamp};
use super::teacher::TeacherStage;

/// The student stage of a run.
pub struct StudentStage<'a> {
    plan: &'a Plan,
}

impl<'a> StudentStage<'a> {
    pub fn new(plan: &'a Plan) -> Self {
        Self { plan }
    }

    /// The student before training: RoBERTa-tiny-cased (or the configured shape) with random weights,
    /// a checkpoint (its head re-initialised when absent), or the task teacher's weights, chosen by their
    /// importance on the training examples `train` when `student.selection` asks for that.
    pub fn model(&self, tok: &TextTokenizer, train: &[Example]) -> Result<Classifier> {
        let n = self.plan.spec().num_outputs();
        let max_len = self.plan.cfg().data.max_seq_len;
        let st = &self.plan.cfg().student;
        // `init: teacher` takes its blocks from the task teacher (fine-tuned first when it has no head).
        let teacher = if st.from_teacher() {
            Some(TeacherStage::new(self.plan).model()?)
        } else {
            None
        };
        // A student selected from a checkpoint (a stage pruning the one before) by importance is
        // scored on that checkpoint itself, which reads the student's tokenizer.
        let checkpoint = match st.from_teacher() || st.is_random() {
            true => None,
            false => self.checkpoint_to_score(n)?,
        };
        let importance = match (&teacher, &checkpoint) {
            (Some((model, ttok, _)), _) if st.needs_importance(&model.config) => {
                Some(self.importance(model, ttok, train)?)
            }
            (None, Some((model, _))) => Some(self.importance(model, tok, train)?),
            _ => None,
        };
        let files = match (&teacher, &checkpoint) {
            (Some((_, _, files)), _) | (None, Some((_, files))) => Some(files),
            _ => None,
        };
        let from = files.map(|files| TeacherWeights {
            files,
            importance: importance.as_ref(),
        });
        Ok(st.build(
            tok,
            from,
            n,
            max_len,
            self.plan.student_seed(),
            self.plan.device(),
        )?)
    }

    /// The checkpoint that `student.init` names, loaded for `n` outputs, when the student is selected
    /// from it by importance; `None` otherwise.
    fn checkpoint_to_score(&self, n: usize) -> Result<Option<(Classifier, ModelFiles)>> {
        let st = &self.plan.cfg().student;
        let files = ModelSource::parse(&st.init, &st.revision)
            .resolve(false)
            .context("student.init")?;
        let config = EncoderConfig::from_file(&files.config).context("student.init")?;
        if !st.needs_importance(&config) {
            return Ok(None);
        }
        let seed = self.plan.student_seed();
        let (model, _) = Classifier::load_reinit_head(&files, n, seed, self.plan.device())
            .context("student.init")?;
        Ok(Some((model, files)))
    }

    /// The dimensions of `source` (the teacher, or the checkpoint the student is selected from)
    /// scored on `student.importance_examples` training examples, evenly spaced through `train`, by
    /// `student.selection`'s criterion (`modeling::importance`).
    fn importance(
        &self,
        source: &Classifier,
        tok: &TextTokenizer,
        train: &[Example],
    ) -> Result<Importance> {
        let st = &self.plan.cfg().student;
        let keep = st.importance_examples.clamp(1, train.len().max(1));
        let sample: Vec<Example> = modeling::select::evenly(keep, train.len())
            .into_iter()
            .filter_map(|i| train.get(i).cloned())
            .collect();
        let ids = tokenise(tok, &sample)?.ids;
        let layers = &st.source_layers(&source.config);
        let scores = if st.selection == SelectionMethod::Gradient {
            // Each example's task loss on its gold label, as fine-tuning computes it.
            let labels: Vec<Label> = sample.iter().map(|e| e.label).collect();
            let loss = |i: usize, logits: &Tensor| -> modeling::Result<Tensor> {
                let y = train::classify::labels(source, &labels, &[i], &source.device)
                    .map_err(|e| modeling::Error::Msg(e.to_string()))?;
                let l = match source.num_labels {
                    1 => train::loss::mse_labelled(logits, &y),
                    _ => train::loss::ce(logits, &y),
                };
                l.map_err(|e| modeling::Error::Msg(e.to_string()))
            };
            Importance::gradient(source, layers, &ids, tok.pad_id(), &loss)?
        } else {
            Importance::measure(source, layers, &ids, tok.pad_id())?
        };
        let whose = match st.from_teacher() {
            true => "the teacher".to_string(),
            false => st.init.clone(),
        };
        tracing::info!(
            "student: scored {whose}'s hidden dimensions, heads and FFN units on {} training examples ({:?})",
            sample.len(),
            st.selection
        );
        Ok(scores)
    }

    /// Stage 2: trains the student on the task loss and the teacher's targets.
    pub fn train(&self) -> Result<train::TrainReport> {
        self.train_until(&|_| false)
    }

    /// `train`, pausing (resumably) once `stop(step)` is true.
    pub fn train_until(&self, stop: &dyn Fn(usize) -> bool) -> Result<train::TrainReport> {
        if self.plan.cfg().stages.is_empty() {
            return self.train_stage(stop);
        }
        let n = self.plan.cfg().stages.len();
        let tok = self.plan.student_tokenizer()?.path().to_path_buf();
        let mut init: Option<PathBuf> = None;
        let mut last = None;
        // The student's shape so far: its own keys, then each stage's (pruning while distilling).
        let mut shape = crate::config::StageShape::default();
        for (i, st) in self.plan.cfg().stages.iter().enumerate() {
            let mut cfg = self.plan.cfg().clone();
            cfg.stages.clear();
            cfg.distill = st.distill.clone();
            cfg.train.epochs = st.epochs.unwrap_or(cfg.train.epochs);
            cfg.train.learning_rate = st.learning_rate.unwrap_or(cfg.train.learning_rate);
            if let Some(s) = &st.shape {
                s.apply_to(&mut shape);
            }
            shape.apply(&mut cfg.student);
            // Later stages start from the previous stage's final weights (not its best dev checkpoint:
            // an intermediate-layer stage's head is untrained, so its dev score means nothing).
            if let Some(prev) = &init {
                cfg.student.init = prev.display().to_string();
                cfg.student.teacher_layers.clear();
                cfg.student.tokenizer = Some(tok.clone());
            }
            let sub = self
                .plan
                .for_stage(cfg, (i + 1 < n).then(|| format!("{i}-{}", st.name)));
            tracing::info!("stage {}/{n}: {}", i + 1, st.name);
            // A sweep's early stopping applies to the last stage.
            let never = |_: usize| false;
            let hook: &dyn Fn(usize) -> bool = if i + 1 < n { &never } else { stop };
            let report = StudentStage::new(&sub)
                .train_stage(hook)
                .with_context(|| format!("stages[{i}] ({})", st.name))?;
            init = Some(sub.student_dir().join("last"));
            last = Some(report);
        }
        last.context("no stage ran")
    }

    /// One training stage: the run's `distill` and `train` sections (a stage's, under `stages:`).
    fn train_stage(&self, stop: &dyn Fn(usize) -> bool) -> Result<train::TrainReport> {
        let d = &self.plan.cfg().distill;
        // Cached logits feed kd / logits_mse; token-level terms need the teacher itself (`online`).
        let needs_logits = d
            .resolved_terms()
            .iter()
            .any(|t| t.kind.uses_teacher_logits() && t.weight > 0.0);
        // Augmented examples live in the targets: they are loaded whenever augmentation is on.
        let targets = if needs_logits || self.plan.cfg().augment.copies > 0 {
            let path = self.plan.targets_path();
            let t =
                Targets::load(&path).map_err(|e| anyhow!("{e} (run `distill teacher` first)"))?;
            Some(t)
        } else {
            None
        };
        let tok = self.plan.student_tokenizer()?;
        let (mut train, dev) = self.plan.read_data()?;
        student_casing(self.plan, &tok, &train)?;
        if let Some(t) = &targets {
            let want = hash_examples(&train);
            if t.fingerprint.dataset != want || t.len() != train.len() + t.augmented.len() {
                bail!(
                    "{}: the teacher targets were computed for another training set; run `distill teacher` again",
                    self.plan.targets_path().display()
                );
            }
            // Soft-only rows after the gold ones, in the order of the targets' logits.
            crate::run::augment::extend_train(self.plan, t, &mut train)?;
        }
        // Build (and so validate) the student, and the online teacher with its checks, before touching
        // any earlier output.
        let model = self.model(&tok, &train)?;
        let online = if crate::run::online::needed(d) {
            Some(crate::run::online::prepare(
                self.plan,
                &model.config,
                &tok,
                &train,
            )?)
        } else {
            None
        };
        // A student started from a local folder (another run's export, an earlier stage) is stale when
        // those weights change, not only when the path does.
        let init_weights = Path::new(&self.plan.cfg().student.init).join("model.safetensors");
        let stamp = StudentStamp {
            targets: targets.as_ref().map(|t| t.fingerprint.clone()),
            student: self.plan.cfg().student.clone(),
            train: self.plan.cfg().train.clone(),
            distill: self.plan.cfg().distill.clone(),
            tokenizer: hash_files(&[tok.path()])?,
            data: format!("{}:{}", hash_examples(&train), hash_examples(&dev)),
            max_seq_len: self.plan.cfg().data.max_seq_len,
            seed: self.plan.cfg().seed,
            student_seed: self.plan.student_seed(),
            online_teacher: online.as_ref().map(|o| o.weights.clone()),
            // Only aligned runs carry it, so the stamps of same-tokenizer runs stay as they were.
            online_teacher_tokenizer: online
                .as_ref()
                .and_then(|o| o.align.as_ref())
                .map(|a| a.tokenizer.clone()),
            init_weights: if init_weights.is_file() {
                Some(hash_files(&[&init_weights])?)
            } else {
                None
            },
        };
        let dir = self.plan.student_dir();
        // `stamp.json` says which inputs `last/` belongs to (a killed run resumes from it); `done.json`
        // is written only when training has finished, so a failed or interrupted run is never "fresh".
        let report_path = dir.join("train_report.json");
        let done = dir.join("done.json");
        let finished = read_stamp::<StudentStamp>(&done)
            .filter(|d| *d == stamp)
            .and_then(|_| std::fs::read_to_string(&report_path).ok())
            .and_then(|t| serde_json::from_str::<train::TrainReport>(&t).ok())
            .filter(|r| {
                (r.steps >= self.plan.planned_steps(train.len()) || r.stopped_early)
                    && dir.join("best").is_dir()
            });
        let freshness = check_stamp(&dir, &stamp);
        // Every rank has read the stamps before rank 0 changes them.
        self.plan.group().barrier()?;
        let main = self.plan.group().is_main();
        match freshness {
            Freshness::Fresh if finished.is_some() => {
                tracing::info!("student: {} is fresh", dir.display());
                return finished.context("train report");
            }
            Freshness::Stale(why) if main => {
                tracing::info!("student: retraining from scratch ({why})");
                let _ = std::fs::remove_dir_all(dir.join("last"));
            }
            _ => {}
        }
        if main {
            let _ = std::fs::remove_file(&done);
            write_stamp(&dir, &stamp)?;
        }
        tracing::info!(
            "student: {} parameters, {} layers, hidden {}",
            model.num_parameters(),
            model.config.num_hidden_layers,
            model.config.hidden_size
        );
        let tr = tokenise(&tok, &train)?;
        let dv = tokenise(&tok, &dev)?;
        let labels = self.plan.labels();
        let data = student::TrainData {
            train: &tr.ids,
            train_labels: &tr.labels,
            dev: &dv.ids,
            dev_labels: &dv.labels,
            teacher_logits: targets.as_ref().map(|t| &t.logits),
            teacher: online.as_ref().map(|o| &o.model),
            align: online
                .as_ref()
                .and_then(|o| o.align.as_ref())
                .map(crate::run::online::word_align),
            pad_id: tok.pad_id(),
            metric: self.plan.spec().metric,
            label_names: &labels,
            group: Some(self.plan.group()),
            tensorboard: Some(&self.plan.tensorboard_dir("student")),
        };
        let tc = student::TrainConfig {
            train: self.plan.cfg().train.clone(),
            seed: self.plan.student_seed(),
            alpha_kd: d.alpha_kd,
            temperature: d.temperature,
            eval_batch_size: self
                .plan
                .cfg()
                .train
                .eval_batch(self.plan.cfg().teacher.batch_size),
            objective: d.objective(),
        };
        let report = student::train_until(&model, &data, &tc, &dir, stop)?;
        if main && (report.steps >= self.plan.planned_steps(train.len()) || report.stopped_early) {
            write_stamp_as(&done, &stamp)?;
        }
        if let Some(b) = &report.best {
            tracing::info!(
                "student: best dev {} at step {}",
                b.scores.summary(),
                b.step
            );
        }
        Ok(report)
    }
}

/// The student tokenizer's casing against the training texts (`preflight.allow_casing_mismatch`).
pub(crate) fn student_casing(plan: &Plan, tok: &TextTokenizer, train: &[Example]) -> Result<()> {
    let texts: Vec<&str> = train
        .iter()
        .flat_map(|e| std::iter::once(e.text_a.as_str()).chain(e.text_b.as_deref()))
        .collect();
    preflight::casing(
        &plan.cfg().preflight,
        tok,
        &texts,
        "the student's tokenizer",
    )
}
