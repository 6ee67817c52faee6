//! Output pumps: read the skill's stdout/stderr as it is produced, forward it, keep a
//! capped copy when asked, and drop (but keep draining) everything past the cap so the
//! skill never blocks on a full pipe and the supervisor's memory stays bounded.

use std::io::{Read, Write};
use std::thread::JoinHandle;

/// Where one stream goes.
pub enum Sink {
    /// Forward to this writer (e.g. our own stdout) as it arrives.
    Forward(Box<dyn Write + Send>),
    /// Keep in memory only (MCP, `--json`).
    Capture,
}

/// One stream after the skill is gone.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// Bytes kept (at most the cap; empty when forwarding only).
    pub data: Vec<u8>,
    /// Total bytes the skill wrote, including dropped ones.
    pub total: u64,
    pub truncated: bool,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Start pumping `src` into `sink`, keeping at most `cap` bytes.
pub fn pump<R: Read + Send + 'static>(
    mut src: R,
    sink: Sink,
    cap: u64,
    stream: &'static str,
) -> JoinHandle<Captured> {
    std::thread::spawn(move || {
        let mut out = Captured::default();
        let mut forward = match sink {
            Sink::Forward(w) => Some(w),
            Sink::Capture => None,
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let room = cap.saturating_sub(out.total);
            let keep = (n as u64).min(room) as usize;
            out.total += n as u64;
            if keep > 0 {
                match forward.as_mut() {
                    Some(w) => {
                        // A reader that went away (closed pipe) must not stop the drain.
                        if w.write_all(&buf[..keep]).and_then(|()| w.flush()).is_err() {
                            forward = None;
                        }
                    }
                    None => out.data.extend_from_slice(&buf[..keep]),
                }
            }
            if keep < n && !out.truncated {
                out.truncated = true;
                if let Some(w) = forward.as_mut() {
                    let _ = writeln!(
                        w,
                        "\n[skillsandbox: {stream} truncated after {cap} bytes; the rest was dropped]"
                    );
                    let _ = w.flush();
                }
            }
        }
        out
    })
}
