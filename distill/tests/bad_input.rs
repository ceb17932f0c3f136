//! "Feed it garbage — nothing lost": a corpus of bad inputs run through the real `distill` binary.
//!
//! Every case must exit with code 1, never panic, name what is wrong (the file and line, the YAML key
//! or the path), and leave an earlier good run untouched. Most cases run against a private copy of one
//! good `configs/tiny.yaml` run (made once per test binary, see `good_run`) and compare every file of
//! that copy before and after. A few robustness cases (a 1 MB sentence, CRLF files) must succeed.
//!
//! Cases that exposed bugs, since fixed, are marked `// (was ignored: fixed)`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(rel: &str) -> PathBuf {
    root().join("configs/tiny").join(rel)
}

fn tiny_yaml() -> String {
    std::fs::read_to_string(root().join("configs/tiny.yaml")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let dst = to.join(e.file_name());
        if ft.is_dir() {
            copy_dir(&e.path(), &dst);
        } else if ft.is_file() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// One good run of configs/tiny.yaml (all stages), made once; cases work on copies of it.
fn good_run() -> &'static Path {
    static GOOD: OnceLock<PathBuf> = OnceLock::new();
    GOOD.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_input_good_run");
        let _ = std::fs::remove_dir_all(&dir);
        let o = Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args(["run", "configs/tiny.yaml", "--set"])
            .arg(format!("output_dir={}", dir.display()))
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "the good run failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
}

/// A case's private folder.
struct Sb {
    tmp: tempfile::TempDir,
}

impl Sb {
    fn new() -> Self {
        Sb {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }

    /// Writes a file (parents created); returns its path.
    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        self.s(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.p(rel)).unwrap()
    }

    fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let text = String::from_utf8(self.read(rel)).unwrap();
        self.write(rel, f(text));
    }

    fn edit_bytes(&self, rel: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
        let b = self.read(rel);
        self.write(rel, f(b));
    }

    fn remove(&self, rel: &str) {
        let p = self.p(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    /// A copy of the tiny data at `data/`; returns the `data.dir=…` override.
    fn data(&self) -> String {
        copy_dir(&fixture("data"), &self.p("data"));
        format!("data.dir={}", self.s("data"))
    }

    /// A copy of the tiny teacher at `teacher/`; returns the `teacher.model=…` override.
    fn teacher(&self) -> String {
        copy_dir(&fixture("teacher"), &self.p("teacher"));
        format!("teacher.model={}", self.s("teacher"))
    }

    /// A copy of the good run at `out/`.
    fn good(&self) -> PathBuf {
        let out = self.p("out");
        if !out.exists() {
            copy_dir(good_run(), &out);
        }
        out
    }

    /// `ln -s /dev/full REL` (a file whose every write fails with ENOSPC).
    fn full(&self, rel: &str) {
        let p = self.p(rel);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink("/dev/full", p).unwrap();
    }
}

/// Replaces line `n` (1-based) of `text`.
fn replace_line(text: &str, n: usize, new: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[n - 1] = new.to_string();
    lines.join("\n") + "\n"
}

/// Which earlier outputs must survive the failed command: every regular file under `dir`, byte for
/// byte, except files or folders named in `skip`.
struct Keep {
    dir: PathBuf,
    skip: Vec<&'static str>,
}

struct Case {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    expect: Vec<String>,
    reject: Vec<String>,
    keep: Option<Keep>,
    succeed: bool,
}

impl Case {
    fn new(args: &[&str]) -> Self {
        Case {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cwd: None,
            expect: Vec::new(),
            reject: Vec::new(),
            keep: None,
            succeed: false,
        }
    }
    fn expect(mut self, needles: &[&str]) -> Self {
        self.expect.extend(needles.iter().map(|s| s.to_string()));
        self
    }
    /// Substrings the output must not contain.
    fn reject(mut self, needles: &[&str]) -> Self {
        self.reject.extend(needles.iter().map(|s| s.to_string()));
        self
    }
    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    fn cwd(mut self, dir: PathBuf) -> Self {
        self.cwd = Some(dir);
        self
    }
    fn keep(mut self, dir: PathBuf) -> Self {
        self.keep = Some(Keep {
            dir,
            skip: Vec::new(),
        });
        self
    }
    /// Files the command may legitimately rewrite (before it fails) are not compared.
    fn except(mut self, names: &[&'static str]) -> Self {
        self.keep.as_mut().unwrap().skip.extend_from_slice(names);
        self
    }
    /// For cases that reach the student stage with a changed config: `stamp.json` (which inputs `last/`
    /// belongs to), `done.json` (training finished for the current stamp) and the `last/` resume
    /// checkpoints are rightly reset before retraining; the models, exports, targets and reports must
    /// stay untouched (the `stamp_*` tests check that a failed retrain is not taken as fresh).
    fn artifacts_only(self) -> Self {
        self.except(&["stamp.json", "done.json", "last"])
    }
    fn succeed(mut self) -> Self {
        self.succeed = true;
        self
    }
}

/// `distill SUB CONFIG --set output_dir=OUT --set S…` with OUT a copy of the good run that must survive.
fn with_config(sb: &Sb, sub: &str, config: &str, sets: &[&str]) -> Case {
    let out = sb.good();
    let o = format!("output_dir={}", out.display());
    let mut args = vec![sub, config, "--set", &o];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    Case::new(&args).keep(out)
}

/// `distill SUB configs/tiny.yaml …` on a copy of the good run.
fn on_good(sb: &Sb, sub: &str, sets: &[&str]) -> Case {
    with_config(sb, sub, "configs/tiny.yaml", sets)
}

/// `distill SUB configs/tiny.yaml …` into an output folder that does not exist yet.
fn on_fresh(sb: &Sb, sub: &str, sets: &[&str]) -> Case {
    let o = format!("output_dir={}", sb.s("fresh"));
    let mut args = vec![sub, "configs/tiny.yaml", "--set", &o];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    Case::new(&args)
}

fn snapshot(dir: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let ft = e.file_type().unwrap(); // does not follow symlinks (/dev/full links are skipped)
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            if rel
                .components()
                .any(|c| skip.iter().any(|s| c.as_os_str() == *s))
            {
                continue;
            }
            if ft.is_dir() {
                walk(base, &path, skip, out);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn check(name: &str, c: Case) {
    let before = c.keep.as_ref().map(|k| snapshot(&k.dir, &k.skip));
    if let (Some(k), Some(snap)) = (&c.keep, &before) {
        assert!(
            !snap.is_empty(),
            "[{name}] nothing to keep in {}",
            k.dir.display()
        );
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.env("DISTILL_CACHE", "off");
    cmd.args(&c.args)
        .current_dir(c.cwd.clone().unwrap_or_else(root))
        .env("NO_COLOR", "1");
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let full = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let t = tail(&full, 6000);
    let args = c.args.join(" ");
    let args = tail(&args, 600);
    assert!(
        !full.contains("panicked"),
        "[{name}] panic: distill {args}\n{t}"
    );
    if c.succeed {
        assert!(
            o.status.success(),
            "[{name}] expected success: distill {args}\n{t}"
        );
    } else {
        assert_eq!(
            o.status.code(),
            Some(1),
            "[{name}] expected exit code 1: distill {args}\n{t}"
        );
    }
    for n in &c.expect {
        assert!(
            full.contains(n.as_str()),
            "[{name}] the output lacks `{n}`: distill {args}\n{t}"
        );
    }
    for n in &c.reject {
        assert!(
            !full.contains(n.as_str()),
            "[{name}] the output contains `{n}`: distill {args}\n{t}"
        );
    }
    if let (Some(k), Some(snap)) = (&c.keep, before) {
        let after = snapshot(&k.dir, &k.skip);
        let changed: Vec<String> = snap
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(*v))
            .map(|(k, _)| {
                let state = if after.contains_key(k) {
                    "changed"
                } else {
                    "deleted"
                };
                format!("{} ({state})", k.display())
            })
            .collect();
        assert!(
            changed.is_empty(),
            "[{name}] earlier good outputs were not left untouched: {changed:?}\ndistill {args}\n{t}"
        );
    }
}

/// One `#[test]` per case (so a case can carry `#[ignore = "bug: …"]`), and the list of all names.
macro_rules! cases {
    ($( $(#[$attr:meta])* $name:ident: |$sb:ident| $body:expr; )*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                let $sb = Sb::new();
                let case: Case = $body;
                check(stringify!($name), case);
            }
        )*
        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

#[test]
fn the_corpus_has_at_least_50_cases() {
    assert!(CASES.len() >= 50, "{} cases", CASES.len());
    let mut names = CASES.to_vec();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CASES.len());
}

// ---------- data sets written by the cases ----------

fn stsb_text(bad: Option<(usize, &str)>) -> String {
    let words = [
        "a man plays",
        "the cat sleeps",
        "two dogs run",
        "a woman sings",
        "kids laugh",
    ];
    let mut s = String::from(
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
    );
    for i in 0..30 {
        let score = match bad {
            Some((line, v)) if line == i + 2 => v.to_string(),
            _ => format!("{:.1}", (i % 6) as f32),
        };
        s += &format!(
            "{i}\tmain-captions\tMSRvid\t2012test\t{i}\tnone\tnone\t{}\t{}\t{score}\n",
            words[i % 5],
            words[(i / 2) % 5]
        );
    }
    s
}

fn jsonl_from_tsv(tsv: &str) -> String {
    tsv.lines()
        .skip(1)
        .map(|l| {
            let (s, y) = l.split_once('\t').unwrap();
            format!("{{\"text\": {:?}, \"label\": {:?}}}\n", s, y)
        })
        .collect()
}

fn tiny_train() -> String {
    std::fs::read_to_string(fixture("data/train.tsv")).unwrap()
}

/// `task=custom` plus `data.dir` and a `data.custom` mapping (YAML flow syntax).
fn custom(sb: &Sb, custom: &str) -> [String; 3] {
    [
        "task=custom".into(),
        format!("data.dir={}", sb.s("c")),
        format!("data.custom={custom}"),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const JSONL: &str = "{format: jsonl, train_file: train.jsonl, dev_file: dev.jsonl, text_a: text, label: label, labels: ['0', '1']}";

cases! {
    // ---------------- broken YAML ----------------
    yaml_tab_indentation: |sb| {
        let c = sb.write("tab.yaml", tiny_yaml().replace("  max_seq_len", "\tmax_seq_len"));
        with_config(&sb, "run", &c, &[]).expect(&["tab.yaml", "invalid YAML", "tab", "line 9"])
    };
    yaml_unclosed_flow_mapping: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("weight_decay: 0.01}", "weight_decay: 0.01"));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "invalid YAML", "line"])
    };
    yaml_unclosed_sequence: |sb| {
        let c = sb.write("c.yaml", "task: sst2\noutput_dir: [unclosed\ndata: {dir: x}\n");
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "invalid YAML", "line"])
    };
    yaml_unclosed_quote: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("task: sst2", "task: \"sst2"));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "invalid YAML", "line"])
    };
    yaml_duplicate_top_level_key: |sb| {
        let c = sb.write("c.yaml", format!("{}task: cola\n", tiny_yaml()));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "duplicate", "task"])
    };
    yaml_duplicate_nested_key: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("  max_seq_len: 32", "  max_seq_len: 32\n  max_seq_len: 64"));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "duplicate", "max_seq_len"])
    };
    yaml_list_where_a_map_is_expected: |sb| {
        let c = sb.write(
            "c.yaml",
            tiny_yaml().replace("data:\n  dir: configs/tiny/data\n  max_seq_len: 32", "data: [configs/tiny/data, 32]"),
        );
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "data:", "sequence"])
    };
    yaml_whole_document_is_a_list: |sb| {
        let c = sb.write("c.yaml", "- task: sst2\n- output_dir: x\n");
        Case::new(&["run", &c]).expect(&["c.yaml", "top level must be a mapping"])
    };
    yaml_whole_document_is_a_string: |sb| {
        let c = sb.write("c.yaml", "just some words\n");
        Case::new(&["run", &c]).expect(&["c.yaml", "top level must be a mapping"])
    };
    // (was ignored: fixed)
    yaml_whole_document_is_a_list_with_set: |sb| {
        let c = sb.write("c.yaml", "- task: sst2\n- output_dir: x\n");
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml"])
    };
    yaml_bad_indentation: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("  max_seq_len: 32", "      max_seq_len: 32"));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "line"])
    };
    yaml_only_comments: |sb| {
        let c = sb.write("c.yaml", "# nothing here\n\n");
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "empty"])
    };
    yaml_required_key_missing: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("task: sst2\n", ""));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "missing field `task`"])
    };
    yaml_nested_required_key_missing: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("  dir: configs/tiny/data\n", ""));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "data", "give `dir`", "or `hub`"])
    };
    config_not_utf8: |sb| {
        let mut bytes = tiny_yaml().into_bytes();
        bytes.extend_from_slice(b"# caf\xe9 \xff\n");
        let c = sb.write("latin1.yaml", bytes);
        // FILE:LINE:COLUMN of the first bad byte (after `# caf`), as an editor would point at it.
        let at = format!("latin1.yaml:{}:6: not valid UTF-8 (byte 0xE9", tiny_yaml().lines().count() + 1);
        with_config(&sb, "run", &c, &[]).expect(&[&at])
    };
    config_file_missing: |sb| {
        let c = sb.s("no-such.yaml");
        with_config(&sb, "run", &c, &[]).expect(&["no-such.yaml", "No such file"])
    };
    config_is_a_directory: |sb| {
        std::fs::create_dir_all(sb.p("adir")).unwrap();
        let c = sb.s("adir");
        with_config(&sb, "train", &c, &[]).expect(&[&c, "directory"])
    };

    // ---------------- unknown and misspelled keys ----------------
    unknown_key_top_level: |sb| on_good(&sb, "run", &["epochs=3"]).expect(&["unknown field `epochs`"]);
    unknown_key_in_data: |sb| on_good(&sb, "run", &["data.max_len=64"]).expect(&["data.max_len: unknown field `max_len`", "max_seq_len"]);
    unknown_key_in_teacher: |sb| on_good(&sb, "run", &["teacher.name=bert"]).expect(&["teacher.name: unknown field `name`"]);
    unknown_key_in_teacher_finetune: |sb| on_good(&sb, "run", &["teacher.finetune.lr=0.1"]).expect(&["teacher.finetune.lr: unknown field `lr`"]);
    unknown_key_in_student: |sb| on_good(&sb, "run", &["student.layers=2"]).expect(&["student.layers: unknown field `layers`"]);
    unknown_key_in_distill: |sb| on_good(&sb, "run", &["distill.alpha=0.5"]).expect(&["distill.alpha: unknown field `alpha`", "alpha_kd"]);
    unknown_key_in_train: |sb| on_good(&sb, "run", &["train.steps=10"]).expect(&["train.steps: unknown field `steps`"]);
    unknown_key_in_data_custom: |sb| {
        let c = custom(&sb, "{train_file: a, dev_file: b, text_a: 0, label: 1, delimiter: ';'}");
        on_good(&sb, "run", &refs(&c)).expect(&["data.custom.delimiter: unknown field `delimiter`"])
    };
    misspelled_max_seq_length: |sb| on_good(&sb, "run", &["data.max_seq_length=64"]).expect(&["unknown field `max_seq_length`", "max_seq_len"]);
    misspelled_learning_rate: |sb| on_good(&sb, "run", &["train.learning-rate=0.001"]).expect(&["train.learning-rate: unknown field `learning-rate`", "learning_rate"]);
    misspelled_section: |sb| on_good(&sb, "run", &["studnet.hidden_size=64"]).expect(&["unknown field `studnet`"]);
    misspelled_key_in_file: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("temperature:", "temprature:"));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "distill.temprature: unknown field `temprature`"])
    };

    // ---------------- wrong types ----------------
    string_for_a_number: |sb| on_good(&sb, "run", &["data.max_seq_len=long"]).expect(&["data.max_seq_len", "invalid type: string"]);
    map_for_a_string: |sb| on_good(&sb, "run", &["task={name: sst2}"]).expect(&["task: invalid type: map"]);
    map_for_a_path: |sb| on_good(&sb, "run", &["teacher.model={path: x}"]).expect(&["teacher.model: invalid type: map"]);
    list_for_a_path: |sb| on_good(&sb, "run", &["data.dir=[a, b]"]).expect(&["data.dir: invalid type: sequence"]);
    number_for_a_section: |sb| on_good(&sb, "run", &["distill=3"])
        .expect(&["--set distill=3: `distill` is a section whose keys are set one at a time, e.g. `--set distill.alpha_kd=3`", "temperature"])
        .reject(&["expected struct"]);
    section_set_as_one_value_names_the_set: |sb| on_good(&sb, "run", &["train=5"])
        .expect(&["--set train=5: `train` is a section whose keys are set one at a time, e.g. `--set train.epochs=5`"])
        .reject(&["Partial", "tiny.yaml"]);
    section_written_as_one_value_in_the_file: |sb| {
        let t = tiny_yaml();
        let yaml: Vec<&str> = t.lines().map(|l| if l.starts_with("train:") { "train: 5" } else { l }).collect();
        let c = sb.write("c.yaml", yaml.join("\n") + "\n");
        with_config(&sb, "run", &c, &[])
            .expect(&["c.yaml: train: must be a section of keys (", "epochs", "not integer `5`"])
            .reject(&["Partial"])
    };
    set_of_a_bad_value_names_the_set: |sb| on_good(&sb, "run", &["train.epochs=many"])
        .expect(&["--set train.epochs=many: train.epochs: invalid type: string"])
        .reject(&["tiny.yaml"]);
    negative_batch_size: |sb| on_good(&sb, "run", &["train.batch_size=-4"]).expect(&["train.batch_size", "-4"]);
    negative_seed: |sb| on_good(&sb, "run", &["seed=-1"]).expect(&["seed", "-1"]);
    float_for_an_integer: |sb| on_good(&sb, "run", &["train.epochs=2.5"]).expect(&["train.epochs", "2.5"]);
    integer_too_large_for_usize: |sb| on_good(&sb, "run", &["data.max_seq_len=99999999999999999999999"]).expect(&["data.max_seq_len"]);
    string_for_a_bool: |sb| on_good(&sb, "run", &["teacher.allow_pickle=perhaps"]).expect(&["teacher.allow_pickle", "invalid type"]);
    string_for_a_list: |sb| on_good(&sb, "run", &["teacher.hidden_layers=all"]).expect(&["teacher.hidden_layers", "invalid type"]);
    negative_layer_index: |sb| on_good(&sb, "run", &["teacher.hidden_layers=[1, -1]"]).expect(&["teacher.hidden_layers[1]"]);
    unknown_pooling: |sb| on_good(&sb, "run", &["teacher.pooling=max"]).expect(&["teacher.pooling", "unknown variant `max`"]);
    unknown_custom_format: |sb| {
        let c = custom(&sb, "{format: xml, train_file: a, dev_file: b, text_a: 0, label: 1}");
        on_good(&sb, "run", &refs(&c)).expect(&["data.custom.format", "unknown variant `xml`"])
    };
    unknown_custom_metric: |sb| {
        let c = custom(&sb, "{metric: bleu, train_file: a, dev_file: b, text_a: 0, label: 1}");
        on_good(&sb, "run", &refs(&c)).expect(&["data.custom.metric", "unknown variant `bleu`"])
    };

    // ---------------- out-of-range values ----------------
    alpha_kd_negative: |sb| on_good(&sb, "run", &["distill.alpha_kd=-0.1"]).expect(&["distill.alpha_kd", "[0, 1]"]);
    alpha_kd_nan: |sb| on_good(&sb, "run", &["distill.alpha_kd=.nan"]).expect(&["distill.alpha_kd", "NaN"]);
    temperature_zero: |sb| on_good(&sb, "run", &["distill.temperature=0"]).expect(&["distill.temperature", "positive"]);
    temperature_infinite: |sb| on_good(&sb, "run", &["distill.temperature=.inf"]).expect(&["distill.temperature"]);
    warmup_ratio_one: |sb| on_good(&sb, "run", &["train.warmup_ratio=1"]).expect(&["train.warmup_ratio", "[0, 1)"]);
    finetune_warmup_ratio_negative: |sb| on_good(&sb, "run", &["teacher.finetune.warmup_ratio=-0.5"]).expect(&["teacher.finetune.warmup_ratio"]);
    learning_rate_zero: |sb| on_good(&sb, "run", &["train.learning_rate=0"]).expect(&["train.learning_rate", "(0, 1)"]);
    epochs_zero: |sb| on_good(&sb, "run", &["train.epochs=0"]).expect(&["train.epochs", "positive"]);
    batch_size_zero: |sb| on_good(&sb, "run", &["train.batch_size=0"]).expect(&["train.batch_size", "positive"]);
    teacher_batch_size_zero: |sb| on_good(&sb, "run", &["teacher.batch_size=0"]).expect(&["teacher.batch_size", "positive"]);
    weight_decay_negative: |sb| on_good(&sb, "run", &["train.weight_decay=-0.01"]).expect(&["train.weight_decay"]);
    max_grad_norm_negative: |sb| on_good(&sb, "run", &["train.max_grad_norm=-1"]).expect(&["train.max_grad_norm"]);
    max_seq_len_zero: |sb| on_good(&sb, "run", &["data.max_seq_len=0"]).expect(&["data.max_seq_len", "between 8 and 4096"]);
    max_seq_len_huge: |sb| on_good(&sb, "run", &["data.max_seq_len=1000000000000"]).expect(&["data.max_seq_len", "between 8 and 4096"]);
    student_hidden_size_zero: |sb| on_good(&sb, "run", &["student.hidden_size=0"]).expect(&["student.hidden_size", "between 1 and"]);
    student_num_layers_zero: |sb| on_good(&sb, "run", &["student.num_layers=0"]).expect(&["student.num_layers", "between 1 and"]);
    student_num_heads_zero: |sb| on_good(&sb, "run", &["student.num_heads=0"]).expect(&["student.num_heads", "between 1 and"]);
    student_intermediate_size_zero: |sb| on_good(&sb, "run", &["student.intermediate_size=0"]).expect(&["student.intermediate_size"]);
    student_positions_zero: |sb| on_good(&sb, "run", &["student.max_position_embeddings=0"]).expect(&["student.max_position_embeddings"]);
    student_dropout_one: |sb| on_good(&sb, "run", &["student.dropout=1"]).expect(&["student.dropout", "[0, 1)"]);
    student_dropout_negative: |sb| on_good(&sb, "run", &["student.dropout=-0.1"]).expect(&["student.dropout"]);
    student_heads_do_not_divide_hidden: |sb| on_good(&sb, "run", &["student.num_heads=5"])
        .expect(&["student", "hidden_size 32", "num_attention_heads 5"])
        .artifacts_only();
    student_unknown_model_type: |sb| on_good(&sb, "run", &["student.model_type=gpt2"]).expect(&["student.model_type", "gpt2"]);
    unknown_device: |sb| on_good(&sb, "run", &["device=tpu:0"]).expect(&["device", "tpu:0"]);
    cuda_on_a_cpu_build: |sb| on_good(&sb, "run", &["device=cuda:7"]).expect(&["device", "cuda:7"]);
    // (was ignored: fixed)
    student_hidden_size_huge: |sb| on_good(&sb, "train", &["student.hidden_size=4000000000"])
        .expect(&["student.hidden_size"])
        .artifacts_only();
    // (was ignored: fixed)
    student_positions_overflow: |sb| on_good(&sb, "train", &["student.max_position_embeddings=18446744073709551615"])
        .expect(&["student.max_position_embeddings"])
        .artifacts_only();

    // ---------------- distillation terms ----------------
    term_unknown_kind: |sb| on_good(&sb, "run", &["distill.terms=[{kind: kl}]"]).expect(&["distill.terms[0].kind", "unknown variant `kl`", "hidden_mse"]);
    term_missing_kind: |sb| on_good(&sb, "run", &["distill.terms=[{weight: 1}]"]).expect(&["distill.terms[0]", "missing field `kind`"]);
    term_unknown_key: |sb| on_good(&sb, "run", &["distill.terms=[{kind: kd, temp: 2}]"]).expect(&["distill.terms[0].temp: unknown field `temp`", "temperature"]);
    term_negative_weight: |sb| on_good(&sb, "run", &["distill.terms=[{kind: ce}, {kind: kd, weight: -0.5}]"]).expect(&["distill.terms[1].weight", "non-negative"]);
    term_weight_nan: |sb| on_good(&sb, "run", &["distill.terms=[{kind: ce, weight: .nan}]"]).expect(&["distill.terms[0].weight", "NaN"]);
    term_all_weights_zero: |sb| on_good(&sb, "run", &["distill.terms=[{kind: ce, weight: 0}]"]).expect(&["distill.terms", "every weight is 0"]);
    term_list_empty: |sb| on_good(&sb, "run", &["distill.terms=[]"]).expect(&["distill.terms", "at least one term"]);
    term_key_of_another_kind: |sb| on_good(&sb, "run", &["distill.terms=[{kind: ce, relation_heads: 4}]"]).expect(&["distill.terms[0].relation_heads", "not used by a `ce` term"]);
    term_unknown_schedule: |sb| on_good(&sb, "run", &["distill.terms=[{kind: ce, schedule: cosine}]"]).expect(&["distill.terms[0].schedule", "unknown variant `cosine`", "linear_growth"]);
    term_unknown_temperature_schedule: |sb| on_good(&sb, "run", &["distill.temperature_schedule=annealed"]).expect(&["distill.temperature_schedule", "unknown variant `annealed`", "flsw"]);
    term_unknown_relation: |sb| on_good(&sb, "run", &["distill.terms=[{kind: minilm_relations, relations: [qk]}]"]).expect(&["distill.terms[0].relations[0]", "unknown variant `qk`"]);
    term_layer_pair_of_three: |sb| on_good(&sb, "run", &["distill.terms=[{kind: hidden_mse, layer_map: [[0, 1, 2]]}]"]).expect(&["distill.terms[0].layer_map[0]", "invalid length"]);
    term_projection_lr_zero: |sb| on_good(&sb, "run", &["distill.projection_lr=0"]).expect(&["distill.projection_lr", "(0, 1)"]);
    term_teacher_layer_out_of_range: |sb| on_good(&sb, "train", &["distill.terms=[{kind: hidden_mse, layer_map: [[0, 0], [2, 3]]}]"])
        .expect(&["distill.terms[0].layer_map[1]", "teacher layer 3 does not exist", "0..=2"]);
    term_student_layer_out_of_range: |sb| on_good(&sb, "train", &["distill.terms=[{kind: minilm_relations, student_layer: 5}]"])
        .expect(&["distill.terms[0].student_layer", "student layer 5 does not exist"]);
    term_attention_of_the_embeddings: |sb| on_good(&sb, "train", &["distill.terms=[{kind: attention_mse, layer_map: [[0, 0]]}]"])
        .expect(&["distill.terms[0].layer_map[0]", "no attention"]);
    term_attention_head_counts_differ: |sb| on_good(&sb, "train", &["distill.terms=[{kind: attention_mse}]", "student.num_heads=2"])
        .expect(&["distill.terms[0]", "attention_mse", "2 heads and the teacher 4", "student.num_heads"]);
    term_relation_heads_do_not_divide: |sb| on_good(&sb, "train", &["distill.terms=[{kind: minilm_relations, relation_heads: 3}]"])
        .expect(&["distill.terms[0].relation_heads", "3 does not divide", "hidden size 32"]);
    term_default_relation_heads_do_not_divide: |sb| on_good(&sb, "train", &["distill.terms=[{kind: minilm_relations}]", "student.hidden_size=18", "student.num_heads=2"])
        .expect(&["distill.terms[0].relation_heads", "teacher's head count", "hidden size 18"]);
    // (A student with another tokenizer is no longer refused: cli.rs trains one, aligned by words.)

    // ---------------- tasks ----------------
    unknown_task: |sb| on_good(&sb, "run", &["task=sst3"]).expect(&["task: unknown task `sst3`", "sst2"]);
    task_name_in_capitals: |sb| on_good(&sb, "run", &["task=SST2"]).expect(&["task", "`SST2`"]);
    custom_task_without_data_custom: |sb| on_good(&sb, "run", &["task=custom"]).expect(&["data.custom", "required"]);
    data_custom_on_a_glue_task: |sb| on_good(&sb, "run", &["data.custom={train_file: a, dev_file: b, text_a: 0, label: 1}"])
        .expect(&["data.custom", "only allowed when task is `custom`"]);
    custom_task_missing_required_field: |sb| {
        let c = custom(&sb, "{train_file: a, dev_file: b, text_a: 0}");
        on_good(&sb, "run", &refs(&c)).expect(&["data.custom", "missing field `label`"])
    };
    mnli_without_dev_matched: |sb| {
        sb.write("m/train.tsv", "sentence1\tsentence2\tgold_label\na cat\ta dog\tneutral\n");
        sb.write("m/dev.tsv", "sentence1\tsentence2\tgold_label\na cat\ta dog\tneutral\n");
        let d = format!("data.dir={}", sb.s("m"));
        on_good(&sb, "run", &["task=mnli", &d]).expect(&[&sb.s("m/dev_matched.tsv"), "No such file"])
    };
    cola_file_without_cola_columns: |sb| {
        let d = sb.data();
        on_good(&sb, "run", &["task=cola", &d]).expect(&[&format!("{}:1", sb.s("data/train.tsv")), "expected at least 4 columns, found 2"])
    };
    glue_header_of_another_task: |sb| {
        let d = sb.data();
        on_good(&sb, "run", &["task=qnli", &d]).expect(&[&format!("{}:1", sb.s("data/train.tsv")), "no column `question`"])
    };

    // ---------------- environment variables and --set ----------------
    env_var_not_set: |sb| on_good(&sb, "run", &["data.dir=${DISTILL_BAD_INPUT_UNSET}/glue"])
        .expect(&["data.dir", "DISTILL_BAD_INPUT_UNSET", "not set"]);
    env_var_not_set_in_file: |sb| {
        let c = sb.write("c.yaml", tiny_yaml().replace("model: configs/tiny/teacher", "model: ${DISTILL_BAD_INPUT_UNSET}"));
        with_config(&sb, "run", &c, &[]).expect(&["c.yaml", "teacher.model", "DISTILL_BAD_INPUT_UNSET"])
    };
    env_var_unclosed: |sb| on_good(&sb, "run", &["data.dir=${GLUE_DIR"]).expect(&["data.dir", "unclosed"]);
    set_without_equals: |sb| on_good(&sb, "run", &["train.epochs"]).expect(&["--set train.epochs", "key.path=value"]);
    set_with_empty_key: |sb| on_good(&sb, "run", &["=3"]).expect(&["--set =3", "empty key segment"]);
    set_with_empty_segment: |sb| on_good(&sb, "run", &["train..epochs=3"]).expect(&["train..epochs", "empty key segment"]);
    set_below_a_scalar: |sb| on_good(&sb, "run", &["task.name=sst2"]).expect(&["--set task.name=sst2", "`task` is not a mapping"]);

    // ---------------- missing files ----------------
    data_dir_missing: |sb| {
        let d = format!("data.dir={}", sb.s("no-data"));
        on_good(&sb, "run", &[&d]).expect(&["data.dir", &sb.s("no-data/train.tsv"), "No such file"])
    };
    data_dir_is_a_file: |sb| {
        let f = sb.write("plain-file", "x");
        on_good(&sb, "run", &[&format!("data.dir={f}")]).expect(&["data.dir", &f])
    };
    train_tsv_missing: |sb| {
        let d = sb.data();
        sb.remove("data/train.tsv");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/train.tsv"), "No such file"])
    };
    dev_tsv_missing: |sb| {
        let d = sb.data();
        sb.remove("data/dev.tsv");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/dev.tsv"), "No such file"])
    };
    teacher_folder_missing: |sb| {
        let t = format!("teacher.model={}", sb.s("no-teacher"));
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("no-teacher"), "not found"])
    };
    teacher_config_json_missing: |sb| {
        let t = sb.teacher();
        sb.remove("teacher/config.json");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher"), "no config.json"])
    };
    teacher_weights_missing: |sb| {
        let t = sb.teacher();
        sb.remove("teacher/model.safetensors");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher"), "no model.safetensors"])
    };
    teacher_tokenizer_missing: |sb| {
        let t = sb.teacher();
        sb.remove("teacher/vocab.txt");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/config.json"), "no tokenizer.json or vocab.txt"])
    };
    teacher_hub_id_offline_not_cached: |sb| {
        let cache = sb.s("hub-cache");
        on_good(&sb, "run", &["teacher.model=nobody/no-such-model"])
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HUB_CACHE", &cache)
            .expect(&["teacher.model", "hub id nobody/no-such-model (revision main)", "HF_HUB_OFFLINE"])
    };
    student_tokenizer_missing: |sb| {
        let v = format!("student.tokenizer={}", sb.s("no-vocab.txt"));
        on_good(&sb, "run", &[&v]).expect(&["student.tokenizer", &sb.s("no-vocab.txt"), "not found"])
    };
    student_init_folder_missing: |sb| {
        let i = format!("student.init={}", sb.s("no-init"));
        on_good(&sb, "run", &[&i]).expect(&["student.init", &sb.s("no-init")]).artifacts_only()
    };

    // ---------------- empty data sets ----------------
    train_header_only: |sb| {
        let d = sb.data();
        sb.write("data/train.tsv", "sentence\tlabel\n");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/train.tsv"), "no examples"])
    };
    train_zero_bytes: |sb| {
        let d = sb.data();
        sb.write("data/train.tsv", "");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/train.tsv"), "empty file"])
    };
    train_header_and_blank_lines: |sb| {
        let d = sb.data();
        sb.write("data/train.tsv", "sentence\tlabel\n\n\r\n\n");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/train.tsv"), "no examples"])
    };
    dev_header_only: |sb| {
        let d = sb.data();
        sb.write("data/dev.tsv", "sentence\tlabel\n");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/dev.tsv"), "no examples"])
    };
    dev_zero_bytes: |sb| {
        let d = sb.data();
        sb.write("data/dev.tsv", "");
        on_good(&sb, "run", &[&d]).expect(&[&sb.s("data/dev.tsv"), "empty file"])
    };

    // ---------------- malformed rows ----------------
    too_few_columns_at_line_2: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 2, "a sentence without its label"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:2:", sb.s("data/train.tsv")), "expected at least 2 columns, found 1"])
    };
    too_few_columns_at_line_120: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 120, "no label here"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:120:", sb.s("data/train.tsv")), "columns"])
    };
    too_few_columns_at_the_last_line: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 241, "no label here"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:241:", sb.s("data/train.tsv")), "columns"])
    };
    too_few_columns_in_dev: |sb| {
        let d = sb.data();
        sb.edit("data/dev.tsv", |t| replace_line(&t, 5, "no label here"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:5:", sb.s("data/dev.tsv")), "columns"])
    };
    header_without_the_label_column: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 1, "sentence\tlabels"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:1:", sb.s("data/train.tsv")), "no column `label`"])
    };
    label_outside_the_label_set: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 10, "a fine film\t2"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:10:", sb.s("data/train.tsv")), "label `2` is not one of"])
    };
    label_name_instead_of_id_in_dev: |sb| {
        let d = sb.data();
        sb.edit("data/dev.tsv", |t| replace_line(&t, 5, "a fine film\tpositive"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:5:", sb.s("data/dev.tsv")), "label `positive`"])
    };
    empty_label: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 3, "a fine film\t"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:3:", sb.s("data/train.tsv")), "label `` is not one of"])
    };
    float_label_for_a_classification_task: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| replace_line(&t, 4, "a fine film\t1.0"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:4:", sb.s("data/train.tsv")), "label `1.0`"])
    };
    stsb_score_not_a_number: |sb| {
        sb.write("s/train.tsv", stsb_text(Some((7, "high"))));
        sb.write("s/dev.tsv", stsb_text(None));
        let d = format!("data.dir={}", sb.s("s"));
        on_good(&sb, "run", &["task=stsb", &d]).expect(&[&format!("{}:7:", sb.s("s/train.tsv")), "score `high` is not a number"])
    };
    stsb_score_nan: |sb| {
        sb.write("s/train.tsv", stsb_text(None));
        sb.write("s/dev.tsv", stsb_text(Some((3, "NaN"))));
        let d = format!("data.dir={}", sb.s("s"));
        on_good(&sb, "run", &["task=stsb", &d]).expect(&[&format!("{}:3:", sb.s("s/dev.tsv")), "not finite"])
    };
    stsb_score_infinite: |sb| {
        sb.write("s/train.tsv", stsb_text(Some((12, "inf"))));
        sb.write("s/dev.tsv", stsb_text(None));
        let d = format!("data.dir={}", sb.s("s"));
        on_good(&sb, "run", &["task=stsb", &d]).expect(&[&format!("{}:12:", sb.s("s/train.tsv")), "not finite"])
    };
    stsb_score_empty: |sb| {
        sb.write("s/train.tsv", stsb_text(Some((31, ""))));
        sb.write("s/dev.tsv", stsb_text(None));
        let d = format!("data.dir={}", sb.s("s"));
        on_good(&sb, "run", &["task=stsb", &d]).expect(&[&format!("{}:31:", sb.s("s/train.tsv")), "score `` is not a number"])
    };
    non_utf8_bytes_in_a_row: |sb| {
        let d = sb.data();
        sb.edit_bytes("data/train.tsv", |b| {
            let t = String::from_utf8(b).unwrap();
            let mut lines: Vec<Vec<u8>> = t.lines().map(|l| l.as_bytes().to_vec()).collect();
            lines[6] = b"caf\xe9 cr\xe8me is good\t1".to_vec();
            lines.join(&b'\n')
        });
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:7:", sb.s("data/train.tsv")), "UTF-8"])
    };
    non_utf8_bytes_in_the_header: |sb| {
        let d = sb.data();
        sb.edit_bytes("data/dev.tsv", |mut b| {
            b.splice(0..0, b"\xff\xfe".iter().copied());
            b
        });
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:1:", sb.s("data/dev.tsv")), "UTF-8"])
    };
    utf16_data_file: |sb| {
        let d = sb.data();
        sb.edit_bytes("data/train.tsv", |b| {
            let mut out = vec![0xff, 0xfe];
            for u in String::from_utf8(b).unwrap().encode_utf16() {
                out.extend_from_slice(&u.to_le_bytes());
            }
            out
        });
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:1:", sb.s("data/train.tsv")), "UTF-8"])
    };
    utf8_bom_before_the_header: |sb| {
        // Spreadsheet exports start with a byte-order mark: it is skipped, the file reads normally.
        let d = sb.data();
        sb.edit_bytes("data/train.tsv", |mut b| {
            b.splice(0..0, "\u{feff}".bytes());
            b
        });
        on_fresh(&sb, "run", &[&d, "train.epochs=1", "teacher.finetune.epochs=1", "preflight.allow_weak_teacher=true"])
            .succeed()
            .expect(&["(240 examples)", "export: wrote"])
    };
    cr_only_line_endings: |sb| {
        // Classic-Mac line ends: the whole file is one line; refused at line 1.
        let d = sb.data();
        sb.edit("data/train.tsv", |t| t.replace('\n', "\r"));
        on_good(&sb, "run", &[&d]).expect(&[&format!("{}:1:", sb.s("data/train.tsv")), "no column `label`"])
    };
    custom_jsonl_invalid_json: |sb| {
        let j = jsonl_from_tsv(&tiny_train());
        sb.write("c/train.jsonl", replace_line(&j, 3, "{\"text\": \"unterminated"));
        sb.write("c/dev.jsonl", &j);
        let c = custom(&sb, JSONL);
        on_good(&sb, "run", &refs(&c)).expect(&[&format!("{}:3:", sb.s("c/train.jsonl")), "invalid JSON"])
    };
    custom_jsonl_missing_field: |sb| {
        let j = jsonl_from_tsv(&tiny_train());
        sb.write("c/train.jsonl", &j);
        sb.write("c/dev.jsonl", replace_line(&j, 2, "{\"txt\": \"typo\", \"label\": \"1\"}"));
        let c = custom(&sb, JSONL);
        on_good(&sb, "run", &refs(&c)).expect(&[&format!("{}:2:", sb.s("c/dev.jsonl")), "missing field `text`"])
    };
    custom_jsonl_with_index_columns: |sb| {
        let j = jsonl_from_tsv(&tiny_train());
        sb.write("c/train.jsonl", &j);
        sb.write("c/dev.jsonl", &j);
        let c = custom(&sb, "{format: jsonl, train_file: train.jsonl, dev_file: dev.jsonl, text_a: 0, label: 1, labels: ['0', '1']}");
        on_good(&sb, "run", &refs(&c)).expect(&[&format!("{}:1:", sb.s("c/train.jsonl")), "JSONL columns must be named"])
    };
    custom_csv_label_outside_the_set: |sb| {
        let csv: String = tiny_train().lines().map(|l| format!("\"{}\"\n", l.replace('\t', "\",\""))).collect();
        sb.write("c/train.csv", replace_line(&csv, 8, "\"fine, really\",\"maybe\""));
        sb.write("c/dev.csv", &csv);
        let c = custom(&sb, "{format: csv, train_file: train.csv, dev_file: dev.csv, text_a: sentence, label: label, labels: ['0', '1']}");
        on_good(&sb, "run", &refs(&c)).expect(&[&format!("{}:8:", sb.s("c/train.csv")), "label `maybe`"])
    };
    custom_headerless_column_out_of_range: |sb| {
        sb.write("c/train.tsv", "a film\t1\n");
        sb.write("c/dev.tsv", "a film\t1\n");
        let c = custom(&sb, "{header: false, train_file: train.tsv, dev_file: dev.tsv, text_a: 0, text_b: 5, label: 1, labels: ['0', '1']}");
        on_good(&sb, "run", &refs(&c)).expect(&[&format!("{}:1:", sb.s("c/train.tsv")), "expected at least 6 columns"])
    };

    // ---------------- robustness: must succeed ----------------
    a_one_megabyte_sentence_is_truncated: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| format!("{t}{}\t1\n", "a very good film ".repeat(62_000)));
        assert!(sb.read("data/train.tsv").len() > 1_000_000);
        on_fresh(&sb, "run", &[&d, "train.epochs=1", "teacher.finetune.epochs=1", "preflight.allow_weak_teacher=true"])
            .succeed()
            .expect(&["(241 examples)", "export: wrote"])
    };
    crlf_line_endings: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| t.replace('\n', "\r\n"));
        sb.edit("data/dev.tsv", |t| t.replace('\n', "\r\n"));
        on_fresh(&sb, "run", &[&d, "train.epochs=1", "teacher.finetune.epochs=1", "preflight.allow_weak_teacher=true"])
            .succeed()
            .expect(&["(240 examples)", "export: wrote"])
    };

    // ---------------- checkpoints ----------------
    checkpoint_shape_differs_from_config: |sb| {
        let t = sb.teacher();
        sb.edit("teacher/config.json", |c| c.replace("\"vocab_size\": 222", "\"vocab_size\": 300"));
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/model.safetensors"), "word_embeddings", "[222, 32]", "[300, 32]"])
    };
    checkpoint_has_fewer_layers_than_config: |sb| {
        let t = sb.teacher();
        sb.edit("teacher/config.json", |c| c.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/model.safetensors"), "missing", "encoder.layer.2."])
    };
    checkpoint_tensor_missing: |sb| {
        let t = sb.teacher();
        sb.edit_bytes("teacher/model.safetensors", |b| {
            let (from, to) = (b"layer.1.output.dense.weight", b"layer.1.output.dense.wXight");
            let i = b.windows(from.len()).position(|w| w == from).unwrap();
            let mut b = b;
            b[i..i + to.len()].copy_from_slice(to);
            b
        });
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/model.safetensors"), "1 tensor(s) missing", "bert.encoder.layer.1.output.dense.weight"])
    };
    checkpoint_truncated: |sb| {
        let t = sb.teacher();
        sb.edit_bytes("teacher/model.safetensors", |b| b[..b.len() / 2].to_vec());
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/model.safetensors"), "safetensors"])
    };
    checkpoint_zero_bytes: |sb| {
        let t = sb.teacher();
        sb.write("teacher/model.safetensors", "");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/model.safetensors"), "safetensors"])
    };
    checkpoint_is_text: |sb| {
        let t = sb.teacher();
        sb.write("teacher/model.safetensors", "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 113832\n");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/model.safetensors"), "safetensors"])
    };
    checkpoint_header_length_huge: |sb| {
        let t = sb.teacher();
        sb.write("teacher/model.safetensors", b"\xff\xff\xff\xff\xff\xff\xff\x7f{}");
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/model.safetensors"), "header too large"])
    };
    config_json_not_json: |sb| {
        let t = sb.teacher();
        sb.write("teacher/config.json", "{\"model_type\": \"bert\",");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/config.json"), "line 1"])
    };
    config_json_zero_heads: |sb| {
        let t = sb.teacher();
        sb.edit("teacher/config.json", |c| c.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 0"));
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/config.json"), "num_attention_heads 0"])
    };
    config_json_unsupported_model_type: |sb| {
        let t = sb.teacher();
        sb.edit("teacher/config.json", |c| c.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\""));
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/config.json"), "model_type `gpt2`"])
    };
    config_json_missing_field: |sb| {
        let t = sb.teacher();
        sb.write("teacher/config.json", "{\"model_type\": \"bert\"}");
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/config.json"), "missing field"])
    };
    tokenizer_json_garbage: |sb| {
        let t = sb.teacher();
        sb.write("teacher/tokenizer.json", "\u{1}\u{2}garbage{{{");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/tokenizer.json"), "cannot parse"])
    };
    tokenizer_json_empty_object: |sb| {
        let t = sb.teacher();
        sb.write("teacher/tokenizer.json", "{}");
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/tokenizer.json"), "cannot parse"])
    };
    vocabulary_larger_than_the_embedding: |sb| {
        let t = sb.teacher();
        sb.edit("teacher/vocab.txt", |v| {
            v + &(0..100).map(|i| format!("extra{i}\n")).collect::<String>()
        });
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/vocab.txt"), "322 tokens", "222 rows"])
    };
    student_vocabulary_larger_than_init_embedding: |sb| {
        let mut v = std::fs::read_to_string(fixture("vocab.txt")).unwrap();
        v += &(0..50).map(|i| format!("more{i}\n")).collect::<String>();
        let voc = sb.write("big-vocab.txt", v);
        let init = format!("student.init={}", fixture("teacher").display());
        on_good(&sb, "run", &[&init, &format!("student.tokenizer={voc}")])
            .expect(&["student.tokenizer", &voc, "272 tokens", "222 rows"])
            .artifacts_only()
    };
    student_vocabulary_without_cls: |sb| {
        let v = std::fs::read_to_string(fixture("vocab.txt")).unwrap().replace("[CLS]\n", "");
        let voc = sb.write("vocab.txt", v);
        on_good(&sb, "run", &[&format!("student.tokenizer={voc}")]).expect(&["student.tokenizer", &voc, "no `[CLS]` token"])
    };
    student_vocabulary_empty: |sb| {
        let voc = sb.write("vocab.txt", "");
        on_good(&sb, "run", &[&format!("student.tokenizer={voc}")]).expect(&["student.tokenizer", &voc])
    };
    student_vocabulary_not_utf8: |sb| {
        let mut v = std::fs::read(fixture("vocab.txt")).unwrap();
        v.extend_from_slice(b"caf\xe9\n");
        let voc = sb.write("vocab.txt", v);
        on_good(&sb, "run", &[&format!("student.tokenizer={voc}")]).expect(&["student.tokenizer", &voc])
    };
    pickle_weights_without_allow_pickle: |sb| {
        let t = sb.teacher();
        std::fs::rename(sb.p("teacher/model.safetensors"), sb.p("teacher/pytorch_model.bin")).unwrap();
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/pytorch_model.bin"), "allow_pickle"])
    };
    pickle_weights_that_are_not_a_zip: |sb| {
        let t = sb.teacher();
        sb.write("teacher/pytorch_model.bin", "not a torch file");
        sb.remove("teacher/model.safetensors");
        on_good(&sb, "run", &[&t, "teacher.allow_pickle=true"]).expect(&["teacher.model", &sb.s("teacher/pytorch_model.bin")])
    };
    shard_index_names_a_missing_shard: |sb| {
        let t = sb.teacher();
        sb.remove("teacher/model.safetensors");
        sb.write("teacher/model.safetensors.index.json", r#"{"weight_map": {"bert.pooler.dense.weight": "model-00001-of-00002.safetensors"}}"#);
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/model-00001-of-00002.safetensors"), "No such file"])
    };
    shard_index_not_json: |sb| {
        let t = sb.teacher();
        sb.remove("teacher/model.safetensors");
        sb.write("teacher/model.safetensors.index.json", "weight_map = nope");
        on_good(&sb, "run", &[&t]).expect(&["teacher.model", &sb.s("teacher/model.safetensors.index.json")])
    };
    shard_index_without_weight_map: |sb| {
        let t = sb.teacher();
        sb.remove("teacher/model.safetensors");
        sb.write("teacher/model.safetensors.index.json", r#"{"metadata": {}}"#);
        on_good(&sb, "run", &[&t]).expect(&[&sb.s("teacher/model.safetensors.index.json"), "weight_map"])
    };
    teacher_head_has_the_wrong_label_count: |sb| {
        // The fine-tuned SST-2 teacher (2 outputs) used for MNLI (3 labels).
        let out = sb.good();
        copy_dir(&out.join("teacher/model"), &sb.p("sst2-teacher"));
        let t = format!("teacher.model={}", sb.s("sst2-teacher"));
        // MNLI-shaped files, so that the run gets past the data to the teacher.
        let rows = "sentence1\tsentence2\tgold_label\na b\tc d\tentailment\nc d\ta b\tneutral\nb a\td c\tcontradiction\n";
        sb.write("mnli/train.tsv", rows);
        sb.write("mnli/dev_matched.tsv", rows);
        let d = format!("data.dir={}", sb.s("mnli"));
        on_good(&sb, "run", &["task=mnli", &t, &d]).expect(&["teacher.model", &sb.s("sst2-teacher/model.safetensors"), "2 outputs", "needs 3"])
    };
    student_init_checkpoint_with_broken_config: |sb| {
        let init = sb.teacher().replace("teacher.model=", "student.init=");
        sb.write("teacher/config.json", "[]");
        on_good(&sb, "run", &[&init]).expect(&["student.init", &sb.s("teacher/config.json")]).artifacts_only()
    };
    target_cache_corrupted: |sb| {
        let out = sb.good();
        std::fs::write(out.join("targets/train.safetensors"), "rubbish").unwrap();
        on_good(&sb, "train", &[]).expect(&[&out.join("targets/train.safetensors").display().to_string(), "distill teacher"])
    };
    train_before_teacher: |sb| on_fresh(&sb, "train", &[]).expect(&["targets/train.safetensors", "run `distill teacher` first"]);
    compare_without_a_student: |sb| {
        let out = sb.good();
        std::fs::remove_dir_all(out.join("student/best")).unwrap();
        on_good(&sb, "compare", &[]).expect(&["no trained student", "distill train"])
    };
    export_without_a_student: |sb| {
        let out = sb.good();
        std::fs::remove_dir_all(out.join("student/best")).unwrap();
        on_good(&sb, "export", &[]).expect(&[&out.join("student/best/model.safetensors").display().to_string(), "train the model first"])
    };

    // ---------------- outputs that cannot be written ----------------
    output_dir_below_a_regular_file: |sb| {
        let f = sb.write("file.txt", "I am a file");
        on_fresh(&sb, "run", &[&format!("output_dir={f}/sub")]).expect(&["output_dir", &f, "Not a directory"])
    };
    output_dir_is_a_regular_file: |sb| {
        let f = sb.write("file.txt", "I am a file");
        on_fresh(&sb, "run", &[&format!("output_dir={f}")]).expect(&["output_dir", &f])
    };
    export_out_below_a_regular_file: |sb| {
        let out = sb.good();
        let f = sb.write("file.txt", "I am a file");
        let mut c = on_good(&sb, "export", &[]);
        c.args.extend(["--out".to_string(), format!("{f}/export")]);
        let _ = out;
        c.expect(&[&f])
    };
    // (was ignored: fixed)
    output_dir_empty_string: |sb| {
        let cfg = tiny_yaml()
            .replace("configs/", &format!("{}/configs/", root().display()))
            .replace("output_dir: runs/tiny", "output_dir: \"\"");
        let c = sb.write("c.yaml", cfg);
        std::fs::create_dir_all(sb.p("cwd")).unwrap();
        Case::new(&["teacher", &c]).cwd(sb.p("cwd")).expect(&["output_dir"])
    };
    disk_full_writing_timings: |sb| {
        // Every stage is fresh; the last write (timings.json, via a temporary file) hits ENOSPC.
        let out = sb.good();
        sb.full("out/.timings.json.tmp");
        on_good(&sb, "run", &[])
            .expect(&[&out.join(".timings.json.tmp").display().to_string(), "No space left on device"])
            // compare always reruns and rewrites its report, and the export's model card quotes it
            .except(&["report.json", "report.md", "plots", "README.md"])
    };
    // (was ignored: fixed)
    io_error_message_is_not_repeated: |sb| {
        let out = sb.good();
        sb.full("out/.report.json.tmp");
        on_good(&sb, "compare", &[])
            .expect(&[&out.join(".report.json.tmp").display().to_string(), "No space left on device"])
            .reject(&["(os error 28): No space left on device (os error 28)"])
    };
    disk_full_writing_the_report: |sb| {
        let out = sb.good();
        sb.full("out/.report.json.tmp");
        on_good(&sb, "compare", &[]).expect(&[&out.join(".report.json.tmp").display().to_string(), "No space left on device"])
    };
    disk_full_writing_the_metrics_log: |sb| {
        let out = sb.good();
        sb.full("out/student/metrics.jsonl");
        on_good(&sb, "train", &["train.epochs=2"])
            .expect(&[&out.join("student/metrics.jsonl").display().to_string(), "No space left on device"])
            .artifacts_only()
            .except(&["metrics.jsonl"])
    };
    // (was ignored: fixed)
    stamp_untouched_by_a_failed_retrain: |sb| on_good(&sb, "train", &["student.num_heads=5"]).expect(&["num_attention_heads 5"]);

    // ---------------- data vs model limits ----------------
    // (was ignored: fixed)
    max_seq_len_beyond_the_teacher_positions: |sb| {
        let d = sb.data();
        sb.edit("data/train.tsv", |t| format!("{t}{}\t1\n", "a very good film ".repeat(40)));
        on_good(&sb, "run", &[&d, "data.max_seq_len=100"]).expect(&["data.max_seq_len", "teacher"])
    };
    // (Named with its key, but only after the teacher has been fine-tuned.)
    hidden_layer_beyond_the_teacher: |sb| on_fresh(&sb, "teacher", &["teacher.hidden_layers=[99]"]).expect(&["teacher.hidden_layers", "layer 99"]);

    // ---------------- predict / encode ----------------
    predict_missing_model_dir: |sb| {
        let m = sb.s("no-model");
        Case::new(&["predict", &m, "hello"]).expect(&[&m, "not found"])
    };
    predict_model_without_a_head: |_sb| Case::new(&["predict", "configs/tiny/teacher", "hello"]).expect(&["configs/tiny/teacher", "no classification head"]);
    predict_empty_input_file: |sb| {
        let f = sb.write("empty.txt", "");
        let m = sb.good().join("export").display().to_string();
        Case::new(&["predict", &m, "--file", &f]).expect(&["no input"])
    };
    predict_missing_input_file: |sb| {
        let f = sb.s("no-inputs.txt");
        let m = sb.good().join("export").display().to_string();
        Case::new(&["predict", &m, "--file", &f]).expect(&[&f, "No such file"])
    };
    predict_input_file_not_utf8: |sb| {
        let f = sb.write("in.txt", b"good film\nbad \xff film\n");
        let m = sb.good().join("export").display().to_string();
        Case::new(&["predict", &m, "--file", &f]).expect(&[&format!("{f}:2"), "UTF-8"])
    };
    predict_model_without_a_tokenizer: |sb| {
        let out = sb.good();
        std::fs::remove_file(out.join("export/tokenizer.json")).unwrap();
        std::fs::remove_file(out.join("export/vocab.txt")).unwrap();
        let m = out.join("export").display().to_string();
        Case::new(&["predict", &m, "hello"]).expect(&[&m, "no tokenizer.json or vocab.txt"])
    };
    predict_truncated_weights: |sb| {
        let out = sb.good();
        let w = out.join("export/model.safetensors");
        let b = std::fs::read(&w).unwrap();
        std::fs::write(&w, &b[..b.len() - 100]).unwrap();
        let m = out.join("export").display().to_string();
        Case::new(&["predict", &m, "hello"]).expect(&[&w.display().to_string(), "safetensors"])
    };
    // (was ignored: fixed)
    predict_max_len_zero: |sb| {
        let m = sb.good().join("export").display().to_string();
        Case::new(&["predict", &m, "--max-len", "0", "hello"]).expect(&["max-len"])
    };
    encode_missing_input_file: |sb| {
        let f = sb.s("no-inputs.txt");
        let o = sb.s("x.safetensors");
        Case::new(&["encode", "configs/tiny/teacher", "--file", &f, "--out", &o]).expect(&[&f])
    };
    encode_empty_input_file: |sb| {
        let f = sb.write("in.txt", "\n  \n");
        let o = sb.s("x.safetensors");
        Case::new(&["encode", "configs/tiny/teacher", "--file", &f, "--out", &o]).expect(&[&f, "no inputs"])
    };
    encode_out_below_a_regular_file: |sb| {
        let f = sb.write("in.txt", "a good film\n");
        let file = sb.write("file.txt", "I am a file");
        let o = format!("{file}/x.safetensors");
        Case::new(&["encode", "configs/tiny/teacher", "--file", &f, "--out", &o]).expect(&[&o])
    };
    // (was ignored: fixed)
    encode_max_len_one: |sb| {
        let f = sb.write("in.txt", "a good film\n");
        let o = sb.s("x.safetensors");
        Case::new(&["encode", "configs/tiny/teacher", "--file", &f, "--out", &o, "--max-len", "1"]).expect(&["max-len"])
    };
}

/// A failed retrain must not make the next run believe the old student belongs to the new config.
/// (Today `train` writes the new stamp before training; when training then fails, the next run finds
/// the stamp, the old `best/` and `train_report.json`, and reports "fresh" without training.)
#[test]
// (was ignored: fixed)
fn stamp_a_failed_retrain_is_not_fresh_on_the_next_run() {
    let sb = Sb::new();
    let out = sb.good();
    let o = format!("output_dir={}", out.display());
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args([
                "train",
                "configs/tiny.yaml",
                "--set",
                &o,
                "--set",
                "student.num_heads=5",
            ])
            .current_dir(root())
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(1));
    let second = run();
    let t = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        second.status.code(),
        Some(1),
        "the invalid config now succeeds:\n{t}"
    );
}

/// The same through a full disk: the retrain dies on ENOSPC; once space is back, `train` must retrain.
#[test]
// (was ignored: fixed)
fn stamp_a_retrain_killed_by_a_full_disk_is_redone() {
    let sb = Sb::new();
    let out = sb.good();
    sb.full("out/student/metrics.jsonl");
    let o = format!("output_dir={}", out.display());
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args([
                "train",
                "configs/tiny.yaml",
                "--set",
                &o,
                "--set",
                "train.epochs=2",
            ])
            .current_dir(root())
            .output()
            .unwrap()
    };
    assert_eq!(run().status.code(), Some(1));
    std::fs::remove_file(out.join("student/metrics.jsonl")).unwrap();
    let again = run();
    let t = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{t}");
    assert!(
        !t.contains("is fresh"),
        "a student trained for 3 epochs is served for train.epochs=2:\n{t}"
    );
}

/// Usage errors come from clap: exit code 2 (not 1), no panic, and the argument named.
#[test]
fn usage_errors_exit_2_without_panicking() {
    for (args, needle) in [
        (&["run"][..], "<CONFIG>"),
        (&["run", "configs/tiny.yaml", "--set"][..], "--set"),
        (&["distil-everything"][..], "distil-everything"),
        (
            &["predict", "configs/tiny/teacher", "--max-len", "many", "x"][..],
            "--max-len",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            !t.contains("panicked") && t.contains(needle),
            "{args:?}: {t}"
        );
    }
}

// ---------------- a real full disk: a small tmpfs in a user + mount namespace ----------------
//
// `unshare -Urm` gives an unprivileged process its own mount namespace, where it may mount a tmpfs of a
// chosen size. A copy of the good run is put on a tmpfs with only `free_kb` to spare and the command
// runs there with `output_dir` on it, so every write path (safetensors temp files included) meets a
// real ENOSPC. The tmpfs is copied back afterwards for inspection. Where user namespaces are not
// available (some CI containers), these tests print a note and pass.

const TMPFS_SCRIPT: &str = r#"
mount -t tmpfs -o "size=${SIZE_KB}k" none "$MNT" || exit 90
cp -a "$GOOD/." "$MNT/" || exit 91
echo TMPFS-READY >&2
"$BIN" "$@"
rc=$?
cp -a "$MNT/." "$BACK/"
exit $rc
"#;

/// `need_path`: the message must name the file being written (the tmpfs path), not only the errno.
fn tmpfs_run(
    name: &str,
    free_kb: u64,
    sub: &str,
    sets: &[&str],
    expect: &[&str],
    need_path: bool,
    may_replace: &[&'static str],
) {
    let probe = Command::new("unshare").args(["-Urm", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("[{name}] skipped: `unshare -Urm` is not available here");
        return;
    }
    let sb = Sb::new();
    let good = sb.good();
    // tmpfs counts whole 4 KiB pages per file.
    let used_kb: u64 = snapshot(&good, &[])
        .values()
        .map(|b| (b.len() as u64).div_ceil(4096) * 4)
        .sum();
    for d in ["mnt", "back"] {
        std::fs::create_dir_all(sb.p(d)).unwrap();
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-Urm",
        "sh",
        "-c",
        TMPFS_SCRIPT,
        "sh",
        sub,
        "configs/tiny.yaml",
        "--set",
    ])
    .arg(format!("output_dir={}", sb.s("mnt")));
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = cmd
        .env("SIZE_KB", (used_kb + free_kb).to_string())
        .env("MNT", sb.p("mnt"))
        .env("GOOD", &good)
        .env("BACK", sb.p("back"))
        .env("BIN", env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .current_dir(root())
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !t.contains("TMPFS-READY") {
        eprintln!(
            "[{name}] skipped: could not mount a tmpfs ({:?}): {t}",
            o.status.code()
        );
        return;
    }
    assert!(!t.contains("panicked"), "[{name}] panic:\n{t}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "[{name}] expected exit code 1 ({free_kb} KiB free):\n{t}"
    );
    for n in expect {
        assert!(
            t.contains(n),
            "[{name}] the output lacks `{n}` ({free_kb} KiB free):\n{t}"
        );
    }
    if need_path {
        let msg: Vec<&str> = t.lines().filter(|l| l.starts_with("error:")).collect();
        assert!(
            msg.iter().any(|l| l.contains(&sb.s("mnt"))),
            "[{name}] the error names no file ({free_kb} KiB free):\n{t}"
        );
    }
    // Whatever is on the disk afterwards under a real name must be whole: every safetensors file
    // complete. (Hidden temporaries such as `.export.tmp/` may be left half-written.)
    for (rel, bytes) in snapshot(&sb.p("back"), &[]) {
        let hidden = rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        if !hidden && rel.extension().is_some_and(|e| e == "safetensors") {
            assert_complete_safetensors(&rel, &bytes, name);
        }
    }
    let mut skip = vec!["stamp.json", "done.json", "last", "metrics.jsonl"];
    skip.extend_from_slice(may_replace);
    let before = snapshot(&good, &skip);
    let after = snapshot(&sb.p("back"), &skip);
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k.display().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "[{name}] good outputs lost on a full disk ({free_kb} KiB free): {changed:?}\n{t}"
    );
}

/// The 8-byte header length, a JSON header, and exactly as many data bytes as the header describes.
fn assert_complete_safetensors(rel: &Path, b: &[u8], name: &str) {
    let what = rel.display();
    assert!(
        b.len() >= 8,
        "[{name}] {what}: truncated ({} bytes)",
        b.len()
    );
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    assert!(8 + n <= b.len(), "[{name}] {what}: header cut off");
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n])
        .unwrap_or_else(|e| panic!("[{name}] {what}: header is not JSON: {e}"));
    let end = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["data_offsets"][1].as_u64().unwrap() as usize)
        .max()
        .unwrap_or(0);
    assert_eq!(b.len(), 8 + n + end, "[{name}] {what}: data truncated");
}

#[test]
fn disk_full_tmpfs_retraining_the_student_loses_nothing() {
    for free_kb in [8, 48, 120, 200] {
        tmpfs_run(
            "disk_full_tmpfs_retraining_the_student_loses_nothing",
            free_kb,
            "train",
            &["train.epochs=2"],
            &["No space left on device"],
            false,
            // The retrain saves its own best checkpoint as it goes (complete files: checked above).
            &["best"],
        );
    }
}

#[test]
// (was ignored: fixed)
fn disk_full_tmpfs_retraining_the_student_names_the_file() {
    for free_kb in [8, 120, 200] {
        tmpfs_run(
            "disk_full_tmpfs_retraining_the_student_names_the_file",
            free_kb,
            "train",
            &["train.epochs=2"],
            &["No space left on device"],
            true,
            &["best"],
        );
    }
}

#[test]
fn disk_full_tmpfs_rebuilding_targets() {
    for free_kb in [4, 16] {
        tmpfs_run(
            "disk_full_tmpfs_rebuilding_targets",
            free_kb,
            "teacher",
            &["teacher.hidden_layers=[1]"],
            &["No space left on device"],
            true,
            &[],
        );
    }
}

#[test]
fn disk_full_tmpfs_exporting() {
    for free_kb in [4, 60, 120] {
        tmpfs_run(
            "disk_full_tmpfs_exporting",
            free_kb,
            "export",
            &[],
            &["No space left on device"],
            true,
            &[],
        );
    }
}
