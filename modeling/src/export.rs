//! Export: a Hugging Face folder (model.safetensors, config.json, tokenizer.json, vocab.txt,
//! tokenizer_config.json) that transformers loads with `AutoModelForSequenceClassification` (or, for a
//! masked LM, `AutoModelForMaskedLM`) and `AutoTokenizer`. Built in a temporary folder and renamed into
//! place, so a failed export never replaces a good one.

use std::path::Path;

use crate::sentence::SentenceEncoder;
use crate::static_model::StaticModel;
use crate::{MaskedLm, TextTokenizer};

use crate::{Error, Result};

/// Copies the weights and config of `model_dir` (a folder written by `Classifier::save`) and writes the
/// tokenizer files into `out`.
pub fn export(model_dir: &Path, tokenizer: &TextTokenizer, out: &Path) -> Result<()> {
    for f in ["model.safetensors", "config.json"] {
        if !model_dir.join(f).is_file() {
            return Err(Error::file(
                model_dir.join(f),
                "missing: train the model first",
            ));
        }
    }
    let copy = |tmp: &Path| -> Result<()> {
        for f in ["model.safetensors", "config.json"] {
            std::fs::copy(model_dir.join(f), tmp.join(f))
                .map_err(|e| Error::io(model_dir.join(f), e))?;
        }
        Ok(())
    };
    write_folder(out, copy, tokenizer)
}

/// Writes a masked LM (`BertForMaskedLM` / `RobertaForMaskedLM` weights and config) and its tokenizer
/// files into `out`, for `AutoModelForMaskedLM`, `distill fill-mask` or a task's `student.init`.
pub fn export_mlm(model: &MaskedLm, tokenizer: &TextTokenizer, out: &Path) -> Result<()> {
    let save = |tmp: &Path| -> Result<()> { model.save(tmp) };
    write_folder(out, save, tokenizer)
}

/// Writes a sentence-embedding model as a sentence-transformers folder (the encoder, its modules, the
/// tokenizer files, and `card` as README.md), for `SentenceTransformer(out)` and `distill embed`.
pub fn export_sentence(
    model: &SentenceEncoder,
    tokenizer: &TextTokenizer,
    out: &Path,
    card: Option<&str>,
) -> Result<()> {
    write_folder(out, |tmp| with_card(model.save(tmp), tmp, card), tokenizer)
}

/// Writes a static model as a model2vec folder (`model.safetensors`, `config.json`, `tokenizer.json`, and
/// `card` as README.md), for model2vec's `StaticModel.from_pretrained(out)` and `distill embed`.
pub fn export_static(
    model: &StaticModel,
    tokenizer: &TextTokenizer,
    out: &Path,
    card: Option<&str>,
) -> Result<()> {
    write_folder(out, |tmp| with_card(model.save(tmp), tmp, card), tokenizer)
}

/// After the model files were `saved` into `tmp`, the model card as README.md.
fn with_card(saved: Result<()>, tmp: &Path, card: Option<&str>) -> Result<()> {
    saved?;
    match card {
        Some(c) => crate::write_atomic(&tmp.join("README.md"), c.as_bytes()),
        None => Ok(()),
    }
}

/// Builds the folder `out` in a temporary sibling: the model files from `model_files`, then the
/// tokenizer's; renamed into place only when all were written.
fn write_folder(
    out: &Path,
    model_files: impl FnOnce(&Path) -> Result<()>,
    tokenizer: &TextTokenizer,
) -> Result<()> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = model_files(&tmp).and_then(|_| fill(tokenizer, &tmp)) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(())
}

/// Writes the tokenizer's files into the (temporary) folder `tmp`: tokenizer.json with the
/// tokenizer_config.json read off it, and the vocab.txt it was built from, if any.
fn fill(tokenizer: &TextTokenizer, tmp: &Path) -> Result<()> {
    tokenizer.save(&tmp.join("tokenizer.json"))?;
    let src = tokenizer.path();
    if src.extension().is_some_and(|e| e == "txt") {
        std::fs::copy(src, tmp.join("vocab.txt")).map_err(|e| Error::io(src, e))?;
    } else if let Some(v) = src
        .parent()
        .map(|d| d.join("vocab.txt"))
        .filter(|p| p.is_file())
    {
        std::fs::copy(&v, tmp.join("vocab.txt")).map_err(|e| Error::io(&v, e))?;
    }
    Ok(())
}

/// Total size in bytes of the files in a folder (not recursive).
pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
