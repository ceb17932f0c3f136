//! `distill`: distils a fine-tuned (or fine-tunable) BERT-family teacher into a small student from a
//! YAML config. `distill run CONFIG` runs every stage; each stage also has its own command.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use distill::pipeline::{self, tokenise, Plan};
use distill::{bench, config, encode, predict, report};

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Knowledge distillation for BERT-family text models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The run's YAML config.
    config: PathBuf,
    /// Override a config key, e.g. `--set train.epochs=1` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Every stage: teacher (fine-tune if needed) and targets, student training, comparison, export.
    Run(ConfigArgs),
    /// Fine-tune the teacher if it has no task head, then cache its targets for the training set.
    Teacher(ConfigArgs),
    /// Train the student against the cached targets and the task labels.
    Train(ConfigArgs),
    /// Evaluate teacher and student on the dev set and write report.json / report.md.
    Compare(ConfigArgs),
    /// Write the best student as a Hugging Face folder.
    Export {
        #[command(flatten)]
        args: ConfigArgs,
        /// Destination folder (default: OUTPUT_DIR/export).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Classify texts with an exported model; prints one JSON object per input.
    Predict(predict::PredictArgs),
    /// Write every layer's hidden states for a list of texts (safetensors).
    Encode(encode::EncodeArgs),
    /// Measure training and inference speed on synthetic batches (see bench/run.sh for the baseline).
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli.command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn plan(args: &ConfigArgs) -> Result<Plan> {
    Plan::new(config::load(&args.config, &args.set)?)
}

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Run(a) => {
            let p = plan(&a)?;
            let mut times = serde_json::Map::new();
            let mut timed = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
                let t0 = Instant::now();
                f()?;
                let s = t0.elapsed().as_secs_f64();
                eprintln!("== {name}: {s:.1} s");
                times.insert(name.into(), s.into());
                Ok(())
            };
            timed("teacher", &mut || p.teacher().map(|_| ()))?;
            timed("train", &mut || p.train().map(|_| ()))?;
            timed("compare", &mut || compare(&p))?;
            timed("export", &mut || p.export(None).map(|_| ()))?;
            let text = serde_json::to_string_pretty(&times)?;
            teacher::write_atomic(&p.out.join("timings.json"), text.as_bytes())?;
            Ok(())
        }
        Command::Teacher(a) => plan(&a)?.teacher().map(|_| ()),
        Command::Train(a) => plan(&a)?.train().map(|_| ()),
        Command::Compare(a) => compare(&plan(&a)?),
        Command::Export { args, out } => plan(&args)?.export(out).map(|_| ()),
        Command::Predict(a) => predict::run(&a),
        Command::Encode(a) => encode::run(&a),
        Command::Bench(a) => bench::run(&a),
    }
}

/// Scores teacher and student on dev with the same metric code and writes the report.
fn compare(p: &Plan) -> Result<()> {
    let (_, dev) = p.read_data()?;
    let (t_model, t_tok, t_files) = p.teacher_model()?;
    let t_dev = tokenise(&t_tok, &dev)?;
    let bs = p.cfg.teacher.batch_size;
    let (t_logits, t_speed) = pipeline::timed_logits(&t_model, &t_dev.ids, t_tok.pad_id(), bs)?;
    let t_scores = student::eval::score(&t_logits, &t_dev.labels, p.spec.metric)?;

    let best = p.student_dir().join("best");
    let s_files = teacher::ModelSource::Local(best.clone())
        .resolve(false)
        .with_context(|| "no trained student: run `distill train` first".to_string())?;
    let (s_model, _) =
        teacher::Classifier::load(&s_files, Some(p.spec.num_outputs()), p.cfg.seed, &p.device)?;
    let s_tok = p.student_tokenizer()?;
    let s_dev = tokenise(&s_tok, &dev)?;
    let (s_logits, s_speed) = pipeline::timed_logits(&s_model, &s_dev.ids, s_tok.pad_id(), bs)?;
    let s_scores = student::eval::score(&s_logits, &s_dev.labels, p.spec.metric)?;

    let report = report::Report {
        task: p.spec.name.clone(),
        dev_examples: dev.len(),
        device: format!("{:?}", p.device),
        retained_percent: 100.0 * s_scores.main / t_scores.main,
        agreement: student::eval::agreement(&t_logits, &s_logits)?,
        teacher: report::ModelSummary {
            name: format!("teacher ({})", p.cfg.teacher.model),
            dev: t_scores,
            parameters: t_model.num_parameters(),
            size_bytes: t_files.weights_size(),
            examples_per_second: t_speed,
        },
        student: report::ModelSummary {
            name: "student".into(),
            dev: s_scores,
            parameters: s_model.num_parameters(),
            size_bytes: s_files.weights_size(),
            examples_per_second: s_speed,
        },
    };
    report.write(&p.out)?;
    println!("{}", report.markdown());
    Ok(())
}
