//! Sequence-classification and regression heads with the weight names of transformers'
//! `BertForSequenceClassification` (pooler + `classifier`) and `RobertaForSequenceClassification` /
//! `MPNetForSequenceClassification` (`classifier.dense` + `classifier.out_proj`, no pooler). A regression head is one output.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::{EncoderConfig, ModelKind};
use crate::encoder::first_token;
use crate::nn::{apply, linear, Dense, DropoutRng, Packing};
use crate::Result;

#[derive(Debug, Clone)]
pub enum Head {
    /// tanh(pooler(h_cls)) -> dropout -> classifier.
    Bert { pooler: Dense, classifier: Dense },
    /// dropout -> dense -> tanh -> dropout -> out_proj, on the <s> token.
    Roberta { dense: Dense, out_proj: Dense },
}

impl Head {
    /// `root` is the checkpoint's root VarBuilder (the pooler lives under the encoder's prefix).
    pub fn new(cfg: &EncoderConfig, num_labels: usize, root: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(match cfg.kind() {
            ModelKind::Bert => Head::Bert {
                pooler: linear(h, h, root.pp("bert").pp("pooler").pp("dense"))?,
                classifier: linear(h, num_labels, root.pp("classifier"))?,
            },
            ModelKind::Roberta | ModelKind::Mpnet => Head::Roberta {
                dense: linear(h, h, root.pp("classifier").pp("dense"))?,
                out_proj: linear(h, num_labels, root.pp("classifier").pp("out_proj"))?,
            },
        })
    }

    /// Names of the tensors that only a fine-tuned checkpoint has (the pooler is pre-trained in BERT).
    pub fn task_tensor_names(kind: ModelKind) -> &'static [&'static str] {
        match kind {
            ModelKind::Bert => &["classifier.weight", "classifier.bias"],
            ModelKind::Roberta | ModelKind::Mpnet => &[
                "classifier.dense.weight",
                "classifier.dense.bias",
                "classifier.out_proj.weight",
                "classifier.out_proj.bias",
            ],
        }
    }

    /// Switches the head's dense layers to the `how` inference copy.
    pub fn pack(&mut self, how: Packing) -> Result<()> {
        let (a, b) = match self {
            Head::Bert { pooler, classifier } => (pooler, classifier),
            Head::Roberta { dense, out_proj } => (dense, out_proj),
        };
        a.pack(how)?;
        b.pack(how)
    }

    /// Switches the head's dense layers to int8 inference; returns their (f32 bytes, int8 bytes).
    pub fn quantize_int8(&mut self) -> Result<(usize, usize)> {
        let (a, b) = match self {
            Head::Bert { pooler, classifier } => (pooler, classifier),
            Head::Roberta { dense, out_proj } => (dense, out_proj),
        };
        let (fa, qa) = a.quantize_int8()?;
        let (fb, qb) = b.quantize_int8()?;
        Ok((fa + fb, qa + qb))
    }

    /// Logits [b, num_labels] from the last hidden state [b, s, h].
    pub fn forward(
        &self,
        last: &Tensor,
        p_drop: f64,
        dropout: &DropoutRng,
        train: bool,
    ) -> Result<Tensor> {
        let cls = first_token(last)?; // [b, h]
        match self {
            Head::Bert { pooler, classifier } => {
                let pooled = apply(pooler, &cls)?.tanh()?;
                let pooled = dropout.apply(&pooled, p_drop, train)?;
                apply(classifier, &pooled)
            }
            Head::Roberta { dense, out_proj } => {
                let x = dropout.apply(&cls, p_drop, train)?;
                let x = apply(dense, &x)?.tanh()?;
                let x = dropout.apply(&x, p_drop, train)?;
                apply(out_proj, &x)
            }
        }
    }
}
