//! The check's own upstream for the request-level items: a plain HTTP/1.1 server on
//! the host's loopback that the `requests` run reaches through two names only the
//! check declares. It keeps connections alive, answers every request with 200 and
//! the `Authorization` it received, and logs `HOST PATH AUTHORIZATION` per request,
//! so the check judges by what reached it, not by what the probe says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// At most this many connections are served; the probe makes a handful.
const MAX_CONNECTIONS: usize = 32;

pub struct CheckUpstream {
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CheckUpstream {
    pub fn start() -> std::io::Result<CheckUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while !s.load(Ordering::Relaxed) && served < MAX_CONNECTIONS {
                match listener.accept() {
                    Ok((c, _)) => {
                        served += 1;
                        let l = l.clone();
                        std::thread::spawn(move || serve(c, &l));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(CheckUpstream {
            port,
            log,
            stop,
            thread: Some(thread),
        })
    }

    /// Every request received so far, `HOST PATH AUTHORIZATION`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for CheckUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    for _ in 0..16 {
        let mut start = String::new();
        if r.read_line(&mut start).unwrap_or(0) == 0 {
            return;
        }
        let path = start.split_whitespace().nth(1).unwrap_or("?").to_string();
        let (mut host, mut auth, mut len) = ("-".to_string(), "-".to_string(), 0usize);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim().to_string();
                match k.trim().to_ascii_lowercase().as_str() {
                    "host" => host = v,
                    "authorization" => auth = v,
                    "content-length" => len = v.parse().unwrap_or(0).min(1 << 20),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(mut l) = log.lock() {
            l.push(format!("{host} {path} {auth}"));
        }
        let text = format!("check-upstream auth={auth}");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
