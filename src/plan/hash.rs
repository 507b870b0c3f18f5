//! Content hashing: whether a replica holds what its source holds.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::model::ReplicaContent;

/// SHA-256 over exactly data, binaryData and immutable, each key and value
/// length-prefixed so no two different contents encode alike. Maps are
/// ordered, so the hash does not depend on how the API server sent them.
pub fn content_hash(content: &ReplicaContent) -> String {
    hash_parts(&content.data, &content.binary_data, content.immutable)
}

/// `content_hash` of a whole object, without copying its content.
pub(crate) fn configmap_hash(cm: &ConfigMap) -> String {
    let (empty_data, empty_binary) = (BTreeMap::new(), BTreeMap::new());
    hash_parts(
        cm.data.as_ref().unwrap_or(&empty_data),
        cm.binary_data.as_ref().unwrap_or(&empty_binary),
        cm.immutable.unwrap_or(false),
    )
}

fn hash_parts(
    data: &BTreeMap<String, String>,
    binary_data: &BTreeMap<String, ByteString>,
    immutable: bool,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"data");
    for (k, v) in data {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(b"binaryData");
    for (k, v) in binary_data {
        field(k.as_bytes());
        field(&v.0);
    }
    field(if immutable { b"immutable" } else { b"mutable" });
    hex(&h.finalize())
}

/// The hash of a persisted row: the content hash plus the source's labels
/// and annotations, so a label-only change updates the row (and adds a
/// revision) though it writes no replica.
pub(crate) fn row_hash(
    content_hash: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(content_hash.as_bytes());
    for (section, map) in [("labels", labels), ("annotations", annotations)] {
        field(section.as_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.as_bytes());
        }
    }
    hex(&h.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(data: &[(&str, &str)], binary: &[(&str, &[u8])], immutable: bool) -> ReplicaContent {
        ReplicaContent {
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            binary_data: binary
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
            immutable,
        }
    }

    #[test]
    fn equal_content_hashes_equal() {
        let a = content(&[("a", "1"), ("b", "2")], &[("x", &[0, 255])], false);
        let b = content(&[("b", "2"), ("a", "1")], &[("x", &[0, 255])], false);
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_eq!(content_hash(&a).len(), 64);
    }

    #[test]
    fn every_covered_field_changes_the_hash() {
        let base = content(&[("a", "1")], &[("x", &[1])], false);
        let variants = [
            content(&[("a", "2")], &[("x", &[1])], false),
            content(&[("b", "1")], &[("x", &[1])], false),
            content(&[("a", "1")], &[("x", &[2])], false),
            content(&[("a", "1")], &[("y", &[1])], false),
            content(&[("a", "1")], &[("x", &[1])], true),
            content(&[("a", "1"), ("x", "\u{1}")], &[], false),
        ];
        let h = content_hash(&base);
        for v in &variants {
            assert_ne!(content_hash(v), h, "{v:?}");
        }
    }

    #[test]
    fn boundaries_between_keys_and_values_matter() {
        // "ab"+"c" must differ from "a"+"bc": lengths are part of the encoding.
        let a = content(&[("ab", "c")], &[], false);
        let b = content(&[("a", "bc")], &[], false);
        assert_ne!(content_hash(&a), content_hash(&b));
    }
}
