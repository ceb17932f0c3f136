//! Gradients summed on the GPUs by NCCL (cudarc's, through candle-core's `nccl` feature): one flat
//! buffer per update, never copied to the host.
//!
//! `fast` is NCCL's all-reduce (its ring or tree decides the order of additions). `deterministic`
//! all-gathers the ranks' buffers and adds them in rank order on every GPU: each rank computes the same
//! sum in the order the CPU path uses, with no broadcast needed.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{CustomOp1, Layout, Shape, Tensor};

use super::Reduction;
use crate::{Error, Result};

/// An NCCL communicator on one GPU.
pub(super) struct Gpu {
    comm: Comm,
    world: usize,
}

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Msg(format!("NCCL {what}: {e:?}"))
}

impl Gpu {
    /// The communicator's id: made by rank 0 and sent to the others with `broadcast`.
    pub(super) fn new_id(
        rank: usize,
        broadcast: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Id> {
        let mut bytes = [0u8; 128];
        if rank == 0 {
            let id = Id::new().map_err(|e| nccl_err("unique id", e))?;
            for (b, c) in bytes.iter_mut().zip(id.internal()) {
                *b = *c as u8;
            }
        }
        broadcast(&mut bytes)?;
        Ok(Id::uninit(bytes.map(|b| b as std::ffi::c_char)))
    }

    pub(super) fn new(dev: &CudaDevice, rank: usize, world: usize, id: Id) -> Result<Self> {
        let comm = Comm::from_rank(dev.cuda_stream(), rank, world, id)
            .map_err(|e| nccl_err("communicator", e))?;
        Ok(Self { comm, world })
    }

    pub(super) fn sum(&self, flat: &Tensor, how: Reduction) -> Result<Tensor> {
        let flat = flat.contiguous()?;
        if how == Reduction::Fast {
            return Ok(flat.apply_op1_no_bwd(&Collective {
                comm: &self.comm,
                gather: false,
            })?);
        }
        let n = flat.elem_count();
        let all = flat
            .apply_op1_no_bwd(&Collective {
                comm: &self.comm,
                gather: true,
            })?
            .reshape((self.world, n))?;
        let mut sum = all.get(0)?;
        for r in 1..self.world {
            sum = (sum + all.get(r)?)?;
        }
        Ok(sum)
    }
}

/// NCCL's all-reduce (sum) or all-gather of an f32 buffer, into a new buffer on the same GPU.
struct Collective<'a> {
    comm: &'a Comm,
    gather: bool,
}

impl CustomOp1 for Collective<'_> {
    fn name(&self) -> &'static str {
        if self.gather {
            "nccl-all-gather"
        } else {
            "nccl-all-reduce"
        }
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("{}: the tensor is not on a GPU", self.name())
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let src = s.as_cuda_slice::<f32>()?;
        let src = match l.contiguous_offsets() {
            Some((a, b)) => src.slice(a..b),
            None => candle_core::bail!("{}: the buffer is not contiguous", self.name()),
        };
        let n = l.shape().elem_count();
        let world = self.comm.world_size();
        let out_len = if self.gather { n * world } else { n };
        let mut dst = dev.alloc_zeros::<f32>(out_len)?;
        let done = if self.gather {
            self.comm.all_gather(&src, &mut dst)
        } else {
            self.comm.all_reduce(&src, &mut dst, &ReduceOp::Sum)
        };
        done.map_err(|e| candle_core::Error::Msg(format!("{}: {e:?}", self.name())))?;
        Ok((CudaStorage::wrap_cuda_slice(dst, dev), Shape::from(out_len)))
    }
}
