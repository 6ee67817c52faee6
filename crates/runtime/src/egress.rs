//! The supervisor's half of per-sandbox egress filtering (DESIGN.md §4): serve the
//! listening sockets the sandbox handed over on a shared tokio runtime, and turn the
//! service's report into trace records and violations.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use skillsandbox_egress::{self as egress, EgressConfig, EgressHandle, EgressListeners};
use skillsandbox_manifest::{EgressRule, NetworkPolicy};

/// Test and air-gapped deployments: a hosts-format file (`ADDRESS NAME...` per line)
/// that the supervisor consults before the host resolver for declared names.
pub const HOSTS_OVERRIDE_ENV: &str = "SKILLSANDBOX_EGRESS_HOSTS";

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skillsandbox-egress")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the egress runtime: {e}"))?;
    let _ = RUNTIME.set(rt);
    RUNTIME
        .get()
        .ok_or_else(|| "egress runtime vanished".to_string())
}

/// Parse a hosts-format override file; malformed lines are errors, not skipped.
pub fn parse_hosts(text: &str) -> Result<HashMap<String, Vec<IpAddr>>, String> {
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let addr: IpAddr = parts
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("line {}: expected `ADDRESS NAME...`", i + 1))?;
        for name in parts {
            map.entry(name.trim_end_matches('.').to_ascii_lowercase())
                .or_default()
                .push(addr);
        }
    }
    Ok(map)
}

/// Start serving the sandbox's egress sockets: `fds` are dns_udp4, dns_udp6, dns_tcp,
/// then one TCP listener per port in `ports`.
pub fn start(
    network: &NetworkPolicy,
    ports: &[u16],
    fds: Vec<OwnedFd>,
    intercept: Option<&crate::intercept::Intercept>,
    extra_hosts: &HashMap<String, Vec<IpAddr>>,
) -> Result<EgressHandle, String> {
    if fds.len() != 3 + ports.len() {
        return Err(format!(
            "the sandbox handed over {} egress sockets, expected {}",
            fds.len(),
            3 + ports.len()
        ));
    }
    let mut it = fds.into_iter();
    let mut next = || it.next().ok_or_else(|| "missing egress socket".to_string());
    let dns_udp4 = UdpSocket::from(next()?);
    let dns_udp6 = UdpSocket::from(next()?);
    let dns_tcp = TcpListener::from(next()?);
    let mut tcp = Vec::with_capacity(ports.len());
    for p in ports {
        tcp.push((*p, TcpListener::from(next()?)));
    }
    let mut config = EgressConfig::new(network.clone());
    if let Some(path) = std::env::var_os(HOSTS_OVERRIDE_ENV) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{HOSTS_OVERRIDE_ENV}={}: {e}", path.to_string_lossy()))?;
        config.hosts_override = parse_hosts(&text)
            .map_err(|e| format!("{HOSTS_OVERRIDE_ENV}={}: {e}", path.to_string_lossy()))?;
    }
    for (name, addrs) in extra_hosts {
        config
            .hosts_override
            .insert(name.to_ascii_lowercase(), addrs.clone());
    }
    if let Some(i) = intercept {
        config.ca = Some(i.ca.clone());
        config.upstream_roots = Some(i.roots.clone());
        config.secrets = i.secrets.clone();
    }
    let rt = runtime()?;
    egress::start(
        config,
        EgressListeners {
            dns_udp4,
            dns_udp6,
            dns_tcp,
            tcp,
        },
        rt.handle(),
    )
    .map_err(|e| e.to_string())
}

/// One line for the enforcement report.
pub fn describe(network: &NetworkPolicy) -> String {
    let rules: Vec<String> = network
        .egress
        .iter()
        .map(|r| match r {
            EgressRule::Domain { domain, ports, .. } => format!("{domain}:{ports:?}"),
            EgressRule::Cidr { cidr, ports } => format!("{cidr}:{ports:?}"),
        })
        .collect();
    format!(
        "private network namespace; every address local; DNS answered only for declared names; \
         TCP relayed by the supervisor after SNI/Host checks; allowed: {}",
        rules.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_parses_and_rejects_garbage() {
        let m = parse_hosts("127.0.0.1 a.test B.test.\n# c\n::1 a.test\n").unwrap();
        assert_eq!(m["a.test"].len(), 2);
        assert_eq!(m["b.test"], vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(parse_hosts("nonsense name").is_err());
    }
}
