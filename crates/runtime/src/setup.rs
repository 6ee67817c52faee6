//! A run that could not be set up: one line, a hint, an exit code (DESIGN.md §3:
//! every step that fails produces 125 with a one-line reason and a hint).

use skillsandbox_manifest::Policy;
use skillsandbox_sandbox::launch::LaunchError;

use crate::prepare;

pub(crate) struct Setup {
    pub message: String,
    pub hint: Option<String>,
    pub exit_code: i32,
}

impl Setup {
    pub fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Setup {
            message: message.into(),
            hint,
            exit_code: 125,
        }
    }

    /// A launch that failed, with the "entrypoint not visible" hint for 127.
    pub fn launch(policy: &Policy, e: &LaunchError) -> Self {
        let mut hint = e.hint().map(str::to_string);
        if e.exit_code() == 127 {
            let cmd = &policy.entrypoint.command;
            hint = Some(match prepare::host_which(cmd) {
                Some(p) => format!(
                    "the host has {cmd} at {}; the sandbox sees /usr, /bin, /lib and /opt only: \
                     declare its directory under permissions.filesystem.read, or use a command from /usr/bin",
                    p.display()
                ),
                None => format!("{cmd} is not installed on the host either"),
            });
        }
        Setup {
            message: e.to_string(),
            hint,
            exit_code: e.exit_code(),
        }
    }
}
