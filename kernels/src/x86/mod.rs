//! The x86-64 kernels, one file per instruction set. Each is an `unsafe fn` compiled for its
//! instructions (`#[target_feature]`): callers check the CPU at run time (`is_x86_feature_detected!`)
//! before calling one, and keep a portable form for other CPUs. The algorithms around them (panels,
//! tiling, quantization) live in `packed`, `dense`, `quant`, `vnni` and `bf16`, written once.

pub mod avx2;
pub mod avx512;
pub mod avx512bf16;
pub mod avx512vnni;
