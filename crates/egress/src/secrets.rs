//! Secrets the sandbox never sees: each variable holds a per-run placeholder; the
//! egress service swaps in the real value only in requests to the secret's hosts,
//! and blocks the placeholder anywhere else (another host, a DNS name, the first
//! bytes of a pass-through connection) as `secret_exfiltration`. The value lives in
//! this process's memory only and is never recorded: records name the secret.

use skillsandbox_manifest::DomainPattern;

/// One secret of a run.
pub struct LiveSecret {
    pub name: String,
    /// What the sandbox's variable holds: `sksb` and 32 random hex digits (valid in
    /// a DNS label, so a name carrying it is caught too).
    pub placeholder: String,
    value: String,
    pub hosts: Vec<DomainPattern>,
    /// The one header the value may go in; `None`: anywhere in the request.
    pub header: Option<String>,
}

impl std::fmt::Debug for LiveSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value.
        f.debug_struct("LiveSecret")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl LiveSecret {
    /// A secret with a fresh placeholder (from the kernel's random source).
    pub fn new(
        name: String,
        value: String,
        hosts: Vec<DomainPattern>,
        header: Option<String>,
    ) -> Result<LiveSecret, String> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| format!("random placeholder for {name}: {e}"))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if value.is_empty() {
            return Err(format!("secret {name} is empty"));
        }
        Ok(LiveSecret {
            placeholder: format!("sksb{hex}"),
            name,
            value,
            hosts,
            header,
        })
    }

    pub fn bound_to(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.matches(host))
    }

    pub(crate) fn value(&self) -> &str {
        &self.value
    }
}

/// The first secret whose placeholder appears in `bytes` (case-insensitively: DNS
/// and some encoders change case).
pub(crate) fn placeholder_in<'a>(
    secrets: &'a [LiveSecret],
    bytes: &[u8],
) -> Option<&'a LiveSecret> {
    if secrets.is_empty() {
        return None;
    }
    let lower = bytes.to_ascii_lowercase();
    secrets
        .iter()
        .find(|s| contains(&lower, s.placeholder.as_bytes()))
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// `hay` with every `from` replaced by `to`.
pub(crate) fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() || !contains(hay, from) {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_replaced() {
        let s = LiveSecret::new("T".into(), "real-value".into(), vec![], None).unwrap();
        assert!(s.placeholder.starts_with("sksb") && s.placeholder.len() == 36);
        let upper = s.placeholder.to_ascii_uppercase();
        let list = [s];
        assert!(placeholder_in(&list, format!("GET /?q={upper}").as_bytes()).is_some());
        assert!(placeholder_in(&list, b"nothing here").is_none());
        let p = list[0].placeholder.clone();
        assert_eq!(
            replace(format!("a{p}b{p}").as_bytes(), p.as_bytes(), b"X"),
            b"aXbX".to_vec()
        );
        assert!(!format!("{:?}", list[0]).contains("real-value"));
    }
}
