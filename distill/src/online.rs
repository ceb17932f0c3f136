//! The online teacher of token-level terms (hidden_mse, hidden_cosine, attention_mse,
//! minilm_relations): loaded beside the student for the training stage, checked against the student at
//! plan time (layer indices, head counts, widths, tokenization), and identified in the student's stamp
//! so that another teacher retrains the student.
//!
//! Different tokenizers (an uncased or BPE teacher, a cased WordPiece student) are aligned by words,
//! automatically: the teacher reads its own tokenization of each example, and every token-level term
//! compares words (`student::loss::word_pools`): hidden_mse / hidden_cosine per-word means of subword
//! states, attention_mse attention pooled to words (query tokens averaged, key tokens summed),
//! minilm_relations relations between per-word means of Q/K/V.

use anyhow::{anyhow, Result};
use data::Example;
use modeling::io::hash_files;
use modeling::{Classifier, Encoded, EncoderConfig, TextTokenizer};

use crate::config::DistillConfig;
use crate::plan::Plan;

/// The teacher a token-level objective runs inside each training step.
pub struct OnlineTeacher {
    pub model: Classifier,
    /// Hash of the teacher's weights, for the student's stamp.
    pub weights: String,
    /// The teacher's own tokenization, when its tokenizer differs from the student's.
    pub align: Option<Aligned>,
}

/// Both tokenizations of the training set, word by word (indexed like the training examples).
pub struct Aligned {
    pub student_words: Vec<Vec<Option<u32>>>,
    pub teacher: Vec<Encoded>,
    pub teacher_words: Vec<Vec<Option<u32>>>,
    pub teacher_pad_id: u32,
    /// Hash of the teacher's tokenizer file, for the student's stamp.
    pub tokenizer: String,
}

impl Aligned {
    pub fn view(&self) -> student::WordAlign<'_> {
        student::WordAlign {
            student_words: &self.student_words,
            teacher: &self.teacher,
            teacher_words: &self.teacher_words,
            teacher_pad_id: self.teacher_pad_id,
        }
    }
}

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
    let (model, tok, files) = plan.teacher_model()?;
    check_terms(&plan.cfg().distill, student, &model.config)?;
    let align = if same_tokens(student_tok, &tok, train)? {
        None
    } else {
        eprintln!(
            "distill: the student's tokenizer ({}) differs from the teacher's ({}): the teacher reads its own tokens and token-level terms compare word means",
            student_tok.path().display(),
            tok.path().display()
        );
        Some(align_words(student_tok, &tok, train)?)
    };
    let weights = hash_files(
        &files
            .weights
            .iter()
            .map(std::path::PathBuf::as_path)
            .collect::<Vec<_>>(),
    )?;
    Ok(OnlineTeacher {
        model,
        weights,
        align,
    })
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

/// Whether both tokenizers give every training example the same ids (then states pair position by
/// position, with no alignment).
pub fn same_tokens(
    student: &TextTokenizer,
    teacher: &TextTokenizer,
    examples: &[Example],
) -> Result<bool> {
    if student.vocab_size() != teacher.vocab_size() || student.pad_id() != teacher.pad_id() {
        return Ok(false);
    }
    for e in examples {
        let b = e.text_b.as_deref();
        if student.encode(&e.text_a, b)? != teacher.encode(&e.text_a, b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Tokenizes the training set with both tokenizers, keeping each token's word.
pub fn align_words(
    student: &TextTokenizer,
    teacher: &TextTokenizer,
    examples: &[Example],
) -> Result<Aligned> {
    let mut a = Aligned {
        student_words: Vec::with_capacity(examples.len()),
        teacher: Vec::with_capacity(examples.len()),
        teacher_words: Vec::with_capacity(examples.len()),
        teacher_pad_id: teacher.pad_id(),
        tokenizer: hash_files(&[teacher.path()])?,
    };
    for e in examples {
        let b = e.text_b.as_deref();
        a.student_words
            .push(student.encode_words(&e.text_a, b)?.words);
        let t = teacher.encode_words(&e.text_a, b)?;
        a.teacher.push(t.enc);
        a.teacher_words.push(t.words);
    }
    Ok(a)
}
