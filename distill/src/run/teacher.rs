//! The teacher stage: the teacher ready for the task (fine-tuned first when it has no head, or taken from
//! the machine's cache), and its targets for the training set (logits, hidden states, augmented
//! examples), reused while their fingerprint matches; sharded across machines when asked.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use data::{hash_examples, tokenise, Example};
use modeling::infer;
use modeling::io::hash_files;
use modeling::{Classifier, EncoderConfig, ModelFiles, ModelSource, TextTokenizer};
use teacher::{Fingerprint, Targets};

use super::plan::{shard_range, Plan};
use super::preflight;
use super::stamp::{check_stamp, write_stamp, Freshness, TeacherStamp};

/// The cache's kinds of entry: fine-tuned teacher folders, and training targets.
const TEACHERS: &str = "teachers";
const TARGETS: &str = "targets";

/// The teacher stage of a run.
pub struct TeacherStage<'a> {
    plan: &'a Plan,
}

impl<'a> TeacherStage<'a> {
    pub fn new(plan: &'a Plan) -> Self {
        Self { plan }
    }
    /// The teacher ready for the task: the checkpoint itself when it has a head, else the fine-tuned copy
    /// under `output_dir/teacher/model` (fine-tuned now unless a fresh one is there).
    pub fn model(&self) -> Result<(Classifier, TextTokenizer, ModelFiles)> {
        self.load(true)
    }

    /// The teacher of shape `shape` (from `files`) reads inputs of `data.max_seq_len` tokens and has the
    /// layers `teacher.hidden_layers` names.
    pub(crate) fn fits(&self, shape: &EncoderConfig, files: &ModelFiles) -> Result<()> {
        let (max_tokens, n_layers) = (shape.max_tokens(), shape.num_hidden_layers);
        if self.plan.cfg().data.max_seq_len > max_tokens {
            bail!(
                "data.max_seq_len: {} exceeds the {max_tokens} positions of the teacher ({})",
                self.plan.cfg().data.max_seq_len,
                files.config.display()
            );
        }
        if let Some(l) = self
            .plan
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
    fn load(&self, may_finetune: bool) -> Result<(Classifier, TextTokenizer, ModelFiles)> {
        let (files, tok) = self.plan.teacher_source()?;
        let n = self.plan.spec().num_outputs();
        let (model, report) =
            Classifier::load(&files, Some(n), self.plan.cfg().seed, self.plan.device())
                .context("teacher.model")?;
        tok.check_vocab(model.config.vocab_size, &files.config)
            .context("teacher.model")?;
        self.fits(&model.config, &files)?;
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
            max_seq_len: self.plan.cfg().data.max_seq_len,
            data: self.plan.data_hash()?,
            finetune: self.plan.cfg().teacher.finetune.clone(),
            seed: self.plan.cfg().seed,
            labels: self.plan.labels(),
        };
        let dir = self.plan.teacher_dir();
        let stage = self.plan.teacher_out().join("teacher");
        let cache = self.plan.cache();
        let key = teacher::cache::key(&stamp);
        // Whoever computes or publishes the entry holds its lock: a second run waits, then takes it.
        let _computing = cache
            .as_ref()
            .map(|c| c.computing(TEACHERS, &key))
            .transpose()?;
        let what = format!(
            "{} fine-tuned on {}",
            self.plan.cfg().teacher.model,
            self.plan.spec().name
        );
        let fresh = check_stamp(&stage, &stamp);
        if matches!(fresh, Freshness::Fresh) && dir.join("model.safetensors").is_file() {
            tracing::info!("teacher: fine-tuned teacher in {} is fresh", dir.display());
            if let Some(c) = cache.as_ref().filter(|c| !c.has(TEACHERS, &key)) {
                self.publish(c, TEACHERS, &key, &what, &stamp, &dir)?;
            }
        } else if let Some(entry) = cache
            .as_ref()
            .and_then(|c| c.get(TEACHERS, &key, &self.plan.cache_user()))
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
                    self.plan.cfg().teacher.model,
                    dir.display()
                );
            }
            if let Freshness::Stale(why) = fresh {
                tracing::info!("teacher: redoing fine-tuning ({why})");
                let _ = std::fs::remove_dir_all(stage.join("finetune").join("last"));
            }
            self.finetune(&model, &tok, &stage)?;
            write_stamp(&stage, &stamp)?;
            if let Some(c) = &cache {
                self.publish(c, TEACHERS, &key, &what, &stamp, &dir)?;
            }
        }
        let ft_files = ModelSource::Local(dir.clone()).resolve(false)?;
        let tok = TextTokenizer::for_model(&ft_files, self.plan.cfg().data.max_seq_len)?;
        let (model, _) =
            Classifier::load(&ft_files, Some(n), self.plan.cfg().seed, self.plan.device())?;
        Ok((model, tok, ft_files))
    }

    /// Fine-tunes the head-less `model` on the task (checkpoints under `stage/finetune`, resumed from
    /// `last/`) and exports its best dev checkpoint as the teacher folder.
    fn finetune(&self, model: &Classifier, tok: &TextTokenizer, stage: &Path) -> Result<()> {
        tracing::info!(
            "teacher: {} has no task head; fine-tuning it on {} first",
            self.plan.cfg().teacher.model,
            self.plan.spec().name
        );
        let (train, dev) = self.plan.read_data()?;
        let tr = tokenise(tok, &train)?;
        let dv = tokenise(tok, &dev)?;
        let labels = self.plan.labels();
        let data = train::classify::ClassifyData {
            train: &tr.ids,
            train_labels: &tr.labels,
            dev: &dv.ids,
            dev_labels: &dv.labels,
            pad_id: tok.pad_id(),
            metric: self.plan.spec().metric,
            label_names: &labels,
            group: None,
            tensorboard: Some(&self.plan.tensorboard_dir("teacher")),
        };
        let ft = teacher::finetune::FinetuneConfig {
            settings: self.plan.cfg().teacher.finetune.clone(),
            seed: self.plan.cfg().seed,
            eval_batch_size: self.plan.cfg().teacher.batch_size,
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
            &self.plan.teacher_dir(),
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
        match cache.put(kind, key, what, inputs, &files, &self.plan.cache_user()) {
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
    pub fn targets(&self) -> Result<Targets> {
        let (model, tok, files) = self.model()?;
        let (train, _) = self.plan.read_data()?;
        let mut fp = self.fingerprint(&model, &tok, &files, &train)?;
        let mlm = crate::run::augment::load_mlm(self.plan)?;
        fp.augment = crate::run::augment::fingerprint(self.plan, mlm.as_ref());
        let path = self.plan.targets_path();
        let cache = self.plan.cache();
        let key = teacher::cache::key(&fp);
        let _computing = cache
            .as_ref()
            .map(|c| c.computing(TARGETS, &key))
            .transpose()?;
        let what = format!(
            "targets of {} on {} ({} examples)",
            self.plan.cfg().teacher.model,
            self.plan.spec().name,
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
            .and_then(|c| c.get(TARGETS, &key, &self.plan.cache_user()))
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
        self.preflight(&model, &tok)?;
        let augmented = if self.plan.cfg().augment.copies > 0 {
            crate::run::augment::variants(self.plan, &model, &tok, &train, mlm.as_ref())?
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
        if self.plan.cfg().augment.copies > 0 {
            bail!("augment.copies: sharded teacher targets (--shard) do not support augmentation yet; set it to 0 or run `distill teacher` without --shard");
        }
        Ok(())
    }

    /// The teacher's labels and dev predictions (see `preflight`), before it labels the training set.
    fn preflight(&self, model: &Classifier, tok: &TextTokenizer) -> Result<()> {
        let pf = &self.plan.cfg().preflight;
        preflight::label_names(pf, &model.config.labels(), &self.plan.labels())?;
        let (_, dev) = self.plan.read_data()?;
        let enc = tokenise(tok, &dev)?;
        let logits = inference::logits(
            model,
            &enc.ids,
            tok.pad_id(),
            self.plan.cfg().teacher.batch_size,
            Some("eval"),
        )?
        .logits;
        let scores = train::eval::score(&logits, &enc.labels, self.plan.spec().metric)?;
        let name = scores.values.keys().next().cloned().unwrap_or_default();
        preflight::teacher_dev(pf, &logits.to_vec2()?, &enc.labels, scores.main, &name)?;
        tracing::info!("preflight: teacher dev {}", scores.summary());
        Ok(())
    }

    /// `distill teacher --shard i/n`: the targets of the i-th of n contiguous slices of the training set,
    /// in `targets/train.shard-I-of-N.safetensors`, so that n machines can share the teacher's work;
    /// `merge_shards` joins them. The teacher must not need fine-tuning on each machine: fine-tune it
    /// once (`distill teacher --finetune-only`) and share the output folder.
    pub fn shard(&self, i: usize, n: usize) -> Result<PathBuf> {
        self.no_augment_with_shards()?;
        let path = self.plan.shard_path(i, n);
        let _lock = inference::Lock::file(&path)?;
        let (model, tok, files) = self.load(false)?;
        let (train, _) = self.plan.read_data()?;
        let mut fp = self.fingerprint(&model, &tok, &files, &train)?;
        fp.shard = Some(format!("{i}/{n}"));
        if fresh_targets(&path, &fp).is_some() {
            return Ok(path);
        }
        if i == 0 {
            self.preflight(&model, &tok)?;
        }
        let range = shard_range(train.len(), i, n);
        self.compute_targets(&model, &tok, &train[range], fp, &path, Vec::new())?;
        Ok(path)
    }

    /// Joins the n shard files into the training targets, after checking that each was computed from
    /// this config (fingerprint) and covers its slice.
    pub fn merge_shards(&self, n: usize) -> Result<Targets> {
        self.no_augment_with_shards()?;
        let (model, tok, files) = self.model()?;
        let (train, _) = self.plan.read_data()?;
        let fp = self.fingerprint(&model, &tok, &files, &train)?;
        let mut parts = Vec::with_capacity(n);
        for i in 0..n {
            let path = self.plan.shard_path(i, n);
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
        let path = self.plan.targets_path();
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
        if !self.plan.cfg().teacher.precision.is_fp32() {
            if !self.plan.device().is_cpu() {
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
        let t = &self.plan.cfg().teacher;
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
            max_seq_len: self.plan.cfg().data.max_seq_len,
            dataset: hash_examples(train),
            head: format!("{}:{}", model.num_labels, self.plan.spec().labels.join(",")),
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
        let t = &self.plan.cfg().teacher;
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
        let t = &self.plan.cfg().teacher;
        let n = self.plan.spec().num_outputs();
        let mut sum = (main * t.weight)?;
        let mut total = t.weight;
        for (i, m) in t.ensemble.iter().enumerate() {
            let key = format!("teacher.ensemble[{i}].model");
            let files = ModelSource::parse(&m.model, &m.revision)
                .resolve(t.allow_pickle)
                .context(key.clone())?;
            let (model, report) =
                Classifier::load(&files, Some(n), self.plan.cfg().seed, self.plan.device())
                    .context(key.clone())?;
            if !report.has_head {
                bail!("{key}: {} has no task head; ensemble members must be fine-tuned on the task (e.g. another run's teacher/model)", m.model);
            }
            let tok = TextTokenizer::for_model(&files, self.plan.cfg().data.max_seq_len)
                .context(key.clone())?;
            self.preflight(&model, &tok).context(key)?;
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
        let t = &self.plan.cfg().teacher;
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
