//! The model card of an export (`README.md`), the page the Hugging Face Hub shows for a pushed folder: YAML
//! metadata (library, pipeline, tags, dataset, the teacher as `base_model` when it is a hub id, and a
//! `model-index` with the dev metrics) and a body with the recipe and the teacher-against-student table of
//! the run's comparison report, when there is one.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use crate::report::Report;
use crate::run::plan::Plan;

/// The card of the student exported to `dest`, with `report` (the run's `report.json`) when there is one.
pub fn model_card(plan: &Plan, dest: &Path, report: Option<&Report>) -> Result<String> {
    let cfg = plan.cfg();
    let task = cfg.task.as_str();
    let shape = modeling::EncoderConfig::from_file(&dest.join("config.json"))?;
    let glue = data::glue::task(task).is_some();
    // The teacher by its Hub id where it can be known (a local copy of a Hub model included): the card's
    // `base_model`, which the Hub links; else by its folder's name, never by a path of this machine.
    let hub_teacher =
        modeling::ModelSource::parse(&cfg.teacher.model, &cfg.teacher.revision).hub_id();
    let teacher = hub_teacher.clone().unwrap_or_else(|| {
        Path::new(&cfg.teacher.model)
            .file_name()
            .map_or_else(|| cfg.teacher.model.clone(), |n| n.to_string_lossy().into())
    });
    let name = dest
        .parent()
        .and_then(|p| p.file_name())
        .map_or_else(|| format!("{task}-student"), |n| n.to_string_lossy().into());

    let mut meta = json!({
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["distillation", "knowledge-distillation", "distill", task],
    });
    if glue {
        meta["datasets"] = json!(["nyu-mll/glue"]);
        meta["language"] = json!(["en"]);
    }
    if let Some(id) = &hub_teacher {
        meta["base_model"] = json!(id);
    }
    if let Some(r) = report {
        let split = if task == "mnli" {
            "validation_matched"
        } else {
            "validation"
        };
        let dataset = if glue {
            json!({"type": "nyu-mll/glue", "name": format!("GLUE {}", task.to_uppercase()),
                   "config": task, "split": split})
        } else {
            json!({"type": "custom", "name": format!("{task} (local files)"), "split": "dev"})
        };
        let metrics: Vec<Value> = r
            .student
            .dev
            .values
            .iter()
            .map(|(k, v)| {
                json!({"type": metric_type(k), "value": round4(*v), "name": format!("dev {k}")})
            })
            .collect();
        meta["model-index"] = json!([{
            "name": name,
            "results": [{
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": dataset,
                "metrics": metrics,
            }],
        }]);
    }
    let yaml = serde_yaml::to_string(&meta)?;

    let mut s = format!("---\n{yaml}---\n\n# {name}\n\n");
    writeln!(
        s,
        "A {}-layer {} encoder (hidden size {}, {} heads, feed-forward {}, vocabulary {}) for **{task}**, \
         distilled from the teacher `{teacher}` with distill (knowledge distillation for BERT-family models, \
         in Rust on candle).\n",
        shape.num_hidden_layers,
        shape.model_type,
        shape.hidden_size,
        shape.num_attention_heads,
        shape.intermediate_size,
        shape.vocab_size
    )?;
    let (t, d) = (&cfg.train, &cfg.distill);
    let objective = match &d.terms {
        None => format!(
            "soft targets of the teacher at temperature {} (weight {}) and the gold labels (weight {})",
            d.temperature,
            d.alpha_kd,
            1.0 - d.alpha_kd
        ),
        Some(terms) => {
            let names: Vec<String> = terms
                .iter()
                .map(|term| {
                    let kind = serde_json::to_value(term.kind).unwrap_or_default();
                    format!("{} (weight {})", kind.as_str().unwrap_or("?"), term.weight)
                })
                .collect();
            format!("the terms {}", names.join(", "))
        }
    };
    writeln!(
        s,
        "## Recipe\n\n- student start: `{}`\n- objective: {objective}\n- training: {} epochs, batch {}, \
         AdamW at learning rate {:e} ({} schedule, warmup {}), weight decay {}, seed {}\n- max length: {} tokens\n",
        cfg.student.init,
        t.epochs,
        t.batch_size,
        t.learning_rate,
        serde_json::to_value(t.schedule)?.as_str().unwrap_or("linear"),
        t.warmup_ratio,
        t.weight_decay,
        cfg.seed,
        cfg.data.max_seq_len
    )?;
    if let Some(r) = report {
        writeln!(
            s,
            "## Teacher and student\n\nOn the {} dev examples ({} in %; the interval is the 95% bootstrap \
             interval of the main score), on {}:\n",
            r.dev_examples,
            r.student.dev.values.keys().cloned().collect::<Vec<_>>().join("/"),
            r.device
        )?;
        s.push_str("| model | dev | interval | parameters | size | batch-1 latency (p50) |\n");
        s.push_str("|---|---|---|---|---|---|\n");
        for (who, m) in [("teacher", &r.teacher), ("student", &r.student)] {
            let iv = m.dev_interval.get("main");
            writeln!(
                s,
                "| {who} | {} | {} | {} | {} | {:.1} ms |",
                m.dev
                    .values
                    .values()
                    .map(|v| format!("{:.2}", 100.0 * v))
                    .collect::<Vec<_>>()
                    .join("/"),
                iv.map_or("".into(), |i| format!(
                    "[{:.1}, {:.1}]",
                    100.0 * i.low,
                    100.0 * i.high
                )),
                count(m.parameters as f64),
                bytes(m.size_bytes as f64),
                m.latency.p50_ms
            )?;
        }
        writeln!(
            s,
            "\nThe student keeps {:.1}% of the teacher's main dev score and agrees with it on {:.1}% of the \
             dev examples.\n",
            r.retained_percent,
            100.0 * r.agreement
        )?;
    }
    s.push_str(&format!(
        "## Use\n\n```python\nfrom transformers import pipeline\nclf = pipeline(\"text-classification\", \
         model=\"{}\")\nprint(clf(\"a fine film\"))\n```\n\nor `distill predict {0} \"a fine film\"`, or \
         `distill serve {0}`.\n",
        dest.display()
    ));
    Ok(s)
}

/// The Hub's names for our metrics (those of the `evaluate` library).
fn metric_type(name: &str) -> &str {
    match name {
        "matthews" => "matthews_correlation",
        "pearson" => "pearsonr",
        "spearman" => "spearmanr",
        other => other,
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// 28.0M, 91.3k, 512.
fn count(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// 107 MiB, 360 KiB.
fn bytes(n: f64) -> String {
    if n >= f64::from(1 << 20) {
        format!("{:.0} MiB", n / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", n / 1024.0)
    }
}
