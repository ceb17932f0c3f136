//! The library behind the `distill` binary, one folder a concern: the configuration (`config`), a run of
//! it (`run`: the plan, the stages, the pipeline), the comparison report (`report`), the suites of runs
//! (`suites`: GLUE, sweeps), masked-LM pre-training (`pretrain`) and the commands outside a run
//! (`commands`: predict, encode, fill-mask, bench, cache). Serving is the `serve` crate. `main.rs` only
//! parses arguments and dispatches.

pub mod commands;
pub mod config;
pub mod embedding;
pub mod pretrain;
pub mod report;
pub mod run;
pub mod suites;
