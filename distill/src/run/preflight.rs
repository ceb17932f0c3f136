//! Checks before the expensive stages that catch a setup which would train a useless student: a teacher
//! at chance level on dev, a teacher whose labels are in another order than the dataset's (by name, or
//! by its dev predictions fitting a permutation of the labels far better), and a student tokenizer whose
//! casing does not match the data. Each refusal names the `preflight.*` key that overrides it.

use anyhow::{bail, Result};
use data::Label;
use modeling::TextTokenizer;

use crate::config::PreflightConfig;

/// Refuses (or, when `allowed`, warns about) a failed check.
fn verdict(allowed: bool, key: &str, msg: String) -> Result<()> {
    if allowed {
        tracing::warn!("preflight: warning: {msg} (allowed by preflight.{key})");
        Ok(())
    } else {
        bail!("preflight: {msg}. Set `preflight.{key}: true` to go on anyway")
    }
}

/// Label names that carry no meaning (`LABEL_3`, `3`) cannot be compared by name.
fn generic(name: &str, i: usize) -> bool {
    name == format!("LABEL_{i}") || name == i.to_string()
}

/// The teacher's label names against the dataset's, when both are meaningful.
pub fn label_names(cfg: &PreflightConfig, teacher: &[String], data: &[String]) -> Result<()> {
    if teacher.len() != data.len() || teacher.iter().enumerate().any(|(i, n)| generic(n, i)) {
        return Ok(());
    }
    let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
    let (t, d) = (lower(teacher), lower(data));
    let mut ts = t.clone();
    let mut ds = d.clone();
    ts.sort();
    ds.sort();
    if ts == ds && t != d {
        return verdict(
            cfg.allow_label_mismatch,
            "allow_label_mismatch",
            format!("the teacher's labels {teacher:?} are the dataset's {data:?} in another order"),
        );
    }
    Ok(())
}

/// The teacher's dev predictions: chance level, or labels that fit far better permuted.
pub fn teacher_dev(
    cfg: &PreflightConfig,
    logits: &[Vec<f32>],
    gold: &[Label],
    main_score: f64,
    metric_name: &str,
) -> Result<()> {
    if logits.first().is_some_and(|r| r.len() == 1) {
        // Regression: a Pearson correlation near zero.
        if main_score.is_nan() || main_score < 0.1 {
            return verdict(
                cfg.allow_weak_teacher,
                "allow_weak_teacher",
                format!("the teacher's dev {metric_name} is {main_score:.3}: it has not learnt the task"),
            );
        }
        return Ok(());
    }
    let classes = logits.first().map_or(0, Vec::len);
    let pred = train::metrics::argmax_rows(logits);
    let gold: Vec<usize> = gold
        .iter()
        .map(|l| match l {
            Label::Class(c) => *c,
            Label::Score(s) => *s as usize,
        })
        .collect();
    let n = gold.len().max(1) as f64;
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&g, &p) in gold.iter().zip(&pred) {
        if g < classes && p < classes {
            confusion[g][p] += 1;
        }
    }
    let accuracy = |perm: &[usize]| -> f64 {
        (0..classes).map(|p| confusion[perm[p]][p]).sum::<usize>() as f64 / n
    };
    let identity: Vec<usize> = (0..classes).collect();
    let acc = accuracy(&identity);
    let mut majority = vec![0usize; classes];
    for &g in &gold {
        if g < classes {
            majority[g] += 1;
        }
    }
    let majority = majority.iter().copied().max().unwrap_or(0) as f64 / n;
    // Permutations of up to 6 classes (720); GLUE has at most 3.
    if classes <= 6 {
        let mut best = (acc, identity.clone());
        permutations(&identity, &mut |perm| {
            let a = accuracy(perm);
            if a > best.0 {
                best = (a, perm.to_vec());
            }
        });
        if best.0 >= acc + 0.2 {
            let map: Vec<String> = (0..classes)
                .filter(|&p| best.1[p] != p)
                .map(|p| format!("teacher {p} -> dataset {}", best.1[p]))
                .collect();
            return verdict(
                cfg.allow_label_mismatch,
                "allow_label_mismatch",
                format!(
                    "the teacher's dev accuracy is {:.1}% as is but {:.1}% with its labels permuted ({}): its label order differs from the dataset's",
                    100.0 * acc,
                    100.0 * best.0,
                    map.join(", ")
                ),
            );
        }
    }
    let chance = match metric_name {
        "matthews" => main_score.abs() < 0.02,
        _ => acc <= majority + 0.01,
    };
    if chance {
        return verdict(
            cfg.allow_weak_teacher,
            "allow_weak_teacher",
            format!(
                "the teacher is at chance level on dev ({}accuracy {:.1}% vs {:.1}% for always predicting the most frequent label)",
                if metric_name == "accuracy" { String::new() } else { format!("{metric_name} {main_score:.3}; ") },
                100.0 * acc,
                100.0 * majority
            ),
        );
    }
    Ok(())
}

fn permutations(items: &[usize], f: &mut dyn FnMut(&[usize])) {
    fn go(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            go(v, k + 1, f);
            v.swap(k, i);
        }
    }
    go(&mut items.to_vec(), 0, f);
}

/// A cased tokenizer on data with no capital letters (a model that never saw one meets them in use), or
/// a lower-casing tokenizer on cased data (the casing the student is meant to use is lost).
pub fn casing(cfg: &PreflightConfig, tok: &TextTokenizer, texts: &[&str], key: &str) -> Result<()> {
    let upper = texts
        .iter()
        .filter(|t| t.chars().any(char::is_uppercase))
        .count();
    let share = upper as f64 / texts.len().max(1) as f64;
    // A tokenizer lower-cases when capitals never change its ids: probed on the data's own cased texts,
    // or on a single letter when there are none (every WordPiece and BPE vocabulary has both cases).
    let same = |t: &str| match (tok.encode(t, None), tok.encode(&t.to_lowercase(), None)) {
        (Ok(a), Ok(b)) => a.ids == b.ids,
        _ => false,
    };
    let cased: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| t.chars().any(char::is_uppercase))
        .take(50)
        .collect();
    let lowercases = if cased.is_empty() {
        same("A")
    } else {
        cased.iter().all(|t| same(t))
    };
    if !lowercases && share < 0.001 && texts.len() >= 100 {
        return verdict(
            cfg.allow_casing_mismatch,
            "allow_casing_mismatch",
            format!(
                "{key} is cased but the training texts have no capital letters ({upper} of {}): the student will meet capitals only in use; lower-case inputs at inference or train on cased data",
                texts.len()
            ),
        );
    }
    if lowercases && share > 0.05 {
        return verdict(
            cfg.allow_casing_mismatch,
            "allow_casing_mismatch",
            format!(
                "{key} lower-cases its input but {:.0}% of the training texts have capitals: the casing is lost",
                100.0 * share
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pred: &[usize], classes: usize) -> Vec<Vec<f32>> {
        pred.iter()
            .map(|&p| {
                (0..classes)
                    .map(|c| if c == p { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect()
    }

    fn labels(v: &[usize]) -> Vec<Label> {
        v.iter().map(|&c| Label::Class(c)).collect()
    }

    #[test]
    fn a_swapped_teacher_is_caught_and_names_the_mapping() {
        let gold = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0];
        let pred = [1, 0, 2, 1, 0, 2, 1, 0, 2, 1]; // 0 and 1 swapped
        let cfg = PreflightConfig::default();
        let e = teacher_dev(&cfg, &rows(&pred, 3), &labels(&gold), 0.3, "accuracy")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("permuted") && e.contains("teacher 0 -> dataset 1"),
            "{e}"
        );
        assert!(e.contains("preflight.allow_label_mismatch"), "{e}");
        let allow = PreflightConfig {
            allow_label_mismatch: true,
            ..Default::default()
        };
        assert!(teacher_dev(&allow, &rows(&pred, 3), &labels(&gold), 0.3, "accuracy").is_ok());
    }

    #[test]
    fn chance_level_is_caught_and_a_good_teacher_passes() {
        let gold = [0, 0, 0, 1, 0, 0, 1, 0, 0, 0];
        let cfg = PreflightConfig::default();
        let e = teacher_dev(&cfg, &rows(&[0; 10], 2), &labels(&gold), 0.8, "accuracy")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chance level") && e.contains("allow_weak_teacher"),
            "{e}"
        );
        assert!(teacher_dev(&cfg, &rows(&gold, 2), &labels(&gold), 1.0, "accuracy").is_ok());
        let e = teacher_dev(&cfg, &rows(&[0; 10], 2), &labels(&gold), 0.0, "matthews")
            .unwrap_err()
            .to_string();
        assert!(e.contains("matthews 0.000"), "{e}");
        let reg = vec![vec![0.5f32]; 10];
        assert!(teacher_dev(&cfg, &reg, &labels(&gold), 0.02, "pearson").is_err());
    }

    #[test]
    fn label_names_in_another_order_are_caught() {
        let cfg = PreflightConfig::default();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(label_names(
            &cfg,
            &s(&["positive", "negative"]),
            &s(&["negative", "positive"])
        )
        .is_err());
        assert!(label_names(
            &cfg,
            &s(&["Negative", "Positive"]),
            &s(&["negative", "positive"])
        )
        .is_ok());
        assert!(label_names(&cfg, &s(&["LABEL_0", "LABEL_1"]), &s(&["1", "0"])).is_ok());
    }
}
