//! Embedding distillation as a `Task` of the shared loop (`train::trainer`): the student's sentence
//! embeddings (pooled, projected and normalised as the teacher's are) learn the teacher's, read from the
//! target cache, with sentence-transformers' MSE objective (Reimers & Gurevych 2020, "Making Monolingual
//! Sentence Embeddings Multilingual using Knowledge Distillation") and a cosine term, on unlabelled
//! sentences. The best checkpoint agrees most with the teacher on held-out sentences (mean cosine), so
//! no similarity score is used to train or to choose; an STS set, when given, is scored at every
//! evaluation for the learning curve.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Tensor, Var, D};
use modeling::batch::make_batch;
use modeling::infer::in_sorted_batches;
use modeling::sentence::{row_cosines, SentenceEncoder};
use modeling::Encoded;
use serde::{Deserialize, Serialize};
use train::dist::Group;
use train::metrics::{pearson, spearman, Scores};
use train::trainer::{self, LoggedTerm, MicroStep, Task, TrainReport};
use train::{Error, Result, TrainSettings};

/// Everything an embedding student's training depends on (a `last/` of another is not resumed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingTrainConfig {
    pub train: TrainSettings,
    pub seed: u64,
    /// Weight of `1 - cos(student, teacher)`, averaged over sentences.
    pub cosine: f64,
    /// Weight of the mean squared error between the embeddings (sentence-transformers' `MSELoss`).
    pub mse: f64,
    /// Identifies the sentences and the teacher's targets.
    pub data: String,
}

/// Sentence pairs with similarity scores (STS-B dev), scored by the cosine of their embeddings.
pub struct StsPairs<'a> {
    pub a: &'a [Encoded],
    pub b: &'a [Encoded],
    pub scores: &'a [f64],
}

/// The tokenised sentences, the teacher's embeddings of them, and what evaluation reads.
pub struct EmbeddingData<'a> {
    pub train: &'a [Encoded],
    /// [n_train, d] on the CPU.
    pub targets: &'a Tensor,
    pub held_out: &'a [Encoded],
    /// [n_held_out, d] on the CPU.
    pub held_out_targets: &'a Tensor,
    pub sts: Option<StsPairs<'a>>,
    pub pad_id: u32,
}

/// Trains `model` in place; checkpoints (sentence-transformers folders without tokenizer files) go to
/// `out/best` and `out/last`, the log to `out/metrics.jsonl`.
pub fn train(
    model: &SentenceEncoder,
    data: &EmbeddingData,
    cfg: &EmbeddingTrainConfig,
    out: &Path,
    group: &Group,
    tensorboard: Option<&Path>,
) -> Result<TrainReport> {
    let d = data.targets.dim(1)?;
    if d != model.dim() {
        return Err(Error::Msg(format!(
            "the student's embeddings have {} dimensions but the teacher's {d}",
            model.dim()
        )));
    }
    if cfg.cosine <= 0.0 && cfg.mse <= 0.0 {
        return Err(Error::Msg(
            "loss: cosine and mse are both 0: nothing to train".into(),
        ));
    }
    let lengths = data.train.iter().map(|e| e.ids.len()).collect();
    let mut mixed = model.clone();
    mixed
        .model
        .set_compute_dtype(cfg.train.precision.dtype())
        .map_err(Error::from)?;
    cfg.train.precision.note_for(&model.model.device);
    let mut task = Embedding {
        model,
        mixed,
        data,
        cfg,
        lengths,
    };
    trainer::run(
        &mut task,
        &cfg.train,
        cfg.seed,
        out,
        &|_| false,
        group,
        tensorboard,
    )
}

/// The embeddings [n, d] of `data` by `model` (eval mode), on the CPU in `data`'s order.
pub fn embed_all(
    model: &SentenceEncoder,
    data: &[Encoded],
    pad_id: u32,
    batch_size: usize,
) -> Result<Tensor> {
    let mut parts = in_sorted_batches(data, batch_size, None, |items| {
        let batch = make_batch(items, pad_id, &model.model.device)?;
        Ok(vec![model.embed(&batch, false)?])
    })?;
    parts
        .pop()
        .ok_or_else(|| Error::Msg("no embeddings".into()))
}

/// Spearman and Pearson correlation of the pairs' cosines with their scores.
pub fn sts_scores(a: &Tensor, b: &Tensor, gold: &[f64]) -> Result<(f64, f64)> {
    let cos: Vec<f64> = row_cosines(a, b)?.into_iter().map(f64::from).collect();
    Ok((spearman(&cos, gold), pearson(&cos, gold)))
}

struct Embedding<'a> {
    /// f32, for evaluation and checkpoints.
    model: &'a SentenceEncoder,
    /// The same weights computing in the configured precision, for the steps.
    mixed: SentenceEncoder,
    data: &'a EmbeddingData<'a>,
    cfg: &'a EmbeddingTrainConfig,
    lengths: Vec<usize>,
}

impl Task for Embedding<'_> {
    type Config = EmbeddingTrainConfig;

    fn config(&self) -> &EmbeddingTrainConfig {
        self.cfg
    }

    fn train_len(&self) -> usize {
        self.data.train.len()
    }

    fn epoch_batches(&self, epoch: usize) -> Result<Vec<Vec<usize>>> {
        Ok(train::classify::epoch_batches(
            &self.lengths,
            self.cfg.train.batch_size,
            self.cfg.seed,
            epoch,
        ))
    }

    fn loss_units(&self, batch: &[usize], _epoch: usize) -> Result<usize> {
        Ok(batch.len())
    }

    fn reseed_dropout(&self, seed: u64) {
        self.model.model.dropout.reseed(seed);
    }

    fn micro_step(
        &mut self,
        idx: &[usize],
        _epoch: usize,
        scale: f64,
        step: usize,
        _progress: f64,
    ) -> Result<MicroStep> {
        let device = &self.model.model.device;
        let items: Vec<&Encoded> = idx.iter().map(|&i| &self.data.train[i]).collect();
        let tokens = items.iter().map(|e| e.ids.len()).sum();
        let batch = make_batch(&items, self.data.pad_id, device)?;
        let rows = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &candle_core::Device::Cpu,
        )?;
        let target = self
            .data
            .targets
            .index_select(&rows, 0)?
            .to_device(device)?; // [b, d]
        let student = self
            .mixed
            .embed(&batch, true)?
            .to_dtype(candle_core::DType::F32)?; // [b, d]
        let mut terms = Vec::new();
        let mut total: Option<Tensor> = None;
        let mut add = |name: &str, w: f64, t: Tensor| -> Result<()> {
            if w <= 0.0 {
                return Ok(());
            }
            let raw = t.to_scalar::<f32>()?;
            terms.push(LoggedTerm {
                name: name.into(),
                raw,
                weighted: raw * w as f32,
            });
            let t = (t * w)?;
            total = Some(match total.take() {
                Some(x) => (x + t)?,
                None => t,
            });
            Ok(())
        };
        let cos = cosine_loss(&student, &target)?;
        add("cosine", self.cfg.cosine, cos)?;
        let mse = (&student - &target)?.sqr()?.mean_all()?;
        add("mse", self.cfg.mse, mse)?;
        let loss = total.ok_or_else(|| Error::Msg("no loss term".into()))?;
        let v = loss.to_scalar::<f32>()?;
        if !v.is_finite() {
            return Err(Error::NonFinite {
                step: step + 1,
                what: "the embedding loss".into(),
            });
        }
        let grads = modeling::backward_scaled(&loss, scale, self.mixed.model.encoder.grad_sink())?;
        Ok(MicroStep {
            grads,
            loss: v,
            terms,
            tokens,
        })
    }

    fn evaluate(&self) -> Result<Scores> {
        let bs = self.cfg.train.eval_batch(64);
        let pad = self.data.pad_id;
        let held = embed_all(self.model, self.data.held_out, pad, bs)?;
        let cos = row_cosines(&held, self.data.held_out_targets)?;
        let mean = cos.iter().map(|&c| c as f64).sum::<f64>() / cos.len().max(1) as f64;
        let mut values = BTreeMap::from([("teacher_cosine".to_string(), mean)]);
        if let Some(p) = &self.data.sts {
            let a = embed_all(self.model, p.a, pad, bs)?;
            let b = embed_all(self.model, p.b, pad, bs)?;
            let (s, r) = sts_scores(&a, &b, p.scores)?;
            values.insert("sts_spearman".into(), s);
            values.insert("sts_pearson".into(), r);
        }
        Ok(Scores { values, main: mean })
    }

    fn param_groups(&self) -> Vec<(Vec<(String, Var)>, f64)> {
        vec![(self.model.named_vars(), 1.0)]
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        Ok(self.model.save(dir)?)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let files = modeling::ModelSource::Local(dir.to_path_buf()).resolve(false)?;
        let loaded = SentenceEncoder::load(
            &files,
            dir,
            self.model.modules.clone(),
            &self.model.model.device,
        )?;
        let (dst, src) = (self.model.named_vars(), loaded.named_vars());
        if dst.len() != src.len() {
            return Err(Error::file(
                dir,
                "the checkpoint's tensors differ from the model's",
            ));
        }
        for ((_, d), (_, s)) in dst.iter().zip(src) {
            d.set(s.as_tensor())?;
        }
        Ok(())
    }
}

/// Mean over rows of `1 - cos(a_i, b_i)`: a scalar.
fn cosine_loss(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum(D::Minus1)?;
    let na = a.sqr()?.sum(D::Minus1)?.sqrt()?;
    let nb = b.sqr()?.sum(D::Minus1)?.sqrt()?;
    let cos = (dot / (na * nb)?.clamp(1e-8, f64::MAX)?)?;
    Ok(cos.affine(-1.0, 1.0)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cosine_loss_is_zero_for_parallel_rows_and_one_for_orthogonal_ones() {
        let a = Tensor::new(&[[1f32, 0.0], [0.0, 2.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[3f32, 0.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let l = cosine_loss(&a, &b).unwrap().to_scalar::<f32>().unwrap();
        // Row 0 parallel (0), row 1 orthogonal (1): mean 0.5.
        assert!((l - 0.5).abs() < 1e-6, "{l}");
    }
}
