//! Where a model comes from: a local Hugging Face folder, or the hub by id and revision (through
//! hf-hub, which reuses its local cache, `$HF_HOME/hub/models--org--name/snapshots/REV/…`, before
//! touching the network). This is the only code that may reach the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub { id: String, revision: String },
}

/// Paths of a model's files on local disk.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    /// One or more safetensors shards, or a pickle `pytorch_model.bin`.
    pub weights: Vec<PathBuf>,
    pub tokenizer_json: Option<PathBuf>,
    pub vocab_txt: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
}

impl ModelFiles {
    /// Whether the folder's tokenizer lower-cases (`do_lower_case` in tokenizer_config.json).
    pub fn lowercase(&self) -> bool {
        self.tokenizer_config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
            .unwrap_or(false)
    }
}

impl ModelSource {
    /// A folder that exists is local, and so is any spec that reads as a path: one that starts with `.`,
    /// `/`, `~` or `models/` (the git-ignored folder of downloaded checkpoints), has no `/` or more than one,
    /// or whose first part is a folder here (`runs/x`). Only what is left, `owner/name` in the Hub's
    /// characters, is a hub id; so a mistyped or missing local folder is reported as missing, not looked
    /// up on the network.
    pub fn parse(spec: &str, revision: &str) -> Self {
        let p = Path::new(spec);
        if p.is_dir() || !looks_like_hub_id(spec) {
            ModelSource::Local(p.to_path_buf())
        } else {
            ModelSource::Hub {
                id: spec.to_string(),
                revision: revision.to_string(),
            }
        }
    }

    /// Resolves the source to local files. `allow_pickle` admits `pytorch_model.bin` when no
    /// safetensors weights exist (pickle can run code when produced by an untrusted party).
    pub fn resolve(&self, allow_pickle: bool) -> Result<ModelFiles> {
        match self {
            ModelSource::Local(dir) => resolve_dir(dir, allow_pickle),
            ModelSource::Hub { id, revision } => resolve_hub(id, revision, allow_pickle),
        }
    }

    /// The model's id on the Hub, where it can be known: a hub source's own; a folder of the hub cache
    /// (`models--owner--name/snapshots/REV`); or a folder whose model card (`README.md`) loads one id
    /// alone (`SentenceTransformer('owner/name')`, `from_pretrained('owner/name')`), as the cards of
    /// sentence-transformers and transformers models load themselves. For a model card's `base_model`.
    pub fn hub_id(&self) -> Option<String> {
        let dir = match self {
            ModelSource::Hub { id, .. } => return Some(id.clone()),
            ModelSource::Local(dir) => dir.canonicalize().ok()?,
        };
        let cached = dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))
            .and_then(Path::parent)
            .and_then(|repo| repo.file_name()?.to_str()?.strip_prefix("models--"))
            .and_then(|name| name.split_once("--"))
            .map(|(owner, name)| format!("{owner}/{name}"));
        if cached.is_some() {
            return cached;
        }
        let card = std::fs::read_to_string(dir.join("README.md")).ok()?;
        let mut ids: Vec<&str> = ["SentenceTransformer(", "from_pretrained("]
            .iter()
            .flat_map(|call| card.split(call).skip(1))
            .filter_map(|rest| {
                let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
                let id = rest[1..].split(quote).next()?;
                looks_like_hub_id(id).then_some(id)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        match ids.as_slice() {
            [id] => Some(id.to_string()),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::Local(p) => p.display().to_string(),
            ModelSource::Hub { id, revision } => format!("{id}@{revision}"),
        }
    }
}

/// `owner/name` with the Hub's characters (letters, digits, `-`, `_`, `.`; no `--` or `..`, 96 at most),
/// and an owner that is no folder here.
fn looks_like_hub_id(spec: &str) -> bool {
    let Some((owner, name)) = spec.split_once('/') else {
        return false;
    };
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 96
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.contains("--")
            && !s.contains("..")
    };
    part(owner) && part(name) && owner != "models" && !Path::new(owner).is_dir()
}

fn resolve_dir(dir: &Path, allow_pickle: bool) -> Result<ModelFiles> {
    if !dir.is_dir() {
        let here = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "the current directory".into());
        let msg = if dir.is_relative() {
            format!("model folder not found (a relative path, looked up from {here}); for a model on the Hugging Face Hub give its id as `owner/name`")
        } else {
            "model folder not found; for a model on the Hugging Face Hub give its id as `owner/name`".to_string()
        };
        return Err(Error::file(dir, msg));
    }
    let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let config = opt("config.json").ok_or_else(|| Error::file(dir, "no config.json"))?;
    let weights = if let Some(p) = opt("model.safetensors") {
        vec![p]
    } else if let Some(index) = opt("model.safetensors.index.json") {
        shard_files(&index)?
    } else if let Some(p) = opt("pytorch_model.bin") {
        if !allow_pickle {
            return Err(Error::file(
                &p,
                "only pickle weights found; pickle can run arbitrary code, so set `allow_pickle: true` to load it (or convert it to safetensors)",
            ));
        }
        vec![p]
    } else {
        return Err(Error::file(
            dir,
            "no model.safetensors (or model.safetensors.index.json) found",
        ));
    };
    Ok(ModelFiles {
        config,
        weights,
        tokenizer_json: opt("tokenizer.json"),
        vocab_txt: opt("vocab.txt"),
        tokenizer_config: opt("tokenizer_config.json"),
    })
}

/// Shard paths listed in a `model.safetensors.index.json`.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(index, e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::file(index, "no `weight_map` object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|f| f.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// The hub cache in use: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(p) => Cache::new(PathBuf::from(p)),
        None => Cache::from_env(),
    }
}

/// The hub itself for `repo`, downloading into `cache`; refused with `HF_HUB_OFFLINE=1`, when only the
/// cache may be read. The message says why, for the caller to put in its own error.
pub fn remote(
    cache: &Cache,
    repo: Repo,
) -> std::result::Result<hf_hub::api::sync::ApiRepo, String> {
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(format!(
            "not in the hub cache at {} and HF_HUB_OFFLINE=1",
            cache.path().display()
        ));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .with_progress(true)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(api.repo(repo))
}

fn resolve_hub(id: &str, revision: &str, allow_pickle: bool) -> Result<ModelFiles> {
    let err = |msg: String| Error::Hub {
        id: id.into(),
        revision: revision.into(),
        msg: format!(
            "{msg}. `{id}` was read as a Hugging Face Hub id because no folder `{id}` exists here; \
             for a local folder give its path (`./{id}` or an absolute path)"
        ),
    };
    let cache = hub_cache();
    // A snapshot already in the cache is used as is: by branch/tag through refs/, or by commit hash.
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let snapshots = cache.path().join(repo.folder_name()).join("snapshots");
    let cached = cache
        .repo(repo.clone())
        .get("config.json")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .or_else(|| Some(snapshots.join(revision)).filter(|p| p.join("config.json").is_file()));
    if let Some(dir) = cached {
        return resolve_dir(&dir, allow_pickle);
    }
    let remote = remote(&cache, repo).map_err(err)?;
    let config = remote
        .get("config.json")
        .map_err(|e| err(format!("config.json: {e}")))?;
    // Optional files: absent ones are simply skipped.
    for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
        let _ = remote.get(name);
    }
    let weights = remote.get("model.safetensors").or_else(|e| {
        if allow_pickle {
            remote.get("pytorch_model.bin")
        } else {
            Err(e)
        }
    });
    weights.map_err(|e| err(format!("model.safetensors: {e}")))?;
    let dir = config.parent().unwrap_or(Path::new(".")).to_path_buf();
    resolve_dir(&dir, allow_pickle)
}

impl ModelFiles {
    /// A path to name in messages about the weights.
    pub fn weights_label(&self) -> PathBuf {
        self.weights
            .first()
            .cloned()
            .unwrap_or_else(|| self.config.clone())
    }

    /// Reads every weight tensor (all shards) onto `device`.
    pub fn read_tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut all = HashMap::new();
        for path in &self.weights {
            let is_pickle = path.extension().is_some_and(|e| e == "bin");
            let loaded: HashMap<String, Tensor> = if is_pickle {
                candle_core::pickle::read_all(path)
                    .map_err(|e| Error::checkpoint(path, e.to_string()))?
                    .into_iter()
                    .collect()
            } else {
                candle_core::safetensors::load(path, device)
                    .map_err(|e| Error::checkpoint(path, format!("cannot read safetensors: {e}")))?
            };
            all.extend(loaded);
        }
        Ok(all)
    }

    /// Bytes of the weight files, for reports.
    pub fn weights_size(&self) -> u64 {
        self.weights
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}
