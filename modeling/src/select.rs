//! Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024): a narrower, shallower
//! encoder whose every weight is a subset of a larger one's, along every dimension: some of its blocks,
//! one set of hidden dimensions used consistently through the embeddings, every LayerNorm and every
//! residual projection, whole attention heads (and MPNet's relative-position bias columns of the kept
//! heads), and FFN units. With another vocabulary, each word-embedding row is the mean of the teacher's
//! rows for the pieces its tokenizer makes of the token (Fast Vocabulary Transfer, Gee et al. 2022);
//! the caller gives those pieces.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::importance::{top, Importance};
use crate::{EncoderConfig, Error, Result};

/// What a student keeps of the teacher, as indices into the teacher's dimensions (0-based, increasing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The teacher's blocks, 1-based, in order: student block i is teacher block `layers[i]`.
    pub layers: Vec<usize>,
    /// Hidden dimensions, the same everywhere (embeddings, LayerNorms, residual projections, head).
    pub hidden: Vec<usize>,
    /// Attention heads, the same in every block (MPNet's one relative-position table serves them all).
    pub heads: Vec<usize>,
    /// Dimensions kept inside each head (all of them when the head width is unchanged).
    pub head_dims: Vec<usize>,
    /// FFN units of each student block.
    pub ffn: Vec<Vec<usize>>,
}

/// `keep` indices of `0..total`, evenly spaced: `floor(i * total / keep)`.
pub fn evenly(keep: usize, total: usize) -> Vec<usize> {
    (0..keep).map(|i| i * total / keep.max(1)).collect()
}

impl Selection {
    /// The plain choice: evenly spaced hidden dimensions, heads, head dimensions and FFN units.
    pub fn even(
        teacher: &EncoderConfig,
        student: &EncoderConfig,
        layers: &[usize],
    ) -> Result<Self> {
        check_fits(teacher, student, layers)?;
        let (dt, ds) = (head_dim(teacher), head_dim(student));
        Ok(Self {
            layers: layers.to_vec(),
            hidden: evenly(student.hidden_size, teacher.hidden_size),
            heads: evenly(student.num_attention_heads, teacher.num_attention_heads),
            head_dims: evenly(ds, dt),
            ffn: vec![evenly(student.intermediate_size, teacher.intermediate_size); layers.len()],
        })
    }

    /// The most important heads and FFN units of each block (`importance`, measured on task examples),
    /// and the most important hidden dimensions, or evenly spaced ones with `even_hidden`; dimensions
    /// inside a narrower head evenly spaced.
    pub fn by_importance(
        teacher: &EncoderConfig,
        student: &EncoderConfig,
        layers: &[usize],
        scores: &Importance,
        even_hidden: bool,
    ) -> Result<Self> {
        check_fits(teacher, student, layers)?;
        if scores.hidden.len() != teacher.hidden_size
            || scores.heads.len() != teacher.num_attention_heads
            || scores.ffn.len() != layers.len()
        {
            return Err(Error::Msg(
                "importance scores measured for another teacher or other blocks".into(),
            ));
        }
        Ok(Self {
            layers: layers.to_vec(),
            hidden: match even_hidden {
                true => evenly(student.hidden_size, teacher.hidden_size),
                false => top(&scores.hidden, student.hidden_size),
            },
            heads: top(&scores.heads, student.num_attention_heads),
            head_dims: evenly(head_dim(student), head_dim(teacher)),
            ffn: scores
                .ffn
                .iter()
                .map(|f| top(f, student.intermediate_size))
                .collect(),
        })
    }

    /// The teacher's attention dimensions (rows of Q/K/V) the student keeps: each kept head's kept dims.
    fn attention(&self, teacher: &EncoderConfig) -> Vec<usize> {
        let dt = head_dim(teacher);
        self.heads
            .iter()
            .flat_map(|h| self.head_dims.iter().map(move |d| h * dt + d))
            .collect()
    }
}

fn head_dim(c: &EncoderConfig) -> usize {
    c.hidden_size / c.num_attention_heads.max(1)
}

/// The student is no larger than the teacher along any dimension, of the same architecture, and its
/// blocks exist in the teacher.
pub fn check_fits(
    teacher: &EncoderConfig,
    student: &EncoderConfig,
    layers: &[usize],
) -> Result<()> {
    teacher.keep_layers(layers)?;
    let pairs = [
        ("hidden_size", student.hidden_size, teacher.hidden_size),
        (
            "num_heads",
            student.num_attention_heads,
            teacher.num_attention_heads,
        ),
        (
            "intermediate_size",
            student.intermediate_size,
            teacher.intermediate_size,
        ),
        ("head width", head_dim(student), head_dim(teacher)),
    ];
    for (name, s, t) in pairs {
        if s > t {
            return Err(Error::Msg(format!(
                "{name} {s} is larger than the teacher's {t}: a student selected from the teacher can only be narrower"
            )));
        }
    }
    if student.num_hidden_layers != layers.len() {
        return Err(Error::Msg(format!(
            "{} blocks asked of a student of {}",
            layers.len(),
            student.num_hidden_layers
        )));
    }
    Ok(())
}

fn take(t: &Tensor, dim: usize, idx: &[usize]) -> Result<Tensor> {
    let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let ids = Tensor::new(ids.as_slice(), t.device())?;
    Ok(t.index_select(&ids, dim)?.contiguous()?)
}

/// The student block of a tensor name (`...encoder.layer.I.rest`), with `rest`.
fn block(name: &str) -> Option<(usize, &str)> {
    const KEY: &str = "encoder.layer.";
    let at = name.find(KEY)? + KEY.len();
    let end = name[at..].find('.')? + at;
    Some((name[at..end].parse().ok()?, &name[end + 1..]))
}

/// Word-embedding rows of the student: for each student token, the teacher rows to average.
pub type VocabMap = Vec<Vec<u32>>;

/// The student's tensors from the teacher's `tensors` (named as the student's, blocks already renumbered
/// to the student's), cut down by `sel`; `vocab` rebuilds the word embeddings for another vocabulary.
/// Tensors of no known role pass through unchanged.
pub fn apply(
    tensors: HashMap<String, Tensor>,
    teacher: &EncoderConfig,
    student: &EncoderConfig,
    sel: &Selection,
    vocab: Option<&VocabMap>,
) -> Result<HashMap<String, Tensor>> {
    let h = &sel.hidden;
    let attn = sel.attention(teacher);
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        let ffn = block(&name).and_then(|(i, _)| sel.ffn.get(i));
        let rest = block(&name).map_or(name.as_str(), |(_, r)| r);
        let is_w = name.ends_with(".weight");
        let cut = if name.contains("word_embeddings") {
            let rows = match vocab {
                Some(v) => mean_rows(&t, v)?,
                None => t,
            };
            take(&rows, 1, h)?
        } else if name.contains("position_embeddings") {
            positions(&t, teacher, student, h)?
        } else if name.contains("token_type_embeddings") {
            take(&t, 1, h)?
        } else if name.contains("relative_attention_bias") {
            take(&t, 1, &sel.heads)?
        } else if name.contains("LayerNorm") {
            take(&t, 0, h)?
        } else if is_qkv(rest) {
            let t = take(&t, 0, &attn)?;
            if is_w {
                take(&t, 1, h)?
            } else {
                t
            }
        } else if rest.starts_with("attention.output.dense") || rest.starts_with("attention.attn.o")
        {
            let t = take(&t, 0, h)?;
            if is_w {
                take(&t, 1, &attn)?
            } else {
                t
            }
        } else if rest.starts_with("intermediate.dense") {
            let f = ffn.ok_or_else(|| Error::Msg(format!("{name}: no FFN units chosen")))?;
            let t = take(&t, 0, f)?;
            if is_w {
                take(&t, 1, h)?
            } else {
                t
            }
        } else if rest.starts_with("output.dense") {
            let f = ffn.ok_or_else(|| Error::Msg(format!("{name}: no FFN units chosen")))?;
            let t = take(&t, 0, h)?;
            if is_w {
                take(&t, 1, f)?
            } else {
                t
            }
        } else if name.contains("pooler.dense") || name.starts_with("classifier.dense") {
            let t = take(&t, 0, h)?;
            if is_w {
                take(&t, 1, h)?
            } else {
                t
            }
        } else if is_w && (name == "classifier.weight" || name == "classifier.out_proj.weight") {
            take(&t, 1, h)?
        } else {
            t
        };
        out.insert(name, cut);
    }
    Ok(out)
}

fn is_qkv(rest: &str) -> bool {
    [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.attn.q.",
        "attention.attn.k.",
        "attention.attn.v.",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
}

/// The position table of the student: the same positions as the teacher's (RoBERTa and MPNet number
/// them from `padding_idx + 1`, which another RoBERTa vocabulary may move), as many as the student reads.
fn positions(
    t: &Tensor,
    teacher: &EncoderConfig,
    student: &EncoderConfig,
    h: &[usize],
) -> Result<Tensor> {
    let (ot, os) = (teacher.position_offset(), student.position_offset());
    let rows_t = t.dim(0)?;
    let rows: Vec<usize> = (0..student.max_position_embeddings)
        .map(|r| {
            let src = if r >= os { r - os + ot } else { r };
            src.min(rows_t - 1)
        })
        .collect();
    take(&take(t, 0, &rows)?, 1, h)
}

/// Row i of the result: the mean of `t`'s rows `map[i]` (the first row when `map[i]` is empty).
fn mean_rows(t: &Tensor, map: &VocabMap) -> Result<Tensor> {
    let cpu = t.to_device(&Device::Cpu)?;
    let table = cpu.to_vec2::<f32>()?;
    let width = table.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(map.len() * width);
    for rows in map {
        let mut row = vec![0f32; width];
        let rows: &[u32] = if rows.is_empty() { &[0] } else { rows };
        for &r in rows {
            let src = table
                .get(r as usize)
                .ok_or_else(|| Error::Msg(format!("vocabulary transfer: row {r} out of range")))?;
            for (a, b) in row.iter_mut().zip(src) {
                *a += b;
            }
        }
        let n = rows.len() as f32;
        out.extend(row.into_iter().map(|x| x / n));
    }
    Ok(Tensor::from_vec(out, (map.len(), width), t.device())?)
}
