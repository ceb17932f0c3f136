//! Data-parallel training across processes: the process group the training loop sums gradients over.
//!
//! Rank 0 listens at the group's address and every other rank connects to it (a star over TCP). An
//! all-reduce sends each rank's buffer to rank 0, which adds them in rank order and sends the sum back.
//! The order is fixed, so a run is reproducible, and with one micro-batch per rank the sum is the same
//! float for float as one process accumulating those micro-batches in order.
//!
//! The transport is TCP through host memory on any device. It is portable and checkable without
//! GPUs; NCCL would keep GPU gradients on the GPUs (docs/multi-gpu.md).
//!
//! A process learns its place from `DISTILL_RANK`, `DISTILL_WORLD_SIZE` and `DISTILL_MASTER` (host:port of
//! rank 0), and waits `DISTILL_CONNECT_TIMEOUT` seconds (default 120) for the others.
//! `distill train --nproc N` sets them for N local processes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Identifies our protocol in the handshake, so a stray connection is refused.
const MAGIC: u32 = 0x4453_5431; // "DST1"

/// This process's place in a data-parallel run (one process, the default, is a group of one).
#[derive(Debug)]
pub struct Group {
    rank: usize,
    world: usize,
    /// Rank 0: one stream per other rank (index r - 1). Other ranks: the stream to rank 0.
    links: Vec<Mutex<TcpStream>>,
}

impl Default for Group {
    fn default() -> Self {
        Self::single()
    }
}

impl Group {
    /// A group of one: every collective is the identity.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            links: Vec::new(),
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Rank 0 evaluates, logs and writes checkpoints.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// The group the environment describes (`DISTILL_RANK`, `DISTILL_WORLD_SIZE`, `DISTILL_MASTER`),
    /// or a group of one when `DISTILL_WORLD_SIZE` is unset or 1.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(world) = var("DISTILL_WORLD_SIZE") else {
            return Ok(Self::single());
        };
        let num = |k: &str, v: String| {
            v.parse::<usize>()
                .map_err(|_| Error::Msg(format!("{k}: expected a number, got `{v}`")))
        };
        let world = num("DISTILL_WORLD_SIZE", world)?;
        if world <= 1 {
            return Ok(Self::single());
        }
        let rank = num(
            "DISTILL_RANK",
            var("DISTILL_RANK").ok_or_else(|| {
                Error::Msg("DISTILL_WORLD_SIZE is set but DISTILL_RANK is not".into())
            })?,
        )?;
        let master = var("DISTILL_MASTER").ok_or_else(|| {
            Error::Msg(
                "DISTILL_WORLD_SIZE is set but DISTILL_MASTER (host:port of rank 0) is not".into(),
            )
        })?;
        let timeout = match var("DISTILL_CONNECT_TIMEOUT") {
            Some(v) => num("DISTILL_CONNECT_TIMEOUT", v)?,
            None => 120,
        };
        Self::connect(rank, world, &master, Duration::from_secs(timeout as u64))
    }

    /// Forms the group: rank 0 binds `master` and waits for the others, which retry connecting until
    /// `timeout`. Each rank says who it is, so a wrong world size or a duplicate rank is an error.
    pub fn connect(rank: usize, world: usize, master: &str, timeout: Duration) -> Result<Self> {
        if rank >= world {
            return Err(Error::Msg(format!(
                "rank {rank} is outside a world of {world} processes"
            )));
        }
        let err = |what: String| Error::Msg(format!("data-parallel rank {rank}: {what}"));
        if rank == 0 {
            let listener = TcpListener::bind(master)
                .map_err(|e| err(format!("cannot listen on {master}: {e}")))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| err(e.to_string()))?;
            let mut slots: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
            let start = Instant::now();
            while slots.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).map_err(|e| err(e.to_string()))?;
                        s.set_nodelay(true).map_err(|e| err(e.to_string()))?;
                        let [magic, r, w] =
                            read_u32s::<3>(&mut s).map_err(|e| err(e.to_string()))?;
                        let (r, w) = (r as usize, w as usize);
                        if magic != MAGIC {
                            continue;
                        }
                        if w != world {
                            return Err(err(format!(
                                "rank {r} says the world has {w} processes, this one says {world}"
                            )));
                        }
                        match slots.get_mut(r.wrapping_sub(1)) {
                            Some(slot @ None) => *slot = Some(s),
                            _ => {
                                return Err(err(format!("a second or invalid rank {r} connected")))
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if start.elapsed() > timeout {
                            let missing: Vec<String> = slots
                                .iter()
                                .enumerate()
                                .filter(|(_, s)| s.is_none())
                                .map(|(i, _)| (i + 1).to_string())
                                .collect();
                            return Err(err(format!(
                                "ranks {} did not connect within {timeout:?}",
                                missing.join(", ")
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            let links = slots.into_iter().flatten().map(Mutex::new).collect();
            return Ok(Self { rank, world, links });
        }
        let start = Instant::now();
        let mut s = loop {
            match TcpStream::connect(master) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > timeout => {
                    return Err(err(format!("cannot reach rank 0 at {master}: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_nodelay(true).map_err(|e| err(e.to_string()))?;
        write_u32s(&mut s, &[MAGIC, rank as u32, world as u32]).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            rank,
            world,
            links: vec![Mutex::new(s)],
        })
    }

    /// Replaces `buf` on every rank by the sum of all ranks' buffers (added in rank order on rank 0).
    /// Every rank must call it with a buffer of the same length.
    pub fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        if self.rank == 0 {
            let mut other = vec![0f32; buf.len()];
            for (i, link) in self.links.iter().enumerate() {
                let mut s = self.lock(link, i + 1)?;
                self.recv(&mut s, &mut other, i + 1)?;
                for (a, b) in buf.iter_mut().zip(&other) {
                    *a += b;
                }
            }
            for (i, link) in self.links.iter().enumerate() {
                let mut s = self.lock(link, i + 1)?;
                self.send(&mut s, buf, i + 1)?;
            }
        } else {
            let mut s = self.lock(&self.links[0], 0)?;
            self.send(&mut s, buf, 0)?;
            self.recv(&mut s, buf, 0)?;
        }
        Ok(())
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        self.all_reduce_sum(&mut [0.0])
    }

    /// Every rank's `bytes`, in rank order, on rank 0 (an empty list elsewhere): for logs.
    pub fn gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.rank != 0 {
            let mut s = self.lock(&self.links[0], 0)?;
            let io = |e: std::io::Error| self.lost(0, e);
            write_u32s(&mut *s, &[bytes.len() as u32]).map_err(io)?;
            s.write_all(bytes).map_err(io)?;
            return Ok(Vec::new());
        }
        let mut all = vec![bytes.to_vec()];
        for (i, link) in self.links.iter().enumerate() {
            let mut s = self.lock(link, i + 1)?;
            let io = |e: std::io::Error| self.lost(i + 1, e);
            let [n] = read_u32s::<1>(&mut *s).map_err(io)?;
            let mut b = vec![0u8; n as usize];
            s.read_exact(&mut b).map_err(io)?;
            all.push(b);
        }
        Ok(all)
    }

    fn lock<'a>(
        &self,
        link: &'a Mutex<TcpStream>,
        peer: usize,
    ) -> Result<std::sync::MutexGuard<'a, TcpStream>> {
        link.lock()
            .map_err(|_| Error::Msg(format!("the link to rank {peer} is poisoned")))
    }

    fn lost(&self, peer: usize, e: std::io::Error) -> Error {
        Error::Msg(format!(
            "data-parallel rank {}: lost rank {peer} ({e}); it has probably failed, see its output",
            self.rank
        ))
    }

    fn send(&self, s: &mut TcpStream, buf: &[f32], peer: usize) -> Result<()> {
        let io = |e: std::io::Error| self.lost(peer, e);
        write_u32s(s, &[buf.len() as u32]).map_err(io)?;
        let bytes: Vec<u8> = buf.iter().flat_map(|x| x.to_le_bytes()).collect();
        s.write_all(&bytes).map_err(io)
    }

    fn recv(&self, s: &mut TcpStream, buf: &mut [f32], peer: usize) -> Result<()> {
        let io = |e: std::io::Error| self.lost(peer, e);
        let [n] = read_u32s::<1>(s).map_err(io)?;
        if n as usize != buf.len() {
            return Err(Error::Msg(format!(
                "data-parallel rank {}: rank {peer} sent {n} values where {} were expected (do all \
                 ranks run the same config?)",
                self.rank,
                buf.len()
            )));
        }
        let mut bytes = vec![0u8; buf.len() * 4];
        s.read_exact(&mut bytes).map_err(io)?;
        for (x, c) in buf.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }
}

fn write_u32s(s: &mut impl Write, v: &[u32]) -> std::io::Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    s.write_all(&bytes)
}

fn read_u32s<const N: usize>(s: &mut impl Read) -> std::io::Result<[u32; N]> {
    let mut out = [0u32; N];
    for x in &mut out {
        let mut b = [0u8; 4];
        s.read_exact(&mut b)?;
        *x = u32::from_le_bytes(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A free local port (bound and released; the test binds it again at once).
    fn port() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[test]
    fn three_ranks_sum_in_rank_order_and_gather_on_rank_0() {
        let addr = port();
        let handles: Vec<_> = (0..3)
            .map(|r| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let g = Group::connect(r, 3, &addr, Duration::from_secs(10)).unwrap();
                    let mut buf = vec![r as f32, 1.0, 0.1 * r as f32];
                    g.all_reduce_sum(&mut buf).unwrap();
                    let logs = g.gather(format!("rank {r}").as_bytes()).unwrap();
                    (buf, logs)
                })
            })
            .collect();
        let out: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let want = vec![3.0, 3.0, (0.0f32 + 0.1) + 0.2];
        for (buf, _) in &out {
            assert_eq!(buf, &want);
        }
        assert_eq!(
            out[0].1,
            vec![b"rank 0".to_vec(), b"rank 1".to_vec(), b"rank 2".to_vec()]
        );
        assert!(out[1].1.is_empty());
    }

    #[test]
    fn a_missing_rank_or_a_mismatched_world_is_named() {
        let addr = port();
        let err = Group::connect(0, 2, &addr, Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("ranks 1 did not connect"), "{err}");

        let addr = port();
        let a2 = addr.clone();
        let h = std::thread::spawn(move || Group::connect(1, 3, &a2, Duration::from_secs(10)));
        let err = Group::connect(0, 2, &addr, Duration::from_secs(10)).unwrap_err();
        assert!(err.to_string().contains("says the world has 3"), "{err}");
        drop(h.join());

        let err = Group::connect(2, 2, "127.0.0.1:1", Duration::from_millis(10)).unwrap_err();
        assert!(err.to_string().contains("outside a world of 2"), "{err}");
    }

    #[test]
    fn a_rank_that_dies_is_reported_by_the_others() {
        let addr = port();
        let a2 = addr.clone();
        let h = std::thread::spawn(move || {
            let g = Group::connect(1, 2, &a2, Duration::from_secs(10)).unwrap();
            drop(g); // exits without taking part
        });
        let g = Group::connect(0, 2, &addr, Duration::from_secs(10)).unwrap();
        h.join().unwrap();
        let err = g.all_reduce_sum(&mut [1.0]).unwrap_err();
        assert!(err.to_string().contains("lost rank 1"), "{err}");
    }
}
