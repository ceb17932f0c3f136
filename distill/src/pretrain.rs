//! `distill pretrain CONFIG`: masked-LM pre-training of the student on a plain-text corpus (the
//! RoBERTa-tiny-cased model card's recipe: MLM only, packed inputs of up to 256 tokens, dynamic
//! masking), on the one training loop (`train::trainer`), then a Hugging Face masked-LM export that
//! task configs start from with `student.init: OUTPUT_DIR/export`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use data::corpus::{BuildOptions, CacheStatus, Masker, MlmDataset, TokenCache};
use modeling::{MaskedLm, ModelSource, TextTokenizer};

use crate::config::pretrain::{PretrainConfig, PretrainDistill};

/// Builds (or reuses) the token cache, pre-trains (until `stop_after` optimizer steps when set, a
/// budget cut that a later run resumes past), evaluates and exports `OUTPUT_DIR/export` (the checkpoint
/// with the lowest held-out loss). In a data-parallel group rank 0 builds the cache and exports.
pub fn run(
    cfg: &PretrainConfig,
    stop_after: Option<usize>,
    group: &train::dist::Group,
) -> Result<train::TrainReport> {
    let device = cfg.device.for_rank(group)?;
    let s = &cfg.student;
    // The tokenizer's own limit only truncates corpus lines; packing cuts inputs at max_seq_len.
    let tok_len = cfg.max_seq_len.max(512);
    let tok = match &s.tokenizer {
        Some(p) => {
            TextTokenizer::from_file(p, tok_len, s.lowercase).context("student.tokenizer")?
        }
        None => {
            let files = ModelSource::parse(&s.init, &s.revision)
                .resolve(false)
                .context("student.init")?;
            TextTokenizer::for_model(&files, tok_len).context("student.init")?
        }
    };
    let _lock = if group.is_main() {
        Some(inference::Lock::folder(&cfg.output_dir).context("output_dir")?)
    } else {
        None
    };
    let cache_dir = cfg.cache_dir();
    // Rank 0 builds the cache while the others wait, then they find it fresh.
    if !group.is_main() {
        group.barrier()?;
    }
    let built = TokenCache::open_or_build(&cfg.corpus, &tok, &cache_dir, &BuildOptions::default())
        .context("corpus");
    if group.is_main() {
        group.barrier()?;
    }
    let (cache, status) = built?;
    match status {
        CacheStatus::Fresh => tracing::info!("cache {}: fresh, reused", cache_dir.display()),
        CacheStatus::Built(why) => tracing::info!(
            "cache {}: built because {}",
            cache_dir.display(),
            why.join(", ")
        ),
    }
    tracing::info!(
        "corpus: {} tokens, {} sentences, {} documents",
        cache.num_tokens(),
        cache.num_sentences(),
        cache.num_documents()
    );
    let split = cache.split(cfg.held_out, cfg.seed);
    if split.train.is_empty() || split.eval.is_empty() {
        bail!(
            "held_out: {} of {} documents leaves an empty training or held-out split (the corpus needs more documents, separated by blank lines)",
            cfg.held_out,
            cache.num_documents()
        );
    }
    let fingerprint = serde_json::to_string(&cache.meta().fingerprint)?;
    let cache = Arc::new(cache);
    let specials = tok.special_tokens().context("student.tokenizer")?;
    let masker =
        Masker::new(cfg.masking, specials, tok.vocab_size(), cfg.seed).context("masking")?;
    let train = MlmDataset::new(cache.clone(), &split.train, cfg.max_seq_len, masker.clone())?;
    let eval = MlmDataset::new(cache, &split.eval, cfg.max_seq_len, masker)?;
    tracing::info!(
        "pretrain: {} training inputs, {} held-out inputs of <= {} tokens",
        train.len(),
        eval.len(),
        cfg.max_seq_len
    );

    let model = student_model(cfg, &tok, &device)?;
    let (teacher, teacher_id) = match &cfg.distill {
        Some(d) => {
            let (t, id) = online_teacher(d, cfg, &tok, &model, tok_len, &device)?;
            (Some(t), id)
        }
        None => (None, String::new()),
    };
    tracing::info!(
        "student: {} ({} layers, hidden {}), {} parameters",
        modeling::mlm::mlm_architecture(model.config.kind()),
        model.config.num_hidden_layers,
        model.config.hidden_size,
        model.num_parameters()
    );
    let tc = student::pretrain::MlmTrainConfig {
        train: cfg.train.clone(),
        seed: cfg.seed,
        data: format!(
            "{fingerprint} max_seq_len={} held_out={} masking={:?} teacher={teacher_id}",
            cfg.max_seq_len, cfg.held_out, cfg.masking
        ),
        mlm_weight: cfg.distill.as_ref().map_or(1.0, |d| d.mlm_weight),
        objective: cfg
            .distill
            .as_ref()
            .map(|d| d.objective())
            .unwrap_or_default(),
    };
    let report = student::pretrain::pretrain(
        &model,
        teacher.as_ref(),
        &train,
        &eval,
        &tc,
        &cfg.output_dir,
        &|step| stop_after.is_some_and(|n| step >= n),
        group,
    )?;
    if !group.is_main() {
        return Ok(report);
    }
    if let Some(b) = &report.best {
        tracing::info!(
            "pretrain: {} steps, {:.0} tokens/s; best held-out at step {}: {}",
            report.steps,
            report.tokens_per_second,
            b.step,
            b.scores.summary()
        );
    }
    export_best(&cfg.output_dir, &tok, &device)?;
    Ok(report)
}

/// The model before pre-training: a random one of the configured shape, or `student.init`'s weights.
fn student_model(
    cfg: &PretrainConfig,
    tok: &TextTokenizer,
    device: &candle_core::Device,
) -> Result<MaskedLm> {
    let s = &cfg.student;
    let model = if s.init == "random" {
        let c = s.random_config(tok)?;
        MaskedLm::new(&c, cfg.seed, device)?
    } else {
        let files = ModelSource::parse(&s.init, &s.revision)
            .resolve(false)
            .context("student.init")?;
        let (mut m, report) = MaskedLm::load(&files, cfg.seed, device).context("student.init")?;
        if !report.has_head {
            tracing::info!(
                "student: {} has no masked-LM head; starting a new one",
                s.init
            );
        }
        if let Some(p) = s.dropout {
            m.set_dropout(p);
        }
        m
    };
    tok.check_vocab(model.config.vocab_size, Path::new("student"))
        .context("student.tokenizer")?;
    if cfg.max_seq_len > model.config.max_tokens() {
        bail!(
            "max_seq_len: {} exceeds the student's {} positions",
            cfg.max_seq_len,
            model.config.max_tokens()
        );
    }
    Ok(model)
}

/// Lines of the corpus on which the two tokenizers must agree.
const TOKEN_CHECK_LINES: usize = 200;

/// Loads the teacher of `distill:` and checks it against the student: the terms' layers, heads and
/// widths, and identical tokenization (token-level terms compare position by position). Returns it with
/// the hash of its weights, which identifies the run for resume.
fn online_teacher(
    d: &PretrainDistill,
    cfg: &PretrainConfig,
    tok: &TextTokenizer,
    student: &MaskedLm,
    tok_len: usize,
    device: &candle_core::Device,
) -> Result<(MaskedLm, String)> {
    let files = ModelSource::parse(&d.teacher, &d.revision)
        .resolve(false)
        .context("distill.teacher")?;
    let (teacher, _) = MaskedLm::load(&files, cfg.seed, device).context("distill.teacher")?;
    student::terms::bind(
        &d.terms,
        &d.objective(),
        1.0,
        &student.config,
        Some(&teacher.config),
    )
    .map_err(|e| anyhow!("distill.{e}"))?;
    let ttok = TextTokenizer::for_model(&files, tok_len).context("distill.teacher")?;
    let remedy = format!(
        "token-level terms compare student and teacher position by position: set student.tokenizer to the teacher's tokenizer ({})",
        ttok.path().display()
    );
    if tok.vocab_size() != ttok.vocab_size() || tok.pad_id() != ttok.pad_id() {
        bail!(
            "distill.teacher: the student's tokenizer ({} tokens) is not the teacher's ({} tokens); {remedy}",
            tok.vocab_size(),
            ttok.vocab_size()
        );
    }
    let text = std::fs::read_to_string(&cfg.corpus[0])
        .with_context(|| format!("corpus[0] {}", cfg.corpus[0].display()))?;
    for (i, line) in text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(TOKEN_CHECK_LINES)
        .enumerate()
    {
        if tok.encode(line, None)? != ttok.encode(line, None)? {
            bail!(
                "distill.teacher: corpus line {} tokenizes differently for the student and the teacher; {remedy}",
                i + 1
            );
        }
    }
    let weights: Vec<&Path> = files.weights.iter().map(|p| p.as_path()).collect();
    let id = modeling::io::hash_files(&weights)?;
    tracing::info!(
        "distill: teacher {} ({} layers, hidden {}), mlm_weight {}",
        d.teacher,
        teacher.config.num_hidden_layers,
        teacher.config.hidden_size,
        d.mlm_weight
    );
    Ok((teacher, id))
}

/// Writes `OUTPUT_DIR/export` from `OUTPUT_DIR/best`.
fn export_best(out: &Path, tok: &TextTokenizer, device: &candle_core::Device) -> Result<()> {
    let best = out.join("best");
    let files = ModelSource::Local(best.clone())
        .resolve(false)
        .with_context(|| format!("{}", best.display()))?;
    let (model, _) = MaskedLm::load(&files, 0, device)?;
    let dest = out.join("export");
    modeling::export::export_mlm(&model, tok, &dest)?;
    tracing::info!("pretrain: exported {}", dest.display());
    Ok(())
}
