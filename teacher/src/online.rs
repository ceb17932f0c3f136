//! The online teacher of token-level terms (hidden_mse, hidden_cosine, attention_mse,
//! minilm_relations): the teacher model that runs inside each of the student's training steps, with
//! a hash of its weights for the student's stamp, and, when its tokenizer differs from the student's
//! (an uncased or BPE teacher, a cased WordPiece student), its own tokenization of the training set
//! aligned word by word: every token-level term then compares words (`student::loss::word_pools`).

use data::Example;
use modeling::io::hash_files;
use modeling::{Classifier, Encoded, ModelFiles, TextTokenizer};

use crate::Result;

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

impl OnlineTeacher {
    /// The teacher `model` (read from `files`, tokenizing with `tok`) for a student tokenizing with
    /// `student_tok`, on the training examples `train`.
    pub fn new(
        model: Classifier,
        tok: &TextTokenizer,
        files: &ModelFiles,
        student_tok: &TextTokenizer,
        train: &[Example],
    ) -> Result<Self> {
        let align = if same_tokens(student_tok, tok, train)? {
            None
        } else {
            tracing::info!(
                "distill: the student's tokenizer ({}) differs from the teacher's ({}): the teacher reads its own tokens and token-level terms compare word means",
                student_tok.path().display(),
                tok.path().display()
            );
            Some(align_words(student_tok, tok, train)?)
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
