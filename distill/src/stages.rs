//! The stages of a run, each handing the next a file: the teacher (fine-tuned when it has no head) and
//! its targets, then the student, then the export. A stage whose inputs are unchanged since its last
//! run (recorded in a `stamp.json`) is skipped; a changed input is named and the stage is redone.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Tensor;
use data::{hash_examples, Example};
use modeling::importance::Importance;
use modeling::infer;
use modeling::io::hash_files;
use modeling::{Classifier, EncoderConfig, ModelFiles, ModelSource, TextTokenizer};
use student::init::TeacherWeights;
use teacher::{Fingerprint, Targets};

use crate::plan::{shard_range, Plan};
use data::tokenise;

/// The cache's kinds of entry: fine-tuned teacher folders, and training targets.
const TEACHERS: &str = "teachers";
const TARGETS: &str = "targets";
use crate::preflight;
use crate::stamp::{
    check_stamp, read_stamp, write_stamp, write_stamp_as, Freshness, StudentStamp, TeacherStamp,
};

impl Plan {
    /// The teacher ready for the task: the checkpoint itself when it has a head, else the fine-tuned copy
    /// under `output_dir/teacher/model` (fine-tuned now unless a fresh one is there).
    pub fn teacher_model(&self) -> Result<(Classifier, TextTokenizer, ModelFiles)> {
        self.load_teacher(true)
    }

    /// The teacher of shape `shape` (from `files`) reads inputs of `data.max_seq_len` tokens and has the
    /// layers `teacher.hidden_layers` names.
    pub(crate) fn teacher_fits(&self, shape: &EncoderConfig, files: &ModelFiles) -> Result<()> {
        let (max_tokens, n_layers) = (shape.max_tokens(), shape.num_hidden_layers);
        if self.cfg().data.max_seq_len > max_tokens {
            bail!(
                "data.max_seq_len: {} exceeds the {max_tokens} positions of the teacher ({})",
                self.cfg().data.max_seq_len,
                files.config.display()
            );
        }
        if let Some(l) = self
            .cfg()
            .teacher
            .hidden_layers
            .iter()
            .find(|&&l| l > n_layers)
        {
            bail!("teacher.hidden_layers: layer {l} does not exist (the teacher has layers 0..={n_layers}, 0 = embeddings)");
        }
        Ok(())
    }

    /// `teacher_model`; without `may_finetune`, a teacher that needs fine-tuning is an error instead (a
    /// shard of the targets runs beside the other shards, which must not all fine-tune one folder).
    fn load_teacher(&self, may_finetune: bool) -> Result<(Classifier, TextTokenizer, ModelFiles)> {
        let (files, tok) = self.teacher_source()?;
        let n = self.spec().num_outputs();
        let (model, report) = Classifier::load(&files, Some(n), self.cfg().seed, self.device())
            .context("teacher.model")?;
        tok.check_vocab(model.config.vocab_size, &files.config)
            .context("teacher.model")?;
        self.teacher_fits(&model.config, &files)?;
        if report.has_head {
            return Ok((model, tok, files));
        }
        let stamp = TeacherStamp {
            teacher_weights: hash_files(
                &files
                    .weights
                    .iter()
                    .map(PathBuf::as_path)
                    .collect::<Vec<_>>(),
            )?,
            tokenizer: hash_files(&[tok.path()])?,
            max_seq_len: self.cfg().data.max_seq_len,
            data: self.data_hash()?,
            finetune: self.cfg().teacher.finetune.clone(),
            seed: self.cfg().seed,
            labels: self.labels(),
        };
        let dir = self.teacher_dir();
        let stage = self.teacher_out().join("teacher");
        let cache = self.cache();
        let key = teacher::cache::key(&stamp);
        // Whoever computes or publishes the entry holds its lock: a second run waits, then takes it.
        let _computing = match &cache {
            Some(c) => Some(c.computing(TEACHERS, &key)?),
            None => None,
        };
        let what = format!(
            "{} fine-tuned on {}",
            self.cfg().teacher.model,
            self.spec().name
        );
        let fresh = check_stamp(&stage, &stamp);
        if matches!(fresh, Freshness::Fresh) && dir.join("model.safetensors").is_file() {
            tracing::info!("teacher: fine-tuned teacher in {} is fresh", dir.display());
            if let Some(c) = cache.as_ref().filter(|c| !c.has(TEACHERS, &key)) {
                self.publish(c, TEACHERS, &key, &what, &stamp, &dir)?;
            }
        } else if let Some(entry) = cache
            .as_ref()
            .and_then(|c| c.get(TEACHERS, &key, &self.cache_user()))
        {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
            }
            entry.link_into(&dir)?;
            write_stamp(&stage, &stamp)?;
            tracing::info!(
                "teacher: took the fine-tuned teacher from the cache ({}, first made for {}); nothing to fine-tune",
                entry.dir.display(),
                entry.manifest.configs.first().map_or("?", String::as_str)
            );
        } else {
            if !may_finetune {
                bail!(
                    "teacher: {} has no task head and no fresh fine-tuned copy in {}; run `distill teacher CONFIG --finetune-only` once before the shards",
                    self.cfg().teacher.model,
                    dir.display()
                );
            }
            if let Freshness::Stale(why) = fresh {
                tracing::info!("teacher: redoing fine-tuning ({why})");
                let _ = std::fs::remove_dir_all(stage.join("finetune").join("last"));
            }
            self.finetune_teacher(&model, &tok, &stage)?;
            write_stamp(&stage, &stamp)?;
            if let Some(c) = &cache {
                self.publish(c, TEACHERS, &key, &what, &stamp, &dir)?;
            }
        }
        let ft_files = ModelSource::Local(dir.clone()).resolve(false)?;
        let tok = TextTokenizer::for_model(&ft_files, self.cfg().data.max_seq_len)?;
        let (model, _) = Classifier::load(&ft_files, Some(n), self.cfg().seed, self.device())?;
        Ok((model, tok, ft_files))
    }

    /// Fine-tunes the head-less `model` on the task (checkpoints under `stage/finetune`, resumed from
    /// `last/`) and exports its best dev checkpoint as the teacher folder.
    fn finetune_teacher(
        &self,
        model: &Classifier,
        tok: &TextTokenizer,
        stage: &Path,
    ) -> Result<()> {
        tracing::info!(
            "teacher: {} has no task head; fine-tuning it on {} first",
            self.cfg().teacher.model,
            self.spec().name
        );
        let (train, dev) = self.read_data()?;
        let tr = tokenise(tok, &train)?;
        let dv = tokenise(tok, &dev)?;
        let labels = self.labels();
        let data = train::classify::ClassifyData {
            train: &tr.ids,
            train_labels: &tr.labels,
            dev: &dv.ids,
            dev_labels: &dv.labels,
            pad_id: tok.pad_id(),
            metric: self.spec().metric,
            label_names: &labels,
            group: None,
            tensorboard: Some(&self.tensorboard_dir("teacher")),
        };
        let ft = teacher::finetune::FinetuneConfig {
            settings: self.cfg().teacher.finetune.clone(),
            seed: self.cfg().seed,
            eval_batch_size: self.cfg().teacher.batch_size,
        };
        let rep = teacher::finetune::finetune(model, &data, &ft, &stage.join("finetune"))?;
        if let Some(b) = &rep.best {
            tracing::info!(
                "teacher: best dev {} at step {}",
                b.scores.summary(),
                b.step
            );
        }
        modeling::export::export(
            &stage.join("finetune").join("best"),
            tok,
            &self.teacher_dir(),
        )?;
        Ok(())
    }

    /// Puts the files of `from` (a folder, or one file) in the cache as `kind/key`, computed from
    /// `inputs`. A cache that cannot take it (a full disk) costs the run nothing: it says so and goes on
    /// with its own copy.
    fn publish<T: serde::Serialize>(
        &self,
        cache: &teacher::cache::Cache,
        kind: &str,
        key: &str,
        what: &str,
        inputs: &T,
        from: &Path,
    ) -> Result<()> {
        let files: Vec<PathBuf> = if from.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(from)
                .with_context(|| format!("{}", from.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else {
            vec![from.to_path_buf()]
        };
        let inputs = serde_json::to_value(inputs)?;
        match cache.put(kind, key, what, inputs, &files, &self.cache_user()) {
            Ok(e) => tracing::info!("cache: put {what} in {}", e.dir.display()),
            Err(e) => tracing::warn!(
                "cache: could not put {what} in {}: {e}; this run goes on with its own copy",
                cache.root().display()
            ),
        }
        Ok(())
    }

    /// Stage 1: the teacher's targets for the training set, reused when their fingerprint matches.
    /// With `augment`, the targets also hold the augmented examples and their logits (after the
    /// training set's rows).
    pub fn teacher(&self) -> Result<Targets> {
        let (model, tok, files) = self.teacher_model()?;
        let (train, _) = self.read_data()?;
        let mut fp = self.fingerprint(&model, &tok, &files, &train)?;
        let mlm = crate::augment::load_mlm(self)?;
        fp.augment = crate::augment::fingerprint(self, mlm.as_ref());
        let path = self.targets_path();
        let cache = self.cache();
        let key = teacher::cache::key(&fp);
        let _computing = match &cache {
            Some(c) => Some(c.computing(TARGETS, &key)?),
            None => None,
        };
        let what = format!(
            "targets of {} on {} ({} examples)",
            self.cfg().teacher.model,
            self.spec().name,
            train.len()
        );
        if let Some(t) = fresh_targets(&path, &fp) {
            if let Some(c) = cache.as_ref().filter(|c| !c.has(TARGETS, &key)) {
                self.publish(c, TARGETS, &key, &what, &fp, &path)?;
            }
            return Ok(t);
        }
        if let Some(entry) = cache
            .as_ref()
            .and_then(|c| c.get(TARGETS, &key, &self.cache_user()))
        {
            let dir = path.parent().unwrap_or(Path::new("."));
            entry.link_into(dir)?;
            if let Some(t) = fresh_targets(&path, &fp) {
                tracing::info!(
                    "targets: took them from the cache ({}, first made for {}); nothing to compute",
                    entry.dir.display(),
                    entry.manifest.configs.first().map_or("?", String::as_str)
                );
                return Ok(t);
            }
        }
        self.preflight_teacher(&model, &tok)?;
        let augmented = if self.cfg().augment.copies > 0 {
            crate::augment::variants(self, &model, &tok, &train, mlm.as_ref())?
        } else {
            Vec::new()
        };
        drop(mlm);
        let all: Vec<Example> = train.iter().chain(&augmented).cloned().collect();
        let targets = self.compute_targets(&model, &tok, &all, fp.clone(), &path, augmented)?;
        if let Some(c) = &cache {
            self.publish(c, TARGETS, &key, &what, &fp, &path)?;
        }
        Ok(targets)
    }

    /// Sharded targets do not carry augmented examples (yet): refuse rather than drop them silently.
    fn no_augment_with_shards(&self) -> Result<()> {
        if self.cfg().augment.copies > 0 {
            bail!("augment.copies: sharded teacher targets (--shard) do not support augmentation yet; set it to 0 or run `distill teacher` without --shard");
        }
        Ok(())
    }

    /// The teacher's labels and dev predictions (see `preflight`), before it labels the training set.
    fn preflight_teacher(&self, model: &Classifier, tok: &TextTokenizer) -> Result<()> {
        let pf = &self.cfg().preflight;
        preflight::label_names(pf, &model.config.labels(), &self.labels())?;
        let (_, dev) = self.read_data()?;
        let enc = tokenise(tok, &dev)?;
        let logits = inference::logits(
            model,
            &enc.ids,
            tok.pad_id(),
            self.cfg().teacher.batch_size,
            Some("eval"),
        )?
        .logits;
        let scores = train::eval::score(&logits, &enc.labels, self.spec().metric)?;
        let name = scores.values.keys().next().cloned().unwrap_or_default();
        preflight::teacher_dev(pf, &logits.to_vec2()?, &enc.labels, scores.main, &name)?;
        tracing::info!("preflight: teacher dev {}", scores.summary());
        Ok(())
    }

    /// `distill teacher --shard i/n`: the targets of the i-th of n contiguous slices of the training set,
    /// in `targets/train.shard-I-of-N.safetensors`, so that n machines can share the teacher's work;
    /// `merge_shards` joins them. The teacher must not need fine-tuning on each machine: fine-tune it
    /// once (`distill teacher --finetune-only`) and share the output folder.
    pub fn teacher_shard(&self, i: usize, n: usize) -> Result<PathBuf> {
        self.no_augment_with_shards()?;
        let path = self.shard_path(i, n);
        let _lock = inference::Lock::file(&path)?;
        let (model, tok, files) = self.load_teacher(false)?;
        let (train, _) = self.read_data()?;
        let mut fp = self.fingerprint(&model, &tok, &files, &train)?;
        fp.shard = Some(format!("{i}/{n}"));
        if fresh_targets(&path, &fp).is_some() {
            return Ok(path);
        }
        if i == 0 {
            self.preflight_teacher(&model, &tok)?;
        }
        let range = shard_range(train.len(), i, n);
        self.compute_targets(&model, &tok, &train[range], fp, &path, Vec::new())?;
        Ok(path)
    }

    /// Joins the n shard files into the training targets, after checking that each was computed from
    /// this config (fingerprint) and covers its slice.
    pub fn merge_shards(&self, n: usize) -> Result<Targets> {
        self.no_augment_with_shards()?;
        let (model, tok, files) = self.teacher_model()?;
        let (train, _) = self.read_data()?;
        let fp = self.fingerprint(&model, &tok, &files, &train)?;
        let mut parts = Vec::with_capacity(n);
        for i in 0..n {
            let path = self.shard_path(i, n);
            if !path.is_file() {
                bail!(
                    "{}: missing; run `distill teacher CONFIG --shard {i}/{n}`",
                    path.display()
                );
            }
            let part = Targets::load(&path)?;
            let mut want = fp.clone();
            want.shard = Some(format!("{i}/{n}"));
            if part.fingerprint != want {
                bail!(
                    "{}: computed from another setup ({} changed); rerun that shard",
                    path.display(),
                    want.changes(&part.fingerprint).join(", ")
                );
            }
            let rows = shard_range(train.len(), i, n).len();
            if part.len() != rows {
                bail!("{}: {} rows, expected {rows}", path.display(), part.len());
            }
            parts.push(part);
        }
        let targets = Targets::concat(&parts, fp)?;
        let path = self.targets_path();
        targets.save(&path)?;
        tracing::info!(
            "targets: merged {n} shards into {} ({} examples)",
            path.display(),
            targets.len()
        );
        Ok(targets)
    }

    /// The teacher as the target pass runs it: itself, or with `teacher.precision: bf16` an inference
    /// copy whose dense products run in bf16 (`modeling::Packing::Bf16`).
    fn target_pass_model(&self, model: &Classifier) -> Result<Classifier> {
        let mut m = model.clone();
        if !self.cfg().teacher.precision.is_fp32() {
            if !self.device().is_cpu() {
                bail!(
                    "teacher.precision: bf16 is the CPU target pass's; on a GPU leave it at fp32"
                );
            }
            m.pack(modeling::Packing::Bf16)
                .context("teacher.precision: bf16")?;
        }
        Ok(m)
    }

    /// Everything the training targets depend on.
    fn fingerprint(
        &self,
        model: &Classifier,
        tok: &TextTokenizer,
        files: &ModelFiles,
        train: &[Example],
    ) -> Result<Fingerprint> {
        let t = &self.cfg().teacher;
        let n_layers = model.config.num_hidden_layers;
        if let Some(l) = t.hidden_layers.iter().find(|&&l| l > n_layers) {
            bail!("teacher.hidden_layers: layer {l} does not exist (the teacher has layers 0..={n_layers}, 0 = embeddings)");
        }
        Ok(Fingerprint {
            teacher_weights: hash_files(
                &files
                    .weights
                    .iter()
                    .map(PathBuf::as_path)
                    .collect::<Vec<_>>(),
            )?,
            tokenizer: hash_files(&[tok.path()])?,
            max_seq_len: self.cfg().data.max_seq_len,
            dataset: hash_examples(train),
            head: format!("{}:{}", model.num_labels, self.spec().labels.join(",")),
            hidden_layers: t.hidden_layers.clone(),
            pooling: format!("{:?}", t.pooling),
            ensemble: self.ensemble_fingerprint(files)?,
            shard: None,
            augment: None,
            precision: (!t.precision.is_fp32()).then(|| "bf16".to_string()),
        })
    }

    /// `weight:hash` of the main teacher and of each `teacher.ensemble` member (empty without one).
    fn ensemble_fingerprint(&self, main: &ModelFiles) -> Result<Vec<String>> {
        let t = &self.cfg().teacher;
        if t.ensemble.is_empty() {
            return Ok(Vec::new());
        }
        let hash = |f: &ModelFiles| {
            hash_files(&f.weights.iter().map(PathBuf::as_path).collect::<Vec<_>>())
        };
        let mut v = vec![format!("{}:{}", t.weight, hash(main)?)];
        for (i, m) in t.ensemble.iter().enumerate() {
            let files = ModelSource::parse(&m.model, &m.revision)
                .resolve(t.allow_pickle)
                .with_context(|| format!("teacher.ensemble[{i}].model"))?;
            v.push(format!("{}:{}", m.weight, hash(&files)?));
        }
        Ok(v)
    }

    /// Logits [n, c] of `examples` averaged over the main teacher's (`main`) and every ensemble member's,
    /// with the configured weights.
    fn ensemble_logits(&self, main: Tensor, examples: &[Example]) -> Result<Tensor> {
        let t = &self.cfg().teacher;
        let n = self.spec().num_outputs();
        let mut sum = (main * t.weight)?;
        let mut total = t.weight;
        for (i, m) in t.ensemble.iter().enumerate() {
            let key = format!("teacher.ensemble[{i}].model");
            let files = ModelSource::parse(&m.model, &m.revision)
                .resolve(t.allow_pickle)
                .context(key.clone())?;
            let (model, report) = Classifier::load(&files, Some(n), self.cfg().seed, self.device())
                .context(key.clone())?;
            if !report.has_head {
                bail!("{key}: {} has no task head; ensemble members must be fine-tuned on the task (e.g. another run's teacher/model)", m.model);
            }
            let tok = TextTokenizer::for_model(&files, self.cfg().data.max_seq_len)
                .context(key.clone())?;
            self.preflight_teacher(&model, &tok).context(key)?;
            let enc = tokenise(&tok, examples)?;
            let model = self.target_pass_model(&model)?;
            let bar = inference::progress_bar(enc.ids.len() as u64, &format!("member {i}"));
            let out = infer::run(
                &model,
                &enc.ids,
                tok.pad_id(),
                t.batch_size,
                &[],
                t.pooling,
                Some(&bar),
            )?;
            bar.finish_and_clear();
            sum = (sum + (out.logits * m.weight)?)?;
            total += m.weight;
        }
        Ok((sum / total)?)
    }

    /// Runs the teacher (and any ensemble) over `examples` and saves the targets under `fp` at `path`.
    fn compute_targets(
        &self,
        model: &Classifier,
        tok: &TextTokenizer,
        examples: &[Example],
        fp: Fingerprint,
        path: &Path,
        augmented: Vec<Example>,
    ) -> Result<Targets> {
        let t = &self.cfg().teacher;
        let ids = tokenise(tok, examples)?.ids;
        let model = &self.target_pass_model(model)?;
        let bar = inference::progress_bar(ids.len() as u64, "targets");
        let out = infer::run(
            model,
            &ids,
            tok.pad_id(),
            t.batch_size,
            &t.hidden_layers,
            t.pooling,
            Some(&bar),
        )?;
        bar.finish_and_clear();
        let logits = if t.ensemble.is_empty() {
            out.logits
        } else {
            self.ensemble_logits(out.logits, examples)?
        };
        let targets = Targets {
            logits,
            hidden: out.hidden.into_iter().collect(),
            fingerprint: fp,
            augmented,
        };
        targets.save(path)?;
        tracing::info!(
            "targets: wrote {} ({} examples)",
            path.display(),
            targets.len()
        );
        Ok(targets)
    }

    /// The student before training: RoBERTa-tiny-cased (or the configured shape) with random weights,
    /// a checkpoint (its head re-initialised when absent), or the task teacher's weights, chosen by their
    /// importance on the training examples `train` when `student.selection` asks for that.
    pub fn student_model(&self, tok: &TextTokenizer, train: &[Example]) -> Result<Classifier> {
        let n = self.spec().num_outputs();
        let max_len = self.cfg().data.max_seq_len;
        let st = &self.cfg().student;
        // `init: teacher` takes its blocks from the task teacher (fine-tuned first when it has no head).
        let teacher = if st.from_teacher() {
            Some(self.teacher_model()?)
        } else {
            None
        };
        let importance = match &teacher {
            Some((model, ttok, _)) if st.needs_importance(&model.config) => {
                Some(self.importance(model, ttok, train)?)
            }
            _ => None,
        };
        let from = teacher.as_ref().map(|(_, _, files)| TeacherWeights {
            files,
            importance: importance.as_ref(),
        });
        Ok(st.build(tok, from, n, max_len, self.student_seed(), self.device())?)
    }

    /// The teacher's dimensions scored on `student.importance_examples` training examples, evenly
    /// spaced through `train` (`modeling::importance`).
    fn importance(
        &self,
        teacher: &Classifier,
        tok: &TextTokenizer,
        train: &[Example],
    ) -> Result<Importance> {
        let st = &self.cfg().student;
        let keep = st.importance_examples.clamp(1, train.len().max(1));
        let sample: Vec<Example> = modeling::select::evenly(keep, train.len())
            .into_iter()
            .filter_map(|i| train.get(i).cloned())
            .collect();
        let ids = tokenise(tok, &sample)?.ids;
        let scores = Importance::measure(teacher, &st.teacher_layers, &ids, tok.pad_id())?;
        tracing::info!(
            "student: scored the teacher's hidden dimensions, heads and FFN units on {} training examples",
            sample.len()
        );
        Ok(scores)
    }

    /// Stage 2: trains the student on the task loss and the teacher's targets.
    pub fn train(&self) -> Result<train::TrainReport> {
        self.train_until(&|_| false)
    }

    /// `train`, pausing (resumably) once `stop(step)` is true.
    pub fn train_until(&self, stop: &dyn Fn(usize) -> bool) -> Result<train::TrainReport> {
        if self.cfg().stages.is_empty() {
            return self.train_stage(stop);
        }
        let n = self.cfg().stages.len();
        let tok = self.student_tokenizer()?.path().to_path_buf();
        let mut init: Option<PathBuf> = None;
        let mut last = None;
        for (i, st) in self.cfg().stages.iter().enumerate() {
            let mut cfg = self.cfg().clone();
            cfg.stages.clear();
            cfg.distill = st.distill.clone();
            cfg.train.epochs = st.epochs.unwrap_or(cfg.train.epochs);
            cfg.train.learning_rate = st.learning_rate.unwrap_or(cfg.train.learning_rate);
            // Later stages start from the previous stage's final weights (not its best dev checkpoint:
            // an intermediate-layer stage's head is untrained, so its dev score means nothing).
            if let Some(prev) = &init {
                cfg.student.init = prev.display().to_string();
                cfg.student.teacher_layers.clear();
                cfg.student.tokenizer = Some(tok.clone());
            }
            let sub = self.for_stage(cfg, (i + 1 < n).then(|| format!("{i}-{}", st.name)));
            tracing::info!("stage {}/{n}: {}", i + 1, st.name);
            // A sweep's early stopping applies to the last stage.
            let never = |_: usize| false;
            let hook: &dyn Fn(usize) -> bool = if i + 1 < n { &never } else { stop };
            let report = sub
                .train_stage(hook)
                .with_context(|| format!("stages[{i}] ({})", st.name))?;
            init = Some(sub.student_dir().join("last"));
            last = Some(report);
        }
        last.context("no stage ran")
    }

    /// One training stage: the run's `distill` and `train` sections (a stage's, under `stages:`).
    fn train_stage(&self, stop: &dyn Fn(usize) -> bool) -> Result<train::TrainReport> {
        let d = &self.cfg().distill;
        // Cached logits feed kd / logits_mse; token-level terms need the teacher itself (`online`).
        let needs_logits = d
            .resolved_terms()
            .iter()
            .any(|t| t.kind.uses_teacher_logits() && t.weight > 0.0);
        // Augmented examples live in the targets: they are loaded whenever augmentation is on.
        let targets = if needs_logits || self.cfg().augment.copies > 0 {
            let path = self.targets_path();
            let t =
                Targets::load(&path).map_err(|e| anyhow!("{e} (run `distill teacher` first)"))?;
            Some(t)
        } else {
            None
        };
        let tok = self.student_tokenizer()?;
        let (mut train, dev) = self.read_data()?;
        student_casing(self, &tok, &train)?;
        if let Some(t) = &targets {
            let want = hash_examples(&train);
            if t.fingerprint.dataset != want || t.len() != train.len() + t.augmented.len() {
                bail!(
                    "{}: the teacher targets were computed for another training set; run `distill teacher` again",
                    self.targets_path().display()
                );
            }
            // Soft-only rows after the gold ones, in the order of the targets' logits.
            crate::augment::extend_train(self, t, &mut train)?;
        }
        // Build (and so validate) the student, and the online teacher with its checks, before touching
        // any earlier output.
        let model = self.student_model(&tok, &train)?;
        let online = if crate::online::needed(d) {
            Some(crate::online::prepare(self, &model.config, &tok, &train)?)
        } else {
            None
        };
        // A student started from a local folder (another run's export, an earlier stage) is stale when
        // those weights change, not only when the path does.
        let init_weights = Path::new(&self.cfg().student.init).join("model.safetensors");
        let stamp = StudentStamp {
            targets: targets.as_ref().map(|t| t.fingerprint.clone()),
            student: self.cfg().student.clone(),
            train: self.cfg().train.clone(),
            distill: self.cfg().distill.clone(),
            tokenizer: hash_files(&[tok.path()])?,
            data: format!("{}:{}", hash_examples(&train), hash_examples(&dev)),
            max_seq_len: self.cfg().data.max_seq_len,
            seed: self.cfg().seed,
            student_seed: self.student_seed(),
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
        let dir = self.student_dir();
        // `stamp.json` says which inputs `last/` belongs to (a killed run resumes from it); `done.json`
        // is written only when training has finished, so a failed or interrupted run is never "fresh".
        let report_path = dir.join("train_report.json");
        let done = dir.join("done.json");
        let finished = read_stamp::<StudentStamp>(&done)
            .filter(|d| *d == stamp)
            .and_then(|_| std::fs::read_to_string(&report_path).ok())
            .and_then(|t| serde_json::from_str::<train::TrainReport>(&t).ok())
            .filter(|r| {
                (r.steps >= self.planned_steps(train.len()) || r.stopped_early)
                    && dir.join("best").is_dir()
            });
        let freshness = check_stamp(&dir, &stamp);
        // Every rank has read the stamps before rank 0 changes them.
        self.group().barrier()?;
        let main = self.group().is_main();
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
        let labels = self.labels();
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
                .map(crate::online::word_align),
            pad_id: tok.pad_id(),
            metric: self.spec().metric,
            label_names: &labels,
            group: Some(self.group()),
            tensorboard: Some(&self.tensorboard_dir("student")),
        };
        let tc = student::TrainConfig {
            train: self.cfg().train.clone(),
            seed: self.student_seed(),
            alpha_kd: d.alpha_kd,
            temperature: d.temperature,
            eval_batch_size: self.cfg().train.eval_batch(self.cfg().teacher.batch_size),
            objective: d.objective(),
        };
        let report = student::train_until(&model, &data, &tc, &dir, stop)?;
        if main && (report.steps >= self.planned_steps(train.len()) || report.stopped_early) {
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

    /// Stage 4: writes the Hugging Face export of the best student.
    /// Writes the best student as a Hugging Face folder, plus `model.onnx` (and `model.int8.onnx`)
    /// in it when asked.
    pub fn export(&self, out: Option<PathBuf>, onnx: bool, int8: bool) -> Result<PathBuf> {
        let dest = out.unwrap_or_else(|| self.out().join("export"));
        let best = self.student_dir().join("best");
        let tok = self.student_tokenizer()?;
        // Replacing the folder waits for no reader: a `serve` or `predict` on it holds a shared lock.
        let _readers_out = inference::Lock::replacing(&dest)?;
        modeling::export::export(&best, &tok, &dest)?;
        // The run's comparison, when `compare` has written one, fills the card's table and model-index.
        let report: Option<crate::report::Report> =
            std::fs::read_to_string(self.out().join("report.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let card = crate::card::model_card(self, &dest, report.as_ref())?;
        modeling::write_atomic(&dest.join("README.md"), card.as_bytes())?;
        tracing::info!("export: wrote {}", dest.display());
        let mut variants = Vec::new();
        if onnx {
            variants.push(("model.onnx", false));
        }
        if int8 {
            variants.push(("model.int8.onnx", true));
        }
        for (name, q) in variants {
            modeling::onnx::write(&dest, &dest.join(name), q)?;
            tracing::info!("export: wrote {}", dest.join(name).display());
        }
        Ok(dest)
    }
}

/// The cache at `path` when it matches `fp`; says why it is rebuilt otherwise.
fn fresh_targets(path: &Path, fp: &Fingerprint) -> Option<Targets> {
    let mut stale = Vec::new();
    if let Some(targets) = Targets::load_fresh(path, fp, &mut stale) {
        tracing::info!(
            "targets: {} is fresh ({} examples)",
            path.display(),
            targets.len()
        );
        return Some(targets);
    }
    if !stale.is_empty() {
        tracing::info!(
            "targets: rebuilding {} because {} changed",
            path.display(),
            stale.join(", ")
        );
    }
    None
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
