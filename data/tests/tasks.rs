//! GLUE and custom readers: every GLUE layout, custom CSV and JSONL, bad rows named by file and line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::Path;

use data::tasks::{Column, Format};
use data::{Label, TaskSpec};

fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn reads_every_glue_layout() {
    let d = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, usize, Label)] = &[
        ("sst2", "sentence\tlabel\nit 's \"great\"\t1\n", 1, Label::Class(1)),
        ("cola", "gj04\t0\t*\tThe book was by John written.\n", 1, Label::Class(0)),
        (
            "mrpc",
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA b.\tA c.\n",
            1,
            Label::Class(1),
        ),
        (
            "stsb",
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tg\tf\t2012\t1\tx\ty\tA man.\tA guy.\t4.25\n",
            1,
            Label::Score(4.25),
        ),
        ("qnli", "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tnot_entailment\n", 1, Label::Class(1)),
        (
            "mnli",
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n0\t1\t2\tg\tp\tp\tp\tp\tA.\tB.\tneutral\tneutral\n",
            1,
            Label::Class(2),
        ),
        ("qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tA?\tB?\t0\n", 1, Label::Class(0)),
        ("rte", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n", 1, Label::Class(0)),
        ("wnli", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n", 1, Label::Class(1)),
    ];
    for (task, text, n, label) in cases {
        let spec = TaskSpec::glue(task).unwrap();
        let p = write(d.path(), &format!("{task}.tsv"), text.as_bytes());
        let rows = spec.read(&p).unwrap();
        assert_eq!(rows.len(), *n, "{task}");
        assert_eq!(rows[0].label, *label, "{task}");
        assert_eq!(rows[0].text_b.is_some(), spec.text_b.is_some(), "{task}");
    }
}

#[test]
fn bad_rows_are_reported_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let spec = TaskSpec::glue("sst2").unwrap();
    let p = write(
        d.path(),
        "a.tsv",
        b"sentence\tlabel\nfine\t1\nno label column\n",
    );
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("a.tsv:3") && e.contains("columns"), "{e}");
    let p = write(d.path(), "b.tsv", b"sentence\tlabel\nfine\t1\nhmm\t7\n");
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("b.tsv:3") && e.contains("`7`"), "{e}");
    let p = write(d.path(), "c.tsv", b"sentence\tlabel\nbad \xff byte\t1\n");
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("c.tsv:2") && e.contains("UTF-8"), "{e}");
    let p = write(d.path(), "d.tsv", b"text\tlabel\nx\t1\n");
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("d.tsv:1") && e.contains("sentence"), "{e}");
    let p = write(d.path(), "e.tsv", b"sentence\tlabel\n");
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("e.tsv") && e.contains("no examples"), "{e}");
    let stsb = TaskSpec::glue("stsb").unwrap();
    let p = write(
        d.path(),
        "f.tsv",
        b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tg\tf\t2012\t1\tx\ty\tA\tB\thigh\n",
    );
    let e = stsb.read(&p).unwrap_err().to_string();
    assert!(e.contains("f.tsv:2") && e.contains("not a number"), "{e}");
}

#[test]
fn custom_csv_and_jsonl_tasks() {
    let d = tempfile::tempdir().unwrap();
    let spec = TaskSpec {
        name: "custom".into(),
        format: Format::Csv,
        header: true,
        text_a: Column::Name("review".into()),
        text_b: None,
        label: Column::Name("stars".into()),
        labels: vec!["low".into(), "high".into()],
        metric: data::Metric::Accuracy,
        train_file: "t.csv".into(),
        dev_file: "d.csv".into(),
        extra_dev: Vec::new(),
    };
    let p = write(
        d.path(),
        "t.csv",
        b"review,stars\n\"Good, really \"\"good\"\"\",high\nmeh,low\n",
    );
    let rows = spec.read(&p).unwrap();
    assert_eq!(rows[0].text_a, "Good, really \"good\"");
    assert_eq!(rows[1].label, Label::Class(0));
    // RFC 4180: a quoted field may hold a newline; later errors still name their own line.
    let p = write(
        d.path(),
        "n.csv",
        b"review,stars\r\n\"two\r\nlines\",high\r\nok,low\r\nbad,middling\r\n",
    );
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("n.csv:5") && e.contains("middling"), "{e}");
    let p = write(
        d.path(),
        "n.csv",
        b"review,stars\n\"two\nlines\",high\nok,low\n",
    );
    let rows = spec.read(&p).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].text_a, "two\nlines");
    // A quote never closed swallows the rest of the file: named, with the line it opened on.
    let p = write(
        d.path(),
        "q.csv",
        b"review,stars\nfine,high\n\"unclosed,low\nmore,high\n",
    );
    let e = spec.read(&p).unwrap_err().to_string();
    assert!(e.contains("q.csv:3") && e.contains("never closed"), "{e}");
    let jspec = TaskSpec {
        format: Format::Jsonl,
        ..spec
    };
    let p = write(
        d.path(),
        "t.jsonl",
        b"{\"review\": \"ok\", \"stars\": \"high\"}\n{\"review\": \"x\"}\n",
    );
    let e = jspec.read(&p).unwrap_err().to_string();
    assert!(e.contains("t.jsonl:2") && e.contains("stars"), "{e}");
}
