//! The online teacher of token-level terms, as the training stage prepares it: the teacher the teacher
//! stage made (`teacher::online` aligns the tokenizations), its layers and widths checked against the
//! student's terms (`distill.terms[i]...` named), and handed to the student's training as a model and
//! a word alignment.

use anyhow::{anyhow, Result};
use data::Example;
use modeling::{EncoderConfig, TextTokenizer};
use teacher::online::{Aligned, OnlineTeacher};

use crate::config::DistillConfig;
use crate::run::plan::Plan;

/// Whether the objective has a token-level term of non-zero weight.
pub fn needed(d: &DistillConfig) -> bool {
    d.resolved_terms()
        .iter()
        .any(|t| t.kind.token_level() && t.weight > 0.0)
}

/// Loads the teacher (fine-tuned first when it has no head, as the teacher stage does), checks the
/// terms against both models, and aligns the two tokenizations by words when they differ.
pub fn prepare(
    plan: &Plan,
    student: &EncoderConfig,
    student_tok: &TextTokenizer,
    train: &[Example],
) -> Result<OnlineTeacher> {
    let (model, tok, files) = super::TeacherStage::new(plan).model()?;
    check_terms(&plan.cfg().distill, student, &model.config)?;
    Ok(OnlineTeacher::new(model, &tok, &files, student_tok, train)?)
}

/// The student's view of the word alignment.
pub fn word_align(a: &Aligned) -> student::WordAlign<'_> {
    student::WordAlign {
        student_words: &a.student_words,
        teacher: &a.teacher,
        teacher_words: &a.teacher_words,
        teacher_pad_id: a.teacher_pad_id,
    }
}

/// Layer indices, head counts and widths, with the `distill.terms[i]...` key named.
pub fn check_terms(
    d: &DistillConfig,
    student: &EncoderConfig,
    teacher: &EncoderConfig,
) -> Result<()> {
    student::terms::bind(
        &d.resolved_terms(),
        &d.objective(),
        d.temperature,
        student,
        Some(teacher),
    )
    .map(|_| ())
    .map_err(|e| anyhow!("distill.{e}"))
}
