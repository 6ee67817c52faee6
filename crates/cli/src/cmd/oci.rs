//! `skillsandbox oci`: the OCI runtime command line (thin: the `oci` crate owns it).

/// The OCI runtime that dockerd, containerd's runc shim and Kubernetes (RuntimeClass)
/// call: `create`, `start`, `state`, `kill`, `delete`, `exec`, `features`, with runc's global
/// flags (`--root`, `--log`, `--log-format json`, `--systemd-cgroup`). Each container
/// is a SkillSandbox run rooted in the bundle's rootfs: its policy comes from the
/// annotations `skillsandbox.manifest` (a path) or `skillsandbox.manifest.inline`, its
/// session from `skillsandbox.session`; with neither, deny-all egress. Register it
/// with dockerd as a runtime whose `runtimeArgs` are `["oci"]` (docs/oci.md).
///
/// Examples:
///   docker run --runtime=skillsandbox --network none IMAGE CMD
///   skillsandbox oci --root /run/ss create --bundle ./bundle --pid-file ./pid c1
///   skillsandbox oci --root /run/ss start c1
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// Global flags, the command and its arguments, as the shim passes them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let code = skillsandbox_oci::main(&args.args);
    Ok(u8::try_from(code).unwrap_or(1))
}
