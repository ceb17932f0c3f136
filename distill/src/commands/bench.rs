//! `distill bench`: throughput and latency of our encoder on random weights and synthetic batches, in the
//! shapes of the speed targets (docs/performance.md): student (RoBERTa-tiny-cased) training steps at b32 × s128 and s64, teacher
//! (BERT-base and MPNet-base shapes) inference and an MPNet-base training step at b32 × s128, and student batch-1 latency
//! at 16/32/64 tokens.
//! `bench/pytorch_baseline.py` measures the same with transformers; `bench/run.sh` runs both side by side.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use modeling::{Batch, Classifier, EncoderConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Timed repetitions of each training step / inference batch (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Timed batch-1 forward passes per sequence length (after 10 untimed ones; at most 200).
    #[arg(long, default_value_t = 50)]
    pub latency_runs: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the BERT-base inference measurement (the slowest).
    #[arg(long)]
    pub skip_teacher: bool,
    /// Skip the training steps (to time or profile inference alone).
    #[arg(long)]
    pub skip_train: bool,
    /// Time inference on the model as loaded, without packing its dense weights (as `eval` and
    /// fill-mask run it).
    #[arg(long)]
    pub no_pack: bool,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (a CUDA build: see tools/cuda/build.sh and bench/gpu.sh).
    #[arg(long, default_value = "cpu")]
    pub device: crate::config::DeviceSpec,
    /// The training steps' precision: `fp32`, or `bf16` / `f16` mixed precision (f32 master weights;
    /// f16 with a loss scale), as `train.precision` sets it. Inference is timed in f32.
    #[arg(long, default_value = "fp32", value_parser = parse_precision)]
    pub precision: train::Precision,
}

fn parse_precision(s: &str) -> std::result::Result<train::Precision, String> {
    serde_json::from_value(json!(s)).map_err(|e| e.to_string())
}

fn random_batch(b: usize, s: usize, vocab: usize, rng: &mut StdRng, dev: &Device) -> Result<Batch> {
    let ids: Vec<u32> = (0..b * s)
        .map(|_| rng.random_range(1000..vocab as u32))
        .collect();
    Ok(Batch {
        input_ids: Tensor::from_vec(ids, (b, s), dev)?,
        token_type_ids: Tensor::zeros((b, s), candle_core::DType::U32, dev)?,
        attention_mask: Tensor::ones((b, s), candle_core::DType::F32, dev)?,
    })
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn train_steps(
    model: &Classifier,
    b: usize,
    s: usize,
    steps: usize,
    precision: train::Precision,
) -> Result<serde_json::Value> {
    let dev = &model.device;
    // As the trainer runs it: a clone in the compute dtype shares the f32 weights the optimizer updates.
    let mut mixed = model.clone();
    mixed.set_compute_dtype(precision.dtype())?;
    let scale = train::precision::LossScale::new(precision);
    let mut rng = StdRng::seed_from_u64(1);
    let batch = random_batch(b, s, model.config.vocab_size, &mut rng, dev)?;
    let labels = Tensor::from_vec((0..b as u32).map(|i| i % 2).collect::<Vec<_>>(), b, dev)?;
    let cfg = train::optim::AdamWConfig {
        total_steps: 1000,
        ..Default::default()
    };
    let mut opt = train::optim::AdamW::new(model.named_vars(), cfg)?;
    let (mut fwd, mut bwd, mut upd) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=steps {
        let t0 = Instant::now();
        let (logits, _) = mixed.forward(&batch, true, false)?;
        let loss = student::loss::ce(&logits, &labels)?;
        loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = if scale.dynamic {
            modeling::backward(&(loss * scale.scale)?, mixed.encoder.grad_sink())?
        } else {
            modeling::backward(&loss, mixed.encoder.grad_sink())?
        };
        dev.synchronize()?;
        let t2 = Instant::now();
        opt.step_scaled(&grads, &scale)?;
        dev.synchronize()?;
        let t3 = Instant::now();
        if i > 0 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            upd.push((t3 - t2).as_secs_f64());
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let step = mean(&fwd) + mean(&bwd) + mean(&upd);
    Ok(json!({
        "batch": b, "seq": s, "precision": precision.name(), "tokens_per_s": (b * s) as f64 / step,
        "step_s": step, "forward_s": mean(&fwd), "backward_s": mean(&bwd), "optimizer_s": mean(&upd),
    }))
}

fn inference(
    model: &Classifier,
    b: usize,
    s: usize,
    steps: usize,
    dev: &Device,
) -> Result<serde_json::Value> {
    let mut rng = StdRng::seed_from_u64(2);
    let batch = random_batch(b, s, model.config.vocab_size, &mut rng, dev)?;
    let mut times = Vec::new();
    for i in 0..=steps {
        let t0 = Instant::now();
        let (logits, _) = model.forward(&batch, false, false)?;
        logits.to_vec2::<f32>()?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    Ok(json!({"batch": b, "seq": s, "tokens_per_s": (b * s) as f64 / mean, "batch_s": mean}))
}

/// Batch-1 latency at `s` random tokens, measured as `compare` measures it (`inference::batch1_latency`)
/// over `runs` passes of the same input.
fn latency(model: &Classifier, s: usize, runs: usize) -> Result<serde_json::Value> {
    let mut rng = StdRng::seed_from_u64(3);
    let ids: Vec<u32> = (0..s)
        .map(|_| rng.random_range(1000..model.config.vocab_size as u32))
        .collect();
    let input = modeling::Encoded {
        type_ids: vec![0; s],
        ids,
    };
    let l = inference::batch1_latency(model, &vec![input; runs], 0)?;
    Ok(json!({"seq": s, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms}))
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let dev = a.device.select()?;
    let student_cfg = EncoderConfig::roberta_tiny_cased();
    let mut results = serde_json::Map::new();
    let student = if dev.is_cpu() {
        Classifier::new(&student_cfg, 2, 0, &dev)?
    } else {
        // The same weights on the CPU and the device (saved and loaded): the device's logits are
        // checked against the CPU's before anything is timed.
        let cpu = Classifier::new(&student_cfg, 2, 0, &Device::Cpu)?;
        let dir = tempfile::tempdir()?;
        cpu.save(dir.path(), &[])?;
        let files = modeling::ModelSource::Local(dir.path().into()).resolve(false)?;
        let (on_dev, _) = Classifier::load(&files, None, 0, &dev)?;
        let mut rng = StdRng::seed_from_u64(4);
        let batch = random_batch(4, 32, student_cfg.vocab_size, &mut rng, &Device::Cpu)?;
        let want = cpu.forward(&batch, false, false)?.0;
        let batch = random_batch(
            4,
            32,
            student_cfg.vocab_size,
            &mut StdRng::seed_from_u64(4),
            &dev,
        )?;
        let got = on_dev
            .forward(&batch, false, false)?
            .0
            .to_device(&Device::Cpu)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        eprintln!("{dev:?} vs CPU logits: max abs difference {diff:.2e}");
        results.insert("device_vs_cpu_max_abs_diff".into(), (diff as f64).into());
        on_dev
    };
    results.insert("threads".into(), rayon_threads().into());
    let mut train = Vec::new();
    for s in [128, 64].into_iter().filter(|_| !a.skip_train) {
        let r = train_steps(&student, 32, s, a.steps, a.precision)?;
        eprintln!(
            "student train b32 s{s}: {:.0} tokens/s ({r})",
            r["tokens_per_s"].as_f64().unwrap_or(0.0)
        );
        train.push(r);
    }
    results.insert("student_train".into(), train.into());
    // Inference runs as `predict` and `serve` load models: dense weights packed once (`packed`).
    let mut packed = student.clone();
    if !a.no_pack {
        packed.pack(modeling::Packing::F32)?;
    }
    let mut lat = Vec::new();
    for s in [16, 32, 64] {
        let r = latency(&packed, s, a.latency_runs)?;
        eprintln!("student latency b1 s{s}: {r}");
        lat.push(r);
    }
    results.insert("student_latency".into(), lat.into());
    results.insert("device".into(), format!("{dev:?}").into());
    // The same student in f32 and in dynamic int8 (`predict --int8`): batch-1 latency and b32 throughput.
    // int8 is a CPU path; on a GPU both rows are the f32 model.
    let mut int8 = student.clone();
    if dev.is_cpu() {
        int8.quantize_int8()?;
    }
    let mut lat8 = Vec::new();
    for s in [16, 32, 64] {
        let r = latency(&int8, s, a.latency_runs)?;
        eprintln!("student int8 latency b1 s{s}: {r}");
        lat8.push(r);
    }
    results.insert("student_int8_latency".into(), lat8.into());
    for (name, m) in [
        ("student_inference", &packed),
        ("student_int8_inference", &int8),
    ] {
        let r = inference(m, 32, 128, a.steps, &dev)?;
        eprintln!("{name} b32 s128: {r}");
        results.insert(name.into(), r);
    }
    if !a.skip_teacher {
        let base = EncoderConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            ..EncoderConfig::roberta_tiny_cased()
        };
        // all-mpnet-base-v2's shape: MPNet's relative position bias, RoBERTa-style positions.
        let mpnet = EncoderConfig {
            model_type: "mpnet".into(),
            vocab_size: 30527,
            max_position_embeddings: 514,
            pad_token_id: 1,
            layer_norm_eps: 1e-5,
            relative_attention_num_buckets: Some(32),
            ..base.clone()
        };
        for (key, name, cfg) in [
            ("teacher", "teacher (BERT-base)", &base),
            ("mpnet", "teacher (MPNet-base)", &mpnet),
        ] {
            let teacher = Classifier::new(cfg, 2, 0, &dev)?;
            let mut packed = teacher.clone();
            packed.pack(modeling::Packing::F32)?;
            let r = inference(&packed, 32, 128, a.steps, &dev)?;
            eprintln!("{name} inference b32 s128: {r}");
            results.insert(format!("{key}_inference"), r);
            if key == "mpnet" && !a.skip_train {
                // A step of the teacher's fine-tuning (`distill teacher` on a head-less checkpoint).
                let r = train_steps(&teacher, 32, 128, a.steps, a.precision)?;
                eprintln!("{name} train b32 s128: {r}");
                results.insert(format!("{key}_train"), r);
            }
            if dev.is_cpu() && kernels::bf16::available() {
                // The target pass of `teacher.precision: bf16`.
                let mut bf16 = teacher;
                bf16.pack(modeling::Packing::Bf16)?;
                let r = inference(&bf16, 32, 128, a.steps, &dev)?;
                eprintln!("{name} bf16 inference b32 s128: {r}");
                results.insert(format!("{key}_bf16_inference"), r);
            }
        }
    }
    if dev.is_cpu() {
        let c = ceilings(a.steps)?;
        eprintln!("ceilings: {c}");
        results.insert("ceilings".into(), c);
    }
    results.insert("peak_rss_mib".into(), peak_rss_mib().into());
    let v = serde_json::Value::Object(results);
    println!("{}", serde_json::to_string_pretty(&v)?);
    if let Some(p) = &a.json {
        modeling::write_atomic(p, serde_json::to_string_pretty(&v)?.as_bytes())?;
    }
    Ok(())
}

/// The machine's ceilings, measured with our own kernels: the matrix-product rate at a training shape
/// (4,096 tokens × 512 → 2,048, the student's FFN) and the time the student's 24 dense layers take on 16
/// tokens, where every weight is read once per pass (50 MB), so memory bandwidth bounds batch-1 latency.
fn ceilings(steps: usize) -> Result<serde_json::Value> {
    let dev = Device::Cpu;
    let (m, k, n) = (4096, 512, 2048);
    let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
    let mut best = f64::INFINITY;
    for _ in 0..=steps.max(2) {
        let t0 = Instant::now();
        x.matmul(&w.t()?)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
    let cfg = EncoderConfig::roberta_tiny_cased();
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    let mut layers = Vec::new();
    for _ in 0..cfg.num_hidden_layers {
        for (i, o) in [(h, h), (h, h), (h, h), (h, h), (h, f), (f, h)] {
            let w = Tensor::randn(0f32, 0.02, (o, i), &dev)?;
            let b = Tensor::zeros(o, candle_core::DType::F32, &dev)?;
            layers.push(kernels::packed::PackedLinear::from_linear(
                &candle_nn::Linear::new(w, Some(b)),
            )?);
        }
    }
    let xs = [
        Tensor::randn(0f32, 1.0, (16, h), &dev)?,
        Tensor::randn(0f32, 1.0, (16, f), &dev)?,
    ];
    let mut times = Vec::new();
    for i in 0..23 {
        let t0 = Instant::now();
        for (j, l) in layers.iter().enumerate() {
            l.forward(&xs[usize::from(j % 6 == 5)])?;
        }
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(json!({"matmul_gflops": gflops, "dense_s16_ms": inference::percentile(&times, 0.5)}))
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
