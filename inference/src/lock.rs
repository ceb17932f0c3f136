//! One writer per output folder. Every command that writes under a folder holds an advisory lock (`flock`,
//! through std's `File::try_lock`) on `FOLDER/.distill.lock` for as long as it runs; a second writer is
//! refused at once, before it changes anything, with the holder's PID and command line. A model folder
//! that `export` replaces is locked beside it (`.NAME.distill.lock` in its parent), never inside, so that
//! the folder holds only what a Hub upload should carry. Readers (`predict`, `serve`) write nothing: they
//! hold a shared lock on that file when an export made one, so the folder cannot be replaced under them.
//! The kernel drops a lock when its holder exits, however it exits, so a killed run never leaves a stale
//! lock behind and the next run resumes as usual.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".distill.lock";

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// The exclusive lock of a writer on `dir` (created if missing).
    pub fn folder(dir: &Path) -> Result<Lock> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        Self::exclusive(&dir.join(LOCK_FILE), dir)
    }

    /// The exclusive lock on one file of a shared folder (a teacher shard's targets): `PATH.lock`, so
    /// that writers of different files in one folder go on side by side.
    pub fn file(path: &Path) -> Result<Lock> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
        }
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        Self::exclusive(&PathBuf::from(name), path)
    }

    /// The exclusive lock of a writer that replaces the model folder `dir` (an export): on
    /// `.NAME.distill.lock` beside it, created if missing.
    pub fn replacing(dir: &Path) -> Result<Lock> {
        let beside = beside(dir);
        if let Some(d) = beside.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
        }
        Self::exclusive(&beside, dir)
    }

    /// A reader's shared lock on the model folder `dir`: any number of readers, no writer. `None` when no
    /// writer ever made the lock file beside the folder (nothing of distill's replaces it) or it cannot be
    /// opened; a reader creates no file.
    pub fn reader(dir: &Path) -> Result<Option<Lock>> {
        let path = beside(dir);
        let Ok(file) = File::open(&path) else {
            return Ok(None);
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(TryLockError::WouldBlock) => bail!(
                "{} is being written by {}; wait for it to finish",
                dir.display(),
                holders(&path)
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
    }

    fn exclusive(path: &Path, what: &Path) -> Result<Lock> {
        let file = open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "{} is in use by {}; it was left unchanged. Wait for that command to finish, or give this one \
                 another output folder",
                what.display(),
                holders(path)
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
    }
}

/// `PARENT/.NAME.distill.lock`, the lock file of the model folder `PARENT/NAME`.
fn beside(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    dir.with_file_name(format!(".{name}{LOCK_FILE}"))
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Who holds the lock on `path`: the processes that the kernel's lock table (`/proc/locks`) lists for the
/// file, each as `pid N (command line)`; "another process" where that table cannot be read.
fn holders(path: &Path) -> String {
    let pids = lock_holders(path).unwrap_or_default();
    if pids.is_empty() {
        return "another process".into();
    }
    let named: Vec<String> = pids
        .iter()
        .map(|pid| match command_line(*pid) {
            Some(cmd) => format!("pid {pid} ({cmd})"),
            None => format!("pid {pid}"),
        })
        .collect();
    named.join(", ")
}

#[cfg(target_os = "linux")]
fn lock_holders(path: &Path) -> Option<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    // The kernel writes a file as MAJOR:MINOR:INODE, the device numbers in hex (glibc's encoding of dev_t).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    let mut pids: Vec<u32> = table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; waiters' lines have `->` after the number.
            let f = if f.get(1) == Some(&"->") {
                &f[1..]
            } else {
                &f[..]
            };
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
                .then(|| f.get(4)?.parse().ok())
                .flatten()
        })
        .filter(|&pid| pid != std::process::id())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Some(pids)
}

#[cfg(not(target_os = "linux"))]
fn lock_holders(_: &Path) -> Option<Vec<u32>> {
    None
}

fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::folder(dir.path()).unwrap();
        let err = Lock::folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("is in use by"), "{err}");
        drop(first);
        Lock::folder(dir.path()).unwrap();
    }

    #[test]
    fn readers_share_and_keep_writers_out() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("export");
        std::fs::create_dir(&model).unwrap();
        // No writer ever replaced it: a reader locks nothing and writes nothing.
        assert!(Lock::reader(&model).unwrap().is_none());
        drop(Lock::replacing(&model).unwrap());
        let a = Lock::reader(&model).unwrap().unwrap();
        let b = Lock::reader(&model).unwrap().unwrap();
        assert!(Lock::replacing(&model).is_err());
        drop((a, b));
        let w = Lock::replacing(&model).unwrap();
        let err = Lock::reader(&model).unwrap_err().to_string();
        assert!(err.contains("is being written by"), "{err}");
        drop(w);
        assert_eq!(std::fs::read_dir(&model).unwrap().count(), 0);
        assert!(dir.path().join(".export.distill.lock").is_file());
    }

    #[test]
    fn file_locks_of_one_folder_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let a = Lock::file(&dir.path().join("shard-0")).unwrap();
        let _b = Lock::file(&dir.path().join("shard-1")).unwrap();
        assert!(Lock::file(&dir.path().join("shard-0")).is_err());
        drop(a);
        Lock::file(&dir.path().join("shard-0")).unwrap();
    }

    #[test]
    fn a_missing_read_only_folder_is_not_locked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Lock::reader(&dir.path().join("absent")).unwrap().is_none());
    }
}
