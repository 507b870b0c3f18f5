//! Database credentials from a Secret: keys `host`, `port`, `dbname`,
//! `username`, `password`, optional `sslmode` and `sslrootcert` (PEM); or a
//! single `uri`. Options are built field by field, so no value needs escaping.
//!
//! A tenant's Secret (`spec.database.secretRef`) that names no sslmode gets
//! TLS: `verify-full` with its `sslrootcert`, `require` without. The tenant
//! chose where the operator sends its rows and a password, so a plaintext
//! fallback (sqlx's `prefer`) would let anyone on the path read both. The
//! operator's own database keeps libpq's `prefer`: its administrator sets
//! `--database-url` or the chart's Secret, sslmode included.

use std::collections::BTreeMap;
use std::str::FromStr;

use k8s_openapi::ByteString;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::Error;

/// A Secret's data, decoded.
pub(crate) type SecretData = BTreeMap<String, Vec<u8>>;

pub(crate) fn decode_secret(data: Option<&BTreeMap<String, ByteString>>) -> SecretData {
    data.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

fn text(data: &SecretData, key: &str, secret: &str) -> Result<Option<String>, Error> {
    data.get(key)
        .map(|v| {
            String::from_utf8(v.clone())
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|_| Error::SecretInvalid(format!("{secret}: key {key:?} is not UTF-8")))
        })
        .transpose()
}

fn required(data: &SecretData, key: &str, secret: &str) -> Result<String, Error> {
    text(data, key, secret)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::SecretInvalid(format!("{secret}: missing key {key:?} (needs host, port, dbname, username, password; or uri)")))
}

/// Whose database a Secret describes; decides the default sslmode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The operator's own (`--database-secret`): sqlx's default, `prefer`.
    Operator,
    /// A mirror's `spec.database.secretRef`: TLS unless the Secret says otherwise.
    Tenant,
}

/// Connect options from a Secret's data. `secret` names it in messages
/// (never its values).
pub(crate) fn connect_options(
    data: &SecretData,
    secret: &str,
    owner: Owner,
) -> Result<PgConnectOptions, Error> {
    let mut named_sslmode = false;
    let mut options = if let Some(uri) = text(data, "uri", secret)? {
        if !(uri.starts_with("postgres://") || uri.starts_with("postgresql://")) {
            return Err(Error::SecretInvalid(format!(
                "{secret}: key \"uri\" must start with postgres:// or postgresql://"
            )));
        }
        named_sslmode = uri_names_sslmode(&uri);
        PgConnectOptions::from_str(&uri).map_err(|e| {
            Error::SecretInvalid(format!(
                "{secret}: key \"uri\" is not a PostgreSQL URI: {}",
                redact(&e.to_string(), &uri)
            ))
        })?
    } else {
        let port = required(data, "port", secret)?;
        let port: u16 = port.parse().map_err(|_| {
            Error::SecretInvalid(format!("{secret}: key \"port\" is not a port number"))
        })?;
        PgConnectOptions::new_without_pgpass()
            .host(&required(data, "host", secret)?)
            .port(port)
            .database(&required(data, "dbname", secret)?)
            .username(&required(data, "username", secret)?)
            .password(&required(data, "password", secret)?)
    };
    if let Some(mode) = text(data, "sslmode", secret)? {
        let mode = PgSslMode::from_str(&mode)
            .map_err(|_| Error::SecretInvalid(format!("{secret}: key \"sslmode\" must be disable, allow, prefer, require, verify-ca or verify-full")))?;
        options = options.ssl_mode(mode);
        named_sslmode = true;
    }
    let root_cert = data.get("sslrootcert");
    if owner == Owner::Tenant && !named_sslmode {
        options = options.ssl_mode(if root_cert.is_some() {
            PgSslMode::VerifyFull
        } else {
            PgSslMode::Require
        });
    }
    if let Some(pem) = root_cert {
        options = options.ssl_root_cert_from_pem(pem.clone());
    }
    Ok(options.application_name("configmirror"))
}

/// Whether a URI sets sslmode itself: sqlx reads it as `prefer` when it
/// does not, which must not pass for the tenant's choice. The keys are
/// those sqlx reads, compared as written (a key sqlx would decode from
/// percent-escapes is missed here, and then gets the safe default).
fn uri_names_sslmode(uri: &str) -> bool {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .any(|key| key == "sslmode" || key == "ssl-mode")
}

/// URI parameters that make the client read the operator's own files or
/// sockets: a tenant's Secret may not name them (its certificate goes in
/// the `sslrootcert` key, as PEM).
const LOCAL_PARAMETERS: &[&str] = &[
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "passfile",
    "service",
    "servicefile",
    "host",
    "hostaddr",
];

/// Refuses a tenant Secret's `uri` that would read local files or connect
/// through a Unix socket; `Ok` for a Secret with separate keys.
pub(crate) fn refuse_local_resources(data: &SecretData, secret: &str) -> Result<(), Error> {
    let Some(uri) = text(data, "uri", secret)? else {
        return Ok(());
    };
    let refused = |what: &str| {
        Error::SecretInvalid(format!(
            "{secret}: key \"uri\" may not name local files or sockets ({what}); give a host name or address, and the CA certificate as key \"sslrootcert\""
        ))
    };
    let after_scheme = uri.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with('%') || host.starts_with('/') {
        return Err(refused("an empty host or a socket path"));
    }
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    for key in query.split('&').filter_map(|pair| pair.split('=').next()) {
        if LOCAL_PARAMETERS.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(refused(key));
        }
    }
    Ok(())
}

/// A URL without its password, for messages.
fn redact(message: &str, uri: &str) -> String {
    match url_password(uri) {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message.to_string(),
    }
}

fn url_password(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p)
}

/// `<namespace>/<name>` of a Secret.
pub(crate) fn parse_secret_ref(value: &str) -> Result<(String, String), Error> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.into(), name.into()))
        }
        _ => Err(Error::SecretInvalid(format!(
            "{value:?}: expected <namespace>/<name>"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn separate_keys_build_options_without_escaping() {
        let d = data(&[
            ("host", "db.example.com"),
            ("port", "6543\n"),
            ("dbname", "my db"),
            ("username", "app@corp"),
            ("password", "p@ss:w/rd?#%&'\""),
            ("sslmode", "require"),
        ]);
        let o = connect_options(&d, "ns/s", Owner::Tenant).unwrap();
        assert_eq!(o.get_host(), "db.example.com");
        assert_eq!(o.get_port(), 6543);
        assert_eq!(o.get_database(), Some("my db"));
        assert_eq!(o.get_username(), "app@corp");
    }

    #[test]
    fn a_uri_works_alone() {
        let o = connect_options(
            &data(&[("uri", "postgres://u:secret@h:5433/d")]),
            "ns/s",
            Owner::Tenant,
        )
        .unwrap();
        assert_eq!(
            (o.get_host(), o.get_port(), o.get_database()),
            ("h", 5433, Some("d"))
        );
    }

    #[test]
    fn problems_name_the_key_and_never_the_password() {
        let e = connect_options(
            &data(&[("host", "h"), ("port", "1")]),
            "ns/s",
            Owner::Tenant,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dbname") && e.contains("ns/s"), "{e}");
        let e = connect_options(
            &data(&[
                ("host", "h"),
                ("port", "x"),
                ("dbname", "d"),
                ("username", "u"),
                ("password", "p"),
            ]),
            "ns/s",
            Owner::Tenant,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("port"), "{e}");
        for uri in ["mysql://u:hunter2@h/d", "postgres://u:hunter2@h:notaport/d"] {
            let e = connect_options(&data(&[("uri", uri)]), "ns/s", Owner::Tenant)
                .unwrap_err()
                .to_string();
            assert!(e.contains("uri") && !e.contains("hunter2"), "{e}");
        }
        let mut bad = data(&[("uri", "postgres://h/d")]);
        bad.insert("sslmode".into(), b"sometimes".to_vec());
        assert!(
            connect_options(&bad, "ns/s", Owner::Tenant)
                .unwrap_err()
                .to_string()
                .contains("sslmode")
        );
    }

    fn mode(pairs: &[(&str, &str)], owner: Owner) -> PgSslMode {
        connect_options(&data(pairs), "t/db", owner)
            .unwrap()
            .get_ssl_mode()
    }

    const KEYS: [(&str, &str); 5] = [
        ("host", "db"),
        ("port", "5432"),
        ("dbname", "d"),
        ("username", "u"),
        ("password", "p"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        KEYS.iter().chain(extra).copied().collect()
    }

    #[test]
    fn a_tenant_secret_without_sslmode_requires_tls() {
        assert!(matches!(mode(&KEYS, Owner::Tenant), PgSslMode::Require));
        let uri = [("uri", "postgres://u:p@db:5432/d")];
        assert!(matches!(mode(&uri, Owner::Tenant), PgSslMode::Require));
    }

    #[test]
    fn a_tenant_secret_with_a_root_certificate_verifies_the_server_fully() {
        let cert = [("sslrootcert", "-----BEGIN CERTIFICATE-----")];
        assert!(matches!(
            mode(&with(&cert), Owner::Tenant),
            PgSslMode::VerifyFull
        ));
        let uri = [("uri", "postgres://u:p@db/d"), cert[0]];
        assert!(matches!(mode(&uri, Owner::Tenant), PgSslMode::VerifyFull));
    }

    #[test]
    fn a_tenant_secret_keeps_the_sslmode_it_names() {
        let key = |m: &'static str| mode(&with(&[("sslmode", m)]), Owner::Tenant);
        assert!(matches!(key("disable"), PgSslMode::Disable));
        assert!(matches!(key("prefer"), PgSslMode::Prefer));
        assert!(matches!(key("verify-ca"), PgSslMode::VerifyCa));
        // Named beside a root certificate, the Secret's choice still wins.
        let both = with(&[("sslmode", "require"), ("sslrootcert", "pem")]);
        assert!(matches!(mode(&both, Owner::Tenant), PgSslMode::Require));
        for (uri, expected) in [
            ("postgres://u:p@db/d?sslmode=disable", PgSslMode::Disable),
            (
                "postgres://u:p@db/d?application_name=x&ssl-mode=allow",
                PgSslMode::Allow,
            ),
            ("postgres://u:p@db/d?sslmode=prefer", PgSslMode::Prefer),
        ] {
            let got = mode(&[("uri", uri)], Owner::Tenant);
            assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{uri}");
        }
        // The key overrides the URI, as before.
        let over = [
            ("uri", "postgres://u:p@db/d?sslmode=disable"),
            ("sslmode", "require"),
        ];
        assert!(matches!(mode(&over, Owner::Tenant), PgSslMode::Require));
    }

    #[test]
    fn the_operators_own_secret_keeps_sqlx_default() {
        assert!(matches!(mode(&KEYS, Owner::Operator), PgSslMode::Prefer));
        let disable = with(&[("sslmode", "disable")]);
        assert!(matches!(
            mode(&disable, Owner::Operator),
            PgSslMode::Disable
        ));
    }

    #[test]
    fn secret_refs_parse() {
        assert_eq!(
            parse_secret_ref("ns/name").unwrap(),
            ("ns".into(), "name".into())
        );
        for bad in ["name", "/name", "ns/", "a/b/c"] {
            assert!(parse_secret_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenant_uri_may_not_name_local_files_or_sockets() {
        let ok = |uri: &str| refuse_local_resources(&data(&[("uri", uri)]), "t/db");
        assert!(ok("postgres://u:p@db.example.com:5432/app?sslmode=require").is_ok());
        assert!(refuse_local_resources(&data(&[("host", "/tmp")]), "t/db").is_ok());
        for bad in [
            "postgres://u:p@db/app?sslrootcert=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "postgres://u:p@db/app?sslmode=verify-full&SSLKEY=/etc/key",
            "postgres://u:p@db/app?passfile=/root/.pgpass",
            "postgres://u:p@db/app?host=/var/run/postgresql",
            "postgres://u:p@%2Fvar%2Frun%2Fpostgresql/app",
            "postgresql:///app",
        ] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.reason(), "SecretInvalid", "{bad}");
            assert!(!e.to_string().contains(":p@"), "no password in {e}");
        }
    }
}
