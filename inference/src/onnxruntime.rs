//! Runs a classifier's ONNX graph (`modeling::onnx`, f32 or int8) in onnxruntime, the runtime most ONNX
//! deployments use, through the `ort` crate. The shared library is opened at run time, from
//! `ORT_DYLIB_PATH` or the system's library path: builds need no onnxruntime, and only
//! `--runtime onnxruntime` looks for it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use ort::session::{builder::GraphOptimizationLevel, Session as Runner};
use ort::value::Tensor as OrtTensor;

use modeling::Encoded;
use modeling::{Error, Result};

/// The variable that names the shared library, as `ort` reads it.
pub const LIBRARY_VAR: &str = "ORT_DYLIB_PATH";

/// The library `LIBRARY_VAR` names, else `libonnxruntime.so` on the loader's path.
fn library_path() -> PathBuf {
    match std::env::var_os(LIBRARY_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(format!(
            "{}onnxruntime{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )),
    }
}

/// Opens the shared library and creates onnxruntime's environment, once per process. `ort` would panic on
/// a missing library at its first call; opening it here first turns that into an error that says where
/// to get one.
fn environment() -> Result<&'static ort::environment::Environment> {
    static ENV: std::sync::OnceLock<std::result::Result<ort::environment::Environment, String>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let path = library_path();
        let builder = ort::init_from(&path).map_err(|e| {
            format!(
                "onnxruntime could not be loaded ({e}); set {LIBRARY_VAR} to its shared library, \
                 e.g. `export {LIBRARY_VAR}=$(bash tools/setup_onnxruntime.sh)`"
            )
        })?;
        let env = builder
            .with_name("distill")
            .build()
            .map_err(|e| format!("onnxruntime ({}): {e}", path.display()))?;
        // Its info level narrates every graph rewrite and allocation; warnings and errors reach our log.
        env.set_log_level(ort::logging::LogLevel::Warning);
        Ok(env)
    })
    .as_ref()
    .map_err(|e| Error::Msg(e.clone()))
}

/// Which library runs the graphs, by file name (`libonnxruntime.so.1.30.0`): the wheel names it with its
/// release, and the build string that onnxruntime reports may not carry one.
pub fn library() -> Result<String> {
    environment()?;
    let path = library_path();
    Ok(path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string()))
}

/// An ONNX classifier graph loaded into onnxruntime. Inputs `input_ids`, `attention_mask` and, when the
/// graph has it, `token_type_ids`, all int64; output `logits`.
pub struct OrtClassifier {
    /// onnxruntime runs one call at a time on it (`run` takes `&mut`); callers share it.
    runner: Mutex<Runner>,
    type_ids: bool,
    /// Where the graph came from, for errors.
    source: String,
}

impl OrtClassifier {
    /// Loads the graph at `path`, to run on `threads` intra-op threads.
    pub fn from_file(path: &Path, threads: usize) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
        Self::from_bytes(&bytes, threads, path.display().to_string())
    }

    /// Loads a serialised graph (`modeling::onnx::to_onnx`); `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], threads: usize, source: String) -> Result<Self> {
        let env = environment()?;
        let fail = |e: &dyn std::fmt::Display| Error::Msg(format!("{source}: onnxruntime: {e}"));
        let runner = Runner::builder(env)
            .map_err(|e| fail(&e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| fail(&e))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| fail(&e))?
            .commit_from_memory(bytes)
            .map_err(|e| fail(&e))?;
        let names: Vec<&str> = runner.inputs().iter().map(|i| i.name()).collect();
        for need in ["input_ids", "attention_mask"] {
            if !names.contains(&need) {
                return Err(fail(&format!(
                    "the graph has no input `{need}` (inputs: {names:?}); export it with `distill export --format onnx`"
                )));
            }
        }
        if !runner.outputs().iter().any(|o| o.name() == "logits") {
            return Err(fail(&"the graph has no output `logits`"));
        }
        let type_ids = names.contains(&"token_type_ids");
        Ok(Self {
            runner: Mutex::new(runner),
            type_ids,
            source,
        })
    }

    /// Logits [b, c] on the CPU for `items`, padded to the longest with `pad_id`: the batch that
    /// `modeling::batch::make_batch` builds, in int64.
    pub fn logits(&self, items: &[&Encoded], pad_id: u32) -> Result<Tensor> {
        let b = items.len();
        let s = items.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![i64::from(pad_id); b * s];
        let mut types = vec![0i64; b * s];
        let mut mask = vec![0i64; b * s];
        for (r, e) in items.iter().enumerate() {
            let row = r * s;
            for (j, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[row + j] = i64::from(id);
                types[row + j] = i64::from(ty);
                mask[row + j] = 1;
            }
        }
        let fail =
            |e: &dyn std::fmt::Display| Error::Msg(format!("{}: onnxruntime: {e}", self.source));
        let shape = [b as i64, s as i64];
        let tensor = |v: Vec<i64>| OrtTensor::from_array((shape, v)).map_err(|e| fail(&e));
        let mut inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask)?,
        ];
        if self.type_ids {
            inputs.push(("token_type_ids".into(), tensor(types)?.into()));
        }
        let mut runner = self
            .runner
            .lock()
            .map_err(|_| fail(&"an earlier run panicked"))?;
        let outputs = runner.run(inputs).map_err(|e| fail(&e))?;
        let (dims, values) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(&e))?;
        let c = match **dims {
            [rows, c] if rows == b as i64 => c as usize,
            _ => {
                return Err(fail(&format!(
                    "logits of shape {dims:?} for a batch of {b}"
                )))
            }
        };
        Ok(Tensor::from_vec(values.to_vec(), (b, c), &Device::Cpu)?)
    }
}
