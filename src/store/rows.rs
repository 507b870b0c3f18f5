//! A source ConfigMap as a `configmaps` row: pure, so its encoding is tested
//! without a database. A row shares the source's serialized content (no
//! copy per row); only a value JSONB cannot hold makes it build its own.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::Value;

use crate::plan::SourceConfigMap;
use crate::plan::hash::row_hash;
use crate::plan::model::JsonText;

/// One row of `configmaps`, as this operator writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// The source's namespace (the reference's column meaning).
    pub namespace: String,
    /// `data` without the values JSONB cannot hold.
    pub data: JsonText,
    /// `binaryData` (base64), plus the exact bytes of `data` values that
    /// contain U+0000, under their own keys.
    pub binary_data: JsonText,
    /// The keys of `data` held in `binary_data` instead.
    pub data_in_binary: Vec<String>,
    pub immutable: bool,
    pub labels: JsonText,
    /// Annotations without the values JSONB cannot hold.
    pub annotations: JsonText,
    /// Annotation values that contain U+0000, as base64 of their exact bytes.
    pub annotations_in_binary: JsonText,
    /// Covers data, binaryData, immutable, labels and annotations.
    pub content_hash: String,
    pub source_uid: String,
}

impl Row {
    /// About how many bytes this row puts into a statement.
    pub(crate) fn size(&self) -> usize {
        let texts = [
            &self.data,
            &self.binary_data,
            &self.labels,
            &self.annotations,
            &self.annotations_in_binary,
        ];
        texts.iter().map(|t| t.len()).sum::<usize>()
            + self
                .data_in_binary
                .iter()
                .map(|k| k.len() + 3)
                .sum::<usize>()
            + self.name.len()
            + self.namespace.len()
            + self.content_hash.len()
            + self.source_uid.len()
    }
}

fn base64(bytes: &[u8]) -> Value {
    serde_json::to_value(ByteString(bytes.to_vec())).expect("bytes serialize")
}

/// `map` split into what JSONB holds as text and what it cannot (values
/// with U+0000, as base64 of their bytes).
fn split_nul(map: &BTreeMap<String, String>) -> (JsonText, JsonText) {
    if !map.values().any(|v| v.contains('\0')) {
        return (JsonText::of(map), JsonText::empty_object());
    }
    let (moved, kept): (BTreeMap<_, _>, BTreeMap<_, _>) =
        map.iter().partition(|(_, v)| v.contains('\0'));
    let moved: BTreeMap<&String, Value> = moved
        .into_iter()
        .map(|(k, v)| (k, base64(v.as_bytes())))
        .collect();
    (JsonText::of(&kept), JsonText::of(&moved))
}

pub fn row_of(source: &SourceConfigMap) -> Row {
    let content = &source.content;
    let (data, binary_data) = if content.nul_keys.is_empty() {
        // The common case: the source's own JSON, shared.
        (
            content.data.clone().unwrap_or_else(JsonText::empty_object),
            content
                .binary_data
                .clone()
                .unwrap_or_else(JsonText::empty_object),
        )
    } else {
        // JSONB strings cannot hold U+0000: keep those values byte-exact as
        // binary, and say so, rather than drop or alter them.
        let maps = content.decode();
        let (data, moved) = split_nul(&maps.data);
        let mut binary: serde_json::Map<String, Value> =
            serde_json::from_str(moved.get()).expect("we serialized it");
        for (k, v) in &maps.binary_data {
            binary.insert(k.clone(), base64(&v.0));
        }
        (data, JsonText::of(&binary))
    };
    let (annotations, annotations_in_binary) = split_nul(&source.annotations);
    Row {
        name: source.name.clone(),
        namespace: source.namespace.clone(),
        data,
        binary_data,
        data_in_binary: content.nul_keys.clone(),
        immutable: content.immutable,
        labels: JsonText::of(&source.labels),
        annotations,
        annotations_in_binary,
        content_hash: row_hash(&source.content_hash, &source.labels, &source.annotations),
        source_uid: source.uid.clone(),
    }
}

fn decode_base64(v: &Value) -> Option<Vec<u8>> {
    serde_json::from_value::<ByteString>(v.clone())
        .ok()
        .map(|b| b.0)
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
    let mut text = decode_annotations(data, &Value::Null);
    let mut bytes = BTreeMap::new();
    for (k, v) in binary_data.as_object().into_iter().flatten() {
        let Some(b) = decode_base64(v) else { continue };
        if moved.contains(&k.as_str()) {
            text.insert(k.clone(), String::from_utf8_lossy(&b).into_owned());
        } else {
            bytes.insert(k.clone(), b);
        }
    }
    (text, bytes)
}

/// What a row says the source's annotations were, byte-exact.
pub(crate) fn decode_annotations(
    annotations: &Value,
    annotations_in_binary: &Value,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = annotations
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    for (k, v) in annotations_in_binary.as_object().into_iter().flatten() {
        if let Some(b) = decode_base64(v) {
            out.insert(k.clone(), String::from_utf8_lossy(&b).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn source(data: &[(&str, &str)], labels: &[(&str, &str)]) -> SourceConfigMap {
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

    fn value(text: &JsonText) -> Value {
        serde_json::from_str(text.get()).unwrap()
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
        assert_eq!(row.data_in_binary, ["nul"]);
        assert!(
            !row.data.get().contains("\\u0000"),
            "a NUL value never reaches JSONB text"
        );
        let moved = serde_json::json!(row.data_in_binary);
        let (text, bytes) = decode(&value(&row.data), &value(&row.binary_data), &moved);
        for (k, v) in tricky {
            assert_eq!(text[k], v, "{k}");
        }
        assert_eq!(bytes["bin"], vec![0, 255, 1]);
        assert_eq!(bytes.len(), 1);
    }

    #[test]
    fn a_nul_in_an_annotation_moves_that_value_alone_to_bytes() {
        let mut s = source(&[("k", "v")], &[]);
        s.annotations = map(&[("note", "a\0b"), ("plain", "ok"), ("also", "\0")]);
        let row = row_of(&s);
        assert_eq!(value(&row.annotations), serde_json::json!({"plain": "ok"}));
        assert!(!row.annotations.get().contains("\\u0000"));
        assert_eq!(
            decode_annotations(&value(&row.annotations), &value(&row.annotations_in_binary)),
            s.annotations
        );
        // The hash still covers the value, so changing it rewrites the row.
        let mut changed = s.clone();
        changed.annotations.insert("note".into(), "a\0c".into());
        assert_ne!(row_of(&changed).content_hash, row.content_hash);
        // Labels cannot hold U+0000 (Kubernetes rejects them): nothing to move.
        assert_eq!(value(&row.labels), serde_json::json!({}));
    }

    #[test]
    fn a_row_shares_the_sources_content_instead_of_copying_it() {
        let s = source(&[("big", &"x".repeat(100_000))], &[("app", "a")]);
        let row = row_of(&s);
        assert!(row.data.shares(s.content.data.as_ref().unwrap()));
        assert!(
            row.binary_data
                .shares(s.content.binary_data.as_ref().unwrap())
        );
        assert!(row.clone().data.shares(&row.data));
        assert!(row.annotations_in_binary.shares(&JsonText::empty_object()));
        assert!(
            row.size() > 100_000 && row.size() < 101_000,
            "{}",
            row.size()
        );
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
