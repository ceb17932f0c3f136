//! Data-parallel launching: the process group of `distill train` and `distill pretrain`. Under a launcher
//! that sets `DISTILL_RANK`, `DISTILL_WORLD_SIZE` and `DISTILL_MASTER` (a cluster script, one process per GPU
//! or machine), the group comes from the environment. `--nproc N` makes this process rank 0 of N local
//! ones and starts the other N - 1 as copies of itself, with the cores shared out between them.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use train::dist::Group;

/// This process's group, and the local ranks it started (to wait for with `finish`).
pub struct Launch {
    pub group: Arc<Group>,
    children: Vec<(usize, Child)>,
}

impl Launch {
    /// The group from `--nproc` (this process is rank 0) or from the environment (a group of one
    /// when neither is given).
    pub fn new(nproc: Option<usize>) -> Result<Self> {
        let n = match nproc {
            None | Some(1) => {
                return Ok(Self {
                    group: Arc::new(Group::from_env()?),
                    children: Vec::new(),
                })
            }
            Some(0) => bail!("--nproc: at least 1 process"),
            Some(n) => n,
        };
        if std::env::var_os("DISTILL_WORLD_SIZE").is_some() {
            bail!("--nproc: this process is already a rank of a launched group (DISTILL_WORLD_SIZE is set)");
        }
        // A free port: bound, released, and bound again by rank 0 below.
        let master = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("--nproc: no free local port")?
            .to_string();
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let threads =
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| (cores / n).max(1).to_string());
        // This process's own kernels read the same variable (before any of them has run).
        std::env::set_var("RAYON_NUM_THREADS", &threads);
        let exe = std::env::current_exe().context("--nproc: cannot find this executable")?;
        let args = without_nproc(std::env::args().skip(1));
        let mut children = Vec::new();
        for rank in 1..n {
            let child = Command::new(&exe)
                .args(&args)
                .env("DISTILL_RANK", rank.to_string())
                .env("DISTILL_WORLD_SIZE", n.to_string())
                .env("DISTILL_MASTER", &master)
                .env("RAYON_NUM_THREADS", &threads)
                .spawn()
                .with_context(|| format!("--nproc: starting rank {rank}"))?;
            children.push((rank, child));
        }
        let mut launch = Self {
            group: Arc::new(Group::single()),
            children,
        };
        match Group::connect(0, n, &master, Duration::from_secs(120)) {
            Ok(g) => launch.group = Arc::new(g),
            Err(e) => {
                launch.kill();
                return Err(e.into());
            }
        }
        tracing::info!("data-parallel: {n} processes, {threads} threads each");
        Ok(launch)
    }

    /// The device of this rank: with several ranks and a CUDA device chosen without an ordinal
    /// (`auto`, `cuda`), rank r of a machine takes GPU r (`DISTILL_LOCAL_RANK`, default the rank).
    pub fn device(&self, spec: &str, chosen: Device) -> Result<Device> {
        if self.group.world() == 1 || !chosen.is_cuda() || spec.contains(':') {
            return Ok(chosen);
        }
        let local = std::env::var("DISTILL_LOCAL_RANK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.group.rank());
        Ok(Device::new_cuda(local)?)
    }

    /// Waits for the local ranks; the run fails if this rank or any of them did.
    pub fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.kill();
            return result;
        }
        for (rank, child) in &mut self.children {
            let status = child
                .wait()
                .with_context(|| format!("waiting for rank {rank}"))?;
            if !status.success() {
                bail!("data-parallel rank {rank} failed ({status}); see its output above");
            }
        }
        result
    }

    fn kill(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Launch {
    /// A rank 0 that stops early (an error, a panic) takes its local ranks with it.
    fn drop(&mut self) {
        self.kill();
    }
}

/// The command line without `--nproc N` / `--nproc=N`.
fn without_nproc(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == "--nproc" {
            skip = true;
        } else if !a.starts_with("--nproc=") {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_children_get_the_command_line_without_nproc() {
        let args = [
            "train",
            "c.yaml",
            "--nproc",
            "2",
            "--set",
            "x=1",
            "--nproc=3",
        ];
        assert_eq!(
            without_nproc(args.iter().map(|s| s.to_string())),
            ["train", "c.yaml", "--set", "x=1"]
        );
    }
}
