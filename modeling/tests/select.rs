//! Weight selection on the committed MPNet and BERT fixtures: every tensor of a narrower, shallower
//! student is the teacher's, cut down along each dimension by the same indices (hidden dimensions
//! everywhere, whole heads with MPNet's bias columns, FFN units), and the position table follows a
//! vocabulary whose padding id moved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use modeling::select::{evenly, Selection};
use modeling::{Classifier, EncoderConfig, ModelSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu).unwrap()
}

fn student_vars(m: &Classifier) -> HashMap<String, Tensor> {
    m.named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect()
}

/// `t[rows][:, cols]` (all of a dimension when None).
fn cut(t: &Tensor, rows: Option<&[usize]>, cols: Option<&[usize]>) -> Vec<f32> {
    let idx = |v: &[usize]| {
        Tensor::new(
            v.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .unwrap()
    };
    let mut t = t.clone();
    if let Some(r) = rows {
        t = t.index_select(&idx(r), 0).unwrap();
    }
    if let Some(c) = cols {
        t = t.index_select(&idx(c), 1).unwrap();
    }
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// A student tensor, the teacher tensor it comes from, and the teacher rows and columns it keeps.
type Check<'a> = (&'a str, &'a str, Option<&'a [usize]>, Option<&'a [usize]>);

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn an_mpnet_student_keeps_the_teachers_weights_along_every_dimension() {
    let files = ModelSource::Local(fixture("mpnet_cls"))
        .resolve(false)
        .unwrap();
    let teacher = EncoderConfig::from_file(&files.config).unwrap();
    let mut student = teacher.keep_layers(&[2]).unwrap();
    student.hidden_size = 16;
    student.num_attention_heads = 2;
    student.intermediate_size = 32;
    let sel = Selection::even(&teacher, &student, &[2]).unwrap();
    assert_eq!(sel.hidden, evenly(16, 32));
    assert_eq!(sel.heads, vec![0, 2]);
    assert_eq!(sel.head_dims, (0..8).collect::<Vec<_>>());
    let (m, report) =
        Classifier::load_selected(&files, &student, &sel, None, 3, 0, &Device::Cpu).unwrap();
    assert!(report.has_head, "the teacher's head, cut down, is kept");
    let t = tensors("mpnet_cls");
    let s = student_vars(&m);
    let h = &sel.hidden;
    let attn: Vec<usize> = [0usize, 2]
        .iter()
        .flat_map(|hd| (hd * 8)..(hd * 8 + 8))
        .collect();
    let f = &sel.ffn[0];
    let checks: Vec<Check> = vec![
        (
            "mpnet.embeddings.word_embeddings.weight",
            "mpnet.embeddings.word_embeddings.weight",
            None,
            Some(h),
        ),
        (
            "mpnet.embeddings.LayerNorm.weight",
            "mpnet.embeddings.LayerNorm.weight",
            Some(h),
            None,
        ),
        (
            "mpnet.encoder.relative_attention_bias.weight",
            "mpnet.encoder.relative_attention_bias.weight",
            None,
            Some(&[0, 2]),
        ),
        // Student block 0 is teacher block 2 (index 1).
        (
            "mpnet.encoder.layer.0.attention.attn.q.weight",
            "mpnet.encoder.layer.1.attention.attn.q.weight",
            Some(&attn),
            Some(h),
        ),
        (
            "mpnet.encoder.layer.0.attention.attn.v.bias",
            "mpnet.encoder.layer.1.attention.attn.v.bias",
            Some(&attn),
            None,
        ),
        (
            "mpnet.encoder.layer.0.attention.attn.o.weight",
            "mpnet.encoder.layer.1.attention.attn.o.weight",
            Some(h),
            Some(&attn),
        ),
        (
            "mpnet.encoder.layer.0.attention.LayerNorm.bias",
            "mpnet.encoder.layer.1.attention.LayerNorm.bias",
            Some(h),
            None,
        ),
        (
            "mpnet.encoder.layer.0.intermediate.dense.weight",
            "mpnet.encoder.layer.1.intermediate.dense.weight",
            Some(f),
            Some(h),
        ),
        (
            "mpnet.encoder.layer.0.output.dense.weight",
            "mpnet.encoder.layer.1.output.dense.weight",
            Some(h),
            Some(f),
        ),
        (
            "classifier.dense.weight",
            "classifier.dense.weight",
            Some(h),
            Some(h),
        ),
        (
            "classifier.out_proj.weight",
            "classifier.out_proj.weight",
            None,
            Some(h),
        ),
        (
            "classifier.out_proj.bias",
            "classifier.out_proj.bias",
            None,
            None,
        ),
    ];
    for (ours, theirs, rows, cols) in checks {
        let want = cut(&t[theirs], rows, cols);
        assert_eq!(flat(&s[ours]), want, "{ours}");
    }
    // Positions: the same padding id, the same rows.
    let pos = "mpnet.embeddings.position_embeddings.weight";
    assert_eq!(flat(&s[pos]), cut(&t[pos], None, Some(h)));
}

#[test]
fn whole_blocks_are_the_selection_that_keeps_every_dimension() {
    let files = ModelSource::Local(fixture("bert_cls"))
        .resolve(false)
        .unwrap();
    let (a, _) = Classifier::load_layers(&files, &[1, 2], 3, 0, &Device::Cpu).unwrap();
    let (b, _) = Classifier::load(&files, Some(3), 0, &Device::Cpu).unwrap();
    let (a, b) = (student_vars(&a), student_vars(&b));
    for (name, t) in &b {
        assert_eq!(flat(t), flat(&a[name]), "{name}");
    }
}

#[test]
fn a_new_vocabulary_averages_the_teacher_rows_and_keeps_mpnets_positions() {
    let files = ModelSource::Local(fixture("mpnet_cls"))
        .resolve(false)
        .unwrap();
    let teacher = EncoderConfig::from_file(&files.config).unwrap();
    let mut student = teacher.keep_layers(&[1, 2]).unwrap();
    // Three tokens: [PAD] at 0 (MPNet's <pad> is 1), the mean of teacher rows 5 and 7, and row 9.
    student.vocab_size = 3;
    student.pad_token_id = 0;
    let sel = Selection::even(&teacher, &student, &[1, 2]).unwrap();
    let map = vec![vec![1], vec![5, 7], vec![9]];
    let (m, _) =
        Classifier::load_selected(&files, &student, &sel, Some(&map), 3, 0, &Device::Cpu).unwrap();
    let s = student_vars(&m);
    let t = tensors("mpnet_cls");
    let words = "mpnet.embeddings.word_embeddings.weight";
    let tw = t[words].to_vec2::<f32>().unwrap();
    let sw = s[words].to_vec2::<f32>().unwrap();
    assert_eq!(sw[0], tw[1]);
    for (j, x) in sw[1].iter().enumerate() {
        assert!((x - (tw[5][j] + tw[7][j]) / 2.0).abs() < 1e-7);
    }
    assert_eq!(sw[2], tw[9]);
    // transformers numbers MPNet's positions from 2 whatever the padding id: the same table.
    let pos = "mpnet.embeddings.position_embeddings.weight";
    assert_eq!(student.position_offset(), teacher.position_offset());
    assert_eq!(flat(&s[pos]), flat(&t[pos]));
}

/// RoBERTa numbers positions from `pad_token_id + 1`: a vocabulary whose padding id moves from 1 to 0
/// moves the table by a row, so that position p still reads the teacher's row for p.
#[test]
fn a_new_roberta_vocabulary_moves_the_positions_with_the_padding_id() {
    let files = ModelSource::Local(fixture("roberta_cls"))
        .resolve(false)
        .unwrap();
    let teacher = EncoderConfig::from_file(&files.config).unwrap();
    assert_eq!(teacher.pad_token_id, 1);
    let mut student = teacher.keep_layers(&[1]).unwrap();
    student.vocab_size = 3;
    student.pad_token_id = 0;
    student.max_position_embeddings = teacher.max_position_embeddings - 1;
    let sel = Selection::even(&teacher, &student, &[1]).unwrap();
    let map = vec![vec![1], vec![5], vec![9]];
    let n = teacher.num_labels.unwrap_or(2);
    let (m, _) =
        Classifier::load_selected(&files, &student, &sel, Some(&map), n, 0, &Device::Cpu).unwrap();
    let pos = "roberta.embeddings.position_embeddings.weight";
    let (tp, sp) = (
        tensors("roberta_cls")[pos].to_vec2::<f32>().unwrap(),
        student_vars(&m)[pos].to_vec2::<f32>().unwrap(),
    );
    assert_eq!(sp[1], tp[2]);
    assert_eq!(sp[10], tp[11]);
}

#[test]
fn a_student_wider_than_its_teacher_is_refused() {
    let files = ModelSource::Local(fixture("bert_cls"))
        .resolve(false)
        .unwrap();
    let teacher = EncoderConfig::from_file(&files.config).unwrap();
    let mut student = teacher.keep_layers(&[1]).unwrap();
    student.intermediate_size = teacher.intermediate_size * 2;
    let err = Selection::even(&teacher, &student, &[1])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("intermediate_size") && err.contains("larger than the teacher's"),
        "{err}"
    );
}

/// Two sentences of the fixture's tokens, of 8 and 5 tokens (so one batch pads the second).
fn two_sentences(vocab: u32) -> Vec<modeling::Encoded> {
    let ids: Vec<u32> = (0..13).map(|i| (i * 7 + 3) % vocab).collect();
    [&ids[..8], &ids[8..]]
        .iter()
        .map(|t| modeling::Encoded {
            ids: t.to_vec(),
            type_ids: vec![0; t.len()],
        })
        .collect()
}

/// Sets `name` to `t` with `f` applied to its values.
fn edit(m: &Classifier, name: &str, f: impl Fn(&Tensor) -> Tensor) {
    let vars = m.named_vars();
    let (_, v) = vars.iter().find(|(n, _)| n == name).expect(name);
    v.set(&f(v.as_tensor())).unwrap();
}

/// Zeroes `cols` of a [rows, cols] matrix (or entries of a vector when `dim` is 0).
fn zero(t: &Tensor, dim: usize, idx: &[usize]) -> Tensor {
    let n = t.dim(dim).unwrap();
    let keep: Vec<f32> = (0..n)
        .map(|i| if idx.contains(&i) { 0.0 } else { 1.0 })
        .collect();
    let keep = Tensor::new(keep.as_slice(), &Device::Cpu).unwrap();
    let keep = if dim == 0 && t.rank() == 2 {
        keep.unsqueeze(1).unwrap()
    } else {
        keep
    };
    t.broadcast_mul(&keep).unwrap()
}

/// What the scores are for: a head whose output projection is zero adds nothing and scores 0, an FFN unit
/// whose output column is zero likewise, and a hidden dimension that every LayerNorm zeroes carries nothing;
/// `by_importance` leaves exactly those out.
#[test]
fn importance_leaves_out_the_heads_units_and_dimensions_that_add_nothing() {
    use modeling::importance::{top, Importance};
    for fixture_name in ["mpnet_cls", "bert_cls"] {
        let files = ModelSource::Local(fixture(fixture_name))
            .resolve(false)
            .unwrap();
        let (m, _) = Classifier::load(&files, Some(3), 0, &Device::Cpu).unwrap();
        let teacher = m.config.clone();
        let hd = teacher.head_dim();
        let (dead_head, dead_unit, dead_dim) = (1usize, 5usize, 3usize);
        for (name, _) in m.named_vars() {
            let rest = name.split("encoder.layer.").nth(1).unwrap_or("");
            let layer1 = rest.starts_with("1.");
            if layer1
                && (rest.ends_with("attention.attn.o.weight")
                    || rest.ends_with("attention.output.dense.weight"))
            {
                let cols: Vec<usize> = (dead_head * hd..(dead_head + 1) * hd).collect();
                edit(&m, &name, |t| zero(t, 1, &cols));
            }
            if layer1 && rest.ends_with(".output.dense.weight") && !rest.contains("attention") {
                edit(&m, &name, |t| zero(t, 1, &[dead_unit]));
            }
            if name.contains("LayerNorm") {
                edit(&m, &name, |t| zero(t, 0, &[dead_dim]));
            }
        }
        let data = two_sentences(teacher.vocab_size as u32);
        // Only teacher block 2 (index 1) had a head silenced: score the student of that block alone.
        let scores = Importance::measure(&m, &[2], &data, teacher.pad_token_id).unwrap();
        assert_eq!(scores.heads.len(), teacher.num_attention_heads);
        assert_eq!(
            scores.heads[dead_head], 0.0,
            "{fixture_name}: {:?}",
            scores.heads
        );
        assert!(scores
            .heads
            .iter()
            .enumerate()
            .all(|(h, &s)| h == dead_head || s > 0.0));
        assert_eq!(scores.ffn[0][dead_unit], 0.0, "{fixture_name}");
        assert_eq!(scores.hidden[dead_dim], 0.0, "{fixture_name}");
        assert!(scores.hidden.iter().all(|s| s.is_finite()));

        let mut student = teacher.keep_layers(&[2]).unwrap();
        student.hidden_size = teacher.hidden_size - hd;
        student.num_attention_heads = teacher.num_attention_heads - 1;
        student.intermediate_size = teacher.intermediate_size - 1;
        let sel = Selection::by_importance(&teacher, &student, &[2], &scores, false).unwrap();
        assert!(
            !sel.heads.contains(&dead_head),
            "{fixture_name}: {:?}",
            sel.heads
        );
        assert!(!sel.ffn[0].contains(&dead_unit));
        assert!(!sel.hidden.contains(&dead_dim));
        assert_eq!(sel.hidden, top(&scores.hidden, student.hidden_size));
        assert!(sel.hidden.windows(2).all(|w| w[0] < w[1]), "increasing");
        // The selection loads: every weight is the teacher's, cut by these indices.
        Classifier::load_selected(&files, &student, &sel, None, 3, 0, &Device::Cpu).unwrap();
        // `importance_units`: the same heads and FFN units, the hidden dimensions evenly spaced.
        let units = Selection::by_importance(&teacher, &student, &[2], &scores, true).unwrap();
        assert_eq!((&units.heads, &units.ffn), (&sel.heads, &sel.ffn));
        assert_eq!(
            units.hidden,
            modeling::select::evenly(student.hidden_size, teacher.hidden_size)
        );
        Classifier::load_selected(&files, &student, &units, None, 3, 0, &Device::Cpu).unwrap();
    }
}

#[test]
fn top_keeps_the_largest_in_index_order() {
    let scores = [0.5, 3.0, 1.0, 3.0, 0.0];
    assert_eq!(modeling::importance::top(&scores, 3), vec![1, 2, 3]);
    assert_eq!(modeling::importance::top(&scores, 0), Vec::<usize>::new());
}
