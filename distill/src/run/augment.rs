//! The run's side of TinyBERT data augmentation (`augment:`; the algorithm is `teacher::augment`):
//! which masked LM proposes words, what the targets' fingerprint records about it, and the variants
//! of the training set that the teacher then labels with its soft targets.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use data::{Example, Label};
use modeling::io::hash_files;
use modeling::{Classifier, MaskedLm, ModelSource, TextTokenizer};
use teacher::augment::{self, AugmentConfig, MlmMode};

use crate::run::plan::Plan;

/// The masked LM of the teacher's checkpoint, when `augment.mlm` asks for it and it has a head, with
/// the hash of its weights.
pub struct Mlm {
    pub model: MaskedLm,
    pub weights: String,
}

/// The settings the augmented set depends on, as the fingerprint's `augment` field starts with them.
pub fn settings(a: &AugmentConfig, run_seed: u64) -> String {
    format!(
        "copies={} replace_prob={} candidates={} mlm={:?} seed={}",
        a.copies,
        a.replace_prob,
        a.candidates,
        a.mlm,
        a.seed.unwrap_or(run_seed)
    )
}

/// The fingerprint's `augment` field: None without augmentation.
pub fn fingerprint(plan: &Plan, mlm: Option<&Mlm>) -> Option<String> {
    let a = &plan.cfg().augment;
    (a.copies > 0).then(|| {
        let w = mlm.map_or("none", |m| m.weights.as_str());
        format!("{} mlm_weights={w}", settings(a, plan.cfg().seed))
    })
}

/// Loads the masked LM of `teacher.model` (the checkpoint as given, not a fine-tuned copy: a fine-tuned
/// classifier has no MLM head). `auto` uses it only when the checkpoint has an MLM head; `on` requires one.
pub fn load_mlm(plan: &Plan) -> Result<Option<Mlm>> {
    let a = &plan.cfg().augment;
    if a.copies == 0 || a.mlm == MlmMode::Off {
        return Ok(None);
    }
    let t = &plan.cfg().teacher;
    let files = ModelSource::parse(&t.model, &t.revision)
        .resolve(t.allow_pickle)
        .context("teacher.model")?;
    let (model, report) =
        MaskedLm::load(&files, plan.cfg().seed, plan.device()).context("augment.mlm")?;
    if !report.has_head {
        if a.mlm == MlmMode::On {
            bail!(
                "augment.mlm: on, but {} has no masked-LM head (use auto or off for embedding neighbours)",
                t.model
            );
        }
        tracing::info!(
            "augment: {} has no masked-LM head; replacements are embedding neighbours",
            t.model
        );
        return Ok(None);
    }
    let paths: Vec<&std::path::Path> = files.weights.iter().map(PathBuf::as_path).collect();
    Ok(Some(Mlm {
        model,
        weights: hash_files(&paths)?,
    }))
}

/// The augmented variants of `train`, labelled soft-only.
pub fn variants(
    plan: &Plan,
    model: &Classifier,
    tok: &TextTokenizer,
    train: &[Example],
    mlm: Option<&Mlm>,
) -> Result<Vec<Example>> {
    let a = &plan.cfg().augment;
    let emb = model
        .named_vars()
        .into_iter()
        .find(|(k, _)| k.ends_with("embeddings.word_embeddings.weight"))
        .map(|(_, v)| v.as_tensor().clone())
        .ok_or_else(|| anyhow!("teacher.model: no word embeddings found"))?;
    let t = augment::Teacher {
        tok,
        embeddings: &emb,
        mlm: mlm.map(|m| &m.model),
        batch_size: plan.cfg().teacher.batch_size,
    };
    let seed = a.seed.unwrap_or(plan.cfg().seed);
    let out = augment::augment(train, a, seed, plan.spec().is_regression(), &t)?;
    tracing::info!(
        "augment: {} variants of {} examples (candidates from the MLM for {} words, from embedding neighbours for {}; {} of {} word draws replaced)",
        out.examples.len(),
        train.len(),
        out.mlm_words,
        out.neighbour_words,
        out.replaced,
        out.draws
    );
    Ok(out.examples)
}

/// Appends the cached augmented examples to the training set (with soft labels of the task's kind),
/// after checking that the cache was built with this config's settings.
pub fn extend_train(
    plan: &Plan,
    targets: &teacher::Targets,
    train: &mut Vec<Example>,
) -> Result<()> {
    let a = &plan.cfg().augment;
    let cached = targets.fingerprint.augment.as_deref();
    let want = (a.copies > 0).then(|| settings(a, plan.cfg().seed));
    let same = match (&want, cached) {
        (None, None) => true,
        (Some(w), Some(c)) => c.starts_with(&format!("{w} ")),
        _ => false,
    };
    if !same {
        bail!("augment: the teacher targets were computed with other augmentation settings; run `distill teacher` again");
    }
    let label = Label::soft(plan.spec().is_regression());
    train.extend(
        targets
            .augmented
            .iter()
            .map(|e| Example { label, ..e.clone() }),
    );
    Ok(())
}
