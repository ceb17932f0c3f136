//! Data-parallel training across processes: the group the training loop sums gradients over.
//!
//! The processes come from MPI. `mpirun -np N distill train CFG` (or `srun --mpi=pmix distill train CFG`
//! on a Slurm cluster) starts N copies on any number of machines; each learns its rank, the world size
//! and its rank on its own machine from the communicator (the `mpi` feature). Without the feature a
//! process is a group of one, and refuses to run as one of several ranks. On GPUs, with the `nccl`
//! feature, the gradients are summed by NCCL on the devices; everything else (the start check, logs,
//! barriers, evaluation verdicts) goes through MPI.
//!
//! `Reduction::Deterministic` gathers every rank's buffer on rank 0, adds them in rank order and sends
//! the sum back, so N ranks with one micro-batch each equal one process accumulating the N micro-batches,
//! float for float. `Reduction::Fast` is the library's all-reduce, whose order of additions is its own.

#[cfg(feature = "mpi")]
mod mpi_world;
#[cfg(feature = "nccl")]
mod nccl;

use candle_core::{DType, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the ranks' gradients are summed (`train.all_reduce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Gather, add in rank order, broadcast: the same result as one process accumulating every
    /// rank's micro-batches, bit for bit, at any world size.
    #[default]
    Deterministic,
    /// `MPI_Allreduce`, or NCCL's ring on GPUs: less traffic through rank 0, and a sum that may differ
    /// from the deterministic one in the last bits (within 1e-6 of the gradient norm).
    Fast,
}

impl Reduction {
    pub fn is_deterministic(&self) -> bool {
        *self == Reduction::Deterministic
    }
}

/// This process's place in a data-parallel run (one process, the default, is a group of one).
pub struct Group {
    rank: usize,
    world: usize,
    local_rank: usize,
    local_world: usize,
    #[cfg(feature = "mpi")]
    mpi: Option<mpi_world::Mpi>,
    #[cfg(feature = "nccl")]
    gpu: std::sync::Mutex<Option<nccl::Gpu>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group(rank {} of {})", self.rank, self.world)
    }
}

impl Default for Group {
    fn default() -> Self {
        Self::single()
    }
}

/// What an MPI launcher (mpirun, mpiexec, srun) tells a process in its environment: one of these is
/// set in every rank it starts.
const LAUNCHER_VARS: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"];

impl Group {
    /// A group of one: every collective is the identity.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            local_rank: 0,
            local_world: 1,
            #[cfg(feature = "mpi")]
            mpi: None,
            #[cfg(feature = "nccl")]
            gpu: std::sync::Mutex::new(None),
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// This rank's place among the ranks on its own machine: the GPU it takes.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// The ranks on this rank's machine, which share its cores.
    pub fn local_world(&self) -> usize {
        self.local_world
    }

    /// Rank 0 evaluates, logs and writes checkpoints.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// The group an MPI launcher started this process in, or a group of one outside a launcher.
    /// A build without the `mpi` feature refuses to be one of several ranks.
    pub fn from_env() -> Result<Self> {
        if launched_as().is_none() {
            return Ok(Self::single());
        }
        #[cfg(feature = "mpi")]
        {
            let (mpi, [rank, world], [local_rank, local_world]) = mpi_world::Mpi::init()?;
            Ok(Self {
                rank,
                world,
                local_rank,
                local_world,
                mpi: Some(mpi),
                #[cfg(feature = "nccl")]
                gpu: std::sync::Mutex::new(None),
            })
        }
        #[cfg(not(feature = "mpi"))]
        refuse_ranks_without_mpi()
    }

    /// Replaces `buf` on every rank by the sum of all ranks' buffers. Every rank must call it with a
    /// buffer of the same length.
    pub fn all_reduce_sum(&self, buf: &mut [f32], how: Reduction) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            m.all_reduce_sum(buf, how);
            return Ok(());
        }
        let _ = (buf, how);
        Err(self.no_transport())
    }

    /// The sum over the ranks of a flat f32 tensor. On a GPU with an NCCL communicator (`use_gpu`)
    /// it never leaves the device; elsewhere it goes through host memory and MPI.
    pub fn sum(&self, flat: &Tensor, how: Reduction) -> Result<Tensor> {
        #[cfg(feature = "nccl")]
        if let Some(g) = self.gpu.lock().map_err(|_| self.poisoned())?.as_ref() {
            return g.sum(flat, how);
        }
        if self.world == 1 {
            return Ok(flat.clone());
        }
        let mut buf = flat.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        self.all_reduce_sum(&mut buf, how)?;
        Ok(Tensor::from_vec(buf, flat.dims(), flat.device())?)
    }

    /// Sums gradients on `device` with NCCL from now on (GPUs, `nccl` feature): rank 0 makes the
    /// communicator's id and sends it to the others over MPI; a group of one makes it alone. Returns
    /// whether NCCL is in use (false on a CPU, or in a build without the feature).
    pub fn use_gpu(&self, device: &candle_core::Device) -> Result<bool> {
        #[cfg(feature = "nccl")]
        if let candle_core::Device::Cuda(dev) = device {
            let id = nccl::Gpu::new_id(self.rank, |bytes| self.broadcast(bytes))?;
            let gpu = nccl::Gpu::new(dev, self.rank, self.world, id)?;
            *self.gpu.lock().map_err(|_| self.poisoned())? = Some(gpu);
            return Ok(true);
        }
        let _ = device;
        Ok(false)
    }

    /// Whether gradients are summed by NCCL on the GPU (then even a group of one goes through it).
    pub fn sums_on_gpu(&self) -> bool {
        #[cfg(feature = "nccl")]
        if let Ok(g) = self.gpu.lock() {
            return g.is_some();
        }
        false
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            m.barrier();
            return Ok(());
        }
        Err(self.no_transport())
    }

    /// Every rank's `bytes`, in rank order, on rank 0 (an empty list elsewhere): for logs.
    pub fn gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.world == 1 {
            return Ok(vec![bytes.to_vec()]);
        }
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            return Ok(m.gather(bytes));
        }
        Err(self.no_transport())
    }

    /// Rank 0's `bytes` on every rank (the others' are overwritten; all have the same length).
    pub fn broadcast(&self, bytes: &mut [u8]) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            m.broadcast(bytes);
            return Ok(());
        }
        let _ = bytes;
        Err(self.no_transport())
    }

    /// Ends this rank after it failed with `message`, printed first with the rank's number. It exits
    /// non-zero without finalising MPI, so the launcher ends the whole job at once (mpirun always;
    /// srun with `--kill-on-bad-exit=1`) instead of leaving the others waiting in a collective. (An
    /// `MPI_Abort` from several ranks at once garbles OpenMPI 4's own report.)
    pub fn abort(&self, message: &str) -> ! {
        if self.world == 1 {
            eprintln!("error: {message}");
        } else {
            eprintln!(
                "error: data-parallel rank {} of {} failed: {message}",
                self.rank, self.world
            );
        }
        std::process::exit(1)
    }

    fn no_transport(&self) -> Error {
        Error::Msg(format!(
            "rank {} of {}: no MPI communicator",
            self.rank, self.world
        ))
    }

    #[cfg(feature = "nccl")]
    fn poisoned(&self) -> Error {
        Error::Msg("the NCCL communicator's lock is poisoned".into())
    }
}

/// The launcher variable this process was started with, and its value, if any.
fn launched_as() -> Option<(&'static str, String)> {
    LAUNCHER_VARS
        .iter()
        .find_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
}

/// This process's rank as its launcher's environment gives it (0 outside a launcher).
pub fn launcher_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Whether the launcher's environment says it started several ranks (rank 0 of an `srun --mpi=pmix`
/// job cannot tell: PMIx gives no world size in the environment).
pub fn several_ranks() -> bool {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .any(|k| num(k).is_some_and(|n| n > 1))
        || launcher_rank() > 0
}

/// Under a launcher without the `mpi` feature: a group of one when the launcher started one process,
/// an error naming the feature when it started several.
#[cfg(not(feature = "mpi"))]
fn refuse_ranks_without_mpi() -> Result<Group> {
    if several_ranks() {
        let (var, value) = launched_as().unwrap_or_default();
        return Err(Error::Msg(format!(
            "this process is one of several MPI ranks ({var}={value}), but this build of distill has no \
             MPI: build it with `cargo build --release --features mpi` (needs libopenmpi-dev and \
             libclang-dev), or run one process without mpirun"
        )));
    }
    Ok(Group::single())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_of_one_is_the_identity() {
        let g = Group::single();
        let mut buf = vec![1.0, 2.0];
        g.all_reduce_sum(&mut buf, Reduction::Fast).unwrap();
        g.barrier().unwrap();
        assert_eq!(buf, [1.0, 2.0]);
        assert_eq!(g.gather(b"x").unwrap(), vec![b"x".to_vec()]);
        let t = Tensor::new(&[1f32, 2.0], &candle_core::Device::Cpu).unwrap();
        let s = g.sum(&t, Reduction::Deterministic).unwrap();
        assert_eq!(s.to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        assert!(!g.use_gpu(&candle_core::Device::Cpu).unwrap());
    }

    #[test]
    fn the_reduction_is_named_in_snake_case_and_deterministic_by_default() {
        let r: Reduction = serde_json::from_str("\"fast\"").unwrap();
        assert_eq!(r, Reduction::Fast);
        assert!(Reduction::default().is_deterministic());
    }
}
