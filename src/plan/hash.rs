//! Content hashing: whether a replica holds what its source holds.

use sha2::{Digest, Sha256};

use super::model::ReplicaContent;

/// SHA-256 over exactly data, binaryData and immutable, each key and value
/// length-prefixed so no two different contents encode alike. Maps are
/// ordered, so the hash does not depend on how the API server sent them.
pub fn content_hash(content: &ReplicaContent) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"data");
    for (k, v) in &content.data {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(b"binaryData");
    for (k, v) in &content.binary_data {
        field(k.as_bytes());
        field(&v.0);
    }
    field(if content.immutable {
        b"immutable"
    } else {
        b"mutable"
    });
    hex(&h.finalize())
}

/// The hash of a persisted row: the content hash plus the source's labels
/// and annotations, so a label-only change updates the row (and adds a
/// revision) though it writes no replica.
pub fn row_hash(
    content_hash: &str,
    labels: &std::collections::BTreeMap<String, String>,
    annotations: &std::collections::BTreeMap<String, String>,
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

pub fn hex(bytes: &[u8]) -> String {
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
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

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
