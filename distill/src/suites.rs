//! Suites of runs: the GLUE benchmark (`distill glue`: a run per task, one table, the test-set
//! submission files) and hyperparameter sweeps (`distill sweep`: trials sharing one teacher, early
//! stopping of weak trials).

pub mod glue;
pub mod sweep;
