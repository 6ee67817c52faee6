//! The test-only switch that turns one confinement layer off, so `skillsandbox check`
//! can show that the checklist items guarding that layer fail.
//!
//! The runtime reads [`DISABLE_LAYER_ENV`] into the launch plan; the stages skip the
//! named layer; the enforcement report calls it "unavailable" with
//! [`DISABLED_FOR_TESTS`]; and a run is refused unless the caller allowed degradation.
//! Nothing else reads it. Never set it outside tests.

use serde::{Deserialize, Serialize};

/// Environment variable naming the layer to skip: `seccomp`, `landlock`, `cgroup` or
/// `netns`.
pub const DISABLE_LAYER_ENV: &str = "SKILLSANDBOX_DANGEROUSLY_DISABLE_LAYER_FOR_TESTS";

/// The detail the enforcement report gives a layer the switch turned off.
pub const DISABLED_FOR_TESTS: &str = "disabled by SKILLSANDBOX_DANGEROUSLY_DISABLE_LAYER_FOR_TESTS";

/// A layer the switch can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerDisabledForTests {
    Seccomp,
    Landlock,
    Cgroup,
    Netns,
}

impl LayerDisabledForTests {
    pub const ALL: [LayerDisabledForTests; 4] = [
        LayerDisabledForTests::Seccomp,
        LayerDisabledForTests::Landlock,
        LayerDisabledForTests::Cgroup,
        LayerDisabledForTests::Netns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LayerDisabledForTests::Seccomp => "seccomp",
            LayerDisabledForTests::Landlock => "landlock",
            LayerDisabledForTests::Cgroup => "cgroup",
            LayerDisabledForTests::Netns => "netns",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }

    /// The switch as set in this process's environment: `Ok(None)` when unset or
    /// empty, an error naming the accepted values for anything else.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(DISABLE_LAYER_ENV) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => Self::parse(&v).map(Some).ok_or_else(|| {
                format!("{DISABLE_LAYER_ENV}={v:?}: expected seccomp, landlock, cgroup or netns")
            }),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("{DISABLE_LAYER_ENV} is not valid UTF-8"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in LayerDisabledForTests::ALL {
            assert_eq!(LayerDisabledForTests::parse(l.name()), Some(l));
        }
        assert_eq!(LayerDisabledForTests::parse("mounts"), None);
    }
}
