//! The approved profile. A confined command may write the project directory, and the
//! profile lives in it, so the hook trusts a profile only when its bytes are the ones
//! a person approved (`skillsandbox init`, `skillsandbox hook approve`): their SHA-256
//! is kept in the invoker's state directory, which no sandbox can write.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// SHA-256 (hex) of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where the approval of the profile at `profile` (absolute) is kept.
pub fn pin_path(state_dir: &Path, profile: &Path) -> PathBuf {
    let key = digest(profile.as_os_str().as_encoded_bytes());
    state_dir.join("profiles").join(format!("{key}.sha256"))
}

/// Whether `bytes` are the approved contents of `profile`.
pub fn check(state_dir: &Path, profile: &Path, bytes: &[u8]) -> Result<(), String> {
    let pin = pin_path(state_dir, profile);
    let approved = std::fs::read_to_string(&pin).map_err(|_| {
        format!(
            "skillsandbox: the project profile {} has not been approved on this machine. \
             Fix: review it, then run `skillsandbox hook approve` in the project directory",
            profile.display()
        )
    })?;
    if approved.trim() == digest(bytes) {
        Ok(())
    } else {
        Err(format!(
            "skillsandbox: the project profile {} changed since it was approved, so no \
             command runs under it. Ask the user: if they made the change, they review it \
             and run `skillsandbox hook approve` in the project directory",
            profile.display()
        ))
    }
}

/// Record `bytes` as the approved contents of `profile`.
pub fn approve(state_dir: &Path, profile: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let pin = pin_path(state_dir, profile);
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&pin, digest(bytes) + "\n")?;
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unapproved_changed_and_approved() {
        let dir = std::env::temp_dir().join(format!("hook-pin-{}", std::process::id()));
        let profile = Path::new("/work/p/.skillsandbox/profile.yaml");
        assert!(check(&dir, profile, b"a")
            .unwrap_err()
            .contains("not been approved"));
        approve(&dir, profile, b"a").unwrap();
        assert_eq!(check(&dir, profile, b"a"), Ok(()));
        assert!(check(&dir, profile, b"a ")
            .unwrap_err()
            .contains("changed since"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
