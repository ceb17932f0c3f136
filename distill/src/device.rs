//! The config's `device` key (`auto`, `cpu`, `cuda`, `cuda:N`), parsed once when the config is read,
//! and the device it selects.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use candle_core::Device;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a run computes: `auto` (a GPU when this build has CUDA and one is present, else the CPU), `cpu`,
/// `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    /// A GPU: the given ordinal, or none given (`cuda`: the first, or each data-parallel rank's own).
    Cuda(Option<usize>),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(None)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| Self::Cuda(Some(n)))
                .ok_or_else(|| format!("must be auto, cpu, cuda or cuda:N (got `{s}`)")),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

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
