//! The run's interception CA and the sandbox's trust in it, for policies whose rules
//! check requests (methods, paths, caps): made before the launch, the CA key kept in
//! this process's memory only, its certificate (alone, and merged with the system
//! bundle) bound read-only into the sandbox and named by the variables TLS clients
//! read. Gone with the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use skillsandbox_egress::{InterceptCa, LiveSecret, UpstreamRoots};
use skillsandbox_manifest::{Policy, SecretSource};

use crate::setup::Setup;

/// Test and corporate deployments: a PEM file of extra roots upstream certificates
/// may chain to (the system roots are always trusted).
pub const UPSTREAM_ROOTS_ENV: &str = "SKILLSANDBOX_EGRESS_ROOTS";

/// Where the sandbox finds the CA certificate alone (Node's `NODE_EXTRA_CA_CERTS`).
pub const CA_INSIDE: &str = "/etc/skillsandbox/egress-ca.pem";
/// Where the sandbox finds the system bundle plus the CA.
pub const BUNDLE_INSIDE: &str = "/etc/skillsandbox/ca-bundle.crt";
/// Where Debian-family distributions keep the system bundle; the merged one is bound
/// over it, so clients that read only the default find the CA too.
const DISTRO_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// What a run with request-level rules needs.
pub(crate) struct Intercept {
    pub ca: Arc<InterceptCa>,
    pub roots: UpstreamRoots,
    /// Holds the two certificate files; removed when the run ends.
    _dir: tempfile::TempDir,
    /// (host file, path inside), read-only.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Variables naming the bundle, and each secret's placeholder, for the sandbox's
    /// environment.
    pub env: Vec<(String, String)>,
    /// The secrets, values in memory only (for the egress service).
    pub secrets: Arc<Vec<LiveSecret>>,
}

/// Each secret's real value, read from where the manifest says; a missing one refuses
/// the run (never a run with the placeholder unbacked). Errors never carry a value.
fn live_secrets(policy: &Policy) -> Result<Vec<LiveSecret>, Setup> {
    let mut out = Vec::new();
    for s in &policy.network.secrets {
        let value = match &s.from {
            SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                Setup::new(
                    format!("secret {}: env:{var} is not set", s.name),
                    Some(format!(
                        "export {var} in the environment that starts skillsandbox"
                    )),
                )
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| {
                    Setup::new(
                        format!("secret {}: file:{}: {}", s.name, path.display(), e.kind()),
                        Some("the file must be readable by the invoker".into()),
                    )
                })?,
        };
        out.push(
            LiveSecret::new(s.name.clone(), value, s.hosts.clone(), s.header.clone())
                .map_err(|e| Setup::new(e, None))?,
        );
    }
    Ok(out)
}

fn setup(e: impl std::fmt::Display) -> Setup {
    Setup::new(
        format!("request-level egress: {e}"),
        Some("the rule's methods, paths or caps need the per-run CA; leave them out for SNI-checked pass-through".into()),
    )
}

/// The CA and the trust files, when `policy` has rules that check requests.
pub(crate) fn prepare(policy: &Policy) -> Result<Option<Intercept>, Setup> {
    if !policy.network.intercepts() {
        return Ok(None);
    }
    let extra = match std::env::var_os(UPSTREAM_ROOTS_ENV) {
        Some(p) => Some(
            std::fs::read(&p)
                .map_err(|e| setup(format!("{UPSTREAM_ROOTS_ENV}={}: {e}", p.to_string_lossy())))?,
        ),
        None => None,
    };
    let secrets = live_secrets(policy)?;
    let roots = UpstreamRoots::load(extra.as_deref()).map_err(setup)?;
    let ca = Arc::new(InterceptCa::new().map_err(setup)?);
    let dir = tempfile::Builder::new()
        .prefix(".skillsandbox-ca-")
        .tempdir()
        .map_err(|e| setup(format!("temporary directory: {e}")))?;
    // The sandbox's stage (not root) opens these to bind them: world-readable.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(setup)?;
    }
    let ca_file = dir.path().join("egress-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).map_err(setup)?;
    let system = DISTRO_BUNDLES
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let bundle_file = dir.path().join("ca-bundle.crt");
    std::fs::write(&bundle_file, format!("{system}\n{}", ca.cert_pem())).map_err(setup)?;
    let mut binds = vec![
        (ca_file, PathBuf::from(CA_INSIDE)),
        (bundle_file.clone(), PathBuf::from(BUNDLE_INSIDE)),
    ];
    for p in DISTRO_BUNDLES {
        if Path::new(p).is_file() {
            binds.push((bundle_file.clone(), PathBuf::from(p)));
        }
    }
    let mut env: Vec<(String, String)> = secrets
        .iter()
        .map(|s| (s.name.clone(), s.placeholder.clone()))
        .collect();
    env.extend(
        [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "PIP_CERT",
        ]
        .iter()
        .map(|k| (k.to_string(), BUNDLE_INSIDE.to_string()))
        .chain([("NODE_EXTRA_CA_CERTS".to_string(), CA_INSIDE.to_string())]),
    );
    Ok(Some(Intercept {
        ca,
        roots,
        _dir: dir,
        binds,
        env,
        secrets: Arc::new(secrets),
    }))
}
