//! The online teacher of token-level terms (hidden_mse, hidden_cosine, attention_mse,
//! minilm_relations): loaded beside the student for the training stage, checked against the student at
//! plan time (layer indices, head counts, widths, and identical tokenization), and identified in the
//! student's stamp so that another teacher retrains the student.

use anyhow::{anyhow, bail, Result};
use teacher::targets::hash_files;
use teacher::{Classifier, EncoderConfig, Example, TextTokenizer};

use crate::config::DistillConfig;
use crate::pipeline::Plan;

/// Training examples whose token ids are compared between the two tokenizers.
const TOKEN_CHECK_EXAMPLES: usize = 200;

/// The teacher a token-level objective runs inside each training step.
pub struct OnlineTeacher {
    pub model: Classifier,
    /// Hash of the teacher's weights, for the student's stamp.
    pub weights: String,
}

/// Whether the objective has a token-level term of non-zero weight.
pub fn needed(d: &DistillConfig) -> bool {
    d.resolved_terms()
        .iter()
        .any(|t| t.kind.token_level() && t.weight > 0.0)
}

/// Loads the teacher (fine-tuned first when it has no head, as the teacher stage does) and checks the
/// terms against both models and the two tokenizers on the first training examples.
pub fn prepare(
    plan: &Plan,
    student: &EncoderConfig,
    student_tok: &TextTokenizer,
    train: &[Example],
) -> Result<OnlineTeacher> {
    let (model, tok, files) = plan.teacher_model()?;
    check_terms(&plan.cfg.distill, student, &model.config)?;
    check_same_tokens(student_tok, &tok, train, &plan.cfg.teacher.model)?;
    let weights = hash_files(
        &files
            .weights
            .iter()
            .map(std::path::PathBuf::as_path)
            .collect::<Vec<_>>(),
    )?;
    Ok(OnlineTeacher { model, weights })
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

/// Token-level terms pair student and teacher states position by position, so both must see the same
/// tokens. Cross-tokenizer alignment is not supported (yet): refuse with the remedy.
pub fn check_same_tokens(
    student: &TextTokenizer,
    teacher: &TextTokenizer,
    examples: &[Example],
    teacher_model: &str,
) -> Result<()> {
    let remedy = format!(
        "token-level terms compare student and teacher position by position, so the student needs the teacher's tokenizer: set student.tokenizer to the tokenizer.json (or vocab.txt) of teacher.model `{teacher_model}` (the teacher here reads {}); aligning different tokenizers is not supported yet",
        teacher.path().display()
    );
    if student.vocab_size() != teacher.vocab_size() || student.pad_id() != teacher.pad_id() {
        bail!(
            "distill.terms: the student's tokenizer ({}, {} tokens) is not the teacher's ({} tokens); {remedy}",
            student.path().display(),
            student.vocab_size(),
            teacher.vocab_size()
        );
    }
    for (i, e) in examples.iter().take(TOKEN_CHECK_EXAMPLES).enumerate() {
        let a = student.encode(&e.text_a, e.text_b.as_deref())?;
        let b = teacher.encode(&e.text_a, e.text_b.as_deref())?;
        if a != b {
            bail!(
                "distill.terms: training example {} tokenizes differently for the student ({}) and the teacher; {remedy}",
                i + 1,
                student.path().display()
            );
        }
    }
    Ok(())
}
