//! The library behind the `distill` binary: the run configuration, the stages of a run, the comparison
//! report and the inference commands. `main.rs` only parses arguments and dispatches.

pub mod bench;
pub mod cache_cmd;
pub mod config;
pub mod config_doc;
pub mod device;
pub mod encode;
pub mod fill_mask;
pub mod glue;
pub mod plots;
pub mod predict;
pub mod pretrain;
pub mod pretrain_config;
pub mod ranks;
pub mod report;
pub mod run;
pub mod sweep;
