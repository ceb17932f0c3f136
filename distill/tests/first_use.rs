//! What a new user meets first, through the real binary: a teacher path that is missing from the
//! directory the command runs in, an impossible student (refused before the teacher's stage, with no
//! output folder left behind), GLUE's label names in predictions, `id2label` and the model card, and the
//! card naming the teacher by its Hub id rather than by a path of this machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{fails, ok, tiny_run};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn a_missing_local_teacher_folder_is_reported_as_missing_not_looked_up_on_the_hub() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args([
            "run",
            &root().join("configs/tiny.yaml").display().to_string(),
        ])
        .args(["--set", &format!("output_dir={}", out.display())])
        .args(["--set", "teacher.model=models/all-mpnet-base-v2"])
        .args([
            "--set",
            &format!("data.dir={}", root().join("configs/tiny/data").display()),
        ])
        .args([
            "--set",
            &format!(
                "student.tokenizer={}",
                root().join("configs/tiny/vocab.txt").display()
            ),
        ])
        .current_dir(elsewhere.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    fails(
        &o,
        &[
            "teacher.model",
            "models/all-mpnet-base-v2",
            "model folder not found",
            &elsewhere.path().display().to_string(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("hub id"), "{err}");
    assert!(!out.exists(), "a refused run left {}", out.display());
}

#[test]
fn an_impossible_student_is_refused_before_the_teacher_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = tiny_run(&out, &["student.num_heads=5"]);
    fails(&o, &["student", "hidden_size 32", "num_attention_heads 5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("fine-tuning"),
        "the teacher stage ran:\n{err}"
    );
    assert!(!out.exists(), "a refused run left {}", out.display());
    // The same for blocks the teacher does not have, and a data file that is not there.
    let o = tiny_run(
        &out,
        &[
            "student.init=teacher",
            "student.tokenizer=null",
            "student.teacher_layers=[1, 7]",
        ],
    );
    fails(&o, &["student.teacher_layers", "layer 7 does not exist"]);
    let o = tiny_run(&out, &["data.dir=configs/tiny/nowhere"]);
    fails(&o, &["data.dir", "configs/tiny/nowhere"]);
    assert!(!out.exists(), "a refused run left {}", out.display());
}

#[test]
fn glue_tasks_carry_their_label_names_through_predict_config_and_card() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    ok(&tiny_run(&out, &[]));
    let export = out.join("export");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(export.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["id2label"]["0"], "negative", "{config}");
    assert_eq!(config["id2label"]["1"], "positive", "{config}");
    assert_eq!(config["label2id"]["positive"], 1, "{config}");
    let o = common::distill(&["predict", export.to_str().unwrap(), "a fine film"]);
    let line: serde_json::Value = serde_json::from_str(ok(&o).lines().next().unwrap()).unwrap();
    let label = line["label"].as_str().unwrap();
    assert!(label == "negative" || label == "positive", "{line}");
    let card = std::fs::read_to_string(export.join("README.md")).unwrap();
    assert!(!card.contains("configs/tiny/teacher"), "{card}");
}

#[test]
fn the_card_names_a_local_copy_of_a_hub_teacher_by_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("all-tiny-v2");
    std::fs::create_dir(&teacher).unwrap();
    for e in std::fs::read_dir(root().join("configs/tiny/teacher")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), teacher.join(e.file_name())).unwrap();
    }
    // A sentence-transformers card loads its model by its own id.
    std::fs::write(
        teacher.join("README.md"),
        "# all-tiny-v2\n\n```python\nmodel = SentenceTransformer('acme/all-tiny-v2')\n```\n\
         ```python\ntokenizer = AutoTokenizer.from_pretrained('acme/all-tiny-v2')\n```\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    ok(&tiny_run(
        &out,
        &[&format!("teacher.model={}", teacher.display())],
    ));
    let card = std::fs::read_to_string(out.join("export/README.md")).unwrap();
    assert!(card.contains("base_model: acme/all-tiny-v2"), "{card}");
    assert!(card.contains("`acme/all-tiny-v2`"), "{card}");
    assert!(!card.contains(&teacher.display().to_string()), "{card}");
}
