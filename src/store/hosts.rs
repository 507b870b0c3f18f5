//! `--database-allowed-hosts`: which hosts a mirror's own database Secret
//! (`spec.database.secretRef`) may point the operator at. A tenant writes
//! that Secret, so without a list it could make the operator connect
//! anywhere its network reaches. Checked before any pool exists: a host
//! outside the list gets no connection attempt at all.
//!
//! Entries are CIDRs (`10.0.0.0/8`), IP addresses, or host names. Names are
//! compared as written, never resolved: a name that resolved into an
//! allowed range at check time could point elsewhere at connect time. To
//! allow a range, the Secret must give an address in it. A Unix socket is
//! never allowed once a list is set.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::postgres::PgConnectOptions;

/// The hosts secretRef databases may use; empty allows every host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    networks: Vec<IpNet>,
    names: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--database-allowed-hosts: {0:?} is not a CIDR, an IP address or a host name")]
pub struct InvalidEntry(String);

impl AllowedHosts {
    /// Parses the flag's entries (empty ones are ignored).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, InvalidEntry> {
        let mut hosts = Self::default();
        for entry in entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
        {
            if entry.contains('/') {
                let network = entry.parse().map_err(|_| InvalidEntry(entry.into()))?;
                hosts.networks.push(network);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                hosts.networks.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                hosts.names.insert(entry.to_ascii_lowercase());
            } else {
                return Err(InvalidEntry(entry.into()));
            }
        }
        Ok(hosts)
    }

    /// Whether `options` may be connected to; `Err` names the host refused.
    pub(crate) fn check(&self, options: &PgConnectOptions) -> Result<(), String> {
        if self.networks.is_empty() && self.names.is_empty() {
            return Ok(());
        }
        if let Some(socket) = options.get_socket() {
            return Err(socket.display().to_string());
        }
        let host = options.get_host();
        if self.allows(host) {
            Ok(())
        } else {
            Err(host.to_string())
        }
    }

    fn allows(&self, host: &str) -> bool {
        // An IPv6 literal may arrive bracketed, as in a URI.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.networks.iter().any(|n| n.contains(&ip)),
            Err(_) => self.names.contains(&bare.to_ascii_lowercase()),
        }
    }
}

/// A DNS name: dot-separated labels of letters, digits and hyphens.
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass().host(host).port(5432)
    }

    #[test]
    fn no_list_allows_every_host() {
        let any = AllowedHosts::parse::<&str>(&[]).unwrap();
        assert!(any.check(&at("203.0.113.9")).is_ok());
        assert!(any.check(&at("/var/run/postgresql")).is_ok());
    }

    #[test]
    fn networks_addresses_and_names_each_allow_their_own() {
        let hosts =
            AllowedHosts::parse(&["10.0.0.0/8", "192.0.2.7", "db.Example.org", "fd00::/8", ""])
                .unwrap();
        for allowed in [
            "10.1.2.3",
            "192.0.2.7",
            "db.example.org",
            "DB.EXAMPLE.ORG",
            "fd00::1",
        ] {
            assert!(hosts.check(&at(allowed)).is_ok(), "{allowed}");
        }
        for refused in [
            "11.0.0.1",
            "192.0.2.8",
            "other.example.org",
            "example.org",
            "::1",
        ] {
            assert_eq!(hosts.check(&at(refused)), Err(refused.to_string()));
        }
    }

    #[test]
    fn a_name_is_never_resolved_and_a_socket_never_allowed_under_a_list() {
        let hosts = AllowedHosts::parse(&["127.0.0.0/8"]).unwrap();
        // localhost resolves into the range, but names are compared as written.
        assert!(hosts.check(&at("localhost")).is_err());
        assert!(hosts.check(&at("/var/run/postgresql")).is_err());
    }

    #[test]
    fn a_bad_entry_is_a_clear_error() {
        for bad in ["10.0.0.0/33", "not a host", "-bad.example", "300.1.1.1/8"] {
            let e = AllowedHosts::parse(&[bad]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
