//! Word-level alignment of two tokenizations of the same text: each side's subword states are
//! mean-pooled per word ([b, s, h] -> [b, words, h]) so that a teacher and a student with different
//! tokenizers (cased vs uncased, BPE vs WordPiece) compare word states. Words come from
//! `modeling::tokenizer::words` on the raw text, so both sides number them alike; a word counts only
//! where both sides have a token for it (truncation, or BPE folding a mark into the next token, can
//! leave one side without). The pooling is a matrix product with a row-normalised assignment matrix,
//! so gradients reach every subword of the student.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Per-word mean pooling for one batch.
#[derive(Debug, Clone)]
pub struct WordPools {
    /// [b, w, s_student]: row (i, w) averages the student tokens of word w (zero if none).
    pub student: Tensor,
    /// [b, w, s_teacher]: the same for the teacher's tokens.
    pub teacher: Tensor,
    /// [b, w] f32: 1 where both sides have a token of the word.
    pub mask: Tensor,
}

/// Builds the pooling matrices from each example's token -> word indices (None: special or padding).
/// `student[i]` and `teacher[i]` are the same example under the two tokenizers; `s_len`/`t_len` are
/// the padded batch lengths.
pub fn word_pools(
    student: &[&[Option<u32>]],
    teacher: &[&[Option<u32>]],
    s_len: usize,
    t_len: usize,
    device: &Device,
) -> Result<WordPools> {
    if student.len() != teacher.len() {
        return Err(Error::Msg(format!(
            "word alignment: {} student rows but {} teacher rows",
            student.len(),
            teacher.len()
        )));
    }
    let b = student.len();
    let n_words = student
        .iter()
        .chain(teacher)
        .flat_map(|r| r.iter().flatten())
        .map(|&w| w as usize + 1)
        .max()
        .unwrap_or(0)
        .max(1);
    let counts = |rows: &[&[Option<u32>]], len: usize| -> Result<Vec<f32>> {
        let mut c = vec![0f32; b * n_words];
        for (i, r) in rows.iter().enumerate() {
            if r.len() > len {
                return Err(Error::Msg(format!(
                    "word alignment: {} tokens in a batch of length {len}",
                    r.len()
                )));
            }
            for w in r.iter().flatten() {
                c[i * n_words + *w as usize] += 1.0;
            }
        }
        Ok(c)
    };
    let (sc, tc) = (counts(student, s_len)?, counts(teacher, t_len)?);
    let present: Vec<f32> = sc
        .iter()
        .zip(&tc)
        .map(|(&a, &b)| if a > 0.0 && b > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let matrix = |rows: &[&[Option<u32>]], len: usize, c: &[f32]| -> Result<Tensor> {
        let mut m = vec![0f32; b * n_words * len];
        for (i, r) in rows.iter().enumerate() {
            for (pos, w) in r.iter().enumerate() {
                if let Some(w) = w {
                    let row = i * n_words + *w as usize;
                    m[row * len + pos] = 1.0 / c[row];
                }
            }
        }
        Ok(Tensor::from_vec(m, (b, n_words, len), device)?)
    };
    Ok(WordPools {
        student: matrix(student, s_len, &sc)?,
        teacher: matrix(teacher, t_len, &tc)?,
        mask: Tensor::from_vec(present, (b, n_words), device)?,
    })
}

/// Mean-pools token states per word: `pool` [b, w, s] x `states` [b, s, h] -> [b, w, h].
pub fn pool_words(states: &Tensor, pool: &Tensor) -> Result<Tensor> {
    let (b, s, _) = states.dims3()?;
    let (pb, _, ps) = pool.dims3()?;
    if (b, s) != (pb, ps) {
        return Err(Error::Msg(format!(
            "word pooling: states are {:?} but the pooling matrix is {:?}",
            states.dims(),
            pool.dims()
        )));
    }
    Ok(pool.matmul(&states.contiguous()?)?)
}

/// Pools attention probabilities to words: `att` [b, heads, s, s] -> [b, heads, w, w], averaging over
/// a word's query tokens and summing over its key tokens, so each row stays a distribution over words
/// (minus the mass on special tokens, which belong to no word). `pool` [b, w, s] from [`word_pools`].
pub fn pool_attention(att: &Tensor, pool: &Tensor) -> Result<Tensor> {
    let (b, _, s, s2) = att.dims4()?;
    let (pb, _, ps) = pool.dims3()?;
    if (b, s, s) != (pb, ps, s2) {
        return Err(Error::Msg(format!(
            "word pooling: attention is {:?} but the pooling matrix is {:?}",
            att.dims(),
            pool.dims()
        )));
    }
    let queries = pool.unsqueeze(1)?.contiguous()?; // [b, 1, w, s]
    let keys = pool
        .gt(0.0)?
        .to_dtype(att.dtype())?
        .unsqueeze(1)?
        .transpose(2, 3)?
        .contiguous()?; // [b, 1, s, w]
    Ok(queries
        .broadcast_matmul(&att.contiguous()?)?
        .broadcast_matmul(&keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::hidden_mse;

    #[test]
    fn pooling_matches_a_hand_computation() {
        // Student: [CLS] w0 w0 w1 [SEP] pad; teacher: <s> w0 w1 w1 w2 </s> (w2 only on the teacher).
        let s_words = [None, Some(0), Some(0), Some(1), None, None];
        let t_words = [None, Some(0), Some(1), Some(1), Some(2), None];
        let p = word_pools(&[&s_words], &[&t_words], 6, 6, &Device::Cpu).unwrap();
        assert_eq!(p.mask.to_vec2::<f32>().unwrap(), [[1.0, 1.0, 0.0]]);
        let states = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 6, 2))
            .unwrap();
        let s = pool_words(&states, &p.student).unwrap();
        // Rows 1, 2 -> mean of [2, 3], [4, 5]; row 3 -> [6, 7]; word 2 has no student token -> 0.
        assert_eq!(
            s.to_vec3::<f32>().unwrap(),
            [[[3.0, 4.0], [6.0, 7.0], [0.0, 0.0]]]
        );
        let t = pool_words(&states, &p.teacher).unwrap();
        // Row 1 -> [2, 3]; rows 2, 3 -> mean of [4, 5], [6, 7]; row 4 -> [8, 9].
        assert_eq!(
            t.to_vec3::<f32>().unwrap(),
            [[[2.0, 3.0], [5.0, 6.0], [8.0, 9.0]]]
        );
    }

    #[test]
    fn hidden_mse_on_identical_word_states_is_zero() {
        // Different tokenizations whose subword states average to the same word states.
        let s_words = [None, Some(0), Some(0), Some(1), None];
        let t_words = [None, Some(0), Some(1), Some(1), Some(1), None];
        let dev = Device::Cpu;
        let p = word_pools(&[&s_words], &[&t_words], 5, 6, &dev).unwrap();
        // Student word 0 = mean([1, 3]) = 2, word 1 = 5; teacher word 0 = 2, word 1 = mean(4, 5, 6) = 5.
        let s = Tensor::new(&[[[0f32], [1.0], [3.0], [5.0], [9.0]]], &dev).unwrap();
        let t = Tensor::new(&[[[7f32], [2.0], [4.0], [5.0], [6.0], [8.0]]], &dev).unwrap();
        let (sw, tw) = (
            pool_words(&s, &p.student).unwrap(),
            pool_words(&t, &p.teacher).unwrap(),
        );
        let v = hidden_mse(&sw, &tw, &p.mask).unwrap();
        assert_eq!(v.to_scalar::<f32>().unwrap(), 0.0);
        // And not zero once a word state differs.
        let t2 = Tensor::new(&[[[7f32], [2.0], [4.0], [5.0], [9.0], [8.0]]], &dev).unwrap();
        let tw2 = pool_words(&t2, &p.teacher).unwrap();
        assert!(
            hidden_mse(&sw, &tw2, &p.mask)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }

    #[test]
    fn attention_pools_to_word_distributions() {
        // One head, tokens [CLS] w0 w0 w1; word 0's rows average, its keys add.
        let dev = Device::Cpu;
        let words = [None, Some(0), Some(0), Some(1)];
        let p = word_pools(&[&words], &[&words], 4, 4, &dev).unwrap();
        let att = Tensor::new(
            &[[[
                [0.4f32, 0.2, 0.2, 0.2],
                [0.1, 0.5, 0.2, 0.2],
                [0.0, 0.3, 0.3, 0.4],
                [0.2, 0.2, 0.2, 0.4],
            ]]],
            &dev,
        )
        .unwrap();
        let w = pool_attention(&att, &p.student).unwrap();
        // Word 0 queries: mean of rows 1, 2 = [0.05, 0.4, 0.25, 0.3] -> keys [0.4 + 0.25, 0.3].
        // Word 1 query: row 3 -> [0.2 + 0.2, 0.4]; the [CLS] key's mass is left out.
        let got = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, want) in got.iter().zip([0.65f32, 0.3, 0.4, 0.4]) {
            assert!((g - want).abs() < 1e-6, "{got:?}");
        }
    }
}
