//! Database credentials from a Secret: keys `host`, `port`, `dbname`,
//! `username`, `password`, optional `sslmode` and `sslrootcert` (PEM); or a
//! single `uri`. Options are built field by field, so no value needs escaping.

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

/// Connect options from a Secret's data. `secret` names it in messages
/// (never its values).
pub(crate) fn connect_options(data: &SecretData, secret: &str) -> Result<PgConnectOptions, Error> {
    let mut options = if let Some(uri) = text(data, "uri", secret)? {
        if !(uri.starts_with("postgres://") || uri.starts_with("postgresql://")) {
            return Err(Error::SecretInvalid(format!(
                "{secret}: key \"uri\" must start with postgres:// or postgresql://"
            )));
        }
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
    }
    if let Some(pem) = data.get("sslrootcert") {
        options = options.ssl_root_cert_from_pem(pem.clone());
    }
    Ok(options.application_name("configmirror"))
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
        let o = connect_options(&d, "ns/s").unwrap();
        assert_eq!(o.get_host(), "db.example.com");
        assert_eq!(o.get_port(), 6543);
        assert_eq!(o.get_database(), Some("my db"));
        assert_eq!(o.get_username(), "app@corp");
    }

    #[test]
    fn a_uri_works_alone() {
        let o = connect_options(&data(&[("uri", "postgres://u:secret@h:5433/d")]), "ns/s").unwrap();
        assert_eq!(
            (o.get_host(), o.get_port(), o.get_database()),
            ("h", 5433, Some("d"))
        );
    }

    #[test]
    fn problems_name_the_key_and_never_the_password() {
        let e = connect_options(&data(&[("host", "h"), ("port", "1")]), "ns/s")
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
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("port"), "{e}");
        for uri in ["mysql://u:hunter2@h/d", "postgres://u:hunter2@h:notaport/d"] {
            let e = connect_options(&data(&[("uri", uri)]), "ns/s")
                .unwrap_err()
                .to_string();
            assert!(e.contains("uri") && !e.contains("hunter2"), "{e}");
        }
        let mut bad = data(&[("uri", "postgres://h/d")]);
        bad.insert("sslmode".into(), b"sometimes".to_vec());
        assert!(
            connect_options(&bad, "ns/s")
                .unwrap_err()
                .to_string()
                .contains("sslmode")
        );
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
}
