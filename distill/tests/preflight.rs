//! Preflight checks through the real binary: a weak teacher and a casing mismatch stop the run with the
//! key that overrides them; with the override the run goes on and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::process::Output;

use common::tiny_run as distill;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_teacher_at_chance_level_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    // One epoch at a small learning rate leaves the tiny teacher answering the majority label.
    let weak = [
        "teacher.finetune.epochs=1",
        "teacher.finetune.learning_rate=1.0e-4",
    ];
    let o = distill(tmp.path(), &weak);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("chance level") && e.contains("preflight.allow_weak_teacher"),
        "{e}"
    );
    assert!(!tmp.path().join("targets/train.safetensors").exists());

    let mut allowed = weak.to_vec();
    allowed.push("preflight.allow_weak_teacher=true");
    let o = distill(tmp.path(), &allowed);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("warning") && e.contains("allowed by preflight.allow_weak_teacher"),
        "{e}"
    );
}

#[test]
fn a_lowercasing_student_on_cased_data_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let o = distill(tmp.path(), &["student.lowercase=true"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("lower-cases") && e.contains("preflight.allow_casing_mismatch"),
        "{e}"
    );
    // Refused before the teacher's stage, which it does not depend on.
    assert!(!tmp.path().join("teacher").exists(), "{e}");
    let o = distill(
        tmp.path(),
        &[
            "student.lowercase=true",
            "preflight.allow_casing_mismatch=true",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
