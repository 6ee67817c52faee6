//! Probe items of the `requests` run: what request-level egress must stop, tried
//! from inside over plain HTTP against the check's own upstream
//! ([`super::upstream`]), reached through two names only the check declares. The
//! first name's requests are checked and the check's secret is bound to it; the
//! second is another allowed host. The check then compares what the probe saw with
//! what reached the upstream.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::egress::{ask, resolver};
use super::params::{HttpCheck, ProbeParams};
use super::{emit, fail};
use crate::catalog::Status;

const WAIT: Duration = Duration::from_secs(3);

pub fn run_all(p: &ProbeParams) {
    let Some(h) = &p.http else {
        fail(
            "egress.secret_exfiltration",
            "no request-level parameters were passed",
        );
        return fail(
            "egress.fronting_keepalive",
            "no request-level parameters were passed",
        );
    };
    let dns = resolver();
    secret_exfiltration(h, dns);
    fronting_keepalive(h, dns);
}

/// The synthetic address the sandbox resolver gives `name`.
fn address(dns: IpAddr, name: &str, port: u16) -> Result<SocketAddr, String> {
    match ask(dns, name, 1) {
        Ok(a) => a
            .addrs
            .first()
            .map(|ip| SocketAddr::new(*ip, port))
            .ok_or_else(|| format!("{name} did not resolve")),
        Err(e) => Err(format!("resolving {name}: {e}")),
    }
}

fn connect(dns: IpAddr, name: &str, port: u16) -> Result<Wire, String> {
    let addr = address(dns, name, port)?;
    let s = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("{name}: {e}"))?;
    let _ = s.set_read_timeout(Some(WAIT));
    Ok(Wire {
        s,
        pending: Vec::new(),
    })
}

fn request(host: &str, path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

/// A connection and the bytes read past the last response (a pipelined answer can
/// arrive in the same read as the one before it).
struct Wire {
    s: TcpStream,
    pending: Vec<u8>,
}

impl Wire {
    fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.s.write_all(text.as_bytes())
    }

    /// Reads more into `pending`; false at the end of the stream or on an error.
    fn fill(&mut self) -> bool {
        let mut b = [0u8; 4096];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&b[..n]);
                true
            }
        }
    }
}

/// The next response on `w`: (status, body); `None` when the connection ended first.
fn response(w: &mut Wire) -> Option<(u16, String)> {
    let head_end = loop {
        if let Some(i) = w.pending.windows(4).position(|x| x == b"\r\n\r\n") {
            break i + 4;
        }
        if !w.fill() {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&w.pending[..head_end]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while w.pending.len() < head_end + len && w.fill() {}
    let end = (head_end + len).min(w.pending.len());
    let body = String::from_utf8_lossy(&w.pending[head_end..end]).to_string();
    w.pending.drain(..end);
    Some((status, body))
}

/// Whether the connection was ended (EOF or reset) after the last response.
fn closed(w: &mut Wire) -> bool {
    if !w.pending.is_empty() {
        return false;
    }
    let mut b = [0u8; 64];
    match w.s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// One request on a new connection: its status and body, `None` when the
/// connection ended without a response after the request went out. `Err` when the
/// request could not be made at all (then nothing was tried: never a pass).
fn one(
    dns: IpAddr,
    name: &str,
    port: u16,
    path: &str,
    extra: &str,
) -> Result<Option<(u16, String)>, String> {
    let mut s = connect(dns, name, port)?;
    s.send(&request(name, path, extra))
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(response(&mut s))
}

fn secret_exfiltration(h: &HttpCheck, dns: IpAddr) {
    let id = "egress.secret_exfiltration";
    let Ok(placeholder) = std::env::var(&h.secret_env) else {
        return fail(id, format!("${} is not set inside", h.secret_env));
    };
    // The real value is never inside: not in any variable.
    if let Some((k, _)) = std::env::vars().find(|(_, v)| v.contains(&h.secret_prefix)) {
        return fail(
            id,
            format!("${k} holds the real secret value inside the sandbox"),
        );
    }
    let mut parts = vec![format!(
        "${} holds a placeholder ({} characters)",
        h.secret_env,
        placeholder.len()
    )];
    let mut ok = true;
    let bearer = format!("Authorization: Bearer {placeholder}\r\n");
    match one(dns, &h.checked, h.port, "/secret-bound", &bearer) {
        Ok(Some((200, body)))
            if body.contains(&placeholder) && !body.contains(&h.secret_prefix) =>
        {
            parts.push(format!(
                "to {} (bound): 200, the echo shows the placeholder, never the value",
                h.checked
            ))
        }
        Ok(None) => {
            ok = false;
            parts.push(format!(
                "to {} (bound): the connection ended without a response",
                h.checked
            ));
        }
        Ok(Some((code, body))) => {
            ok = false;
            let leaked = if body.contains(&h.secret_prefix) {
                " and the real value came back"
            } else {
                ""
            };
            parts.push(format!("to {} (bound): {code}{leaked}", h.checked));
        }
        Err(e) => {
            ok = false;
            parts.push(e);
        }
    }
    for (what, path, extra) in [
        ("header", "/secret-header".to_string(), bearer.clone()),
        (
            "query",
            format!("/secret-query?t={placeholder}"),
            String::new(),
        ),
    ] {
        match one(dns, &h.other, h.port, &path, &extra) {
            Ok(Some((403, _))) => parts.push(format!("in the {what} to {}: 403", h.other)),
            Ok(None) => parts.push(format!(
                "in the {what} to {}: closed without a response",
                h.other
            )),
            Ok(Some((code, _))) => {
                ok = false;
                parts.push(format!(
                    "in the {what} to {}: {code} (not refused)",
                    h.other
                ));
            }
            Err(e) => {
                ok = false;
                parts.push(format!("in the {what} to {}: not tried ({e})", h.other));
            }
        }
    }
    let label = format!("{placeholder}.{}", h.checked);
    match ask(dns, &label, 1) {
        Ok(a) if a.addrs.is_empty() => parts.push("as a DNS label: no address".to_string()),
        Ok(a) => {
            ok = false;
            parts.push(format!("as a DNS label: resolved to {:?}", a.addrs));
        }
        Err(e) => {
            ok = false;
            parts.push(format!("as a DNS label: no verdict ({e})"));
        }
    }
    emit(
        id,
        if ok { Status::Pass } else { Status::Fail },
        parts.join("; "),
    );
}

fn fronting_keepalive(h: &HttpCheck, dns: IpAddr) {
    let id = "egress.fronting_keepalive";
    let mut parts = Vec::new();
    let mut ok = true;
    // Kept alive: one request for the checked name, then one naming the other host.
    match connect(dns, &h.checked, h.port) {
        Ok(mut s) => {
            let _ = s.send(&request(&h.checked, "/front-first", ""));
            let first = response(&mut s).map(|r| r.0);
            let _ = s.send(&request(&h.other, "/front-keepalive", ""));
            let second = response(&mut s).map(|r| r.0);
            let ended = closed(&mut s);
            let judged = first == Some(200) && matches!(second, None | Some(403)) && ended;
            ok &= judged;
            parts.push(format!(
                "kept alive: first {}, then Host {}: {}{}",
                code(first),
                h.other,
                code(second),
                if ended {
                    ", connection closed"
                } else {
                    ", connection left open"
                }
            ));
        }
        Err(e) => {
            ok = false;
            parts.push(e);
        }
    }
    // Pipelined: both requests in one write.
    match connect(dns, &h.checked, h.port) {
        Ok(mut s) => {
            let both = request(&h.checked, "/front-first", "")
                + &request(&h.other, "/front-pipelined", "");
            let _ = s.send(&both);
            let first = response(&mut s).map(|r| r.0);
            let second = response(&mut s).map(|r| r.0);
            let judged = first == Some(200) && matches!(second, None | Some(403));
            ok &= judged;
            parts.push(format!(
                "pipelined: first {}, then Host {}: {}",
                code(first),
                h.other,
                code(second)
            ));
        }
        Err(e) => {
            ok = false;
            parts.push(e);
        }
    }
    emit(
        id,
        if ok { Status::Pass } else { Status::Fail },
        parts.join("; "),
    );
}

fn code(c: Option<u16>) -> String {
    c.map_or_else(|| "connection ended".to_string(), |c| c.to_string())
}
