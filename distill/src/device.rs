//! Device selection from the config's `device` key: `auto`, `cpu`, `cuda`, `cuda:N`.

use anyhow::{anyhow, bail, Result};
use candle_core::Device;

/// `auto` takes the first CUDA device when this build has CUDA and a GPU is present, else the CPU.
pub fn select_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
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
        s => {
            let n: usize = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| anyhow!("device: expected cuda:N, got `{s}`"))?,
                None => bail!("device: expected auto, cpu or cuda:N, got `{s}`"),
            };
            if !candle_core::utils::cuda_is_available() {
                bail!("device: `{s}` asked for, but this build has no CUDA support (build with `--features cuda`)");
            }
            let d = std::panic::catch_unwind(|| Device::new_cuda(n))
                .map_err(|_| anyhow!("device: CUDA driver could not be loaded"))?
                .map_err(|e| anyhow!("device: {s}: {e}"))?;
            set_up(d)
        }
    }
}

/// A GPU made here allocates without cudarc's per-buffer events (`kernels::cuda`); the CPU as it is.
fn set_up(device: Device) -> Result<Device> {
    #[cfg(feature = "cuda")]
    kernels::cuda::untrack_events(&device)?;
    Ok(device)
}

/// The device of one data-parallel rank, and the group's way of summing gradients on it: with several
/// ranks and a GPU chosen without an ordinal (`auto`, `cuda`), each rank takes the GPU of its place
/// on its machine; with the `nccl` feature, gradients on a GPU are summed there by NCCL.
pub fn rank_device(spec: &str, group: &train::dist::Group) -> Result<Device> {
    let chosen = select_device(spec)?;
    let device = if group.world() > 1 && chosen.is_cuda() && !spec.contains(':') {
        set_up(Device::new_cuda(group.local_rank())?)?
    } else {
        chosen
    };
    if group.use_gpu(&device)? {
        tracing::info!("data-parallel: gradients summed by NCCL on the GPU");
    }
    Ok(device)
}
