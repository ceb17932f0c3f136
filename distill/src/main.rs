//! `distill`: distils a fine-tuned (or fine-tunable) BERT-family teacher into a small student from a
//! YAML config. `distill run CONFIG` runs every stage; each stage also has its own command.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use distill::commands::{bench, cache, embed, encode, fill_mask, predict};
use distill::config;
use distill::config::pretrain as pretrain_config;
use distill::pretrain;
use distill::run::{pipeline, ranks};
use distill::run::{ExportStage, Plan, StudentStage, TeacherStage};
use distill::suites::{glue, sweep};
use std::rc::Rc;
use train::dist::Group;

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Knowledge distillation for BERT-family text models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v: debug, -vv: trace). RUST_LOG, when set, overrides both flags.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (-q: warnings and errors only, -qq: errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
}

/// Log lines to stderr at the level the flags ask for (info by default), or as RUST_LOG says. Colours only
/// on a terminal.
fn init_logging(verbose: u8, quiet: u8) {
    use std::io::IsTerminal;
    let level = match (verbose, quiet) {
        (_, 1) => "warn",
        (_, q) if q > 1 => "error",
        (0, _) => "info",
        (1, _) => "debug",
        _ => "trace",
    };
    // `ort` says at info level which onnxruntime it loaded and that it was built against an older one
    // (our lowest supported API level): kept for -v.
    let ort = if verbose == 0 { "warn" } else { level };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},ort={ort}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The run's YAML config.
    config: PathBuf,
    /// Override a config key, e.g. `--set train.epochs=1` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Hf,
    Onnx,
}

#[derive(Subcommand)]
enum Command {
    /// Every stage: teacher (fine-tune if needed) and targets, student training, comparison, export.
    /// A config with `task: embedding` distils sentence embeddings (docs/embeddings.md).
    Run {
        #[command(flatten)]
        args: ConfigArgs,
        /// Print the comparison report as JSON (report.json's content) instead of markdown.
        #[arg(long)]
        json: bool,
    },
    /// Fine-tune the teacher if it has no task head, then cache its targets for the training set.
    Teacher {
        #[command(flatten)]
        args: ConfigArgs,
        /// Compute only slice I of N of the training set (0-based), e.g. `--shard 2/8`, for one machine
        /// of a cluster; join the slices with `--merge N`.
        #[arg(long, value_name = "I/N", conflicts_with_all = ["merge", "finetune_only"])]
        shard: Option<String>,
        /// Join the N shard files into the training targets (checks each one's fingerprint).
        #[arg(long, value_name = "N", conflicts_with = "finetune_only")]
        merge: Option<usize>,
        /// Only fine-tune a head-less teacher (do this once before sharding).
        #[arg(long)]
        finetune_only: bool,
    },
    /// Train the student against the cached targets and the task labels.
    /// Data-parallel under an MPI launcher: `mpirun -np N distill train CONFIG` (build with `--features
    /// mpi`; each rank takes `train.batch_size` examples of every update; see docs/multi-gpu.md).
    Train {
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Evaluate teacher and student on the dev set; write report.json, report.md and plots/*.png.
    Compare {
        #[command(flatten)]
        args: ConfigArgs,
        /// Output folder of another run of this task (e.g. another seed, or a sweep trial under
        /// OUTPUT_DIR/sweep/); its student/best joins a "student (n seeds)" mean ± std row (repeatable).
        #[arg(long = "runs", value_name = "OUTPUT_DIR")]
        runs: Vec<PathBuf>,
        /// Print the report as JSON (report.json's content) instead of markdown.
        #[arg(long)]
        json: bool,
        /// What runs the students (f32 and int8): our encoder, or their ONNX graphs in onnxruntime.
        #[arg(long, value_enum, default_value_t = inference::Runtime::Candle)]
        runtime: inference::Runtime,
    },
    /// Search the `sweep:` grid (batch size × learning rate × seeds) over one teacher; keeps the best.
    Sweep(ConfigArgs),
    /// Run a list of GLUE tasks and write the teacher/student table and test-set submission files.
    Glue(glue::GlueArgs),
    /// Write the best student as a Hugging Face folder.
    Export {
        #[command(flatten)]
        args: ConfigArgs,
        /// Destination folder (default: OUTPUT_DIR/export).
        #[arg(long)]
        out: Option<PathBuf>,
        /// `hf`: the Hugging Face folder; `onnx`: the same folder plus model.onnx (opset 17,
        /// dynamic batch and sequence axes).
        #[arg(long, value_enum, default_value_t = ExportFormat::Hf)]
        format: ExportFormat,
        /// Also write model.int8.onnx, with dynamically quantized int8 dense layers (needs --format onnx).
        #[arg(long)]
        int8: bool,
    },
    /// Convert any BERT/RoBERTa/MPNet sequence-classification folder (an export, a teacher), or a
    /// sentence-transformers folder (its embeddings), to ONNX.
    Onnx {
        /// Model folder (config.json and model.safetensors).
        model_dir: PathBuf,
        /// Output file (default: MODEL_DIR/model.onnx, or model.int8.onnx with --int8).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Quantize the dense layers to dynamic int8.
        #[arg(long)]
        int8: bool,
    },
    /// Classify texts with an exported model; prints one JSON object per input.
    Predict(predict::PredictArgs),
    /// Pre-train the student as a masked LM on a plain-text corpus (its own config; see
    /// docs/pretraining.md); writes OUTPUT_DIR/export for task configs' `student.init`.
    Pretrain {
        #[command(flatten)]
        args: ConfigArgs,
        /// Stop after this optimizer step (its evaluation and `last/` checkpoint) and export `best/`; the
        /// learning-rate schedule stays the config's, so a later run without the flag resumes the same path.
        #[arg(long, value_name = "STEP")]
        stop_after: Option<usize>,
    },
    /// Fill the [MASK] / <mask> tokens of texts with a masked-LM folder; one JSON object per mask.
    FillMask(fill_mask::FillMaskArgs),
    /// Serve an exported model over HTTP (JSON, dynamic batching); see docs/deployment.md.
    Serve(serve::ServeArgs),
    /// Sentence embeddings of texts by a sentence-transformers folder; one JSON object per input.
    Embed(embed::EmbedArgs),
    /// Write every layer's hidden states for a list of texts (safetensors).
    Encode(encode::EncodeArgs),
    /// Measure training and inference speed on synthetic batches (see bench/run.sh for the baseline).
    Bench(bench::BenchArgs),
    /// List or remove the machine's cached fine-tuned teachers and targets ($DISTILL_CACHE, else
    /// ~/.cache/distill).
    Cache(cache::CacheArgs),
}

/// glibc returns big freed buffers to the kernel at once and page-faults them back on the next
/// allocation; training allocates tensors of the same sizes every step, so that churn cost about a third
/// of the run time here. Keep freed memory in the process instead (measured in docs/performance.md). glibc
/// caps the mmap threshold at 32 MiB, exactly the size of the student's FFN activations at b32 × s128,
/// so mmap is turned off altogether for those to be reused too.
/// One of the two places outside the kernels crate allowed `unsafe`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc malloc parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() {
    if std::env::var_os("DISTILL_DEFAULT_MALLOC").is_none() {
        tune_allocator();
    }
    let cli = Cli::parse();
    // Under an MPI launcher, rank 0 logs the run; the other ranks say only what goes wrong.
    let quiet = cli.quiet.max(u8::from(train::dist::launcher_rank() > 0));
    init_logging(cli.verbose, quiet);
    if let Err(e) = dispatch(cli.command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `I/N` with I < N.
fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((i, n)) if i < n => Ok((i, n)),
        _ => anyhow::bail!("--shard: expected I/N with 0 <= I < N (e.g. 0/4), got `{s}`"),
    }
}

/// The plan of a config command, on the device the config names, alone.
fn plan(command: &str, args: &ConfigArgs) -> Result<Plan> {
    ranks::alone(command)?;
    let cfg = config::load(&args.config, &args.set)?;
    let device = cfg.device.select()?;
    Plan::new(cfg, device, Rc::new(Group::single()))
}

/// `distill teacher` under an MPI launcher: rank 0 fine-tunes a head-less teacher once while the others
/// wait, every rank computes the targets of its shard of the training set, and rank 0 merges them.
fn teacher_ranks(args: &ConfigArgs) -> Result<()> {
    let group = ranks::join()?;
    let result = config::load(&args.config, &args.set).and_then(|cfg| {
        let device = cfg.device.for_rank(&group)?;
        let p = Plan::new(cfg, device, group.clone())?;
        let _lock = p.lock()?;
        if group.is_main() {
            TeacherStage::new(&p).model()?;
        }
        group.barrier()?;
        TeacherStage::new(&p).shard(group.rank(), group.world())?;
        group.barrier()?;
        if group.is_main() {
            TeacherStage::new(&p).merge_shards(group.world())?;
        }
        Ok(())
    });
    ranks::finish(&group, result)
}

/// For the commands that write a run: SIGINT or SIGTERM ends the process at once (every output is written
/// whole or not at all, so nothing is lost that `last/` does not hold) with a message saying so, instead of
/// a silent death. `serve` handles the signals itself, to finish its requests.
fn stop_on_signal() {
    let set = ctrlc::set_handler(|| {
        eprintln!(
            "error: interrupted (SIGINT or SIGTERM); every file written so far is whole; run the same command to resume from the last checkpoint"
        );
        std::process::exit(130);
    });
    if let Err(e) = set {
        tracing::warn!("note: no SIGINT/SIGTERM handler ({e}); a signal ends the run silently");
    }
}

/// The comparison report on stdout: markdown, or with `json` the JSON of report.json.
fn print_report(report: &distill::report::Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", report.markdown());
    }
    Ok(())
}

fn dispatch(cmd: Command) -> Result<()> {
    if matches!(
        cmd,
        Command::Run { .. }
            | Command::Teacher { .. }
            | Command::Train { .. }
            | Command::Sweep(_)
            | Command::Glue(_)
            | Command::Pretrain { .. }
    ) {
        stop_on_signal();
    }
    match cmd {
        Command::Run { args, json } if config::embedding::is_embedding(&args.config, &args.set) => {
            let cfg = config::embedding::load(&args.config, &args.set)?;
            let report = distill::embedding::run(&cfg, &args.config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.markdown());
            }
            Ok(())
        }
        Command::Run { args, json } => {
            let p = plan("run", &args)?;
            distill::run::check::config_alone(&p)?;
            let _lock = p.lock()?;
            print_report(&pipeline::run_all(&p)?, json)
        }
        Command::Teacher {
            args,
            shard,
            merge,
            finetune_only,
        } => {
            if train::dist::several_ranks() {
                if shard.is_some() || merge.is_some() || finetune_only {
                    anyhow::bail!("under mpirun each rank computes its own shard and rank 0 merges them: leave out --shard, --merge and --finetune-only");
                }
                return teacher_ranks(&args);
            }
            let p = plan("teacher", &args)?;
            distill::run::check::config_alone(&p)?;
            if let Some(s) = shard {
                // Shards share the folder: each one locks only its own file.
                let (i, n) = parse_shard(&s)?;
                return TeacherStage::new(&p).shard(i, n).map(|_| ());
            }
            let _lock = p.lock()?;
            if finetune_only {
                TeacherStage::new(&p).model().map(|_| ())
            } else if let Some(n) = merge {
                if n == 0 {
                    anyhow::bail!("--merge: the shard count must be at least 1");
                }
                TeacherStage::new(&p).merge_shards(n).map(|_| ())
            } else {
                TeacherStage::new(&p).targets().map(|_| ())
            }
        }
        Command::Sweep(a) => {
            let p = plan("sweep", &a)?;
            distill::run::check::config_alone(&p)?;
            let _lock = p.lock()?;
            sweep::run(&p).map(|_| ())
        }
        Command::Glue(a) => glue::run(&a).map(|_| ()),
        Command::Train { args } => {
            let group = ranks::join()?;
            let result = config::load(&args.config, &args.set).and_then(|cfg| {
                let device = cfg.device.for_rank(&group)?;
                let p = Plan::new(cfg, device, group.clone())?;
                distill::run::check::config_alone(&p)?;
                let _lock = p.lock()?;
                StudentStage::new(&p).train()
            });
            ranks::finish(&group, result).map(|_| ())
        }
        Command::Compare {
            args,
            runs,
            json,
            runtime,
        } => {
            let p = plan("compare", &args)?;
            let _lock = p.lock()?;
            print_report(&pipeline::compare(&p, &runs, runtime)?, json)
        }
        Command::Export {
            args,
            out,
            format,
            int8,
        } => {
            if int8 && format != ExportFormat::Onnx {
                anyhow::bail!("--int8 quantizes the ONNX graph: add --format onnx (for int8 inference in Rust, use `predict --int8`)");
            }
            let p = plan("export", &args)?;
            let _lock = p.lock()?;
            ExportStage::new(&p)
                .write(out, format == ExportFormat::Onnx, int8)
                .map(|_| ())
        }
        Command::Onnx {
            model_dir,
            out,
            int8,
        } => {
            let name = if int8 {
                "model.int8.onnx"
            } else {
                "model.onnx"
            };
            let out = out.unwrap_or_else(|| model_dir.join(name));
            modeling::onnx::write(&model_dir, &out, int8)?;
            tracing::info!("onnx: wrote {}", out.display());
            Ok(())
        }
        Command::Predict(a) => predict::run(&a),
        Command::Pretrain { args, stop_after } => {
            let group = ranks::join()?;
            let result = pretrain_config::load(&args.config, &args.set)
                .and_then(|cfg| pretrain::run(&cfg, stop_after, &group));
            ranks::finish(&group, result).map(|_| ())
        }
        Command::FillMask(a) => fill_mask::run(&a),
        Command::Serve(a) => serve::run(&a),
        Command::Embed(a) => embed::run(&a),
        Command::Encode(a) => encode::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Cache(a) => cache::run(&a),
    }
}
