//! The cache of fine-tuned teachers and their targets, shared by every run of the machine, so that a
//! teacher is fine-tuned once and its targets computed once whatever output folder asks for them (as
//! `datasets` and the hub cache do): `$DISTILL_CACHE`, else `$XDG_CACHE_HOME/distill`, else
//! `~/.cache/distill`. An entry is a folder `KIND/KEY`, its key the SHA-256 of everything it was
//! computed from (a stage's stamp or fingerprint, as JSON), holding its files and a `manifest.json` with
//! each file's size and SHA-256.
//!
//! Safe by construction: an entry is written in a hidden temporary folder and renamed into place only
//! when whole, so a killed writer or a full disk leaves no entry, only a `.tmp-KEY` that the next writer
//! of that key removes; the one who computes an entry holds `locks/KIND-KEY.lock` meanwhile, so a second
//! run that needs it waits and then takes it; an entry whose files fail their checksum is removed and
//! recomputed, with a message naming it. Files move between the cache and an output folder as hard links
//! (copies across file systems): nothing of distill's rewrites a file in place, it renames new ones in.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The environment variable naming the cache folder; `off` (or `0`, `false`) turns the cache off.
pub const ENV: &str = "DISTILL_CACHE";

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// One file of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json` of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: String,
    pub key: String,
    /// What it is, in words (`all-mpnet-base-v2 fine-tuned on sst2`).
    pub what: String,
    /// What it was computed from (the stamp or fingerprint the key hashes).
    pub inputs: serde_json::Value,
    pub files: Vec<FileSum>,
    /// Unix seconds.
    pub created: u64,
    pub last_used: u64,
    /// The configs that computed it or took it, first the one that computed it (at most 20).
    pub configs: Vec<String>,
}

/// An entry found whole: its folder and manifest.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// The lock of the one computing an entry; released when dropped or when its process ends.
#[derive(Debug)]
pub struct Computing {
    _file: File,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key of an entry computed from `inputs`: the SHA-256 of their JSON.
pub fn key<T: Serialize>(inputs: &T) -> String {
    let json = serde_json::to_vec(inputs).unwrap_or_default();
    modeling::io::hex(&Sha256::digest(&json))
}

fn sum(path: &Path) -> Result<FileSum> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileSum {
        name,
        bytes: std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len(),
        sha256: modeling::io::hash_files(&[path])?,
    })
}

/// `to` as a hard link to `from`, or a copy where links cannot be made (another file system).
pub fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_file(to).map_err(|e| Error::io(to, e))?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    }
    Ok(())
}

impl Cache {
    /// The machine's cache (`$DISTILL_CACHE`, `$XDG_CACHE_HOME/distill`, `~/.cache/distill`); None when
    /// `DISTILL_CACHE` turns it off or no home folder is known.
    pub fn from_env() -> Option<Cache> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(v) = var(ENV) {
            let s = v.to_string_lossy().to_ascii_lowercase();
            if matches!(s.as_str(), "off" | "0" | "false" | "no") {
                return None;
            }
            return Some(Cache::at(PathBuf::from(v)));
        }
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| Cache::at(c.join("distill")))
    }

    pub fn at(root: PathBuf) -> Cache {
        Cache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(key)
    }

    /// Whether `kind/key` has an entry (not checked: see `get`).
    pub fn has(&self, kind: &str, key: &str) -> bool {
        self.dir(kind, key).join("manifest.json").is_file()
    }

    /// The entry `kind/key` when it is whole and every file has its checksum; an entry that fails is
    /// removed, with a warning naming it, so that the caller recomputes it.
    pub fn get(&self, kind: &str, key: &str, config: &str) -> Option<Entry> {
        let dir = self.dir(kind, key);
        let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
        match verify(&dir, &text) {
            Ok(mut manifest) => {
                manifest.last_used = now();
                if !manifest.configs.iter().any(|c| c == config) && manifest.configs.len() < 20 {
                    manifest.configs.push(config.to_string());
                }
                // The use is recorded where it can be; a read-only cache still serves.
                let _ = write_manifest(&dir, &manifest);
                Some(Entry { dir, manifest })
            }
            Err(why) => {
                tracing::warn!(
                    "cache: entry {kind}/{} ({}) is damaged: {why}; removing it and computing it again",
                    &key[..12.min(key.len())],
                    dir.display()
                );
                let _ = self.remove_dir(&dir);
                None
            }
        }
    }

    /// The lock of the one who computes `kind/key`: at once when free, else after waiting for the run
    /// that holds it (saying so), which then has usually put the entry in place.
    pub fn computing(&self, kind: &str, key: &str) -> Result<Computing> {
        let (file, path) = self.lock_file(kind, key)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!(
                    "cache: another run is computing {kind}/{} ({}); waiting for it",
                    &key[..12.min(key.len())],
                    path.display()
                );
                file.lock().map_err(|e| Error::io(&path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        Ok(Computing { _file: file })
    }

    /// `computing` without waiting: None while a run holds it.
    pub fn try_computing(&self, kind: &str, key: &str) -> Result<Option<Computing>> {
        let (file, path) = self.lock_file(kind, key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Computing { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    fn lock_file(&self, kind: &str, key: &str) -> Result<(File, PathBuf)> {
        let locks = self.root.join("locks");
        std::fs::create_dir_all(&locks).map_err(|e| Error::io(&locks, e))?;
        let path = locks.join(format!("{kind}-{key}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((file, path))
    }

    /// Puts `files` in place as the entry `kind/key` (the caller holds `computing`): written aside,
    /// synced, then renamed, so the entry appears whole or not at all.
    pub fn put(
        &self,
        kind: &str,
        key: &str,
        what: &str,
        inputs: serde_json::Value,
        files: &[PathBuf],
        config: &str,
    ) -> Result<Entry> {
        let dir = self.dir(kind, key);
        let parent = self.root.join(kind);
        let tmp = parent.join(format!(".tmp-{key}"));
        // A writer killed here before left its temporary: nobody else writes this key (`computing`).
        if tmp.exists() {
            self.remove_dir(&tmp)?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let written = (|| -> Result<Manifest> {
            let mut sums = Vec::new();
            for f in files {
                let s = sum(f)?;
                let to = tmp.join(&s.name);
                std::fs::copy(f, &to).map_err(|e| Error::io(&to, e))?;
                File::open(&to)
                    .and_then(|h| h.sync_all())
                    .map_err(|e| Error::io(&to, e))?;
                sums.push(s);
            }
            let t = now();
            let m = Manifest {
                kind: kind.into(),
                key: key.into(),
                what: what.into(),
                inputs,
                files: sums,
                created: t,
                last_used: t,
                configs: vec![config.to_string()],
            };
            write_manifest(&tmp, &m)?;
            Ok(m)
        })();
        let manifest = match written {
            Ok(m) => m,
            Err(e) => {
                let _ = self.remove_dir(&tmp);
                return Err(e);
            }
        };
        if dir.exists() {
            self.remove_dir(&dir)?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Entry { dir, manifest })
    }

    /// Every whole entry (temporaries and damaged manifests left out), oldest use first.
    pub fn list(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let kinds = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten();
        for kind in kinds.filter(|k| k.file_name() != "locks") {
            for e in std::fs::read_dir(kind.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let dir = e.path();
                let manifest = std::fs::read_to_string(dir.join("manifest.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Manifest>(&t).ok());
                if let Some(manifest) = manifest {
                    out.push(Entry { dir, manifest });
                }
            }
        }
        out.sort_by_key(|e| e.manifest.last_used);
        out
    }

    /// Removes an entry's folder (renamed aside first, so that it is never seen half-removed).
    pub fn remove_dir(&self, dir: &Path) -> Result<()> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = dir.with_file_name(format!(".rm-{name}-{}", std::process::id()));
        std::fs::rename(dir, &aside).map_err(|e| Error::io(dir, e))?;
        std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, e))
    }
}

impl Entry {
    /// Bytes of the entry's files.
    pub fn bytes(&self) -> u64 {
        self.manifest.files.iter().map(|f| f.bytes).sum()
    }

    /// The first 12 characters of the key: the id `distill cache remove` takes.
    pub fn id(&self) -> &str {
        let k = &self.manifest.key;
        &k[..12.min(k.len())]
    }

    /// Links every file of the entry into `dest` (created if missing).
    pub fn link_into(&self, dest: &Path) -> Result<()> {
        std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
        for f in &self.manifest.files {
            link_or_copy(&self.dir.join(&f.name), &dest.join(&f.name))?;
        }
        Ok(())
    }
}

/// The manifest `text` of the entry in `dir`, when every file it lists has its size and checksum.
fn verify(dir: &Path, text: &str) -> std::result::Result<Manifest, String> {
    let m: Manifest =
        serde_json::from_str(text).map_err(|e| format!("unreadable manifest.json ({e})"))?;
    for f in &m.files {
        match sum(&dir.join(&f.name)) {
            Ok(s) if s == *f => {}
            Ok(_) => return Err(format!("{} fails its checksum", f.name)),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(m)
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let text = serde_json::to_string_pretty(m).map_err(|e| Error::Msg(e.to_string()))?;
    Ok(modeling::write_atomic(
        &dir.join("manifest.json"),
        text.as_bytes(),
    )?)
}
