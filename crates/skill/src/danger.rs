//! What no proposal ever grants, and what `scan` flags: credential paths and
//! exfiltration-shaped hosts. One list, used by `learn` (refused grants) and `scan`
//! (red flags). Pure.

/// Path fragments that name credentials or secrets, each with what it is. Matched on
/// whole path components (see [`credential_path`]).
const CREDENTIAL_COMPONENTS: &[(&str, &str)] = &[
    (".ssh", "SSH keys"),
    (".gnupg", "GnuPG keys"),
    (".aws", "AWS credentials"),
    (".azure", "Azure credentials"),
    (".kube", "Kubernetes credentials"),
    (".password-store", "pass password store"),
    (".netrc", "netrc credentials"),
    (".git-credentials", "git credentials"),
    (".npmrc", "npm token"),
    (".pypirc", "PyPI token"),
    (".pgpass", "PostgreSQL passwords"),
    (".vault-token", "Vault token"),
    (".env", "dotenv secrets"),
    ("keyrings", "desktop keyring"),
    ("Login Data", "browser saved passwords"),
    ("cookies.sqlite", "browser cookies"),
    ("Cookies", "browser cookies"),
    ("key4.db", "browser key store"),
    ("logins.json", "browser saved passwords"),
    ("credentials", "a credentials file"),
    ("credentials.json", "a credentials file"),
];

/// Path suffixes (two or more components) that name credentials.
const CREDENTIAL_SUFFIXES: &[(&str, &str)] = &[
    (".config/gcloud", "Google Cloud credentials"),
    (".config/gh", "GitHub CLI token"),
    (".config/hub", "GitHub token"),
    (".docker/config.json", "Docker registry credentials"),
    (".cargo/credentials", "crates.io token"),
    (".cargo/credentials.toml", "crates.io token"),
    (".config/op", "1Password CLI"),
];

/// Whole files of the host that hold secrets.
const CREDENTIAL_FILES: &[(&str, &str)] = &[
    ("/etc/shadow", "password hashes"),
    ("/etc/gshadow", "group password hashes"),
    ("/etc/sudoers", "sudo rules"),
    ("/etc/ssh", "SSH host keys"),
    (
        "/var/run/docker.sock",
        "the Docker daemon (root on the host)",
    ),
    ("/run/docker.sock", "the Docker daemon (root on the host)"),
    (
        "/run/containerd/containerd.sock",
        "containerd (root on the host)",
    ),
    ("/proc/1/environ", "init's environment"),
    ("/run/secrets", "container secrets"),
    ("/var/run/secrets", "container and service-account secrets"),
];

/// Why `path` (absolute, normalised) is a credential path, or `None`.
pub fn credential_path(path: &str) -> Option<&'static str> {
    for (file, what) in CREDENTIAL_FILES {
        if path == *file || path.starts_with(&format!("{file}/")) {
            return Some(what);
        }
    }
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let base = components.last().copied().unwrap_or("");
    if !base.ends_with(".pub")
        && (base.starts_with("id_rsa")
            || base.starts_with("id_ed25519")
            || base.starts_with("id_ecdsa")
            || base.starts_with("id_dsa"))
    {
        return Some("SSH private key");
    }
    for (c, what) in CREDENTIAL_COMPONENTS {
        if components.iter().any(|x| x == c) {
            return Some(what);
        }
    }
    for (suffix, what) in CREDENTIAL_SUFFIXES {
        let pattern = format!("/{suffix}");
        if path.ends_with(&pattern) || path.contains(&format!("{pattern}/")) {
            return Some(what);
        }
    }
    None
}

/// Hosts, or host suffixes, of paste, file-drop, webhook-capture and tunnelling
/// services: where stolen data goes.
const EXFIL_HOSTS: &[(&str, &str)] = &[
    ("pastebin.com", "paste site"),
    ("paste.ee", "paste site"),
    ("hastebin.com", "paste site"),
    ("ghostbin.com", "paste site"),
    ("dpaste.org", "paste site"),
    ("rentry.co", "paste site"),
    ("termbin.com", "paste site"),
    ("ix.io", "paste site"),
    ("0x0.st", "file drop"),
    ("transfer.sh", "file drop"),
    ("file.io", "file drop"),
    ("temp.sh", "file drop"),
    ("anonfiles.com", "file drop"),
    ("gofile.io", "file drop"),
    ("webhook.site", "request capture"),
    ("requestbin.com", "request capture"),
    ("requestbin.net", "request capture"),
    ("pipedream.net", "request capture"),
    ("beeceptor.com", "request capture"),
    ("hookbin.com", "request capture"),
    ("interact.sh", "out-of-band capture"),
    ("oast.fun", "out-of-band capture"),
    ("oast.me", "out-of-band capture"),
    ("oast.pro", "out-of-band capture"),
    ("burpcollaborator.net", "out-of-band capture"),
    ("canarytokens.com", "out-of-band capture"),
    ("ngrok.io", "tunnel"),
    ("ngrok-free.app", "tunnel"),
    ("ngrok.app", "tunnel"),
    ("trycloudflare.com", "tunnel"),
    ("loca.lt", "tunnel"),
    ("serveo.net", "tunnel"),
    ("discord.com", "chat webhook"),
    ("discordapp.com", "chat webhook"),
    ("api.telegram.org", "chat bot API"),
    (
        "dns.google",
        "DNS-over-HTTPS resolver (bypasses the sandbox's DNS)",
    ),
    (
        "cloudflare-dns.com",
        "DNS-over-HTTPS resolver (bypasses the sandbox's DNS)",
    ),
    (
        "dns.quad9.net",
        "DNS-over-HTTPS resolver (bypasses the sandbox's DNS)",
    ),
    (
        "doh.opendns.com",
        "DNS-over-HTTPS resolver (bypasses the sandbox's DNS)",
    ),
    (
        "dns.nextdns.io",
        "DNS-over-HTTPS resolver (bypasses the sandbox's DNS)",
    ),
];

/// Label words that mark a name as built for exfiltration.
const EXFIL_WORDS: &[&str] = &["paste", "exfil", "webhook", "requestbin", "collector"];

/// Why `name` (a lower-case host name) looks like an exfiltration destination, or `None`.
pub fn exfil_host(name: &str) -> Option<&'static str> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    for (host, what) in EXFIL_HOSTS {
        if name == *host || name.ends_with(&format!(".{host}")) {
            return Some(what);
        }
    }
    if name.ends_with(".onion") {
        return Some("Tor hidden service");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels
        .iter()
        .any(|l| EXFIL_WORDS.iter().any(|w| l.contains(w)))
    {
        return Some("paste/exfiltration-shaped name");
    }
    // DNS tunnelling: data carried in a long, random-looking label.
    if labels
        .iter()
        .any(|l| l.len() >= 32 && l.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Some("data-carrying label (DNS tunnelling)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_paths() {
        for (p, want) in [
            ("/root/.ssh/id_rsa", "SSH private key"),
            ("/home/sandbox/.ssh/known_hosts", "SSH keys"),
            ("/data/keys/id_ed25519", "SSH private key"),
            ("/root/.aws/credentials", "AWS credentials"),
            ("/home/u/.config/gh/hosts.yml", "GitHub CLI token"),
            ("/home/u/.docker/config.json", "Docker registry credentials"),
            ("/etc/shadow", "password hashes"),
            ("/etc/ssh/ssh_host_ed25519_key", "SSH host keys"),
            ("/srv/app/.env", "dotenv secrets"),
            (
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                "container and service-account secrets",
            ),
            ("/opt/app/credentials.json", "a credentials file"),
        ] {
            assert_eq!(credential_path(p), Some(want), "{p}");
        }
        for p in [
            "/usr/lib/python3.11/os.py",
            "/etc/ssl/certs/ca-certificates.crt",
            "/skill/data/sample.txt",
            "/home/u/.config/ghostty/config",
            "/srv/app/.envrc.example",
            "/data/keys/id_ed25519.pub",
        ] {
            assert_eq!(credential_path(p), None, "{p}");
        }
    }

    #[test]
    fn exfil_hosts() {
        for (h, want) in [
            ("pastebin.com", "paste site"),
            ("abc.ngrok-free.app", "tunnel"),
            ("paste.example-exfil.net", "paste/exfiltration-shaped name"),
            ("api.telegram.org", "chat bot API"),
            (
                "c2vjcmv0igrhdgegz29lcybozxjlcgzvbw.evil.example",
                "data-carrying label (DNS tunnelling)",
            ),
        ] {
            assert_eq!(exfil_host(h), Some(want), "{h}");
        }
        for h in [
            "api.github.com",
            "pypi.org",
            "api.openweathermap.org",
            "telegram.org",
        ] {
            assert_eq!(exfil_host(h), None, "{h}");
        }
    }
}
