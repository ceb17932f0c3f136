//! Ties configured terms to the two models: resolves default layer maps and relation heads, and checks
//! layer indices, head counts and widths, naming the `distill` key at fault.

use modeling::EncoderConfig;

use super::{err, KeyError, ObjectiveConfig, Relation, TemperatureSchedule, TermKind, TermSpec};

/// A term tied to the two models: layer pairs resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Kd {
        temperature: f64,
        schedule: TemperatureSchedule,
    },
    Ce,
    LogitsMse,
    /// `(student, teacher)` hidden-state indices (0 = embeddings); widths (student, teacher).
    Hidden {
        pairs: Vec<(usize, usize)>,
        cosine: bool,
        widths: (usize, usize),
    },
    /// `(student, teacher)` layer numbers (1-based: the attention of layer l).
    Attention {
        pairs: Vec<(usize, usize)>,
    },
    Relations {
        student_layer: usize,
        teacher_layer: usize,
        heads: usize,
        relations: Vec<Relation>,
    },
}

/// The default layer map: student `i` with teacher `round(i * L_t / L_s)`, for `i` in `from..=L_s`.
pub fn uniform_map(
    student_layers: usize,
    teacher_layers: usize,
    from: usize,
) -> Vec<(usize, usize)> {
    let ls = student_layers.max(1);
    (from..=student_layers)
        .map(|i| (i, (2 * i * teacher_layers + ls) / (2 * ls)))
        .collect()
}

/// Ties each term to the models. `key` of an error is relative to `distill` (`terms[i]...`); with the
/// shorthand there is no list, and the shorthand's two terms cannot fail here.
pub fn bind(
    terms: &[TermSpec],
    defaults: &ObjectiveConfig,
    temperature: f64,
    student: &EncoderConfig,
    teacher: Option<&EncoderConfig>,
) -> Result<Vec<Bound>, KeyError> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            bind_one(
                t,
                &format!("terms[{i}]"),
                defaults,
                temperature,
                student,
                teacher,
            )
        })
        .collect()
}

fn bind_one(
    t: &TermSpec,
    key: &str,
    defaults: &ObjectiveConfig,
    temperature: f64,
    student: &EncoderConfig,
    teacher: Option<&EncoderConfig>,
) -> Result<Bound, KeyError> {
    let teacher = || -> Result<&EncoderConfig, KeyError> {
        teacher.ok_or_else(|| KeyError {
            key: format!("{key}.kind"),
            message: format!(
                "`{}` compares per-token teacher states, but no teacher model was given",
                t.kind.name()
            ),
        })
    };
    let (sl, hs) = (student.num_hidden_layers, student.hidden_size);
    Ok(match t.kind {
        TermKind::Kd => Bound::Kd {
            temperature: t.temperature.unwrap_or(temperature),
            schedule: t
                .temperature_schedule
                .unwrap_or(defaults.temperature_schedule),
        },
        TermKind::Ce => Bound::Ce,
        TermKind::LogitsMse => Bound::LogitsMse,
        TermKind::HiddenMse | TermKind::HiddenCosine => {
            let tc = teacher()?;
            let pairs = layer_pairs(t, key, sl, tc.num_hidden_layers, 0)?;
            Bound::Hidden {
                pairs,
                cosine: t.kind == TermKind::HiddenCosine,
                widths: (hs, tc.hidden_size),
            }
        }
        TermKind::AttentionMse => {
            let tc = teacher()?;
            let (sh, th) = (student.num_attention_heads, tc.num_attention_heads);
            if sh != th {
                return err(
                    format!("{key}.kind"),
                    format!(
                        "attention_mse compares attention heads one to one, but the student has {sh} heads and the teacher {th} (set student.num_heads to {th}, or use minilm_relations, which allows different head counts)"
                    ),
                );
            }
            Bound::Attention {
                pairs: layer_pairs(t, key, sl, tc.num_hidden_layers, 1)?,
            }
        }
        TermKind::MinilmRelations => {
            let tc = teacher()?;
            let tl = tc.num_hidden_layers;
            let student_layer = t.student_layer.unwrap_or(sl);
            let teacher_layer = t.teacher_layer.unwrap_or(tl);
            check_layer(
                &format!("{key}.student_layer"),
                "student",
                student_layer,
                sl,
                1,
            )?;
            check_layer(
                &format!("{key}.teacher_layer"),
                "teacher",
                teacher_layer,
                tl,
                1,
            )?;
            let heads = t.relation_heads.unwrap_or(tc.num_attention_heads);
            for (who, w) in [("student", hs), ("teacher", tc.hidden_size)] {
                if heads == 0 || w % heads != 0 {
                    let k = if t.relation_heads.is_some() {
                        format!("{key}.relation_heads")
                    } else {
                        format!("{key}.relation_heads (default: the teacher's head count)")
                    };
                    return err(
                        k,
                        format!("{heads} does not divide the {who}'s hidden size {w}"),
                    );
                }
            }
            Bound::Relations {
                student_layer,
                teacher_layer,
                heads,
                relations: t
                    .relations
                    .clone()
                    .unwrap_or_else(|| vec![Relation::Qq, Relation::Kk, Relation::Vv]),
            }
        }
    })
}

fn layer_pairs(
    t: &TermSpec,
    key: &str,
    student_layers: usize,
    teacher_layers: usize,
    first: usize,
) -> Result<Vec<(usize, usize)>, KeyError> {
    let Some(map) = &t.layer_map else {
        return Ok(uniform_map(student_layers, teacher_layers, first)
            .into_iter()
            .map(|(s, te)| (s, te.max(first)))
            .collect());
    };
    for (j, [s, te]) in map.iter().enumerate() {
        let k = format!("{key}.layer_map[{j}]");
        check_layer(&k, "student", *s, student_layers, first)?;
        check_layer(&k, "teacher", *te, teacher_layers, first)?;
    }
    Ok(map.iter().map(|[s, te]| (*s, *te)).collect())
}

/// `first` is 0 for hidden states (0 = embeddings) and 1 for attention and Q/K/V (layers 1..=L).
fn check_layer(
    key: &str,
    who: &str,
    l: usize,
    layers: usize,
    first: usize,
) -> Result<(), KeyError> {
    if l < first || l > layers {
        let range = if first == 0 {
            format!("hidden states 0..={layers}, 0 = embeddings")
        } else {
            format!("layers 1..={layers}; the embeddings (0) have no attention")
        };
        return err(
            key,
            format!("{who} layer {l} does not exist (the {who} has {range})"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_map_includes_the_embeddings_and_the_last_layer() {
        assert_eq!(uniform_map(2, 6, 0), vec![(0, 0), (1, 3), (2, 6)]);
        assert_eq!(uniform_map(4, 6, 1), vec![(1, 2), (2, 3), (3, 5), (4, 6)]);
        assert_eq!(uniform_map(3, 3, 0), vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    }

    fn model(layers: usize, hidden: usize, heads: usize) -> EncoderConfig {
        let mut c = EncoderConfig::tiny(100);
        c.num_hidden_layers = layers;
        c.hidden_size = hidden;
        c.num_attention_heads = heads;
        c
    }

    fn bind1(t: TermSpec, s: &EncoderConfig, te: &EncoderConfig) -> Result<Bound, KeyError> {
        bind(&[t], &ObjectiveConfig::default(), 2.0, s, Some(te)).map(|mut v| v.remove(0))
    }

    #[test]
    fn binding_checks_layers_heads_and_widths() {
        let (s, t) = (model(2, 32, 4), model(6, 48, 12));
        let mut h = TermSpec::new(TermKind::HiddenMse, 1.0);
        assert_eq!(
            bind1(h.clone(), &s, &t).unwrap(),
            Bound::Hidden {
                pairs: vec![(0, 0), (1, 3), (2, 6)],
                cosine: false,
                widths: (32, 48)
            }
        );
        h.layer_map = Some(vec![[0, 0], [2, 7]]);
        let e = bind1(h, &s, &t).unwrap_err();
        assert_eq!(e.key, "terms[0].layer_map[1]");
        assert!(e.message.contains("teacher layer 7"), "{e}");

        let a = TermSpec::new(TermKind::AttentionMse, 1.0);
        let e = bind1(a.clone(), &s, &t).unwrap_err();
        assert!(e.message.contains("4 heads and the teacher 12"), "{e}");
        let s12 = model(2, 48, 12);
        assert_eq!(
            bind1(a, &s12, &t).unwrap(),
            Bound::Attention {
                pairs: vec![(1, 3), (2, 6)]
            }
        );
        let mut a0 = TermSpec::new(TermKind::AttentionMse, 1.0);
        a0.layer_map = Some(vec![[0, 1]]);
        let e = bind1(a0, &s12, &t).unwrap_err();
        assert!(e.message.contains("no attention"), "{e}");

        // Relations: the default heads (teacher's 12) do not divide the student's 32.
        let mut r = TermSpec::new(TermKind::MinilmRelations, 1.0);
        let e = bind1(r.clone(), &s, &t).unwrap_err();
        assert!(e.key.starts_with("terms[0].relation_heads"), "{e}");
        assert!(e.message.contains("student's hidden size 32"), "{e}");
        r.relation_heads = Some(8);
        assert_eq!(
            bind1(r.clone(), &s, &t).unwrap(),
            Bound::Relations {
                student_layer: 2,
                teacher_layer: 6,
                heads: 8,
                relations: vec![Relation::Qq, Relation::Kk, Relation::Vv]
            }
        );
        r.teacher_layer = Some(0);
        assert_eq!(bind1(r, &s, &t).unwrap_err().key, "terms[0].teacher_layer");
        // Token-level terms need a teacher.
        let e = bind(
            &[TermSpec::new(TermKind::HiddenCosine, 1.0)],
            &ObjectiveConfig::default(),
            2.0,
            &s,
            None,
        )
        .unwrap_err();
        assert_eq!(e.key, "terms[0].kind");
    }
}
