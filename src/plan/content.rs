//! A ConfigMap's content as the operator holds it: serialized once, as
//! JSON, when it enters the source cache, and shared from then on by every
//! replica body and every database row built from it. A 1 MiB source is
//! about 1 MiB of memory however many targets and rows it has.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::value::RawValue;

/// What a replica copies from its source: exactly what the content hash
/// covers. Transient: built to hash an object, then dropped.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplicaContent {
    pub data: BTreeMap<String, String>,
    pub binary_data: BTreeMap<String, ByteString>,
    pub immutable: bool,
}

impl ReplicaContent {
    /// Takes the content out of `cm` without copying it.
    pub(crate) fn take(cm: &mut ConfigMap) -> Self {
        Self {
            data: cm.data.take().unwrap_or_default(),
            binary_data: cm.binary_data.take().unwrap_or_default(),
            immutable: cm.immutable.unwrap_or(false),
        }
    }
}

/// JSON text, serialized once and shared by reference count.
#[derive(Clone)]
pub struct JsonText(Arc<RawValue>);

static EMPTY_OBJECT: LazyLock<JsonText> = LazyLock::new(|| JsonText::of(&serde_json::Map::new()));

impl JsonText {
    pub(crate) fn of<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        let text = serde_json::to_string(value).expect("maps of strings serialize");
        Self(Arc::from(
            RawValue::from_string(text).expect("serde_json wrote valid JSON"),
        ))
    }

    /// `{}`, shared.
    pub(crate) fn empty_object() -> Self {
        EMPTY_OBJECT.clone()
    }

    pub(crate) fn raw(&self) -> &RawValue {
        &self.0
    }

    pub(crate) fn get(&self) -> &str {
        self.0.get()
    }

    pub(crate) fn len(&self) -> usize {
        self.get().len()
    }

    /// Whether both share one allocation (no copy was made).
    #[cfg(test)]
    pub(crate) fn shares(&self, other: &JsonText) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Debug for JsonText {
    // Never the text: a source's content can be a MiB, and logs are not its place.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonText({} bytes)", self.len())
    }
}

/// A source's content, held once: `data` and `binaryData` as the JSON a
/// replica's request body embeds (absent when empty).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SourceContent {
    pub data: Option<JsonText>,
    pub binary_data: Option<JsonText>,
    pub immutable: bool,
    /// Keys of `data` whose values contain U+0000, which a JSONB row cannot
    /// hold as text (almost always empty).
    pub nul_keys: Vec<String>,
}

impl SourceContent {
    pub(crate) fn of(content: &ReplicaContent) -> Self {
        Self {
            data: (!content.data.is_empty()).then(|| JsonText::of(&content.data)),
            binary_data: (!content.binary_data.is_empty())
                .then(|| JsonText::of(&content.binary_data)),
            immutable: content.immutable,
            nul_keys: content
                .data
                .iter()
                .filter(|(_, v)| v.contains('\0'))
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// The maps back, for the rare caller that needs them as maps (a row
    /// with U+0000 values, tests).
    pub(crate) fn decode(&self) -> ReplicaContent {
        fn parse<T: serde::de::DeserializeOwned + Default>(json: &Option<JsonText>) -> T {
            json.as_ref()
                .map(|j| serde_json::from_str(j.get()).expect("we serialized it"))
                .unwrap_or_default()
        }
        ReplicaContent {
            data: parse(&self.data),
            binary_data: parse(&self.binary_data),
            immutable: self.immutable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_through_its_json_and_flags_nul_values() {
        let content = ReplicaContent {
            data: BTreeMap::from([
                ("a".to_string(), "x\0y".to_string()),
                ("b".to_string(), "grüß \"q\" \\".to_string()),
            ]),
            binary_data: BTreeMap::from([("bin".to_string(), ByteString(vec![0, 255]))]),
            immutable: true,
        };
        let held = SourceContent::of(&content);
        assert_eq!(held.nul_keys, ["a"]);
        assert_eq!(held.decode(), content);
        let empty = SourceContent::of(&ReplicaContent::default());
        assert!(empty.data.is_none() && empty.binary_data.is_none());
        assert_eq!(empty.decode(), ReplicaContent::default());
    }

    #[test]
    fn clones_share_the_text_and_debug_never_prints_it() {
        let text = JsonText::of(&BTreeMap::from([("k", "secret-ish")]));
        assert!(text.clone().shares(&text));
        assert_eq!(text.get(), r#"{"k":"secret-ish"}"#);
        assert_eq!(format!("{text:?}"), "JsonText(18 bytes)");
        assert!(JsonText::empty_object().shares(&JsonText::empty_object()));
        assert_eq!(JsonText::empty_object().get(), "{}");
    }
}
