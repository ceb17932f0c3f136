//! Examples tokenised for a model: their encodings beside their labels, in the examples' order.

use modeling::{Encoded, TextTokenizer};

use crate::tasks::{Example, Label};
use crate::Result;

/// Tokenised examples and their labels.
pub struct Tokenised {
    pub ids: Vec<Encoded>,
    pub labels: Vec<Label>,
}

/// Tokenises each example (a pair when it has `text_b`).
pub fn tokenise(tok: &TextTokenizer, examples: &[Example]) -> Result<Tokenised> {
    let ids = examples
        .iter()
        .map(|e| tok.encode(&e.text_a, e.text_b.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tokenised {
        ids,
        labels: examples.iter().map(|e| e.label).collect(),
    })
}
