//! The static student, model2vec's distillation (Tulkens & van Dongen 2024, `model2vec/distill`): no
//! training data and no training. Every token of the teacher's vocabulary is run through the teacher
//! alone between its start and end tokens (`[CLS] t [SEP]`), its output vectors mean-pooled; the vectors
//! are reduced by PCA (fitted on the tokens model2vec keeps: no `[unusedN]`, no special token but padding
//! and unknown) and weighted by SIF over a Zipf estimate of each token's frequency from its rank,
//! `w = a / (a + p(rank))`. A sentence is then the mean of its tokens' vectors (`modeling::static_model`).
//! Rows stay indexed by the teacher's token ids, so the teacher's tokenizer serves the model unchanged.

use candle_core::{DType, Device, Tensor};
use modeling::batch::make_batch;
use modeling::encoder::masked_mean;
use modeling::infer::in_sorted_batches;
use modeling::static_model::{StaticModel, MODEL_TYPE};
use modeling::{Classifier, Encoded, TextTokenizer};
use nalgebra::{DMatrix, SymmetricEigen};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `static_model:` of an embedding config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    /// PCA components kept (model2vec's default 256); at most the teacher's width.
    pub dims: usize,
    /// SIF's `a` (model2vec's default 1e-4); 0 turns the weighting off.
    pub sif_coefficient: f64,
    /// Tokens run through the teacher per batch.
    pub batch_size: usize,
}

impl Default for StaticConfig {
    fn default() -> Self {
        Self {
            dims: 256,
            sif_coefficient: 1e-4,
            batch_size: 256,
        }
    }
}

/// model2vec's `token_remove_pattern` (`\[unused\d+\]`), without a regex.
fn is_unused(token: &str) -> bool {
    token
        .strip_prefix("[unused")
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The static model of `teacher` (its encoder's last hidden states) over `tok`'s vocabulary.
pub fn distill_static(
    teacher: &Classifier,
    tok: &TextTokenizer,
    cfg: &StaticConfig,
    teacher_name: &str,
) -> Result<StaticModel> {
    let specials = tok.special_tokens()?;
    let vocab = tok.vocab_size();
    let h = teacher.config.hidden_size;
    if cfg.dims == 0 || cfg.dims > h {
        return Err(Error::Msg(format!(
            "static_model.dims: {} must be between 1 and the teacher's width {h}",
            cfg.dims
        )));
    }
    let inputs: Vec<Encoded> = (0..vocab as u32)
        .map(|id| Encoded {
            ids: vec![specials.cls, id, specials.sep],
            type_ids: vec![0; 3],
        })
        .collect();
    let bar = inference_bar(vocab);
    let device = teacher.device.clone();
    let mut parts = in_sorted_batches(&inputs, cfg.batch_size.max(1), Some(&bar), |items| {
        let batch = make_batch(items, specials.pad, &device)?;
        let out = teacher.encoder.forward(&batch, false, false)?;
        Ok(vec![masked_mean(out.last()?, &batch.attention_mask)?])
    })?;
    bar.finish_and_clear();
    let vectors = parts
        .pop()
        .ok_or_else(|| Error::Msg("no token vectors".into()))?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    // The tokens model2vec keeps: not `[unusedN]`, and no special token but padding and unknown (its
    // `prune_added_tokens`); their order is the SIF rank order and they alone fit the PCA.
    let pruned = |id: u32| specials.is_special(id) && id != specials.pad && Some(id) != unk_id(tok);
    let kept: Vec<usize> = (0..vocab)
        .filter(|&i| !pruned(i as u32) && !tok.id_to_token(i as u32).is_some_and(|t| is_unused(&t)))
        .collect();
    let reduced = pca(&vectors, &kept, cfg.dims)?;
    // SIF over Zipf ranks: the k-th kept token (by id) has rank k; removed tokens take the last weight.
    let mut weights = vec![1.0; vocab];
    if cfg.sif_coefficient > 0.0 {
        let z: f64 = (0..kept.len()).map(|k| 1.0 / (k as f64 + 2.0)).sum();
        let a = cfg.sif_coefficient;
        let mut last = 1.0;
        for (k, &i) in kept.iter().enumerate() {
            let p = 1.0 / (k as f64 + 2.0) / z;
            weights[i] = a / (a + p);
            last = weights[i];
        }
        for (i, w) in weights.iter_mut().enumerate() {
            if kept.binary_search(&i).is_err() {
                *w = last;
            }
        }
    }
    let flat: Vec<f32> = reduced
        .iter()
        .zip(&weights)
        .flat_map(|(row, w)| row.iter().map(move |x| (x * w) as f32))
        .collect();
    let embeddings = Tensor::from_vec(flat, (vocab, cfg.dims), &Device::Cpu)?;
    let config = serde_json::json!({
        "model_type": MODEL_TYPE,
        "architectures": ["StaticModel"],
        "tokenizer_name": teacher_name,
        "apply_pca": cfg.dims,
        "sif_coefficient": cfg.sif_coefficient,
        "hidden_dim": cfg.dims,
        "seq_length": 1000000,
        "normalize": true,
        "pooling": "mean",
        "embedding_dtype": "float32",
    });
    Ok(StaticModel {
        embeddings,
        skip: specials.all.clone(),
        normalize: true,
        config,
    })
}

/// The unknown token's id (`[UNK]` or `<unk>`).
fn unk_id(tok: &TextTokenizer) -> Option<u32> {
    tok.token_to_id("[UNK]")
        .or_else(|| tok.token_to_id("<unk>"))
}

fn inference_bar(n: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("static tokens {bar:40} {pos}/{len} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Every row of `x` projected on the top `k` principal components of the rows `fit` (model2vec's
/// `_pca_fit_transform`: the covariance's eigenvectors, each component's sign chosen so that its score
/// of largest magnitude among the fitted rows is positive). NaNs count as 0, as `np.nan_to_num`.
pub fn pca(x: &[Vec<f64>], fit: &[usize], k: usize) -> Result<Vec<Vec<f64>>> {
    let d = x.first().map_or(0, Vec::len);
    if fit.len() < 2 || k > d {
        return Err(Error::Msg(format!(
            "PCA of {} rows of width {d} to {k} components",
            fit.len()
        )));
    }
    let clean = |v: f64| if v.is_finite() { v } else { 0.0 };
    let n = fit.len() as f64;
    let mut mean = vec![0.0; d];
    for &i in fit {
        for (m, &v) in mean.iter_mut().zip(&x[i]) {
            *m += clean(v) / n;
        }
    }
    let centred =
        |i: usize| -> Vec<f64> { x[i].iter().zip(&mean).map(|(&v, m)| clean(v) - m).collect() };
    let mut cov = DMatrix::<f64>::zeros(d, d);
    for &i in fit {
        let c = nalgebra::DVector::from_vec(centred(i));
        cov.ger(1.0 / (n - 1.0), &c, &c, 1.0);
    }
    let eig = SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let comps: Vec<Vec<f64>> = order[..k]
        .iter()
        .map(|&j| eig.eigenvectors.column(j).iter().copied().collect())
        .collect();
    let project = |c: &[f64]| -> Vec<f64> {
        comps
            .iter()
            .map(|v| v.iter().zip(c).map(|(a, b)| a * b).sum())
            .collect()
    };
    let scores: Vec<Vec<f64>> = (0..x.len()).map(|i| project(&centred(i))).collect();
    // The sign convention over the fitted rows.
    let mut signs = vec![1.0; k];
    for (j, s) in signs.iter_mut().enumerate() {
        let best = fit
            .iter()
            .map(|&i| scores[i][j])
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(1.0);
        *s = if best < 0.0 { -1.0 } else { 1.0 };
    }
    Ok(scores
        .into_iter()
        .map(|r| r.iter().zip(&signs).map(|(v, s)| v * s).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_tokens_are_recognised_as_model2vec_removes_them() {
        assert!(is_unused("[unused0]") && is_unused("[unused993]"));
        assert!(!is_unused("[unused]") && !is_unused("[UNK]") && !is_unused("unused1"));
    }

    #[test]
    fn pca_matches_numpy() {
        // numpy 2.4.6, the body of model2vec 0.10.0's `_pca_fit_transform` (distill/inference.py):
        // X = np.array([[2., 0, 1], [0, 1, 3], [1, 1, 1], [4, 2, 0], [3, 3, 2]])
        // _pca_fit_transform(X, 2)[0] ->
        // [[0.3135 -1.3404] [2.499 0.6811] [0.7888 -0.5691] [-2.4807 -0.3998] [-1.1207 1.6282]]
        let x = vec![
            vec![2.0, 0.0, 1.0],
            vec![0.0, 1.0, 3.0],
            vec![1.0, 1.0, 1.0],
            vec![4.0, 2.0, 0.0],
            vec![3.0, 3.0, 2.0],
        ];
        let want = [
            [0.3135, -1.3404],
            [2.499, 0.6811],
            [0.7888, -0.5691],
            [-2.4807, -0.3998],
            [-1.1207, 1.6282],
        ];
        let got = pca(&x, &[0, 1, 2, 3, 4], 2).unwrap();
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() < 1e-3, "{got:?}");
            }
        }
    }
}
