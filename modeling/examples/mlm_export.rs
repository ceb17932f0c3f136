//! Writes a masked-LM folder as `distill` exports it: `mlm_export SRC OUT [SEED]` loads SRC (a
//! `*ForMaskedLM` folder, or any encoder folder, which gets a fresh masked-LM head drawn from SEED) and
//! writes OUT with `modeling::export::export_mlm`. tools/parity/check_mlm_export.py reloads OUT with
//! transformers' `AutoModelForMaskedLM` and compares it with `distill fill-mask`.

use std::path::PathBuf;

use candle_core::Device;
use modeling::{MaskedLm, ModelSource, TextTokenizer};

// A `main` returning the error would print `Error: ` and its Debug form; print it as `distill` does.
fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, out, rest @ ..] = args.as_slice() else {
        return Err("usage: mlm_export SRC OUT [SEED]".into());
    };
    let seed: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let files = ModelSource::Local(PathBuf::from(src)).resolve(false)?;
    let (model, report) = MaskedLm::load(&files, seed, &Device::Cpu)?;
    let tok_path = files
        .tokenizer_json
        .or(files.vocab_txt)
        .ok_or("no tokenizer.json or vocab.txt in SRC")?;
    let tok = TextTokenizer::from_file(&tok_path, model.config.max_tokens(), false)?;
    modeling::export::export_mlm(&model, &tok, &PathBuf::from(out))?;
    eprintln!(
        "mlm_export: {src} -> {out} ({} masked-LM head)",
        if report.has_head { "its" } else { "a fresh" }
    );
    Ok(())
}
