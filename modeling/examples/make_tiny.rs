//! Regenerates the committed fixtures of `configs/tiny.yaml`: a tiny bare BERT teacher, the cased test
//! vocabulary and a tiny SST-2-style dataset.
//! `cargo run -p modeling --features testutil --example make_tiny -- configs/tiny`

use std::path::PathBuf;

// A `main` returning the error would print `Error: ` and its Debug form; print it as `distill` does.
fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> modeling::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "configs/tiny".into()),
    );
    let cfg = modeling::testutil::tiny_config();
    modeling::testutil::tiny_checkpoint(&root.join("teacher"), &cfg, None, 7)?;
    modeling::testutil::write_vocab(&root.join("vocab.txt"))?;
    modeling::testutil::tiny_sst2(&root.join("data"), 240, 60)?;
    println!("wrote {}", root.display());
    Ok(())
}
