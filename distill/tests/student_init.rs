//! Where the student starts: some of the teacher's blocks (`init: teacher`, DistilBERT's start), and
//! the model card's own `haisongzhang/roberta-tiny-cased` from the hub, read here offline from a
//! fixture laid out as the hub's local cache (a RoBERTa masked LM with a WordPiece vocab.txt, as the
//! card loads it with `AutoModelWithLMHead`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use common::{fails, ok, tiny_run};
use modeling::testutil::{vocab, write_vocab};
use modeling::{EncoderConfig, MaskedLm};

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn a_student_made_of_the_teachers_blocks_trains_and_keeps_the_teachers_width() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let log = ok(&tiny_run(
        &out,
        &[
            "student.init=teacher",
            "student.teacher_layers=[2]",
            "student.tokenizer=null",
        ],
    ));
    assert!(
        log.contains("the teacher's embeddings and blocks [2]"),
        "{log}"
    );
    let teacher = config(&out.join("teacher/model"));
    let student = config(&out.join("export"));
    assert_eq!(student["num_hidden_layers"], 1);
    assert_eq!(student["hidden_size"], teacher["hidden_size"]);
    assert_eq!(student["vocab_size"], teacher["vocab_size"]);
    // The student's one block starts as the fine-tuned teacher's second: before training they are
    // equal, which the student's stamp records through the teacher's targets.
    assert!(out.join("report.json").is_file());
}

/// The tiny teacher's two blocks taken down to hidden 16, 2 heads, FFN 32.
const NARROW: [&str; 6] = [
    "student.init=teacher",
    "student.teacher_layers=[1, 2]",
    "student.tokenizer=null",
    "student.hidden_size=16",
    "student.num_heads=2",
    "student.intermediate_size=32",
];

/// The tiny teacher (hidden 32, 4 heads, FFN 64) taken down to hidden 16, 2 heads, FFN 32: the student
/// trains, and its export says its shape (tools/parity/ci.sh checks its logits in transformers).
#[test]
fn a_narrower_student_is_selected_from_the_teachers_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let log = ok(&tiny_run(&out, &NARROW));
    assert!(
        log.contains("narrowed to hidden 16, 2 heads, FFN 32 (Even selection)"),
        "{log}"
    );
    let c = config(&out.join("export"));
    let shape = (
        &c["num_hidden_layers"],
        &c["hidden_size"],
        &c["num_attention_heads"],
        &c["intermediate_size"],
    );
    assert_eq!(shape, (&2.into(), &16.into(), &2.into(), &32.into()));
    assert!(out.join("report.json").is_file());
}

/// `selection: importance` and `gradient`: the teacher's dimensions are scored on training examples
/// first (by their outputs; by the gradient of the task loss), and the choice is in the run's stamp, so
/// changing it retrains the student.
#[test]
fn a_narrower_student_can_keep_the_teachers_most_important_dimensions() {
    for (key, name) in [("importance", "Importance"), ("gradient", "Gradient")] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let selection = format!("student.selection={key}");
        let sets = [
            &NARROW[..],
            &[selection.as_str(), "student.importance_examples=40"],
        ]
        .concat();
        let log = ok(&tiny_run(&out, &sets));
        assert!(
            log.contains(&format!(
                "scored the teacher's hidden dimensions, heads and FFN units on 40 training examples ({name})"
            )),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "narrowed to hidden 16, 2 heads, FFN 32 ({name} selection)"
            )),
            "{log}"
        );
        let stamp = std::fs::read_to_string(out.join("student/stamp.json")).unwrap();
        assert!(
            stamp.contains(&format!("\"selection\": \"{key}\"")),
            "{stamp}"
        );
        assert_eq!(config(&out.join("export"))["hidden_size"], 16);
    }
}

/// Another vocabulary than the teacher's: capitalised words the cased tiny teacher splits into pieces,
/// in another order. The student reads its own tokenizer and starts from the teacher's rows for them.
#[test]
fn a_student_with_another_vocabulary_is_transferred_from_the_teachers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut words: Vec<String> = std::fs::read_to_string("../configs/tiny/vocab.txt")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    words.reverse();
    // Special tokens first, as BERT vocabularies have them.
    words.retain(|w| !w.starts_with('['));
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Film", "Warm"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(words);
    let vocab = tmp.path().join("vocab.txt");
    std::fs::write(&vocab, v.join("\n") + "\n").unwrap();
    let out = tmp.path().join("run");
    let log = ok(&tiny_run(
        &out,
        &[
            "student.init=teacher",
            "student.teacher_layers=[2]",
            &format!("student.tokenizer={}", vocab.display()),
            "student.hidden_size=16",
            "student.num_heads=2",
        ],
    ));
    assert!(log.contains("vocabulary transferred"), "{log}");
    let c = config(&out.join("export"));
    assert_eq!(c["vocab_size"], v.len());
    let exported = std::fs::read_to_string(out.join("export/vocab.txt")).unwrap();
    assert!(exported.starts_with("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nFilm\n"));
}

#[test]
fn teacher_layers_are_checked_with_the_key_named() {
    let tmp = tempfile::tempdir().unwrap();
    let o = |k: &str| tmp.path().join(k);
    fails(
        &tiny_run(&o("a"), &["student.init=teacher", "student.tokenizer=null"]),
        &["student.teacher_layers"],
    );
    fails(
        &tiny_run(&o("b"), &["student.teacher_layers=[1]"]),
        &["student.teacher_layers", "init: teacher"],
    );
    fails(
        &tiny_run(
            &o("c"),
            &[
                "student.init=teacher",
                "student.teacher_layers=[1]",
                "student.tokenizer=null",
                "student.hidden_size=64",
            ],
        ),
        &["hidden_size 64 is larger than the teacher's 32"],
    );
    fails(
        &tiny_run(
            &o("d"),
            &[
                "student.init=teacher",
                "student.teacher_layers=[1, 5]",
                "student.tokenizer=null",
            ],
        ),
        &["student.teacher_layers", "layer 5 does not exist"],
    );
}

#[test]
fn the_model_cards_roberta_tiny_cased_starts_a_student_from_the_hub_cache() {
    // hf-hub's layout: models--org--name/{refs/main, snapshots/<commit>/<files>}.
    let cache = tempfile::tempdir().unwrap();
    let repo = cache
        .path()
        .join("models--haisongzhang--roberta-tiny-cased");
    let commit = "fedcba9876543210fedcba9876543210fedcba98";
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    let mut cfg = EncoderConfig::tiny(vocab().len());
    cfg.model_type = "roberta".into();
    cfg.type_vocab_size = 1;
    cfg.max_position_embeddings += 1; // RoBERTa numbers positions from pad_token_id + 1 = 1.
    MaskedLm::new(&cfg, 7, &Device::Cpu)
        .unwrap()
        .save(&snap)
        .unwrap();
    write_vocab(&snap.join("vocab.txt")).unwrap();
    std::fs::write(
        snap.join("tokenizer_config.json"),
        r#"{"do_lower_case": false}"#,
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    assert_eq!(config(&snap)["architectures"][0], "RobertaForMaskedLM");

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(["run", "configs/tiny.yaml", "--set"])
        .arg(format!("output_dir={}", out.display()))
        .args([
            "--set",
            "student.init=haisongzhang/roberta-tiny-cased",
            "--set",
            "student.tokenizer=null",
        ])
        .current_dir(root)
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let log = ok(&run);
    assert!(log.contains("has no head for this task"), "{log}");
    let student = config(&out.join("export"));
    assert_eq!(student["model_type"], "roberta");
    assert_eq!(
        student["architectures"][0],
        "RobertaForSequenceClassification"
    );
    // The cased WordPiece vocabulary came along.
    assert!(out.join("export/vocab.txt").is_file());
}
