//! The data: task readers (GLUE's TSV layout, custom TSV/CSV/JSONL, Hub datasets' Parquet files) that
//! turn files into labelled `Example`s with errors naming `file:line`, and the pre-training corpus cache
//! (tokenized once, memory-mapped, packed into inputs, masked per epoch).

pub mod corpus;
pub mod encoded;
pub mod glue;
pub mod hub;
pub mod sentences;
pub mod tasks;

pub use encoded::{tokenise, Tokenised};
pub use modeling::{Error, Result};
pub use tasks::{hash_examples, Example, Label, Metric, TaskSpec};
