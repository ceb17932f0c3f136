//! What a run can check from its config alone, before any stage and before its output folder exists:
//! the training and dev files, the teacher's files and tokenizer (and the maximum length against its
//! positions), the student's shape against its tokenizer and the maximum length, and, unless
//! `preflight.allow_casing_mismatch` allows it, the student tokenizer's casing against the training
//! texts. A run refused here has written nothing: an impossible student is refused in seconds, not after
//! the teacher's hours.

use anyhow::{Context, Result};

use crate::run::plan::Plan;

/// Every check of `plan` that needs no stage's output; the first failure, with its config key.
pub fn config_alone(plan: &Plan) -> Result<()> {
    let cfg = plan.cfg();
    let (train, _) = plan.read_data()?;
    let (teacher, _) = plan.teacher_source()?;
    let shape = modeling::EncoderConfig::from_file(&teacher.config).context("teacher.model")?;
    super::TeacherStage::new(plan).fits(&shape, &teacher)?;
    let tok = plan.student_tokenizer()?;
    cfg.student
        .check(&tok, Some(&teacher), cfg.data.max_seq_len)?;
    if !cfg.preflight.allow_casing_mismatch {
        crate::run::student::student_casing(plan, &tok, &train)?;
    }
    Ok(())
}
