//! A source ConfigMap as a `configmaps` row: pure, so its encoding is tested
//! without a database.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::{Map, Value};

use crate::plan::SourceConfigMap;
use crate::plan::hash::row_hash;

/// One row of `configmaps`, as this operator writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// The source's namespace (the reference's column meaning).
    pub namespace: String,
    /// `data` without the values JSONB cannot hold.
    pub data: Value,
    /// `binaryData` (base64), plus the exact bytes of `data` values that
    /// contain U+0000, under their own keys.
    pub binary_data: Value,
    /// The keys of `data` held in `binary_data` instead.
    pub data_in_binary: Value,
    pub immutable: bool,
    pub labels: Value,
    pub annotations: Value,
    /// Covers data, binaryData, immutable, labels and annotations.
    pub content_hash: String,
    pub source_uid: String,
}

fn base64(bytes: &[u8]) -> Value {
    serde_json::to_value(ByteString(bytes.to_vec())).expect("bytes serialize")
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

pub fn row_of(source: &SourceConfigMap) -> Row {
    let content = &source.content;
    let mut data = Map::new();
    let mut binary = Map::new();
    let mut moved = Vec::new();
    for (k, v) in &content.data {
        if v.contains('\0') {
            // JSONB strings cannot hold U+0000: keep the value byte-exact
            // as binary, and say so, rather than drop or alter it.
            binary.insert(k.clone(), base64(v.as_bytes()));
            moved.push(Value::String(k.clone()));
        } else {
            data.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for (k, v) in &content.binary_data {
        binary.insert(k.clone(), base64(&v.0));
    }
    Row {
        name: source.name.clone(),
        namespace: source.namespace.clone(),
        data: Value::Object(data),
        binary_data: Value::Object(binary),
        data_in_binary: Value::Array(moved),
        immutable: content.immutable,
        labels: string_map(&source.labels),
        annotations: string_map(&source.annotations),
        content_hash: row_hash(&source.content_hash, &source.labels, &source.annotations),
        source_uid: source.uid.clone(),
    }
}

/// What a row says the ConfigMap held: (data, binaryData), byte-exact.
pub fn decode(
    data: &Value,
    binary_data: &Value,
    data_in_binary: &Value,
) -> (BTreeMap<String, String>, BTreeMap<String, Vec<u8>>) {
    let moved: Vec<&str> = data_in_binary
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut text: BTreeMap<String, String> = data
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    let mut bytes = BTreeMap::new();
    for (k, v) in binary_data.as_object().into_iter().flatten() {
        let Ok(ByteString(b)) = serde_json::from_value::<ByteString>(v.clone()) else {
            continue;
        };
        if moved.contains(&k.as_str()) {
            text.insert(k.clone(), String::from_utf8_lossy(&b).into_owned());
        } else {
            bytes.insert(k.clone(), b);
        }
    }
    (text, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn source(data: &[(&str, &str)], labels: &[(&str, &str)]) -> SourceConfigMap {
        let map = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        SourceConfigMap::from_configmap(&ConfigMap {
            metadata: ObjectMeta {
                name: Some("cfg".into()),
                namespace: Some("src".into()),
                uid: Some("u-1".into()),
                labels: Some(map(labels)),
                ..Default::default()
            },
            data: Some(map(data)),
            binary_data: Some(BTreeMap::from([(
                "bin".to_string(),
                ByteString(vec![0, 255, 1]),
            )])),
            ..Default::default()
        })
    }

    #[test]
    fn rows_round_trip_byte_exact_including_nul() {
        let tricky = [
            ("quote", "it's \"quoted\" \\ back\\slash"),
            ("sql", "'; DROP TABLE configmaps; --"),
            ("unicode", "grüß 🚀 ✓"),
            ("nul", "before\0after"),
        ];
        let row = row_of(&source(&tricky, &[]));
        assert_eq!(row.data_in_binary, serde_json::json!(["nul"]));
        assert!(
            row.data.get("nul").is_none(),
            "a NUL value never reaches JSONB text"
        );
        let (text, bytes) = decode(&row.data, &row.binary_data, &row.data_in_binary);
        for (k, v) in tricky {
            assert_eq!(text[k], v, "{k}");
        }
        assert_eq!(bytes["bin"], vec![0, 255, 1]);
        assert_eq!(bytes.len(), 1);
    }

    #[test]
    fn the_row_hash_covers_labels_but_the_replica_hash_does_not() {
        let a = source(&[("k", "v")], &[("app", "x")]);
        let b = source(&[("k", "v")], &[("app", "y")]);
        assert_eq!(
            a.content_hash, b.content_hash,
            "replicas do not change for a label"
        );
        assert_ne!(row_of(&a).content_hash, row_of(&b).content_hash, "rows do");
        assert_eq!(row_of(&a).content_hash, row_of(&a.clone()).content_hash);
    }
}
