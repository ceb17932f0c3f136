//! The masked-LM head with the weight names of transformers' `BertForMaskedLM` (`cls.predictions.
//! transform.dense`, `cls.predictions.transform.LayerNorm`, `cls.predictions.bias`) and
//! `RobertaForMaskedLM` (`lm_head.dense`, `lm_head.layer_norm`, `lm_head.bias`): dense -> GELU ->
//! LayerNorm -> the word-embedding matrix (tied, as both models tie `decoder.weight`) plus a bias.
//! Mirrors `BertLMPredictionHead` and `RobertaLMHead` in transformers' modeling_bert.py/modeling_roberta.py.

use candle_core::{Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use crate::config::{Activation, EncoderConfig, ModelKind};
use crate::encoder::activation;
use crate::nn::{linear, Dense, LayerNorm};
use crate::Result;

#[derive(Debug, Clone)]
pub struct MlmHead {
    dense: Dense,
    act: Activation,
    norm: LayerNorm,
    /// The word embeddings [vocab, h] as weight, the head's own bias [vocab].
    decoder: Linear,
}

impl MlmHead {
    /// `root` is the checkpoint's root VarBuilder; the encoder must already be built under it, since
    /// the decoder reuses its word-embedding tensor (one tensor, so training updates both uses).
    pub fn new(cfg: &EncoderConfig, root: VarBuilder) -> Result<Self> {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let kind = cfg.kind();
        let words = root
            .pp(kind.prefix())
            .pp("embeddings")
            .pp("word_embeddings")
            .get((v, h), "weight")?;
        let (p, dense, norm, act) = match kind {
            ModelKind::Bert => {
                let p = root.pp("cls").pp("predictions");
                let t = p.pp("transform");
                (p, t.pp("dense"), t.pp("LayerNorm"), cfg.hidden_act)
            }
            // RobertaLMHead and MPNetLMHead call the erf GELU whatever `hidden_act` says.
            ModelKind::Roberta | ModelKind::Mpnet => {
                let p = root.pp("lm_head");
                (
                    p.clone(),
                    p.pp("dense"),
                    p.pp("layer_norm"),
                    Activation::Gelu,
                )
            }
        };
        let bias = p.get_with_hints(v, "bias", Init::Const(0.))?;
        Ok(Self {
            dense: linear(h, h, dense)?,
            act,
            norm: LayerNorm::new(h, cfg.layer_norm_eps, norm)?,
            decoder: Linear::new(words, Some(bias)),
        })
    }

    /// The head's own tensors (the tied decoder weight is the encoder's).
    pub fn tensor_names(kind: ModelKind) -> [&'static str; 5] {
        match kind {
            ModelKind::Bert => [
                "cls.predictions.transform.dense.weight",
                "cls.predictions.transform.dense.bias",
                "cls.predictions.transform.LayerNorm.weight",
                "cls.predictions.transform.LayerNorm.bias",
                "cls.predictions.bias",
            ],
            ModelKind::Roberta | ModelKind::Mpnet => [
                "lm_head.dense.weight",
                "lm_head.dense.bias",
                "lm_head.layer_norm.weight",
                "lm_head.layer_norm.bias",
                "lm_head.bias",
            ],
        }
    }

    /// Where checkpoints may store the tied decoder: (weight, bias) names.
    pub fn decoder_names(kind: ModelKind) -> (&'static str, &'static str) {
        match kind {
            ModelKind::Bert => (
                "cls.predictions.decoder.weight",
                "cls.predictions.decoder.bias",
            ),
            ModelKind::Roberta | ModelKind::Mpnet => {
                ("lm_head.decoder.weight", "lm_head.decoder.bias")
            }
        }
    }

    /// Vocabulary logits [.., vocab] from hidden states [.., h] ([b, s, h] or [n, h]).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = activation(&self.dense.forward(x)?, self.act)?;
        let x = self.norm.forward_t(&x, train)?;
        Ok(self.decoder.forward(&x)?)
    }
}
