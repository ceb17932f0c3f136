//! The real `distill` binary end to end on configs/tiny.yaml (committed tiny fixtures), and its errors on
//! bad input: each must exit non-zero, name the file/line or YAML key, never panic, and leave earlier
//! good outputs in place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn distill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_tiny(out: &Path, extra: &[&str]) -> Output {
    let o = format!("output_dir={}", out.display());
    let mut args = vec!["run", "configs/tiny.yaml", "--set", &o];
    args.extend_from_slice(extra);
    distill(&args)
}

/// Width and height of a PNG file, failing unless it decodes as one.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!bytes.is_empty() && bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

/// The comparison report's intervals, calibration, latency and figures (classification task).
fn check_report_extras(out: &Path, report: &serde_json::Value) {
    assert_eq!(report["bootstrap"]["resamples"], 1000);
    assert_eq!(report["bootstrap"]["seed"], 42);
    for who in ["teacher", "student"] {
        let m = &report[who];
        let acc = m["dev"]["values"]["accuracy"].as_f64().unwrap();
        let iv = &m["dev_interval"]["accuracy"];
        let (lo, hi) = (iv["low"].as_f64().unwrap(), iv["high"].as_f64().unwrap());
        assert!(
            lo <= acc && acc <= hi && hi - lo < 0.5,
            "{who}: {acc} not in [{lo}, {hi}]"
        );
        assert!(m["dev_interval"]["main"]["low"].is_f64());
        let cal = &m["calibration"];
        let ece = cal["ece"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ece));
        let bins = cal["bins"].as_array().unwrap();
        assert_eq!(bins.len(), 15);
        let counted: u64 = bins.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, report["dev_examples"].as_u64().unwrap());
        for b in bins.iter().filter(|b| b["count"] != 0) {
            assert!(b["confidence"].is_f64() && b["accuracy"].is_f64(), "{b}");
        }
        let confusion = m["confusion"].as_array().unwrap();
        assert_eq!(confusion.len(), 2);
        let lat = &m["latency"];
        assert!(lat["p50_ms"].as_f64().unwrap() > 0.0);
        assert!(lat["p99_ms"].as_f64().unwrap() >= lat["p50_ms"].as_f64().unwrap());
        assert!(lat["examples"].as_u64().unwrap() > 0);
        assert!(m["examples_per_second"].as_f64().unwrap() > 0.0);
    }
    assert!(report["retained_interval"]["low"].is_f64());
    assert!(report["seeds"].is_null());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for f in [
        "training_curves.png",
        "confusion.png",
        "reliability.png",
        "latency.png",
        "size.png",
    ] {
        let (w, h) = png_size(&out.join("plots").join(f));
        assert!(w >= 400 && h >= 100, "{f}: {w}x{h}");
        assert!(
            md.contains(&format!("](plots/{f})")),
            "report.md lacks {f}:\n{md}"
        );
        assert!(
            report["plots"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["file"] == format!("plots/{f}")),
            "{f}"
        );
    }
}

/// Fails the test unless the command failed cleanly with every `needles` in its message.
fn fails_with(o: &Output, needles: &[&str]) {
    let t = text(o);
    assert!(!o.status.success(), "expected failure, got success:\n{t}");
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(!t.contains("panicked"), "panic:\n{t}");
    for n in needles {
        assert!(t.contains(n), "message lacks `{n}`:\n{t}");
    }
}

#[test]
fn tiny_run_end_to_end_then_fresh_stages_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = run_tiny(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "teacher/model/model.safetensors",
        "teacher/finetune/metrics.jsonl",
        "targets/train.safetensors",
        "student/best/model.safetensors",
        "student/metrics.jsonl",
        "export/model.safetensors",
        "export/config.json",
        "export/tokenizer.json",
        "export/vocab.txt",
        "report.json",
        "report.md",
        "timings.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}\n{}", text(&o));
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for who in ["teacher", "student"] {
        let acc = report[who]["dev"]["values"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(report[who]["parameters"].as_u64().unwrap() > 0);
    }
    assert!(report["agreement"].as_f64().is_some());
    // On the CPU the report adds the student in int8 beside f32.
    let q = &report["student_int8"];
    assert!((0.0..=1.0).contains(&q["dev"]["values"]["accuracy"].as_f64().unwrap()));
    assert!(q["size_bytes"].as_u64().unwrap() < report["student"]["size_bytes"].as_u64().unwrap());
    assert!(report["int8_agreement"].as_f64().is_some());
    check_report_extras(&out, &report);
    // The metrics log carries loss terms, lr and dev scores.
    let log = std::fs::read_to_string(out.join("student/metrics.jsonl")).unwrap();
    assert!(log.contains("\"kd\"") && log.contains("\"lr\"") && log.contains("\"dev\""));

    // Everything is fresh: nothing is retrained.
    let again = run_tiny(&out, &[]);
    let t = text(&again);
    assert!(again.status.success(), "{t}");
    assert!(t.contains("targets") && t.contains("is fresh"), "{t}");
    assert!(
        t.contains("student:") && !t.contains("parameters,"),
        "student retrained:\n{t}"
    );

    // A changed distillation setting retrains the student only.
    let t3 = run_tiny(&out, &["--set", "distill.temperature=3.0"]);
    let t = text(&t3);
    assert!(t3.status.success(), "{t}");
    assert!(
        t.contains("retraining from scratch") && t.contains("distill"),
        "{t}"
    );
    assert!(t.contains("train.safetensors is fresh"), "{t}");

    // A changed max length invalidates the targets, naming the field.
    let t4 = distill(&[
        "teacher",
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
        "--set",
        "data.max_seq_len=24",
    ]);
    let t = text(&t4);
    assert!(t4.status.success(), "{t}");
    assert!(t.contains("rebuilding") && t.contains("max_seq_len"), "{t}");

    // predict on the export: one JSON object per input.
    let export = out.join("export");
    let p = distill(&[
        "predict",
        export.to_str().unwrap(),
        "the film was great .",
        "dull and boring",
    ]);
    assert!(p.status.success(), "{}", text(&p));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&p.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert!(l["label"].is_string() && l["logits"].as_array().unwrap().len() == 2);
        let s = l["score"].as_f64().unwrap();
        assert!((0.5..=1.0).contains(&s));
    }
    let input = tmp.path().join("inputs.txt");
    std::fs::write(&input, "the film was great .\nA\tpair of sentences\n").unwrap();
    let p = distill(&[
        "predict",
        export.to_str().unwrap(),
        "--file",
        input.to_str().unwrap(),
    ]);
    assert!(p.status.success(), "{}", text(&p));
    assert_eq!(String::from_utf8_lossy(&p.stdout).lines().count(), 2);
    // The first line of both calls is the same input: the same logits.
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&p.stdout).lines().next().unwrap()).unwrap();
    // (Batched with a longer input, float sums run in another order: equal to 1e-5.)
    for (a, b) in first["logits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lines[0]["logits"].as_array().unwrap())
    {
        assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5);
    }

    // A new run can start its student from this export (its tokenizer comes along).
    let b = tmp.path().join("from-export");
    let o = run_tiny(
        &b,
        &[
            "--set",
            &format!("student.init={}", export.display()),
            "--set",
            "student.tokenizer=null",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(b.join("export/model.safetensors").is_file());

    // A failing run leaves the good export untouched.
    let before = std::fs::read(export.join("model.safetensors")).unwrap();
    let bad = run_tiny(&out, &["--set", "data.dir=/nonexistent/glue"]);
    fails_with(&bad, &["/nonexistent/glue"]);
    assert_eq!(
        std::fs::read(export.join("model.safetensors")).unwrap(),
        before
    );
}

/// Token-level terms against the online teacher, with a narrower student (so a projection) and every
/// kind of term at once.
const TOKEN_TERMS: &str = "distill.terms=[{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, \
    {kind: hidden_mse, weight: 1.0}, {kind: hidden_cosine, weight: 0.5, layer_map: [[2, 2]]}, \
    {kind: attention_mse, weight: 1.0, schedule: linear_decay}, \
    {kind: minilm_relations, weight: 1.0, relation_heads: 2, relations: [qq, vv]}]";

#[test]
fn token_level_terms_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let narrow = [
        "--set",
        TOKEN_TERMS,
        "--set",
        "student.hidden_size=16",
        "--set",
        "student.intermediate_size=32",
    ];
    let o = run_tiny(&out, &narrow);
    assert!(o.status.success(), "{}", text(&o));
    let log = std::fs::read_to_string(out.join("student/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    for name in [
        "kd",
        "ce",
        "hidden_mse",
        "hidden_cosine",
        "attention_mse",
        "minilm_relations",
    ] {
        let t = &first["terms"][name];
        assert!(
            t["raw"].as_f64().unwrap().is_finite() && t["weighted"].is_number(),
            "{name}: {first}"
        );
    }
    // The projection (16 -> 32) is checkpointed but never exported.
    assert!(out.join("student/last/objective.safetensors").is_file());
    let exported = candle_core::safetensors::load(
        out.join("export/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(exported.keys().all(|n| !n.starts_with("distill.")));

    // Unchanged: fresh. A changed term: the student retrains, naming the section.
    let again = run_tiny(&out, &narrow);
    let t = text(&again);
    assert!(again.status.success() && !t.contains("parameters,"), "{t}");
    let mut changed = narrow.to_vec();
    let other = TOKEN_TERMS.replace("relations: [qq, vv]", "relations: [kk]");
    changed[1] = &other;
    let o = run_tiny(&out, &changed);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("retraining from scratch") && t.contains("distill"),
        "{t}"
    );

    // Every term in mixed precision, the online teacher included: finite, and f16 scales the loss.
    for p in ["bf16", "f16"] {
        let mut mixed = narrow.to_vec();
        let set = format!("train.precision={p}");
        mixed.extend(["--set", &set]);
        let dir = tmp.path().join(p);
        let o = run_tiny(&dir, &mixed);
        assert!(o.status.success(), "{}", text(&o));
        let log = std::fs::read_to_string(dir.join("student/metrics.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        let terms = first["terms"].as_object().unwrap();
        assert_eq!(terms.len(), 6, "{first}");
        assert!(
            terms
                .values()
                .all(|t| t["raw"].as_f64().unwrap().is_finite()),
            "{first}"
        );
        assert_eq!(
            first["loss_scale"].as_f64(),
            (p == "f16").then_some(65536.0),
            "{first}"
        );
    }
}

/// A student whose tokenizer differs from the teacher's (lower-cased, and without `movie` / `film`, so
/// those split into characters): every token-level term aligns by words and the run trains (it was
/// refused).
#[test]
fn token_terms_align_different_tokenizers_by_words() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let vocab = std::fs::read_to_string(root().join("configs/tiny/vocab.txt")).unwrap();
    let other: Vec<&str> = vocab
        .lines()
        .filter(|l| *l != "movie" && *l != "film")
        .collect();
    let path = tmp.path().join("vocab.txt");
    std::fs::write(&path, other.join("\n") + "\n").unwrap();
    let tok = format!("student.tokenizer={}", path.display());
    let args = [
        "--set",
        TOKEN_TERMS,
        "--set",
        &tok,
        "--set",
        "student.lowercase=true",
        "--set",
        "preflight.allow_casing_mismatch=true",
        "--set",
        "student.hidden_size=16",
        "--set",
        "student.intermediate_size=32",
    ];
    let o = run_tiny(&out, &args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("compare word means"), "{t}");
    let log = std::fs::read_to_string(out.join("student/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    for name in [
        "hidden_mse",
        "hidden_cosine",
        "attention_mse",
        "minilm_relations",
    ] {
        let raw = first["terms"][name]["raw"].as_f64().unwrap();
        assert!(raw.is_finite() && raw > 0.0, "{name}: {first}");
    }
    // The teacher's tokenizer is part of the stamp.
    let stamp = std::fs::read_to_string(out.join("student/stamp.json")).unwrap();
    assert!(stamp.contains("online_teacher_tokenizer"), "{stamp}");
}

#[test]
fn config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--set", "train.lr=0.1"], &["unknown field `lr`", "train"]),
        (
            &["--set", "distill.alpha_kd=2"],
            &["distill.alpha_kd", "[0, 1]"],
        ),
        (&["--set", "train.epochs=many"], &["train.epochs"]),
        (
            &["--set", "train.learning_rate=-1"],
            &["train.learning_rate"],
        ),
        (&["--set", "task=sst3"], &["task", "sst3"]),
        (&["--set", "device=tpu"], &["device"]),
        (&["--set", "data.max_seq_len=100000"], &["data.max_seq_len"]),
        (
            &["--set", "teacher.finetune.batch_size=0"],
            &["teacher.finetune.batch_size"],
        ),
        (
            &["--set", "student.tokenizer=/no/vocab.txt"],
            &["student.tokenizer", "/no/vocab.txt"],
        ),
        (
            &["--set", "teacher.model=/no/teacher"],
            &["teacher.model", "/no/teacher"],
        ),
        (
            &["--set", "data.dir=${DISTILL_TEST_UNSET_VAR}"],
            &["data.dir", "DISTILL_TEST_UNSET_VAR"],
        ),
        (&["--set", "noequals"], &["noequals", "key.path=value"]),
    ];
    for (extra, needles) in cases {
        fails_with(&run_tiny(&out, extra), needles);
    }
}

#[test]
fn broken_yaml_and_missing_config_are_reported_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("broken.yaml");
    std::fs::write(&cfg, "task: sst2\noutput_dir: [unclosed\n").unwrap();
    fails_with(
        &distill(&["run", cfg.to_str().unwrap()]),
        &["broken.yaml", "line"],
    );
    fails_with(&distill(&["run", "/no/such.yaml"]), &["/no/such.yaml"]);
    let empty = tmp.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &distill(&["train", empty.to_str().unwrap()]),
        &["empty.yaml", "empty"],
    );
}

#[test]
fn bad_data_rows_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let good = std::fs::read_to_string(root().join("configs/tiny/data/train.tsv")).unwrap();
    std::fs::copy(
        root().join("configs/tiny/data/dev.tsv"),
        data.join("dev.tsv"),
    )
    .unwrap();
    let dir = format!("data.dir={}", data.display());
    let out = tmp.path().join("o");

    std::fs::write(
        data.join("train.tsv"),
        format!("{good}a row without a label\n"),
    )
    .unwrap();
    let line = good.lines().count() + 1;
    fails_with(
        &run_tiny(&out, &["--set", &dir]),
        &[&format!("train.tsv:{line}"), "columns"],
    );

    std::fs::write(
        data.join("train.tsv"),
        format!("{good}very good\tpositive\n"),
    )
    .unwrap();
    fails_with(
        &run_tiny(&out, &["--set", &dir]),
        &[&format!("train.tsv:{line}"), "`positive`"],
    );
}

#[test]
fn checkpoint_not_matching_its_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("teacher");
    std::fs::create_dir_all(&t).unwrap();
    for f in ["model.safetensors", "vocab.txt"] {
        std::fs::copy(root().join("configs/tiny/teacher").join(f), t.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(root().join("configs/tiny/teacher/config.json"))
        .unwrap()
        .replace("\"hidden_size\": 32", "\"hidden_size\": 48");
    std::fs::write(t.join("config.json"), cfg).unwrap();
    let out = tmp.path().join("o");
    fails_with(
        &run_tiny(&out, &["--set", &format!("teacher.model={}", t.display())]),
        &["teacher.model", "model.safetensors", "shape"],
    );
}

/// Every program of the workspace says `error: ...` as `distill` does, never `Error: ...`: the form a
/// `fn main() -> Result` prints (with the error's Debug form), which the examples used to.
#[test]
fn every_error_starts_with_lowercase_error() {
    let tmp = tempfile::tempdir().unwrap();
    let glue_out = tmp.path().join("glue");
    let blank = tmp.path().join("blank.txt");
    std::fs::write(&blank, "fine\n \n").unwrap();
    let commands: &[&[&str]] = &[
        &["run", "configs/tiny.yaml", "--set", "train=5"],
        &["run", "/no/such.yaml"],
        &[
            "pretrain",
            "configs/tiny-pretrain.yaml",
            "--set",
            "held_out=2",
        ],
        &["pretrain", "configs/tiny.yaml"],
        &[
            "glue",
            "--configs",
            "/no/configs",
            "--tasks",
            "sst2",
            "--out",
            glue_out.to_str().unwrap(),
        ],
        &["glue", "--bogus"],
        &["predict", "configs/tiny/teacher", " "],
        &[
            "predict",
            "configs/tiny/teacher",
            "--file",
            blank.to_str().unwrap(),
        ],
        &["serve", "configs/tiny/teacher", "--max-batch", "0"],
        &["onnx", "/no/model"],
    ];
    for args in commands {
        let o = distill(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(
            err.lines().any(|l| l.starts_with("error: ")),
            "{args:?}: {err}"
        );
        assert!(
            !err.lines().any(|l| l.starts_with("Error")),
            "{args:?}: {err}"
        );
    }
    // The other programs: a `main` that returns its error would print `Error: {e:?}`.
    for member in [
        "kernels", "modeling", "data", "train", "teacher", "student", "distill",
    ] {
        let mut files = vec![root().join(member).join("src/main.rs")];
        for dir in ["examples", "src/bin"] {
            if let Ok(entries) = std::fs::read_dir(root().join(member).join(dir)) {
                files.extend(entries.map(|e| e.unwrap().path()));
            }
        }
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            let Ok(src) = std::fs::read_to_string(f) else {
                continue;
            };
            assert!(
                !src.contains("fn main() ->"),
                "{}: `main` returns its error, which prints `Error: ...`; print `error: ...` and exit 1",
                f.display()
            );
        }
    }
}

#[test]
fn predict_errors_are_clean() {
    fails_with(&distill(&["predict", "/no/model", "text"]), &["/no/model"]);
    fails_with(
        &distill(&["predict", "configs/tiny/teacher"]),
        &["no input"],
    );
    fails_with(
        &distill(&["predict", "configs/tiny/teacher", "hello"]),
        &["no classification head"],
    );
}

#[test]
fn targets_cache_pooled_hidden_states_of_chosen_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = format!("output_dir={}", tmp.path().display());
    let o = distill(&[
        "teacher",
        "configs/tiny.yaml",
        "--set",
        &out,
        "--set",
        "teacher.hidden_layers=[0, 2]",
        "--set",
        "teacher.pooling=mean",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = teacher::Targets::load(&tmp.path().join("targets/train.safetensors")).unwrap();
    assert_eq!(t.logits.dims(), &[240, 2]);
    assert_eq!(t.hidden.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(t.hidden[&2].dims(), &[240, 32]);
    assert_eq!(t.fingerprint.hidden_layers, vec![0, 2]);
    // A layer the teacher does not have is an error naming it.
    let bad = distill(&[
        "teacher",
        "configs/tiny.yaml",
        "--set",
        &out,
        "--set",
        "teacher.hidden_layers=[7]",
    ]);
    fails_with(&bad, &["teacher.hidden_layers", "layer 7"]);
}

#[test]
fn sweep_keeps_the_best_grid_point_and_reports_mean_and_std() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = |out: &Path, halving: bool| {
        distill(&[
            "sweep",
            "configs/tiny.yaml",
            "--set",
            &format!("output_dir={}", out.display()),
            "--set",
            "sweep.batch_size=[8, 16]",
            "--set",
            "sweep.learning_rate=[3.0e-3]",
            "--set",
            "sweep.seeds=[1, 2]",
            "--set",
            &format!("sweep.halving={halving}"),
        ])
    };
    let read = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap()
    };
    let out = tmp.path().join("sw");
    let o = sweep(&out, false);
    assert!(o.status.success(), "{}", text(&o));
    let v = read(&out);
    assert_eq!(v["trials"].as_array().unwrap().len(), 4);
    assert_eq!(v["grid"].as_array().unwrap().len(), 2);
    assert_eq!(v["best"]["seeds"], 2, "mean and std over both seeds");
    assert!(v["best"]["std"].as_f64().unwrap() >= 0.0);
    assert!(out.join("student/best/model.safetensors").is_file());
    // The teacher ran once, in the parent run.
    assert!(out.join("targets/train.safetensors").is_file());
    assert!(!out.join("sweep/bs8-lr3e-3-seed1/targets").exists());
    // compare with every trial as a further run: the parent's student/best is a copy of the winning
    // trial, so that one is counted once; the other three join it.
    let trials: Vec<String> = ["bs8", "bs16"]
        .iter()
        .flat_map(|b| {
            let out = &out;
            (1..=2).map(move |s| {
                out.join(format!("sweep/{b}-lr3e-3-seed{s}"))
                    .display()
                    .to_string()
            })
        })
        .collect();
    let o = format!("output_dir={}", out.display());
    let mut args = vec!["compare", "configs/tiny.yaml", "--set", &o];
    for t in &trials {
        args.extend(["--runs", t.as_str()]);
    }
    let c = distill(&args);
    assert!(c.status.success(), "{}", text(&c));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let seeds = &r["seeds"];
    assert_eq!(seeds["runs"].as_array().unwrap().len(), 4, "{seeds}");
    assert_eq!(seeds["duplicates"].as_array().unwrap().len(), 1, "{seeds}");
    for k in ["accuracy", "main", "ece", "agreement", "retained_percent"] {
        assert!(seeds["mean"][k].is_f64(), "mean {k}: {seeds}");
        assert!(seeds["std"][k].as_f64().unwrap() >= 0.0, "std {k}: {seeds}");
    }
    let accs: Vec<f64> = seeds["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dev"]["values"]["accuracy"].as_f64().unwrap())
        .collect();
    let mean = accs.iter().sum::<f64>() / 4.0;
    assert!((seeds["mean"]["accuracy"].as_f64().unwrap() - mean).abs() < 1e-12);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| student (4 seeds) |"), "{md}");
    // The parent of a sweep has no training log: no training curves, the other figures still there.
    assert!(!out.join("plots/training_curves.png").exists());
    assert!(out.join("plots/reliability.png").is_file());
    // A folder without a trained student is an error naming it.
    let bad = distill(&[
        "compare",
        "configs/tiny.yaml",
        "--set",
        &o,
        "--runs",
        "/no/such/run",
    ]);
    fails_with(&bad, &["--runs /no/such/run", "student"]);

    // export applies to the kept student.
    let e = distill(&[
        "export",
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
    ]);
    assert!(e.status.success(), "{}", text(&e));

    // Successive halving: 4 trials -> 2 after a quarter of the updates -> 1 after half.
    let out = tmp.path().join("halving");
    let o = sweep(&out, true);
    assert!(o.status.success(), "{}", text(&o));
    let v = read(&out);
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(
        trials.iter().filter(|t| t["stopped_early"] == true).count(),
        3
    );
    let full = trials.iter().find(|t| t["stopped_early"] == false).unwrap();
    let stopped = trials.iter().find(|t| t["stopped_early"] == true).unwrap();
    assert!(full["steps"].as_u64().unwrap() > stopped["steps"].as_u64().unwrap());
}

#[test]
fn glue_writes_the_table_and_submission_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["train.tsv", "dev.tsv"] {
        std::fs::copy(root().join("configs/tiny/data").join(f), data.join(f)).unwrap();
    }
    std::fs::write(
        data.join("test.tsv"),
        "index\tsentence\n0\tthe film was great .\n1\tdull and boring\n",
    )
    .unwrap();
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let tiny = std::fs::read_to_string(root().join("configs/tiny.yaml")).unwrap();
    std::fs::write(
        configs.join("sst2.yaml"),
        tiny.replace("configs/tiny/data", data.to_str().unwrap()),
    )
    .unwrap();
    std::fs::write(
        configs.join("rte.yaml"),
        tiny.replace("task: sst2", "task: rte")
            .replace("configs/tiny/data", "/nonexistent/RTE"),
    )
    .unwrap();
    let out = tmp.path().join("glue");
    let o = distill(&[
        "glue",
        "--tasks",
        "sst2,rte",
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("skipping rte"), "{t}");
    let md = std::fs::read_to_string(out.join("glue.md")).unwrap();
    assert!(
        md.contains("| sst2 | accuracy |") && md.contains("score"),
        "{md}"
    );
    let sub = std::fs::read_to_string(out.join("SST-2.tsv")).unwrap();
    let lines: Vec<&str> = sub.lines().collect();
    assert_eq!(lines[0], "index\tprediction");
    assert_eq!(lines.len(), 3);
    assert!(["0\t0", "0\t1"].contains(&lines[1]));
    assert!(
        out.join("sst2/export/model.safetensors").is_file(),
        "each task runs under OUT/<task>"
    );
}

#[test]
fn glue_keeps_finished_tasks_when_one_fails_and_reports_wnli_as_the_majority_class() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let tiny = std::fs::read_to_string(root().join("configs/tiny.yaml")).unwrap();
    std::fs::write(configs.join("sst2.yaml"), &tiny).unwrap();
    // RTE with a broken training file: the task fails, the suite goes on.
    let rte = tmp.path().join("RTE");
    std::fs::create_dir_all(&rte).unwrap();
    std::fs::write(rte.join("train.tsv"), "foo\tbar\n1\t2\n").unwrap();
    std::fs::write(
        configs.join("rte.yaml"),
        tiny.replace("task: sst2", "task: rte")
            .replace("configs/tiny/data", rte.to_str().unwrap()),
    )
    .unwrap();
    // WNLI: reported as the training set's majority class, as GLUE practice does.
    let wnli = tmp.path().join("WNLI");
    std::fs::create_dir_all(&wnli).unwrap();
    let h = "index\tsentence1\tsentence2\tlabel\n";
    std::fs::write(
        wnli.join("train.tsv"),
        format!("{h}0\ta\tb\t1\n1\tc\td\t1\n2\te\tf\t0\n"),
    )
    .unwrap();
    std::fs::write(
        wnli.join("dev.tsv"),
        format!("{h}0\ta\tb\t1\n1\tc\td\t0\n2\te\tf\t0\n3\tg\th\t0\n"),
    )
    .unwrap();
    std::fs::write(
        wnli.join("test.tsv"),
        "index\tsentence1\tsentence2\n0\ta\tb\n1\tc\td\n",
    )
    .unwrap();
    std::fs::write(
        configs.join("wnli.yaml"),
        tiny.replace("task: sst2", "task: wnli")
            .replace("configs/tiny/data", wnli.to_str().unwrap()),
    )
    .unwrap();
    let out = tmp.path().join("glue");
    let o = distill(&[
        "glue",
        "--tasks",
        "rte,sst2,wnli",
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    // --json: stdout is glue.json's content.
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(t.contains("1 of 3 tasks failed (rte)"), "{t}");
    let md = std::fs::read_to_string(out.join("glue.md")).unwrap();
    assert!(md.contains("| sst2 | accuracy |"), "{md}");
    assert!(md.contains("| rte | | failed | failed | |"), "{md}");
    assert!(
        md.contains("rte: failed:") && md.contains("RTE/train.tsv"),
        "{md}"
    );
    assert!(
        md.contains("| wnli | accuracy | 25.0 (majority) | 25.0 (majority) | |"),
        "{md}"
    );
    assert!(md.contains("mean of 2 tasks"), "{md}");
    let sub = std::fs::read_to_string(out.join("WNLI.tsv")).unwrap();
    assert_eq!(sub, "index\tprediction\n0\t1\n1\t1\n");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("glue.json")).unwrap()).unwrap();
    let status: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["failed", "done", "majority"]);
    assert_eq!(printed, json);
}

#[test]
fn mnli_reports_matched_and_mismatched_dev_accuracy() {
    // A tiny MNLI-shaped task: the tiny sentiment sentences as premise, a fixed hypothesis, 3 labels.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("MNLI");
    std::fs::create_dir_all(&data).unwrap();
    let header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n";
    let labels = ["contradiction", "entailment", "neutral"];
    let write = |name: &str, from: &str| {
        let src = std::fs::read_to_string(root().join("configs/tiny/data").join(from)).unwrap();
        let mut s = String::from(header);
        for (i, line) in src.lines().skip(1).enumerate() {
            let (text, label) = line.split_once('\t').unwrap();
            let gold = labels[(label.parse::<usize>().unwrap() + i % 2) % 3];
            s.push_str(&format!(
                "{i}\tp\tq\tg\t-\t-\t-\t-\t{text}\tit is good .\t{gold}\t{gold}\n"
            ));
        }
        std::fs::write(data.join(name), s).unwrap();
    };
    write("train.tsv", "train.tsv");
    write("dev_matched.tsv", "dev.tsv");
    write("dev_mismatched.tsv", "dev.tsv");
    // Test sets, and the AX diagnostic set beside the task folder, for the submission files.
    for f in ["test_matched.tsv", "test_mismatched.tsv"] {
        std::fs::write(
            data.join(f),
            format!("{header}0\tp\tq\tg\t-\t-\t-\t-\tgreat .\tit is good .\t-\t-\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(tmp.path().join("diagnostic")).unwrap();
    std::fs::write(
        tmp.path().join("diagnostic/diagnostic.tsv"),
        "index\tsentence1\tsentence2\n0\tA dull film .\tIt is good .\n1\tgreat\tgood\n",
    )
    .unwrap();
    let out = tmp.path().join("o");
    let o = distill(&[
        "run",
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
        "--set",
        "task=mnli",
        "--set",
        &format!("data.dir={}", data.display()),
        "--set",
        "train.epochs=1",
        "--set",
        "teacher.finetune.epochs=1",
        // The 3-class remap of the tiny data is not learnt in one epoch; this test is about dev sets.
        "--set",
        "preflight.allow_weak_teacher=true",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for who in ["teacher", "student"] {
        let v = &r[who]["dev"]["values"];
        let (m, mm) = (
            v["accuracy"].as_f64().unwrap(),
            v["accuracy_mm"].as_f64().unwrap(),
        );
        // Same file twice: the same accuracy, and the main score is their mean.
        assert_eq!(m, mm);
        assert!((r[who]["dev"]["main"].as_f64().unwrap() - m).abs() < 1e-12);
    }
    // `distill glue` on it writes MNLI-m, MNLI-mm and AX submission files (label names).
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let tiny = std::fs::read_to_string(root().join("configs/tiny.yaml")).unwrap();
    std::fs::write(
        configs.join("mnli.yaml"),
        tiny.replace("task: sst2", "task: mnli")
            .replace("configs/tiny/data", data.to_str().unwrap()),
    )
    .unwrap();
    let glue = tmp.path().join("glue");
    let g = distill(&[
        "glue",
        "--tasks",
        "mnli",
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        glue.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "teacher.finetune.epochs=1",
        "--set",
        "preflight.allow_weak_teacher=true",
    ]);
    assert!(g.status.success(), "{}", text(&g));
    let md = std::fs::read_to_string(glue.join("glue.md")).unwrap();
    assert!(md.contains("accuracy/accuracy_mm"), "{md}");
    for f in ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"] {
        let t = std::fs::read_to_string(glue.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}\n{}", text(&g)));
        let row = t.lines().nth(1).unwrap();
        assert!(
            ["contradiction", "entailment", "neutral"].contains(&row.split('\t').nth(1).unwrap()),
            "{f}: {row}"
        );
    }
}
