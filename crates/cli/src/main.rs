//! `skillsandbox`: the command-line front end. Parses arguments, wires the crates
//! together, prints the whole error chain once and turns outcomes into exit codes.

mod cmd;
use skillsandbox_probe as probe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Capability-based sandbox runtime for agent skills.
///
/// A skill declares what it needs in `skillsandbox.yaml` (network egress, filesystem
/// paths, environment variables, a syscall profile, resource limits); skillsandbox
/// enforces exactly that with the kernel and records what the skill tried.
///
/// Exit codes: the skill's own; 124 wall-clock timeout; 137 killed (OOM or kill
/// switch); 125 the sandbox could not be set up; 126/127 entrypoint not executable /
/// not found; 2 usage error or invalid manifest; 3 refused by the session policy.
#[derive(Debug, Parser)]
#[command(name = "skillsandbox", version, propagate_version = true)]
struct Cli {
    /// The session store: sqlite:PATH (the default is the state directory's
    /// sessions.db) or postgres://USER@HOST/DB, one database shared by many hosts
    /// (TLS with sslmode=require/verify-full, the server always verified, against
    /// sslrootcert=FILE or the system roots).
    /// Same as $SKILLSANDBOX_STORE, which it overrides.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(cmd::run::Args),
    Exec(cmd::exec::Args),
    Validate(cmd::validate::Args),
    Inspect(cmd::inspect::Args),
    Schema(cmd::schema::Args),
    Audit(cmd::audit::Args),
    Doctor(cmd::doctor::Args),
    Session(cmd::session::Args),
    Serve(cmd::serve::Args),
    Check(cmd::check::Args),
    Init(cmd::init::Args),
    Learn(cmd::learn::Args),
    Approve(cmd::approve::Args),
    Scan(cmd::scan::Args),
    Hook(cmd::hook::Args),
    Oci(cmd::oci::Args),
    /// The probe `check` starts inside the sandbox (internal).
    #[command(name = "__probe", hide = true)]
    Probe(cmd::check::ProbeArgs),
}

fn main() -> ExitCode {
    // The sandbox's own stages re-execute this binary; they must start before anything
    // else (no threads, no argument parsing).
    skillsandbox_sandbox::stage::run_stage_if_requested();
    // Best effort: a failure leaves the usual limit, which still works for small loads.
    let _ = skillsandbox_sandbox::sys::raise_nofile_soft_limit();
    // Installed (a link) as `skillsandbox-oci`: the OCI runtime itself, for engines
    // that take a binary but no arguments (containerd's runc shim `BinaryName`).
    let argv: Vec<String> = std::env::args().collect();
    if argv.first().is_some_and(|a| {
        std::path::Path::new(a).file_name() == Some(std::ffi::OsStr::new("skillsandbox-oci"))
    }) {
        let code = skillsandbox_oci::main(&argv[1..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    if let Some(url) = &cli.store {
        if let Err(e) = skillsandbox_policy::StoreLocation::parse(url) {
            eprintln!("skillsandbox: --store: {e}");
            return ExitCode::from(2);
        }
        // Still one thread here: every later store opening reads it from there.
        std::env::set_var(skillsandbox_policy::STORE_URL_ENV, url);
    }
    let result = match cli.command {
        Command::Run(a) => cmd::run::main(a),
        Command::Exec(a) => cmd::exec::main(a),
        Command::Validate(a) => cmd::validate::main(a),
        Command::Inspect(a) => cmd::inspect::main(a),
        Command::Schema(a) => cmd::schema::main(a),
        Command::Audit(a) => cmd::audit::main(a),
        Command::Doctor(a) => cmd::doctor::main(a),
        Command::Session(a) => cmd::session::main(a),
        Command::Serve(a) => cmd::serve::main(a),
        Command::Check(a) => cmd::check::main(a),
        Command::Init(a) => cmd::init::main(a),
        Command::Learn(a) => cmd::learn::main(a),
        Command::Approve(a) => cmd::approve::main(a),
        Command::Scan(a) => cmd::scan::main(a),
        Command::Hook(a) => cmd::hook::main(a),
        Command::Oci(a) => cmd::oci::main(a),
        Command::Probe(a) => cmd::check::probe(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("skillsandbox: {err:#}");
            ExitCode::from(cmd::exit_code_for(&err))
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
