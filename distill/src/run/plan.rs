//! The plan of a run: the config, the task, the device, the folders and the seeds, fixed when the plan
//! is built (from the config and the device) and never changed afterwards. A sweep trial or a stage of
//! `stages:` is a plan of its own, built from its parent's. Also the helpers the stages and the report
//! share: reading the data, tokenising it, the student's tokenizer.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};
use candle_core::Device;
use data::hash_examples;
use data::{Example, TaskSpec};
use modeling::{ModelFiles, ModelSource, TextTokenizer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use teacher::Targets;
use train::dist::Group;

use crate::config::RunConfig;
use inference::Lock;

pub struct Plan {
    cfg: RunConfig,
    spec: TaskSpec,
    device: Device,
    out: PathBuf,
    /// Where the teacher's fine-tuned copy and targets live: `out` itself, or the parent run of a sweep
    /// trial (trials share one teacher).
    teacher_out: PathBuf,
    /// Seed of the student's initialisation, batch order and dropout (a sweep varies it; data subsets
    /// and the teacher keep `cfg.seed`).
    student_seed: u64,
    /// For a stage of `stages:` before the last, its folder name under `student/stages/`.
    stage: Option<String>,
    /// The data-parallel group student training runs in (a group of one outside an MPI launcher).
    group: Rc<Group>,
}

impl Plan {
    /// The plan of a run of `cfg` on `device`, training in `group` (`Group::single()` alone).
    pub fn new(cfg: RunConfig, device: Device, group: Rc<Group>) -> Result<Self> {
        let spec = cfg.task_spec()?;
        // The folder is made by the writer's lock (`lock`), after the checks that need no stage: a run
        // refused at once leaves nothing behind.
        let out = cfg.output_dir.clone();
        Ok(Self {
            student_seed: cfg.seed,
            cfg,
            spec,
            device,
            teacher_out: out.clone(),
            out,
            stage: None,
            group,
        })
    }

    /// A sweep trial of `parent`: its own config (output folder, batch size, learning rate) and
    /// student seed, sharing the parent's teacher and targets.
    pub fn trial(parent: &Plan, cfg: RunConfig, seed: u64) -> Result<Self> {
        let mut p = Plan::new(cfg, parent.device.clone(), parent.group.clone())?;
        p.teacher_out = parent.out.clone();
        p.student_seed = seed;
        Ok(p)
    }

    /// Stage `stage` of `stages:` (`None`: the last), training with the stage's `cfg`.
    pub(crate) fn for_stage(&self, cfg: RunConfig, stage: Option<String>) -> Self {
        Plan {
            cfg,
            spec: self.spec.clone(),
            device: self.device.clone(),
            out: self.out.clone(),
            teacher_out: self.teacher_out.clone(),
            student_seed: self.student_seed,
            stage,
            group: self.group.clone(),
        }
    }

    pub fn cfg(&self) -> &RunConfig {
        &self.cfg
    }

    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The writer's lock on the output folder (see `lock`), taken by rank 0 for the whole group and held
    /// until dropped.
    pub fn lock(&self) -> Result<Option<Lock>> {
        if self.group.is_main() {
            Lock::folder(&self.out)
                .with_context(|| format!("output_dir {}", self.out.display()))
                .map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    pub fn teacher_out(&self) -> &Path {
        &self.teacher_out
    }

    pub fn student_seed(&self) -> u64 {
        self.student_seed
    }

    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Training examples (a seeded subset when `data.max_train_examples` is set) and dev examples.
    pub fn read_data(&self) -> Result<(Vec<Example>, Vec<Example>)> {
        let (mut train, mut dev) = match &self.cfg.data.hub {
            Some(hub) => hub.read(&self.spec)?,
            None => {
                let (train_path, dev_path) =
                    data::tasks::split_paths(&self.spec, &self.cfg.data.dir);
                (
                    self.spec.read(&train_path).context("data.dir")?,
                    self.spec.read(&dev_path).context("data.dir")?,
                )
            }
        };
        let n = self.cfg.data.max_train_examples;
        if n > 0 && n < train.len() {
            let mut rng = StdRng::seed_from_u64(self.cfg.seed);
            train.shuffle(&mut rng);
            train.truncate(n);
        }
        let m = self.cfg.data.max_dev_examples;
        if m > 0 && m < dev.len() {
            dev.truncate(m);
        }
        Ok((train, dev))
    }

    /// The dev sets `compare` scores: the main one first (suffix ""), then `extra_dev` (MNLI mismatched).
    pub fn dev_sets(&self) -> Result<Vec<(String, Vec<Example>)>> {
        let (_, dev) = self.read_data()?;
        let mut sets = vec![(String::new(), dev)];
        for (suffix, file) in &self.spec.extra_dev {
            let path = self.cfg.data.dir.join(file);
            sets.push((suffix.clone(), self.spec.read(&path).context("data.dir")?));
        }
        Ok(sets)
    }

    /// The class names a model of this task carries (`id2label`): GLUE's names, not its file's ids.
    pub(crate) fn labels(&self) -> Vec<String> {
        self.spec.label_names()
    }

    /// The teacher's source files and tokenizer.
    pub(crate) fn teacher_source(&self) -> Result<(ModelFiles, TextTokenizer)> {
        let t = &self.cfg.teacher;
        let files = ModelSource::parse(&t.model, &t.revision)
            .resolve(t.allow_pickle)
            .context("teacher.model")?;
        let tok =
            TextTokenizer::for_model(&files, self.cfg.data.max_seq_len).context("teacher.model")?;
        Ok((files, tok))
    }

    /// The machine's cache of fine-tuned teachers and targets, unless `teacher.cache` or
    /// `DISTILL_CACHE=off` turns it off.
    pub(crate) fn cache(&self) -> Option<teacher::cache::Cache> {
        self.cfg
            .teacher
            .cache
            .then(teacher::cache::Cache::from_env)
            .flatten()
    }

    /// How cache entries name this run: its task and output folder.
    pub(crate) fn cache_user(&self) -> String {
        format!("{} -> {}", self.cfg.task, self.teacher_out.display())
    }

    pub(crate) fn teacher_dir(&self) -> PathBuf {
        self.teacher_out.join("teacher").join("model")
    }

    /// `output_dir/tb/NAME` (`teacher`, `student`, or a stage of `stages:`): one TensorBoard run each, so
    /// `tensorboard --logdir OUTPUT_DIR/tb` shows them side by side.
    pub(crate) fn tensorboard_dir(&self, name: &str) -> PathBuf {
        let tb = self.out.join("tb");
        match (name, &self.stage) {
            ("student", Some(stage)) => tb.join(format!("student-{stage}")),
            _ => tb.join(name),
        }
    }

    pub(crate) fn targets_path(&self) -> PathBuf {
        self.teacher_out.join("targets").join("train.safetensors")
    }

    pub(crate) fn data_hash(&self) -> Result<String> {
        let (train, dev) = self.read_data()?;
        Ok(format!("{}:{}", hash_examples(&train), hash_examples(&dev)))
    }

    pub(crate) fn shard_path(&self, i: usize, n: usize) -> PathBuf {
        self.targets_path()
            .with_file_name(format!("train.shard-{i}-of-{n}.safetensors"))
    }

    /// The student's tokenizer: `student.tokenizer`, else the one of `student.init`.
    pub fn student_tokenizer(&self) -> Result<TextTokenizer> {
        let s = &self.cfg.student;
        // A student made of the teacher's blocks reads the teacher's tokenizer.
        let teacher = if s.from_teacher() {
            Some(self.teacher_source()?.0)
        } else {
            None
        };
        Ok(s.tokenizer(self.cfg.data.max_seq_len, teacher.as_ref())?)
    }

    /// The student's folder; the last stage (or the only one) is `student/` itself, so that compare and
    /// export read it, earlier stages are `student/stages/<i>-<name>`.
    pub fn student_dir(&self) -> PathBuf {
        match &self.stage {
            Some(s) => self.out.join("student").join("stages").join(s),
            None => self.out.join("student"),
        }
    }

    /// Updates a full run of this config makes.
    pub fn planned_steps(&self, n_train: usize) -> usize {
        let t = &self.cfg.train;
        let per_step = t.gradient_accumulation.max(1) * self.group.world();
        let total = n_train.div_ceil(t.batch_size).div_ceil(per_step) * t.epochs;
        if t.max_steps > 0 {
            total.min(t.max_steps)
        } else {
            total
        }
    }

    /// Training examples a student run iterates over: the training set, plus the cached augmented
    /// examples when `augment` is on (run the teacher stage first).
    pub fn num_train_examples(&self) -> Result<usize> {
        let n = self.read_data()?.0.len();
        if self.cfg.augment.copies == 0 {
            return Ok(n);
        }
        let t = Targets::load(&self.targets_path())
            .map_err(|e| anyhow!("{e} (run `distill teacher` first)"))?;
        Ok(n + t.augmented.len())
    }
}

/// Rows `[i·len/n, (i+1)·len/n)`: n contiguous slices that cover `0..len` exactly.
pub fn shard_range(len: usize, i: usize, n: usize) -> std::ops::Range<usize> {
    (i * len / n)..((i + 1) * len / n)
}
