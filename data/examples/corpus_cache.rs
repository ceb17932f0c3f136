//! Builds (or reuses) a corpus token cache and prints what pre-training would see, without training
//! (`distill pretrain` builds the same cache and trains):
//! `corpus_cache TOKENIZER CACHE_DIR CORPUS.txt... [--max-seq-len 256]`, where TOKENIZER is a
//! tokenizer.json or a (cased) vocab.txt.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use data::corpus::{BuildOptions, CacheStatus, Masker, MaskingConfig, MlmDataset, TokenCache};
use modeling::TextTokenizer;

// A `main` returning the error would print `Error: ` and its Debug form; print it as `distill` does.
fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut max_len = 256;
    if let Some(i) = args.iter().position(|a| a == "--max-seq-len") {
        max_len = args.get(i + 1).ok_or("--max-seq-len N")?.parse()?;
        args.drain(i..i + 2);
    }
    let [tok, dir, corpus @ ..] = args.as_slice() else {
        return Err("usage: corpus_cache TOKENIZER CACHE_DIR CORPUS... [--max-seq-len 256]".into());
    };
    if corpus.is_empty() {
        return Err("no corpus files".into());
    }
    let tok = TextTokenizer::from_file(&PathBuf::from(tok), 512, false)?;
    let files: Vec<PathBuf> = corpus.iter().map(PathBuf::from).collect();
    let t0 = Instant::now();
    let (cache, status) =
        TokenCache::open_or_build(&files, &tok, &PathBuf::from(dir), &BuildOptions::default())?;
    match status {
        CacheStatus::Fresh => eprintln!("cache {dir}: fresh, reused"),
        CacheStatus::Built(why) => eprintln!("cache {dir}: built because {}", why.join(", ")),
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{} tokens, {} sentences, {} documents ({secs:.1} s, {:.0} tokens/s)",
        cache.num_tokens(),
        cache.num_sentences(),
        cache.num_documents(),
        cache.num_tokens() as f64 / secs.max(1e-9)
    );
    let split = cache.split(0.01, 42);
    let cache = Arc::new(cache);
    let masker = Masker::new(
        MaskingConfig::default(),
        tok.special_tokens()?,
        tok.vocab_size(),
        42,
    )?;
    for (name, docs) in [("train", &split.train), ("eval", &split.eval)] {
        let t0 = Instant::now();
        let data = MlmDataset::new(cache.clone(), docs, max_len, masker.clone())?;
        let lens: usize = (0..data.len()).map(|i| data.packing().input_len(i)).sum();
        println!(
            "{name}: {} documents -> {} inputs of <= {max_len} tokens, mean {:.1} ({:.2} s to pack)",
            docs.len(),
            data.len(),
            lens as f64 / data.len().max(1) as f64,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
