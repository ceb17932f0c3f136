//! `distill embed MODEL_DIR [TEXT ...] [--file F]`: the sentence embeddings of texts by a
//! sentence-transformers folder (an embedding run's export, or a teacher such as all-mpnet-base-v2) or a
//! model2vec folder (a static student), one JSON object per input, as `SentenceTransformer(MODEL_DIR)
//! .encode(texts)` or `StaticModel.from_pretrained(MODEL_DIR).encode(texts)` computes them. `--time`
//! measures batch-1 latency and throughput instead, as `predict --time` does.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use inference::Embedder;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// A sentence-transformers folder (modules.json), a model2vec folder, or any BERT-family encoder
    /// folder (mean pooling, normalised).
    model_dir: PathBuf,
    /// Texts to embed.
    texts: Vec<String>,
    /// Read texts from a file, one per line.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Longest input in tokens (default: the folder's max_seq_length, else 512).
    #[arg(long)]
    max_len: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Run the dense layers in dynamic int8.
    #[arg(long)]
    int8: bool,
    /// Time the model on the inputs instead of printing embeddings (one JSON object).
    #[arg(long)]
    time: bool,
}

fn read_inputs(a: &EmbedArgs) -> Result<Vec<String>> {
    let mut inputs = Vec::new();
    for (i, t) in a.texts.iter().enumerate() {
        if t.trim().is_empty() {
            bail!("text argument {}: empty or whitespace only", i + 1);
        }
        inputs.push(t.clone());
    }
    if let Some(f) = &a.file {
        let file = std::fs::File::open(f).with_context(|| format!("{}", f.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", f.display(), i + 1))?;
            if line.trim().is_empty() {
                bail!("{}:{}: empty or whitespace only", f.display(), i + 1);
            }
            inputs.push(line);
        }
    }
    if inputs.is_empty() {
        bail!("no input: give texts as arguments or --file");
    }
    Ok(inputs)
}

pub fn run(a: &EmbedArgs) -> Result<()> {
    let inputs = read_inputs(a)?;
    let e = Embedder::load(&a.model_dir, a.max_len, a.int8)?;
    let enc = inputs
        .iter()
        .map(|t| e.encode(t))
        .collect::<Result<Vec<_>>>()?;
    let mut out = std::io::stdout().lock();
    if a.time {
        let mut timing = super::predict::timing(&e.model, &enc, e.tok.pad_id(), a.batch_size)?;
        timing["int8"] = a.int8.into();
        writeln!(out, "{timing}")?;
        return Ok(());
    }
    for row in e.embed(&enc, a.batch_size, Some("embed"))? {
        writeln!(out, "{}", serde_json::json!({ "embedding": row }))?;
    }
    Ok(())
}
