//! Transparent TCP interception: every connection the skill opens to a declared port
//! arrives here; `getsockname` is the destination it asked for. A synthetic address
//! stands for one declared name: the port must be declared for it, the first bytes
//! must name it (TLS SNI / HTTP Host), and the real name is resolved here and must
//! not lead to non-public space unless a `cidr` rule covers it. Any other address
//! needs a `cidr` rule. Refusals reset the connection at once so clients fail fast;
//! every decision becomes a connection record, every refusal a violation.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use skillsandbox_audit::{ConnectionDecision, ViolationKind};
use skillsandbox_manifest::EgressRule;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, timeout_at, Instant};

use crate::addr::{is_metadata, special_purpose};
use crate::record::{connection_record, mitre, Counters};
use crate::sniff::{check_name, is_web_port, sniff, NameCheck, Sniff};
use crate::Shared;

/// How many first bytes are read at most to find the name.
pub(crate) const SNIFF_LIMIT: usize = 16 * 1024;
/// How long the client gets to send a complete ClientHello / request head.
pub(crate) const SNIFF_TIMEOUT: Duration = Duration::from_secs(2);
/// On ports other than 80/443: how long a silent client is waited for before the
/// protocol is taken to be server-speaks-first (SMTP, MySQL, ...).
pub(crate) const SERVER_FIRST_WAIT: Duration = Duration::from_millis(500);
/// Resolution of the real name by the host resolver.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting to one real address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Real addresses tried per connection.
const MAX_CANDIDATES: usize = 4;
/// Pause after a failed accept (fd exhaustion) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let permit = shared.conn_limit.clone().try_acquire_owned().ok();
                let s = shared.clone();
                shared.tasks.spawn(handle(stream, permit, s));
            }
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

/// The destination the client asked for, IPv4 un-mapped.
pub(crate) fn original_destination(stream: &TcpStream) -> Option<(IpAddr, u16)> {
    let local = stream.local_addr().ok()?;
    Some((local.ip().to_canonical(), local.port()))
}

/// Closes with a reset (`SO_LINGER` 0): the client sees `ECONNRESET` at once instead
/// of a clean end of stream it might retry or wait on.
pub(crate) fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn handle(stream: TcpStream, permit: Option<OwnedSemaphorePermit>, shared: Arc<Shared>) {
    let Some((ip, port)) = original_destination(&stream) else {
        return;
    };
    if permit.is_none() {
        shared.recorder.connection(connection_record(
            None,
            ip,
            port,
            None,
            ConnectionDecision::Blocked,
            "too many concurrent connections",
        ));
        reset(stream);
        return;
    }
    if shared.pool_in_range(ip) {
        synthetic(stream, ip, port, &shared).await;
    } else {
        literal(stream, ip, port, &shared).await;
    }
    drop(permit);
}

/// A connection to an address the sandbox's DNS did not hand out.
pub(crate) async fn literal(stream: TcpStream, ip: IpAddr, port: u16, shared: &Shared) {
    if let Some(rule) = cidr_rule(shared, ip, port) {
        let reason = format!("cidr rule {rule} port {port}");
        connect_and_relay(stream, Vec::new(), None, ip, port, vec![ip], reason, shared).await;
        return;
    }
    let record = connection_record(
        None,
        ip,
        port,
        None,
        ConnectionDecision::Blocked,
        "no rule allows this address and port",
    );
    let detail = format!(
        "TCP connection to {}: no cidr rule allows this address and port (addresses are \
         reached through declared names, or through a cidr rule)",
        SocketAddr::new(ip, port)
    );
    shared
        .recorder
        .blocked(record, ViolationKind::NetworkBlocked, detail, None);
    reset(stream);
}

async fn synthetic(mut stream: TcpStream, ip: IpAddr, port: u16, shared: &Arc<Shared>) {
    let blocked = |name: Option<&str>, kind, reason: &str, detail: String| {
        let record = connection_record(name, ip, port, None, ConnectionDecision::Blocked, reason);
        shared.recorder.blocked(record, kind, detail, None);
    };
    let Some(name) = shared.name_for(ip) else {
        blocked(
            None,
            ViolationKind::NetworkBlocked,
            "synthetic address never issued",
            format!("TCP connection to {ip}:{port}: this synthetic address was never handed out by the sandbox's DNS"),
        );
        reset(stream);
        return;
    };
    if shared.network.record {
        record_only(stream, &name, ip, port, shared).await;
        return;
    }
    let Some(rule) = domain_rule(shared, &name, port) else {
        blocked(
            Some(&name),
            ViolationKind::NetworkBlocked,
            "port not declared for this name",
            format!("TCP connection to {name}:{port}: port {port} is not declared for {name}"),
        );
        reset(stream);
        return;
    };

    let head = read_head(&mut stream, port).await;
    let Some((bytes, sniffed, timed_out)) = head else {
        shared.recorder.connection(connection_record(
            Some(&name),
            ip,
            port,
            None,
            ConnectionDecision::Blocked,
            "client closed before sending anything; nothing relayed",
        ));
        reset(stream);
        return;
    };
    let why = match check_name(&sniffed, &name, port, timed_out) {
        NameCheck::Allow(why) => why,
        NameCheck::Mismatch(detail) => {
            blocked(
                Some(&name),
                ViolationKind::DomainMismatch,
                "name in the first bytes differs from the destination name",
                detail,
            );
            reset(stream);
            return;
        }
        NameCheck::Refuse(why) => {
            blocked(
                Some(&name),
                ViolationKind::NetworkBlocked,
                "name could not be checked",
                format!("TCP connection to {name}:{port}: {why}"),
            );
            reset(stream);
            return;
        }
    };

    let addrs = match resolve(shared, &name, port).await {
        Ok(addrs) => addrs,
        Err(e) => {
            shared.recorder.connection(connection_record(
                Some(&name),
                ip,
                port,
                None,
                ConnectionDecision::Blocked,
                format!("resolving {name} on the host failed: {e}"),
            ));
            reset(stream);
            return;
        }
    };
    // `allow_private_resolution` lets this name lead where its DNS says, except to
    // the metadata service and the sandbox's own synthetic range.
    let private_ok = shared.network.private_resolution(&name, port);
    let (ok, refused): (Vec<IpAddr>, Vec<IpAddr>) = addrs.into_iter().partition(|a| {
        !shared.pool_in_range(*a)
            && (special_purpose(*a).is_none()
                || shared.network.cidr_allows(*a, port)
                || (private_ok && !is_metadata(*a)))
    });
    if ok.is_empty() {
        let listed: Vec<String> = refused
            .iter()
            .map(|a| format!("{a} ({})", special_purpose(*a).unwrap_or("synthetic range")))
            .collect();
        let record = connection_record(
            Some(&name),
            ip,
            port,
            refused.first().map(IpAddr::to_string),
            ConnectionDecision::Blocked,
            "name resolved only to non-public addresses",
        );
        let detail = if private_ok {
            format!(
                "{name}:{port} resolved to {}: the cloud metadata service is never reachable by name, allow_private_resolution or not",
                listed.join(", ")
            )
        } else {
            format!(
                "{name}:{port} resolved to {}: refused without a cidr rule covering it (DNS rebinding / SSRF)",
                listed.join(", ")
            )
        };
        let technique = refused.iter().any(|a| is_metadata(*a)).then(|| {
            mitre(
                "Credential Access",
                "T1552.005",
                "Unsecured Credentials: Cloud Instance Metadata API",
            )
        });
        shared
            .recorder
            .blocked(record, ViolationKind::RebindingBlocked, detail, technique);
        reset(stream);
        return;
    }
    if let Some(rules) = shared.network.http_rules(&name, port).cloned() {
        crate::l7::serve(stream, bytes, &sniffed, &name, ip, port, ok, rules, shared).await;
        return;
    }
    let mut reason = format!("domain rule {rule} port {port}; {why}");
    let private: Vec<String> = ok
        .iter()
        .filter_map(|a| special_purpose(*a).map(|class| format!("{a} ({class})")))
        .collect();
    if !private.is_empty() {
        reason.push_str(&format!(
            "; resolves to non-public {} (allowed by a cidr rule or allow_private_resolution)",
            private.join(", ")
        ));
    }
    if !refused.is_empty() {
        let skipped: Vec<String> = refused.iter().map(IpAddr::to_string).collect();
        reason.push_str(&format!("; skipped non-public {}", skipped.join(", ")));
    }
    connect_and_relay(stream, bytes, Some(&name), ip, port, ok, reason, shared).await;
}

/// Record mode (`learn`): note the name the connection carries, relay nothing.
async fn record_only(mut stream: TcpStream, name: &str, ip: IpAddr, port: u16, shared: &Shared) {
    let carried = match read_head(&mut stream, port).await {
        None => "nothing sent".to_string(),
        Some((_, Sniff::Tls { sni: Some(sni) }, _)) => format!("TLS SNI {sni}"),
        Some((_, Sniff::Tls { sni: None }, _)) => "TLS without SNI".to_string(),
        Some((_, Sniff::Http { method, names }, _)) => {
            format!("HTTP {method} Host {}", names.join(","))
        }
        Some((_, other, _)) => format!("{other:?}"),
    };
    shared.recorder.connection(connection_record(
        Some(name),
        ip,
        port,
        None,
        ConnectionDecision::Blocked,
        format!("recorded by learn, never relayed; {carried}"),
    ));
    reset(stream);
}

/// Reads the first bytes until they name something, the limits run out, or the
/// client goes quiet. `None` when the client closed without sending anything.
async fn read_head(stream: &mut TcpStream, port: u16) -> Option<(Vec<u8>, Sniff, bool)> {
    let start = Instant::now();
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    loop {
        let sniffed = sniff(&buf);
        if sniffed != Sniff::NeedMore {
            return Some((buf, sniffed, false));
        }
        if buf.len() >= SNIFF_LIMIT {
            return Some((buf, Sniff::NeedMore, true));
        }
        let until = if buf.is_empty() && !is_web_port(port) {
            start + SERVER_FIRST_WAIT
        } else {
            start + SNIFF_TIMEOUT
        };
        let want = chunk.len().min(SNIFF_LIMIT - buf.len());
        match timeout_at(until, stream.read(&mut chunk[..want])).await {
            Err(_) if buf.is_empty() => return Some((buf, Sniff::Other, true)),
            Err(_) => return Some((buf, Sniff::NeedMore, true)),
            Ok(Ok(0)) if buf.is_empty() => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                let sniffed = sniff(&buf);
                return Some((buf, sniffed, true));
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn resolve(shared: &Shared, name: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    if let Some(addrs) = shared.hosts_override.get(name) {
        return Ok(addrs.iter().map(|a| a.to_canonical()).collect());
    }
    let found = timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| format!("no answer within {RESOLVE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for a in found {
        let ip = a.ip().to_canonical();
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// Connects to the first reachable candidate, sends the bytes already read, and
/// relays; records the outcome either way.
#[allow(clippy::too_many_arguments)]
async fn connect_and_relay(
    client: TcpStream,
    head: Vec<u8>,
    name: Option<&str>,
    dest: IpAddr,
    port: u16,
    candidates: Vec<IpAddr>,
    reason: String,
    shared: &Shared,
) {
    let to = name.map_or_else(|| SocketAddr::new(dest, port).to_string(), str::to_string);
    let exfiltration = |secret: &str, detail: &str| {
        shared.recorder.blocked(
            connection_record(
                name,
                dest,
                port,
                None,
                ConnectionDecision::Blocked,
                "carries a secret's placeholder to a destination the secret is not bound to",
            ),
            ViolationKind::SecretExfiltration,
            format!("TCP connection to {to}: {detail} the placeholder of secret {secret}; cut before it went upstream"),
            None,
        );
    };
    // What was already read counts like the stream the relay will scan.
    if let Some(s) = crate::secrets::placeholder_in(&shared.secrets, &head) {
        exfiltration(&s.name, "the first bytes carry");
        reset(client);
        return;
    }
    let mut failures = Vec::new();
    let mut upstream = None;
    for addr in candidates.into_iter().take(MAX_CANDIDATES) {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect((addr, port))).await {
            Ok(Ok(s)) => {
                upstream = Some((addr, s));
                break;
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Err(_) => failures.push(format!("{addr}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    let Some((addr, mut up)) = upstream else {
        shared.recorder.connection(connection_record(
            name,
            dest,
            port,
            None,
            ConnectionDecision::Allowed,
            format!(
                "{reason}; connecting upstream failed: {}",
                failures.join("; ")
            ),
        ));
        reset(client);
        return;
    };
    let counters = Arc::new(Counters::default());
    counters
        .bytes_out
        .store(head.len() as u64, Ordering::Relaxed);
    let record = connection_record(
        name,
        dest,
        port,
        Some(addr.to_string()),
        ConnectionDecision::Allowed,
        reason,
    );
    let id = shared.recorder.begin_relay(record, counters.clone());
    if up.write_all(&head).await.is_ok() {
        let caught = crate::relay::relay(client, up, counters, shared.secrets.clone()).await;
        if let Some(secret) = caught {
            exfiltration(&secret, "the stream carries");
        }
    } else {
        reset(client);
    }
    shared.recorder.end_relay(id);
}

fn domain_rule(shared: &Shared, name: &str, port: u16) -> Option<String> {
    shared.network.egress.iter().find_map(|r| match r {
        EgressRule::Domain { domain, ports, .. }
            if domain.matches(name) && ports.contains(&port) =>
        {
            Some(domain.to_string())
        }
        _ => None,
    })
}

fn cidr_rule(shared: &Shared, ip: IpAddr, port: u16) -> Option<String> {
    shared.network.egress.iter().find_map(|r| match r {
        EgressRule::Cidr { cidr, ports } if cidr.contains(&ip) && ports.contains(&port) => {
            Some(cidr.to_string())
        }
        _ => None,
    })
}
