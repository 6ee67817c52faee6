//! Where the session store lives: a store URL (`sqlite:PATH` or `postgres://…`)
//! from `--store` or `$SKILLSANDBOX_STORE`, else the SQLite file of
//! [`default_store_path`].
//!
//! A PostgreSQL URL that cannot be used (unreachable, a TLS server that fails
//! verification) is an
//! error, so a host that was told to share a database never falls back to a
//! private file (fail closed: no run starts).

use std::path::PathBuf;

use crate::store::{default_store_path, StoreError};

/// Environment variable naming the store by URL; wins over `SKILLSANDBOX_SESSION_DB`.
pub const STORE_URL_ENV: &str = "SKILLSANDBOX_STORE";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `sqlite:PATH` (or a bare path): one SQLite file shared by this host's processes.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: one database shared by many hosts. Kept
    /// verbatim; never printed, since it may hold a password.
    Postgres(String),
}

impl StoreLocation {
    /// `sqlite:PATH`, `sqlite://PATH`, `postgres://…`, `postgresql://…`. Anything
    /// else with a `SCHEME:` prefix is refused; a bare path means SQLite.
    pub fn parse(url: &str) -> Result<StoreLocation, StoreError> {
        let bad = |why: &'static str| StoreError::InvalidStoreUrl { why };
        if url.is_empty() {
            return Err(bad("it is empty"));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad(
                    "sqlite: needs a path, e.g. sqlite:/var/lib/skillsandbox/sessions.db",
                ));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if looks_like_scheme(url) {
            return Err(bad(
                "unknown scheme; use sqlite:PATH or postgres://USER@HOST/DB",
            ));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(url)))
    }

    /// `$SKILLSANDBOX_STORE` when set and non-empty, else the SQLite file at
    /// [`default_store_path`].
    pub fn from_env() -> Result<StoreLocation, StoreError> {
        match std::env::var(STORE_URL_ENV) {
            Ok(u) if !u.is_empty() => StoreLocation::parse(&u),
            Ok(_) | Err(std::env::VarError::NotPresent) => {
                Ok(StoreLocation::Sqlite(default_store_path()))
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::InvalidStoreUrl {
                why: "it is not valid UTF-8",
            }),
        }
    }
}

/// `SCHEME:` where SCHEME is `[a-z][a-z0-9+.-]*` of two or more characters (so a
/// relative path such as `C:x` or `a:b` with one letter is not taken for one).
fn looks_like_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once(':') else {
        return false;
    };
    scheme.len() >= 2
        && !scheme.contains('/')
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_and_bare_paths() {
        assert_eq!(
            StoreLocation::parse("sqlite:/tmp/a.db").unwrap(),
            StoreLocation::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            StoreLocation::parse("sqlite:///tmp/a.db").unwrap(),
            StoreLocation::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            StoreLocation::parse("sqlite:rel/a.db").unwrap(),
            StoreLocation::Sqlite("rel/a.db".into())
        );
        assert_eq!(
            StoreLocation::parse("/var/x.db").unwrap(),
            StoreLocation::Sqlite("/var/x.db".into())
        );
        assert_eq!(
            StoreLocation::parse("./dir/with:colon.db").unwrap(),
            StoreLocation::Sqlite("./dir/with:colon.db".into())
        );
    }

    #[test]
    fn postgres_urls_are_recognised() {
        for u in [
            "postgres://u@h/db",
            "postgresql://u:pw@h:5433/db?sslmode=require",
        ] {
            let loc = StoreLocation::parse(u).unwrap();
            assert_eq!(loc, StoreLocation::Postgres(u.to_string()));
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        for u in ["", "sqlite:", "sqlite://", "mysql://h/db", "redis:x"] {
            let e = StoreLocation::parse(u).unwrap_err();
            assert!(matches!(e, StoreError::InvalidStoreUrl { .. }), "{u}: {e}");
        }
    }
}
