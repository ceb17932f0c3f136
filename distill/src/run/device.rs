//! The device a run's `device` key selects (`config::DeviceSpec`, parsed when the config was read), for
//! one process or for each data-parallel rank.

use anyhow::{anyhow, bail, Result};
use candle_core::Device;

pub use crate::config::DeviceSpec;

impl DeviceSpec {
    /// The device: `auto` takes the first CUDA device when this build has CUDA and a GPU is present,
    /// else the CPU.
    pub fn select(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    // cudarc may panic instead of erroring when the driver library is missing.
                    match std::panic::catch_unwind(|| Device::new_cuda(0)) {
                        Ok(Ok(d)) => set_up(d),
                        _ => {
                            tracing::warn!("device: CUDA unavailable at run time; using the CPU");
                            Ok(Device::Cpu)
                        }
                    }
                } else {
                    Ok(Device::Cpu)
                }
            }
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!("device: `{self}` asked for, but this build has no CUDA support (build with `--features cuda`)");
                }
                let d = std::panic::catch_unwind(|| Device::new_cuda(n.unwrap_or(0)))
                    .map_err(|_| anyhow!("device: CUDA driver could not be loaded"))?
                    .map_err(|e| anyhow!("device: {self}: {e}"))?;
                set_up(d)
            }
        }
    }

    /// The device of one data-parallel rank, and the group's way of summing gradients on it: with several
    /// ranks and a GPU chosen without an ordinal (`auto`, `cuda`), each rank takes the GPU of its place
    /// on its machine; with the `nccl` feature, gradients on a GPU are summed there by NCCL.
    pub fn for_rank(self, group: &train::dist::Group) -> Result<Device> {
        let chosen = self.select()?;
        let pinned = matches!(self, Self::Cuda(Some(_)));
        let device = if group.world() > 1 && chosen.is_cuda() && !pinned {
            set_up(Device::new_cuda(group.local_rank())?)?
        } else {
            chosen
        };
        if group.use_gpu(&device)? {
            tracing::info!("data-parallel: gradients summed by NCCL on the GPU");
        }
        Ok(device)
    }
}

/// A GPU made here allocates without cudarc's per-buffer events (`kernels::cuda`); the CPU as it is.
fn set_up(device: Device) -> Result<Device> {
    #[cfg(feature = "cuda")]
    kernels::cuda::untrack_events(&device)?;
    Ok(device)
}
