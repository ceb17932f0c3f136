//! The group's collectives over MPI's world communicator (rsmpi, without user-defined operations).
//!
//! MPI counts are 32-bit: buffers go in chunks, which also bounds rank 0's gather memory to
//! `world · CHUNK` floats whatever the model's size.

use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use crate::{Error, Result};

/// Floats per collective call (64 MiB a rank).
const CHUNK: usize = 1 << 24;

/// An initialised MPI; finalised when dropped.
pub(super) struct Mpi {
    _universe: mpi::environment::Universe,
}

impl Mpi {
    /// Initialises MPI: the handle, this rank and the world size, then this rank's place among the
    /// processes that share its machine's memory and their number.
    pub(super) fn init() -> Result<(Self, [usize; 2], [usize; 2])> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Msg("MPI was initialised twice in one process".into()))?;
        let world = universe.world();
        let node = world.split_shared(world.rank());
        let global = [world.rank() as usize, world.size() as usize];
        let local = [node.rank() as usize, node.size() as usize];
        Ok((
            Self {
                _universe: universe,
            },
            global,
            local,
        ))
    }

    fn world(&self) -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    pub(super) fn all_reduce_sum(&self, buf: &mut [f32], how: super::Reduction) {
        let world = self.world();
        let n = world.size() as usize;
        let root = world.process_at_rank(0);
        for chunk in buf.chunks_mut(CHUNK) {
            if !how.is_deterministic() {
                let mut sum = vec![0f32; chunk.len()];
                world.all_reduce_into(&chunk[..], &mut sum[..], SystemOperation::sum());
                chunk.copy_from_slice(&sum);
                continue;
            }
            if world.rank() == 0 {
                let mut all = vec![0f32; chunk.len() * n];
                root.gather_into_root(&chunk[..], &mut all[..]);
                // Rank 0's own values first, then each rank's in order: one accumulation order.
                for other in all.chunks_exact(chunk.len()).skip(1) {
                    for (a, b) in chunk.iter_mut().zip(other) {
                        *a += b;
                    }
                }
            } else {
                root.gather_into(&chunk[..]);
            }
            root.broadcast_into(chunk);
        }
    }

    pub(super) fn barrier(&self) {
        self.world().barrier();
    }

    pub(super) fn gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let world = self.world();
        let root = world.process_at_rank(0);
        // Lengths first, then every rank's bytes padded to the longest (log lines: small).
        let mut longest = 0u64;
        world.all_reduce_into(&(bytes.len() as u64), &mut longest, SystemOperation::max());
        let mut padded = bytes.to_vec();
        padded.resize(longest as usize + 8, 0);
        let len = padded.len();
        padded[len - 8..].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        if world.rank() != 0 {
            root.gather_into(&padded[..]);
            return Vec::new();
        }
        let mut all = vec![0u8; len * world.size() as usize];
        root.gather_into_root(&padded[..], &mut all[..]);
        all.chunks_exact(len)
            .map(|c| {
                let mut n = [0u8; 8];
                n.copy_from_slice(&c[len - 8..]);
                c[..u64::from_le_bytes(n) as usize].to_vec()
            })
            .collect()
    }

    pub(super) fn broadcast(&self, bytes: &mut [u8]) {
        self.world().process_at_rank(0).broadcast_into(bytes);
    }
}
