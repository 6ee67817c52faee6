//! Kill-switch webhooks: a POST of a JSON notice to each `http://` URL, each on its
//! own background thread with a short timeout.
//!
//! A plain HTTP/1.1 client over `std::net::TcpStream` is all a notice needs;
//! `https://` is refused when the policy file is read (no TLS client is built in).
//! Sending never blocks the caller: the kill is already in force when notices go out.
//! Failures are printed on stderr; [`Pending::wait`] lets a short-lived process give
//! the notices a bounded moment before it exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long one notice may take (connect, send, read the status line), each step.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// A parsed `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// Host as written (brackets kept for IPv6 literals), for the `Host` header.
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Why a webhook URL was refused when the policy file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlProblem {
    pub message: String,
    pub hint: Option<String>,
}

fn problem(message: impl Into<String>, hint: Option<&str>) -> UrlProblem {
    UrlProblem {
        message: message.into(),
        hint: hint.map(str::to_owned),
    }
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<WebhookUrl, UrlProblem> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(problem(
                "the URL contains spaces or control characters",
                None,
            ));
        }
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(problem(
                "https:// webhooks are not supported (no TLS client is built in)",
                Some("point it at an http:// relay on a trusted network, e.g. a local forwarder on 127.0.0.1"),
            ));
        } else {
            return Err(problem(
                format!("{url:?} is not an http:// URL"),
                Some("write e.g. http://127.0.0.1:9000/kill"),
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(problem(
                "user:password@ in webhook URLs is not supported",
                Some("put a token in the path instead"),
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some(end) = v6.find(']') else {
                return Err(problem("unclosed `[` in the host", None));
            };
            let host = &authority[..end + 2];
            let after = &v6[end + 1..];
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(problem("the URL has no host", None));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| problem(format!("invalid port {p:?}"), None))?,
        };
        Ok(WebhookUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        Ok((bare, self.port).to_socket_addrs()?.collect())
    }
}

/// Why one notice was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid URL: {0}")]
    ParseUrl(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("sending the notice failed: {source}")]
    Send { source: std::io::Error },
    #[error("reading the response failed: {source}")]
    ReadResponse { source: std::io::Error },
    #[error("the server answered {status_line:?}")]
    Status { status_line: String },
}

/// POSTs `body` to `url` and returns the HTTP status code (2xx only).
pub fn post_json(url: &str, body: &[u8], timeout: Duration) -> Result<u16, NotifyError> {
    let u = WebhookUrl::parse(url).map_err(|p| NotifyError::ParseUrl(p.message))?;
    let addrs = u.addrs().map_err(|source| NotifyError::Resolve {
        host: u.host.clone(),
        source,
    })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or(NotifyError::Connect {
        host: u.host.clone(),
        port: u.port,
        source: last,
    })?;
    let send = |source| NotifyError::Send { source };
    stream.set_write_timeout(Some(timeout)).map_err(send)?;
    stream.set_read_timeout(Some(timeout)).map_err(send)?;
    let host_header = if u.port == 80 {
        u.host.clone()
    } else {
        format!("{}:{}", u.host, u.port)
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: skillsandbox/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        u.path,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(send)?;
    stream.write_all(body).map_err(send)?;
    stream.flush().map_err(send)?;
    // The status line is all we need; read until the first line ends.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    let deadline = Instant::now() + timeout;
    while !buf.contains(&b'\n') && buf.len() < 4096 && Instant::now() < deadline {
        let n = stream
            .read(&mut chunk)
            .map_err(|source| NotifyError::ReadResponse { source })?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("").trim().to_owned();
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..300).contains(&c) && line.starts_with("HTTP/1.") => Ok(c),
        _ => Err(NotifyError::Status { status_line: line }),
    }
}

/// Notices in flight.
#[derive(Debug)]
pub struct Pending {
    rx: Receiver<()>,
    left: usize,
}

impl Pending {
    /// Nothing in flight.
    pub fn none() -> Pending {
        let (_tx, rx) = mpsc::channel();
        Pending { rx, left: 0 }
    }

    /// Number of notices not finished yet.
    pub fn in_flight(&self) -> usize {
        self.left
    }

    /// Waits until every notice finished or `timeout` passed, whichever is first.
    pub fn wait(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.left > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.rx.recv_timeout(left).is_err() {
                return;
            }
            self.left -= 1;
        }
    }
}

/// Sends `body` to every URL, each on its own thread; returns at once. Each failure
/// is printed on stderr as `skillsandbox: kill notice to URL failed: why`.
pub fn notify_all(urls: &[String], body: &serde_json::Value) -> Pending {
    let (tx, rx) = mpsc::channel();
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut left = 0;
    for url in urls {
        let (tx, target, bytes) = (tx.clone(), url.clone(), bytes.clone());
        let spawned = std::thread::Builder::new()
            .name("kill-notice".into())
            .spawn(move || {
                if let Err(e) = post_json(&target, &bytes, NOTIFY_TIMEOUT) {
                    eprintln!("skillsandbox: kill notice to {target} failed: {e}");
                }
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => left += 1,
            Err(e) => eprintln!("skillsandbox: kill notice to {url} failed: no thread: {e}"),
        }
    }
    Pending { rx, left }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_urls() {
        let u = WebhookUrl::parse("http://127.0.0.1:9000/kill?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/kill?x=1")
        );
        let u = WebhookUrl::parse("http://[::1]:81").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("[::1]", 81, "/")
        );
        let u = WebhookUrl::parse("http://hooks.example.com/a").unwrap();
        assert_eq!(u.port, 80);
        assert!(WebhookUrl::parse("https://x/")
            .unwrap_err()
            .message
            .contains("https"));
        assert!(WebhookUrl::parse("ftp://x/").is_err());
        assert!(WebhookUrl::parse("http://x:0/").is_err());
        assert!(WebhookUrl::parse("http://x:99999/").is_err());
        assert!(WebhookUrl::parse("http://u:p@x/").is_err());
        assert!(WebhookUrl::parse("http:///a").is_err());
        assert!(WebhookUrl::parse("http://x/a\r\nEvil: 1").is_err());
    }

    #[test]
    fn posts_json_to_a_loopback_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&req).contains("\"ok\":true") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            String::from_utf8(req).unwrap()
        });
        let url = format!("http://127.0.0.1:{port}/hook");
        let code = post_json(&url, br#"{"ok":true}"#, NOTIFY_TIMEOUT).unwrap();
        assert_eq!(code, 204);
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Type: application/json\r\n"));
        assert!(req.contains("Content-Length: 11\r\n"));
    }

    #[test]
    fn refused_and_error_statuses_are_errors() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = post_json(&format!("http://127.0.0.1:{port}/"), b"{}", NOTIFY_TIMEOUT);
        assert!(matches!(e, Err(NotifyError::Connect { .. })), "{e:?}");

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 500 Oops\r\n\r\n").unwrap();
        });
        let e = post_json(&format!("http://127.0.0.1:{port}/"), b"{}", NOTIFY_TIMEOUT);
        assert!(matches!(e, Err(NotifyError::Status { .. })), "{e:?}");
        server.join().unwrap();
    }

    #[test]
    fn pending_wait_is_bounded_by_its_timeout() {
        // A server that accepts and never answers: the wait returns after its timeout.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut p = notify_all(
            &[format!("http://127.0.0.1:{port}/")],
            &serde_json::json!({}),
        );
        assert_eq!(p.in_flight(), 1);
        let t = Instant::now();
        p.wait(Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(p.in_flight(), 1);
        drop(l);
    }
}
