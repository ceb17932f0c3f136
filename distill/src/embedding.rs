//! `distill run` of an embedding config (`task: embedding`): a sentence-embedding teacher's embeddings of
//! unlabelled sentences (its own pooling and normalisation, read from its `modules.json`), cached like
//! logits; a student trained to reproduce them (`student::embedding`); teacher and student scored side by
//! side on an STS set by cosine, MTEB's STS protocol (`report`); the student exported as a
//! sentence-transformers folder. The stages run in that order and hand each other files.

mod report;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use data::sentences;
use modeling::sentence::{SentenceEncoder, SentenceModules};
use modeling::{Encoded, ModelFiles, ModelSource, TextTokenizer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use student::embedding::{EmbeddingData, EmbeddingTrainConfig, StsPairs};
use student::init::TeacherWeights;
use teacher::cache::Cache;

use crate::config::embedding::EmbeddingConfig;
pub use report::EmbeddingReport;

/// The cache kind of teachers' sentence embeddings.
const KIND: &str = "embeddings";
const TARGETS: &str = "embeddings.safetensors";

/// Every stage in order; returns the report.
pub fn run(cfg: &EmbeddingConfig, config_path: &Path) -> Result<EmbeddingReport> {
    let device = cfg.device.select()?;
    let _lock = inference::Lock::folder(&cfg.output_dir)
        .with_context(|| format!("output_dir {}", cfg.output_dir.display()))?;
    let teacher = Teacher::load(cfg, &device)?;
    let sts = report::read_sts(cfg)?;
    let export = cfg.output_dir.join("export");
    let report = match &cfg.static_model {
        Some(sc) => {
            let t0 = std::time::Instant::now();
            let model = student::static_embedding::distill_static(
                &teacher.model.model,
                &teacher.tok,
                sc,
                &cfg.teacher.model,
            )?;
            let secs = t0.elapsed().as_secs_f64();
            tracing::info!(
                "static model: {} x {} in {secs:.0} s",
                teacher.tok.vocab_size(),
                sc.dims
            );
            let student = report::Student {
                model: &model,
                tok: &teacher.tok,
                parameters: model.embeddings.elem_count(),
                dimensions: model.dim(),
            };
            let mut r = report::compare(cfg, &teacher, &student, sts.as_ref())?;
            r.train_seconds = secs;
            modeling::export::export_static(&model, &teacher.tok, &export, Some(&r.card(cfg)))?;
            r
        }
        None => {
            let (best, stok, trained, n) =
                train_student(cfg, &teacher, sts.as_ref(), config_path, &device)?;
            let student = report::Student {
                model: &best,
                tok: &stok,
                parameters: best.named_vars().iter().map(|(_, v)| v.elem_count()).sum(),
                dimensions: best.dim(),
            };
            let mut r = report::compare(cfg, &teacher, &student, sts.as_ref())?;
            r.training_sentences = n;
            r.train_steps = trained.steps;
            r.train_seconds = trained.seconds;
            r.best_step = trained.best.as_ref().map(|b| b.step);
            r.draw_curves(&cfg.output_dir)?;
            modeling::export::export_sentence(&best, &stok, &export, Some(&r.card(cfg)))?;
            r
        }
    };
    report.write(&cfg.output_dir)?;
    tracing::info!("export: {}", export.display());
    Ok(report)
}

/// The teacher's targets, the transformer student trained on them; returns its best checkpoint, its
/// tokenizer, the training report and the number of training sentences.
fn train_student(
    cfg: &EmbeddingConfig,
    teacher: &Teacher,
    sts: Option<&report::StsText>,
    config_path: &Path,
    device: &Device,
) -> Result<(SentenceEncoder, TextTokenizer, train::TrainReport, usize)> {
    let (train_text, held_text) = split_sentences(cfg)?;
    tracing::info!(
        "embedding: {} training sentences, {} held out",
        train_text.len(),
        held_text.len()
    );
    let all: Vec<String> = train_text.iter().chain(&held_text).cloned().collect();
    let targets = teacher.targets(cfg, &all, config_path)?;
    let n = train_text.len();
    let (train_targets, held_targets) = (
        targets.narrow(0, 0, n)?,
        targets.narrow(0, n, held_text.len())?,
    );
    let stok = cfg
        .student
        .tokenizer(cfg.data.max_seq_len, Some(&teacher.files))
        .context("student.tokenizer")?;
    let student = build_student(cfg, teacher, &stok, device)?;
    let encode = |texts: &[String]| -> Result<Vec<Encoded>> {
        texts
            .iter()
            .map(|t| stok.encode(t, None).map_err(Into::into))
            .collect()
    };
    let (train_enc, held_enc) = (encode(&train_text)?, encode(&held_text)?);
    let (sa, sb) = match sts {
        Some(p) => (encode(&p.a)?, encode(&p.b)?),
        None => (Vec::new(), Vec::new()),
    };
    let data = EmbeddingData {
        train: &train_enc,
        targets: &train_targets,
        held_out: &held_enc,
        held_out_targets: &held_targets,
        sts: sts.map(|p| StsPairs {
            a: &sa,
            b: &sb,
            scores: &p.scores,
        }),
        pad_id: stok.pad_id(),
    };
    let tc = EmbeddingTrainConfig {
        train: cfg.train.clone(),
        seed: cfg.seed,
        cosine: cfg.loss.cosine,
        mse: cfg.loss.mse,
        data: teacher::cache::key(&(targets_inputs(cfg, teacher, &all)?, stok.path())),
    };
    let student_dir = cfg.output_dir.join("student");
    let trained = student::embedding::train(
        &student,
        &data,
        &tc,
        &student_dir,
        &train::dist::Group::single(),
        Some(&cfg.output_dir.join("tb").join("student")),
    )?;
    if let Some(best) = &trained.best {
        tracing::info!(
            "student: best at step {}: {}",
            best.step,
            best.scores.summary()
        );
    }
    // The best checkpoint is the student that is measured and exported.
    let best = load_student(&student_dir.join("best"), &student, device)?;
    Ok((best, stok, trained, n))
}

/// The teacher: its files, its embedding model and tokenizer.
pub(crate) struct Teacher {
    files: ModelFiles,
    /// The folder its sentence modules were read from.
    dir: PathBuf,
    model: SentenceEncoder,
    tok: TextTokenizer,
}

impl Teacher {
    fn load(cfg: &EmbeddingConfig, device: &Device) -> Result<Self> {
        let t = &cfg.teacher;
        let files = ModelSource::parse(&t.model, &t.revision)
            .resolve(false)
            .context("teacher.model")?;
        let dir = files
            .config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let model = SentenceEncoder::load(&files, &dir, SentenceModules::mean_normalized(), device)
            .context("teacher.model")?;
        let tok = TextTokenizer::for_model(
            &files,
            cfg.data.max_seq_len.min(model.model.config.max_tokens()),
        )
        .context("teacher.model")?;
        tracing::info!(
            "teacher: {} ({:?} pooling{}{}, {} dimensions)",
            t.model,
            model.modules.pooling,
            if model.modules.dense.is_some() {
                ", dense"
            } else {
                ""
            },
            if model.modules.normalize {
                ", normalised"
            } else {
                ""
            },
            model.dim()
        );
        Ok(Self {
            files,
            dir,
            model,
            tok,
        })
    }

    /// The teacher's embeddings [n, d] of `texts`: from the run's folder or the machine's cache when
    /// computed from the same inputs, else computed and put in both.
    fn targets(
        &self,
        cfg: &EmbeddingConfig,
        texts: &[String],
        config_path: &Path,
    ) -> Result<Tensor> {
        let inputs = targets_inputs(cfg, self, texts)?;
        let key = teacher::cache::key(&inputs);
        let dir = cfg.output_dir.join("teacher");
        let stamp = dir.join("embeddings.json");
        let local = dir.join(TARGETS);
        let fresh = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| v == inputs);
        if fresh && local.is_file() {
            tracing::info!(
                "teacher: embeddings in {} are fresh, reused",
                local.display()
            );
            return read_targets(&local);
        }
        let cache = Cache::from_env();
        let config = config_path.display().to_string();
        let _computing = match &cache {
            Some(c) => Some(c.computing(KIND, &key)?),
            None => None,
        };
        if let Some(entry) = cache.as_ref().and_then(|c| c.get(KIND, &key, &config)) {
            tracing::info!("teacher: embeddings from the cache ({})", entry.id());
            entry.link_into(&dir)?;
        } else {
            let enc = texts
                .iter()
                .map(|t| self.tok.encode(t, None))
                .collect::<modeling::Result<Vec<_>>>()?;
            let pass = inference::logits(
                &self.model,
                &enc,
                self.tok.pad_id(),
                cfg.teacher.batch_size,
                Some("teacher embeddings"),
            )?;
            tracing::info!(
                "teacher: {} embeddings at {:.1} sentences/s",
                texts.len(),
                pass.examples_per_second
            );
            std::fs::create_dir_all(&dir)?;
            let map = std::collections::HashMap::from([("embeddings".to_string(), pass.logits)]);
            modeling::save_tensors(&map, &local)?;
            if let Some(c) = &cache {
                let what = format!(
                    "{} sentence embeddings by {}",
                    texts.len(),
                    cfg.teacher.model
                );
                let entry = c.put(
                    KIND,
                    &key,
                    &what,
                    inputs.clone(),
                    std::slice::from_ref(&local),
                    &config,
                )?;
                tracing::info!("teacher: embeddings cached ({})", entry.id());
            }
        }
        modeling::write_atomic(&stamp, serde_json::to_string_pretty(&inputs)?.as_bytes())?;
        read_targets(&local)
    }
}

/// What the teacher's embeddings are computed from: its weights, its modules, the sentences, the length.
fn targets_inputs(
    cfg: &EmbeddingConfig,
    t: &Teacher,
    texts: &[String],
) -> Result<serde_json::Value> {
    let weights: Vec<&Path> = t.files.weights.iter().map(PathBuf::as_path).collect();
    Ok(serde_json::json!({
        "teacher": cfg.teacher.model,
        "weights": modeling::io::hash_files(&weights)?,
        "modules": t.model.modules,
        "modules_dir": t.dir,
        "sentences": teacher::cache::key(&texts),
        "count": texts.len(),
        "max_seq_len": t.tok.max_len(),
    }))
}

fn read_targets(path: &Path) -> Result<Tensor> {
    let mut t = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("{}", path.display()))?;
    t.remove("embeddings")
        .with_context(|| format!("{}: no `embeddings` tensor", path.display()))
}

/// The sentences, deduplicated, cut to `max_sentences` (seeded), and split: training, held out.
fn split_sentences(cfg: &EmbeddingConfig) -> Result<(Vec<String>, Vec<String>)> {
    let mut all = sentences::read_all(&cfg.data.sentences).context("data.sentences")?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    all.shuffle(&mut rng);
    if cfg.data.max_sentences > 0 {
        all.truncate(cfg.data.max_sentences);
    }
    let held = cfg.data.held_out;
    if all.len() <= held {
        bail!(
            "data.held_out: {held} of {} sentences leaves none to train on",
            all.len()
        );
    }
    let train = all.split_off(held);
    Ok((train, all))
}

/// The student as `student:` describes it, followed by the teacher's pooling and normalisation, and a
/// Dense layer to the teacher's width when its own differs, started as the even selection of the
/// teacher's dimensions (the student's dimension j writes the teacher's dimension it was selected from).
fn build_student(
    cfg: &EmbeddingConfig,
    teacher: &Teacher,
    tok: &TextTokenizer,
    device: &Device,
) -> Result<SentenceEncoder> {
    let s = &cfg.student;
    if s.needs_importance(&teacher.model.model.config) {
        bail!("student.selection: importance is measured on a task's logits; an embedding student is selected `even`");
    }
    let weights = TeacherWeights {
        files: &teacher.files,
        importance: None,
    };
    let model = s
        .build(
            tok,
            Some(weights),
            1,
            cfg.data.max_seq_len,
            cfg.seed,
            device,
        )
        .context("student")?;
    let (ds, dt) = (model.config.hidden_size, teacher.model.dim());
    let mut modules = teacher.model.modules.clone();
    modules.dense = (ds != dt).then_some((ds, dt));
    modules.max_seq_length = Some(cfg.data.max_seq_len);
    let init = if ds != dt {
        Some(scatter(ds, dt, device)?)
    } else {
        None
    };
    Ok(SentenceEncoder::new(model, modules, init)?)
}

/// A [dt, ds] matrix of zeros with one 1 per column of the narrower side, at the evenly spaced index
/// `floor(j * wide / narrow)`: student dimension j → teacher dimension `evenly(ds, dt)[j]`.
fn scatter(ds: usize, dt: usize, device: &Device) -> Result<Tensor> {
    let mut w = vec![0f32; dt * ds];
    if ds <= dt {
        for (j, i) in modeling::select::evenly(ds, dt).into_iter().enumerate() {
            w[i * ds + j] = 1.0;
        }
    } else {
        for (i, j) in modeling::select::evenly(dt, ds).into_iter().enumerate() {
            w[i * ds + j] = 1.0;
        }
    }
    Ok(Tensor::from_vec(w, (dt, ds), device)?)
}

/// The checkpoint in `dir`, shaped as `like`.
fn load_student(dir: &Path, like: &SentenceEncoder, device: &Device) -> Result<SentenceEncoder> {
    let files = ModelSource::Local(dir.to_path_buf())
        .resolve(false)
        .with_context(|| format!("{}", dir.display()))?;
    Ok(SentenceEncoder::load(
        &files,
        dir,
        like.modules.clone(),
        device,
    )?)
}
