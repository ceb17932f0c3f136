//! Files written whole or not at all: a temporary sibling, synced and renamed over the target, so a
//! reader never sees half a file and a failed write leaves the old file in place. Also the SHA-256 of
//! files that stamps and fingerprints record.

use sha2::{Digest, Sha256};

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// SHA-256 of files' contents, hex.
pub fn hash_files(paths: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        let mut f = std::fs::File::open(p).map_err(|e| Error::io(*p, e))?;
        std::io::copy(&mut f, &mut h).map_err(|e| Error::io(*p, e))?;
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and renamed, so readers
/// never see a half-written file and an existing good file survives a failed write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    commit_file(&tmp, path)
}

/// Writes `tensors` to `path` as safetensors through a temporary file, synced and renamed like
/// `write_atomic`, so a checkpoint is either the old one or the new one, never half of each.
pub fn save_tensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    path: &Path,
) -> Result<()> {
    let tmp = tmp_path(path);
    if let Err(e) = candle_core::safetensors::save(tensors, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::file(&tmp, format!("cannot write: {e}")));
    }
    commit_file(&tmp, path)
}

/// The hidden sibling `.NAME.tmp` that a file is written to before it is renamed over `path`.
fn tmp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Makes a finished temporary file durable (fsync) and moves it over `path` in one rename; on failure the
/// temporary file is removed and `path` keeps its old contents.
pub fn commit_file(tmp: &Path, path: &Path) -> Result<()> {
    let synced = usual_mode(tmp)
        .and_then(|_| std::fs::File::open(tmp))
        .and_then(|f| f.sync_all());
    let result = synced
        .map_err(|e| Error::io(tmp, e))
        .and_then(|_| std::fs::rename(tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Gives `path` the mode a plain `File::create` would (0666 less the umask). safetensors writes through a
/// private 0600 temporary file, which would leave an export unreadable to a server running as another user.
#[cfg(unix)]
fn usual_mode(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Linux reports the umask in /proc (reading it with umask(2) would change it); else the common 022.
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666 & !umask))
}

#[cfg(not(unix))]
fn usual_mode(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn committed_files_get_the_usual_mode_not_the_temporary_files_0600() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"y").unwrap();
        let usual = mode(&plain);
        // The temporary file starts with another mode than the usual one, whatever the umask.
        let private = if usual == 0o600 { 0o640 } else { 0o600 };
        let (tmp, path) = (dir.path().join(".x.tmp"), dir.path().join("x"));
        std::fs::write(&tmp, b"x").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(private)).unwrap();
        super::commit_file(&tmp, &path).unwrap();
        assert_eq!(mode(&path), usual);
    }
}
