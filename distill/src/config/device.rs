//! The config's `device` key (`auto`, `cpu`, `cuda`, `cuda:N`), parsed once when the config is read:
//! a bad value is a config error at the key. `run::device` selects the device it names.

use std::fmt;
use std::str::FromStr;

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
