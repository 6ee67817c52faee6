//! The egress service (DESIGN.md §4): a DNS responder and a transparent TCP relay
//! that the supervisor runs on the listening sockets the sandbox child created in its
//! own network namespace (where every address routes to `lo`).
//!
//! - DNS: declared names get synthetic addresses, everything else NXDOMAIN; nothing
//!   is ever forwarded ([`dns`]).
//! - TCP: a connection to a synthetic address is relayed to the real name (resolved
//!   here, rebinding refused) after its TLS SNI / HTTP Host was checked; any other
//!   address needs a `cidr` rule ([`tcp`]).
//! - Every decision is recorded; [`EgressHandle::finish`] stops everything and hands
//!   the records over.
//!
//! Runs on the caller's tokio runtime. Never touches the host's firewall or routes.
//! See `docs/egress.md` for what is blocked and why.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};

use ipnet::{Ipv4Net, Ipv6Net};
use skillsandbox_audit::{ConnectionRecord, DnsRecord, Violation};
use skillsandbox_manifest::NetworkPolicy;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

mod addr;
mod dns;
mod dns_serve;
#[doc(hidden)]
pub mod fuzzing;
mod l7;
mod pktinfo;
mod record;
mod relay;
mod secrets;
mod sniff;
mod splice;
mod synthetic;
mod tcp;

pub use l7::{InterceptCa, UpstreamRoots};
use record::Recorder;
pub use secrets::LiveSecret;
use synthetic::SyntheticPool;

/// Default synthetic IPv4 range: 198.18.0.0/15, reserved for benchmarking (RFC 2544),
/// never routed on the internet.
pub const DEFAULT_SYNTHETIC_V4: Ipv4Net =
    match Ipv4Net::new(std::net::Ipv4Addr::new(198, 18, 0, 0), 15) {
        Ok(n) => n,
        Err(_) => panic!("constant prefix"),
    };
/// Default synthetic IPv6 range: a ULA /64 (RFC 4193), `fd5b:5b5b:5b5b::/64`.
pub const DEFAULT_SYNTHETIC_V6: Ipv6Net = match Ipv6Net::new(
    std::net::Ipv6Addr::new(0xfd5b, 0x5b5b, 0x5b5b, 0, 0, 0, 0, 0),
    64,
) {
    Ok(n) => n,
    Err(_) => panic!("constant prefix"),
};
/// Connections handled at once; more are reset (and recorded).
const MAX_CONCURRENT_CONNECTIONS: usize = 1024;

/// What the service enforces.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub network: NetworkPolicy,
    /// Test-only name resolution for the supervisor side (lower-case names, no
    /// trailing dot). Names not listed go to the host resolver.
    pub hosts_override: HashMap<String, Vec<IpAddr>>,
    /// Where synthetic IPv4 answers come from ([`DEFAULT_SYNTHETIC_V4`]).
    pub synthetic_v4: Ipv4Net,
    /// Where synthetic IPv6 answers come from ([`DEFAULT_SYNTHETIC_V6`]).
    pub synthetic_v6: Ipv6Net,
    /// The run's interception CA: needed when a rule checks requests over TLS.
    pub ca: Option<Arc<InterceptCa>>,
    /// Roots upstream certificates are verified against, for checked requests.
    pub upstream_roots: Option<UpstreamRoots>,
    /// The run's secrets (values in memory only).
    pub secrets: Arc<Vec<LiveSecret>>,
}

impl EgressConfig {
    /// `network` with the default synthetic ranges and the host resolver.
    pub fn new(network: NetworkPolicy) -> Self {
        EgressConfig {
            network,
            hosts_override: HashMap::new(),
            synthetic_v4: DEFAULT_SYNTHETIC_V4,
            synthetic_v6: DEFAULT_SYNTHETIC_V6,
            ca: None,
            upstream_roots: None,
            secrets: Arc::new(Vec::new()),
        }
    }
}

/// The sockets the sandbox child created (`skillsandbox_sandbox::net::EgressSockets`),
/// converted to std types. Blocking mode and packet-info options are set by
/// [`start`].
#[derive(Debug)]
pub struct EgressListeners {
    pub dns_udp4: UdpSocket,
    pub dns_udp6: UdpSocket,
    pub dns_tcp: TcpListener,
    pub tcp: Vec<(u16, TcpListener)>,
}

/// Everything the service decided, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressReport {
    pub dns: Vec<DnsRecord>,
    pub connections: Vec<ConnectionRecord>,
    pub violations: Vec<Violation>,
    /// Records not kept because a list reached its bound (10 000 entries).
    pub records_dropped: u64,
}

/// Bytes relayed so far, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressBytes {
    /// From the sandbox to the outside.
    pub bytes_out: u64,
    /// From the outside to the sandbox.
    pub bytes_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("making the {what} socket non-blocking failed: {source}")]
    SetNonblocking {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("enabling packet info on the {what} socket failed: {source}; it must be a UDP socket bound to port 53")]
    EnablePacketInfo {
        what: &'static str,
        source: nix::Error,
    },
    #[error("registering the {what} socket with the tokio runtime failed: {source}; start() needs a runtime with IO enabled")]
    Register {
        what: &'static str,
        source: std::io::Error,
    },
}

/// State shared by every task of one service.
pub(crate) struct Shared {
    pub(crate) network: NetworkPolicy,
    pub(crate) hosts_override: HashMap<String, Vec<IpAddr>>,
    pool: Mutex<SyntheticPool>,
    pub(crate) recorder: Recorder,
    pub(crate) tasks: Tasks,
    pub(crate) conn_limit: Arc<Semaphore>,
    pub(crate) ca: Option<Arc<InterceptCa>>,
    pub(crate) upstream_roots: Option<UpstreamRoots>,
    /// Requests and bytes per host with request-level rules, across connections.
    pub(crate) http_usage: Mutex<HashMap<String, l7::HostUsage>>,
    pub(crate) secrets: Arc<Vec<LiveSecret>>,
    /// Kept-alive upstream connections of checked hosts.
    pub(crate) upstream_idle: l7::Idle,
}

impl Shared {
    fn pool(&self) -> std::sync::MutexGuard<'_, SyntheticPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn pool_in_range(&self, ip: IpAddr) -> bool {
        self.pool().in_range(ip)
    }
    pub(crate) fn name_for(&self, ip: IpAddr) -> Option<String> {
        self.pool().name_for(ip).map(str::to_owned)
    }
    pub(crate) fn dns_context(&self) -> dns::DnsContext<'_> {
        dns::DnsContext {
            secrets: &self.secrets,
            network: &self.network,
            pool: &self.pool,
            recorder: &self.recorder,
        }
    }
}

/// Every task the service spawned, so that finishing can stop them all.
#[derive(Default)]
pub(crate) struct Tasks {
    inner: Mutex<TaskList>,
}

#[derive(Default)]
struct TaskList {
    handles: Vec<AbortHandle>,
    pruned_at: usize,
    closed: bool,
}

impl Tasks {
    fn spawn_on<F>(&self, handle: &Handle, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = handle.spawn(fut).abort_handle();
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if list.closed {
            task.abort();
            return;
        }
        if list.handles.len() >= 2 * list.pruned_at.max(64) {
            list.handles.retain(|h| !h.is_finished());
            list.pruned_at = list.handles.len();
        }
        list.handles.push(task);
    }

    /// Spawns on the current runtime (called from the service's own tasks).
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(&Handle::current(), fut);
    }

    fn abort_all(&self) {
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.closed = true;
        for h in list.handles.drain(..) {
            h.abort();
        }
    }
}

/// A running service. Dropping it stops the service too (without the report).
pub struct EgressHandle {
    shared: Arc<Shared>,
}

impl EgressHandle {
    /// Stops every task (listeners, DNS, relays in flight: their sockets close as the
    /// runtime drops the aborted tasks) and returns everything recorded. Relays cut
    /// short report the bytes they had moved.
    pub fn finish(self) -> EgressReport {
        self.shared.tasks.abort_all();
        self.shared.recorder.finish()
    }

    /// Bytes relayed so far (for live accounting).
    pub fn snapshot_bytes(&self) -> EgressBytes {
        let (bytes_out, bytes_in) = self.shared.recorder.bytes();
        EgressBytes {
            bytes_out,
            bytes_in,
        }
    }
}

impl Drop for EgressHandle {
    fn drop(&mut self) {
        self.shared.tasks.abort_all();
    }
}

/// Starts serving `listeners` on `handle`'s runtime.
pub fn start(
    config: EgressConfig,
    listeners: EgressListeners,
    handle: &Handle,
) -> Result<EgressHandle, EgressError> {
    // Registering sockets with the reactor needs the runtime context.
    let _guard = handle.enter();
    let udp = |sock: UdpSocket, what: &'static str| {
        sock.set_nonblocking(true)
            .map_err(|source| EgressError::SetNonblocking { what, source })?;
        pktinfo::enable(&sock).map_err(|source| EgressError::EnablePacketInfo { what, source })?;
        tokio::net::UdpSocket::from_std(sock)
            .map_err(|source| EgressError::Register { what, source })
    };
    let tcp = |l: TcpListener, what: &'static str| {
        l.set_nonblocking(true)
            .map_err(|source| EgressError::SetNonblocking { what, source })?;
        tokio::net::TcpListener::from_std(l)
            .map_err(|source| EgressError::Register { what, source })
    };
    let dns_udp4 = udp(listeners.dns_udp4, "DNS UDP/IPv4")?;
    let dns_udp6 = udp(listeners.dns_udp6, "DNS UDP/IPv6")?;
    let dns_tcp = tcp(listeners.dns_tcp, "DNS TCP")?;
    let ports = listeners
        .tcp
        .into_iter()
        .map(|(port, l)| Ok((port, tcp(l, "TCP egress")?)))
        .collect::<Result<Vec<_>, EgressError>>()?;

    let hosts_override = config
        .hosts_override
        .into_iter()
        .map(|(name, addrs)| (name.trim_end_matches('.').to_ascii_lowercase(), addrs))
        .collect();
    let shared = Arc::new(Shared {
        network: config.network,
        hosts_override,
        pool: Mutex::new(SyntheticPool::new(config.synthetic_v4, config.synthetic_v6)),
        recorder: Recorder::default(),
        tasks: Tasks::default(),
        conn_limit: Arc::new(Semaphore::new(MAX_CONCURRENT_CONNECTIONS)),
        ca: config.ca,
        upstream_roots: config.upstream_roots,
        http_usage: Mutex::new(HashMap::new()),
        upstream_idle: l7::Idle::default(),
        secrets: config.secrets,
    });
    let tasks = &shared.tasks;
    tasks.spawn_on(handle, dns_serve::serve_udp(dns_udp4, shared.clone()));
    tasks.spawn_on(handle, dns_serve::serve_udp(dns_udp6, shared.clone()));
    tasks.spawn_on(handle, dns_serve::serve_tcp(dns_tcp, shared.clone()));
    for (_, listener) in ports {
        tasks.spawn_on(handle, tcp::serve(listener, shared.clone()));
    }
    Ok(EgressHandle { shared })
}

#[cfg(test)]
mod service_tests;
