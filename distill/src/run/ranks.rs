//! The data-parallel ranks of a command that an MPI launcher started (`mpirun -np N distill train CFG`):
//! the group, the cores each rank takes, and how a failed rank ends the whole job.

use std::rc::Rc;

use anyhow::{bail, Result};
use train::dist::Group;

/// This process's group (a group of one outside a launcher). Ranks sharing a machine share its cores:
/// each takes its part unless `RAYON_NUM_THREADS` says otherwise.
pub fn join() -> Result<Rc<Group>> {
    let group = Group::from_env()?;
    if group.world() > 1 {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let threads = std::env::var("RAYON_NUM_THREADS")
            .unwrap_or_else(|_| (cores / group.local_world()).max(1).to_string());
        // Read by the thread pool when it starts, which no kernel has done yet.
        std::env::set_var("RAYON_NUM_THREADS", &threads);
        if group.is_main() {
            tracing::info!(
                "data-parallel: {} processes, {} on this machine, {threads} threads each",
                group.world(),
                group.local_world()
            );
        }
    }
    Ok(Rc::new(group))
}

/// `result`; except that a rank that failed among several prints its error with its rank and ends the
/// job (MPI_Abort), so that the launcher stops the other ranks and exits non-zero at once.
pub fn finish<T>(group: &Group, result: Result<T>) -> Result<T> {
    match result {
        Err(e) if group.world() > 1 => group.abort(&format!("{e:#}")),
        r => r,
    }
}

/// Refuses to run `command` as one of several ranks: it works in one process.
pub fn alone(command: &str) -> Result<()> {
    if train::dist::several_ranks() {
        bail!(
            "`distill {command}` runs as one process; under mpirun or srun, run `distill teacher` and \
             `distill train` (or `distill pretrain`), then `distill {command}` alone (docs/multi-gpu.md)"
        );
    }
    Ok(())
}
