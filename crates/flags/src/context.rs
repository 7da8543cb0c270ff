//! The evaluation context: OpenFeature's `targetingKey` plus free attributes.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::bytes::same_bytes;

/// Name of the attribute that carries the randomization unit.
pub const TARGETING_KEY: &str = "targetingKey";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub targeting_key: Option<String>,
    pub attributes: Attributes,
}

/// Why a JSON value is not a valid context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextError {
    NotAnObject,
    TargetingKeyNotString,
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::NotAnObject => f.write_str("context must be a JSON object"),
            ContextError::TargetingKeyNotString => f.write_str("targetingKey must be a string"),
        }
    }
}

impl std::error::Error for ContextError {}

impl Context {
    pub fn new(targeting_key: impl Into<String>) -> Self {
        Context {
            targeting_key: Some(targeting_key.into()),
            attributes: Attributes::new(),
        }
    }

    pub fn with(mut self, attribute: &str, value: impl Into<Value>) -> Self {
        self.attributes.insert(attribute.to_owned(), value.into());
        self
    }

    /// Reads a context from a JSON value (an object; `targetingKey`, when
    /// present, a string).
    pub fn from_json(value: Value) -> Result<Self, ContextError> {
        let Value::Object(mut attributes) = value else {
            return Err(ContextError::NotAnObject);
        };
        let targeting_key = match attributes.remove(TARGETING_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ContextError::TargetingKeyNotString),
        };
        Ok(Context {
            targeting_key,
            attributes: attributes.into(),
        })
    }

    /// The value of an attribute; `targetingKey` is an attribute too. `null`
    /// counts as absent.
    pub fn get(&self, attribute: &str) -> Option<AttrRef<'_>> {
        if attribute == TARGETING_KEY {
            return self.targeting_key.as_deref().map(AttrRef::Str);
        }
        self.attribute(attribute).map(AttrRef::Json)
    }

    /// The value of an attribute of the map (not `targetingKey`); `null`
    /// counts as absent.
    pub(crate) fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name).filter(|v| !v.is_null())
    }
}

/// The name of an attribute that a condition reads, with its [`name_tag`]
/// computed once at compile time.
#[derive(Clone, Debug)]
pub(crate) struct AttributeName {
    name: Box<str>,
    tag: NameTag,
}

impl AttributeName {
    pub(crate) fn new(name: &str) -> Self {
        AttributeName {
            name: name.into(),
            tag: name_tag(name.as_bytes()),
        }
    }

    /// Whether the tag alone identifies the name.
    fn tag_is_name(&self) -> bool {
        self.name.len() <= NAME_TAG_BYTES
    }
}

/// A name's length and first bytes, compared in one instruction or two.
type NameTag = u128;

/// Bytes of a name that its tag holds; the last byte holds the length.
const NAME_TAG_BYTES: usize = 15;

/// A name's length (at most 255) and first fifteen bytes. Equal names have
/// equal tags, and a name of at most fifteen bytes (most attribute names)
/// is told apart from every other name by its tag alone.
fn name_tag(name: &[u8]) -> NameTag {
    let len = NameTag::from(u8::try_from(name.len()).unwrap_or(u8::MAX));
    name.iter()
        .take(NAME_TAG_BYTES)
        .enumerate()
        .fold(len << (8 * NAME_TAG_BYTES), |tag, (i, b)| {
            tag | (NameTag::from(*b) << (8 * i))
        })
}

/// The attributes of a context (`targetingKey` aside): a map from name to
/// JSON value, kept as a vector of pairs sorted by name.
///
/// Contexts carry a handful of attributes and are read far more often than
/// built: finding a flag's attributes in a `serde_json::Map` was about 40% of
/// an evaluation. Here a condition finds its attribute by comparing one
/// 16-byte tag per attribute (the name's length and first bytes); the tags
/// sit together in a cache line or two, and for a name of up to fifteen bytes
/// the tag settles it without reading the name. Building a context pays for
/// this: a sort and a tag per attribute.
///
/// Sorted and free of duplicates (the last value given for a name wins), the
/// map iterates, compares and serializes in name order whatever the order of
/// insertion, and a lookup by name in a large one is a binary search.
#[derive(Clone, Default, PartialEq)]
pub struct Attributes {
    /// Sorted by name, names unique.
    entries: Vec<(String, Value)>,
    /// `tags[i]` is the [`name_tag`] of `entries[i]`'s name.
    tags: Vec<NameTag>,
}

/// Up to this many attributes, a condition's lookup scans the tags instead
/// of searching the names.
const LINEAR_SCAN_MAX_ATTRIBUTES: usize = 16;

/// Iterator over `(name, value)` pairs in name order.
pub type AttributesIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Value)>,
    fn(&'a (String, Value)) -> (&'a String, &'a Value),
>;

impl Attributes {
    pub fn new() -> Self {
        Attributes::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Attributes {
            entries: Vec::with_capacity(capacity),
            tags: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of an attribute as given, `null` included.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self.position(name).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    /// The value of a condition's attribute; `null` counts as absent.
    #[inline]
    pub(crate) fn find(&self, name: &AttributeName) -> Option<&Value> {
        let found = if self.tags.len() <= LINEAR_SCAN_MAX_ATTRIBUTES {
            self.tags
                .iter()
                .zip(&self.entries)
                .find(|(tag, (key, _))| {
                    **tag == name.tag
                        && (name.tag_is_name() || same_bytes(key.as_bytes(), name.name.as_bytes()))
                })
                .map(|(_, (_, value))| value)
        } else {
            self.get(&name.name)
        };
        found.filter(|v| !v.is_null())
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        let i = self.position(name).ok()?;
        Some(&mut self.entries[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets an attribute; returns the value it replaces.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.tags.insert(i, name_tag(name.as_bytes()));
                self.entries.insert(i, (name, value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.position(name).ok()?;
        self.tags.remove(i);
        Some(self.entries.remove(i).1)
    }

    /// `(name, value)` pairs in name order.
    pub fn iter(&self) -> AttributesIter<'_> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// From pairs in any order; of repeated names the last one wins, as
    /// when inserting them one by one.
    fn from_pairs(mut entries: Vec<(String, Value)>) -> Self {
        // A stable sort keeps repeated names in the order given.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        // `dedup_by` keeps the first of a run; move the later value into it.
        entries.dedup_by(|later, kept| {
            let repeated = later.0 == kept.0;
            if repeated {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            repeated
        });
        let tags = entries
            .iter()
            .map(|(k, _)| name_tag(k.as_bytes()))
            .collect();
        Attributes { entries, tags }
    }
}

impl std::fmt::Debug for Attributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(String, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(pairs: I) -> Self {
        Attributes::from_pairs(pairs.into_iter().collect())
    }
}

impl Extend<(String, Value)> for Attributes {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, pairs: I) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.extend(pairs);
        *self = Attributes::from_pairs(entries);
    }
}

impl From<Map<String, Value>> for Attributes {
    fn from(map: Map<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

impl From<Attributes> for Map<String, Value> {
    fn from(attributes: Attributes) -> Self {
        attributes.into_iter().collect()
    }
}

impl IntoIterator for Attributes {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a Value);
    type IntoIter = AttributesIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AttributesVisitor;
        impl<'de> Visitor<'de> for AttributesVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Attributes, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    entries.push((k, v));
                }
                Ok(Attributes::from_pairs(entries))
            }
        }
        d.deserialize_map(AttributesVisitor)
    }
}

/// A borrowed attribute value.
#[derive(Clone, Copy, Debug)]
pub enum AttrRef<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl<'a> AttrRef<'a> {
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            AttrRef::Str(s) => Some(s),
            AttrRef::Json(Value::String(s)) => Some(s),
            AttrRef::Json(_) => None,
        }
    }

    pub fn as_f64(self) -> Option<f64> {
        match self {
            AttrRef::Json(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_json(self) -> Option<&'a Value> {
        match self {
            AttrRef::Json(v) => Some(v),
            AttrRef::Str(_) => None,
        }
    }
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra = usize::from(self.targeting_key.is_some());
        let mut map = s.serialize_map(Some(self.attributes.len() + extra))?;
        if let Some(key) = &self.targeting_key {
            map.serialize_entry(TARGETING_KEY, key)?;
        }
        for (k, v) in &self.attributes {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Deserializes straight from the wire without an intermediate `Value`: the
/// OFREP hot path parses a context per request.
impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContextVisitor;
        impl<'de> Visitor<'de> for ContextVisitor {
            type Value = Context;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a context object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Context, A::Error> {
                let mut targeting_key = None;
                let mut attributes = Vec::new();
                while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == TARGETING_KEY {
                        match access.next_value::<Value>()? {
                            Value::String(s) => targeting_key = Some(s),
                            Value::Null => targeting_key = None,
                            _ => return Err(de::Error::custom("targetingKey must be a string")),
                        }
                    } else {
                        let value = access.next_value::<Value>()?;
                        attributes.push((key.into_owned(), value));
                    }
                }
                Ok(Context {
                    targeting_key,
                    attributes: Attributes::from_pairs(attributes),
                })
            }
        }
        d.deserialize_map(ContextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targeting_key_is_taken_out_of_the_attributes() {
        let ctx: Context =
            serde_json::from_value(json!({"targetingKey": "u-1", "plan": "pro"})).unwrap();
        assert_eq!(ctx.targeting_key.as_deref(), Some("u-1"));
        assert_eq!(ctx.attributes.len(), 1);
        assert_eq!(
            ctx.get("targetingKey").and_then(AttrRef::as_str),
            Some("u-1")
        );
        assert_eq!(
            serde_json::to_value(&ctx).unwrap(),
            json!({"targetingKey": "u-1", "plan": "pro"})
        );
    }

    #[test]
    fn bad_contexts_are_rejected() {
        assert!(serde_json::from_value::<Context>(json!({"targetingKey": 7})).is_err());
        assert!(serde_json::from_value::<Context>(json!([1])).is_err());
        assert_eq!(
            Context::from_json(json!("x")),
            Err(ContextError::NotAnObject)
        );
        assert_eq!(
            Context::from_json(json!({"targetingKey": true})),
            Err(ContextError::TargetingKeyNotString)
        );
    }

    fn named(name: &str) -> AttributeName {
        AttributeName::new(name)
    }

    #[test]
    fn attributes_are_a_map_whatever_the_order_of_insertion() {
        let a = Context::new("u")
            .with("plan", "pro")
            .with("country", "DE")
            .with("plan", "free");
        let b = Context::new("u").with("country", "DE").with("plan", "free");
        assert_eq!(a, b);
        assert_eq!(a.attributes.len(), 2);
        assert_eq!(a.attributes.get("plan"), Some(&json!("free")));
        let names: Vec<&String> = a.attributes.keys().collect();
        assert_eq!(names, ["country", "plan"]);
        // Of repeated names the last wins, as in a JSON object.
        let parsed: Context = serde_json::from_str(
            r#"{"plan": "pro", "targetingKey": "u", "plan": "free", "country": "DE"}"#,
        )
        .unwrap();
        assert_eq!(parsed, a);
        let mut map = Map::new();
        map.insert("plan".into(), json!("free"));
        map.insert("country".into(), json!("DE"));
        assert_eq!(Attributes::from(map.clone()), a.attributes);
        assert_eq!(Map::from(a.attributes.clone()), map);
    }

    #[test]
    fn attributes_insert_and_remove() {
        let mut attributes = Attributes::new();
        assert_eq!(attributes.insert("b".into(), json!(1)), None);
        assert_eq!(attributes.insert("a".into(), json!(2)), None);
        assert_eq!(attributes.insert("b".into(), json!(3)), Some(json!(1)));
        assert_eq!(attributes.remove("a"), Some(json!(2)));
        assert_eq!(attributes.remove("a"), None);
        attributes.extend([("c".to_owned(), json!(4)), ("b".to_owned(), json!(5))]);
        assert_eq!(
            attributes,
            [("b".to_owned(), json!(5)), ("c".to_owned(), json!(4))]
                .into_iter()
                .collect()
        );
        assert!(attributes.contains_key("c"));
        for name in ["b", "c"] {
            assert_eq!(attributes.find(&named(name)), attributes.get(name));
        }
    }

    /// A name's tag holds its first fifteen bytes: names that share them
    /// are told apart by comparing the names.
    #[test]
    fn lookups_tell_apart_names_that_share_a_tag() {
        let long = "fifteen-bytes-a";
        assert_eq!(long.len(), NAME_TAG_BYTES);
        let ctx = Context::new("u")
            .with("fifteen-bytes-a-1", 1)
            .with("fifteen-bytes-a-2", 2)
            .with(long, 0)
            .with("null", Value::Null);
        for (name, expected) in [
            ("fifteen-bytes-a-1", Some(json!(1))),
            ("fifteen-bytes-a-2", Some(json!(2))),
            ("fifteen-bytes-a-3", None),
            (long, Some(json!(0))),
            ("fifteen-bytes-", None),
            ("null", None),
            ("", None),
        ] {
            assert_eq!(
                ctx.attributes.find(&named(name)),
                expected.as_ref(),
                "{name}"
            );
            assert_eq!(ctx.attribute(name), expected.as_ref(), "{name}");
        }
    }

    /// Past the scan's limit, lookups search by name and agree.
    #[test]
    fn lookups_in_large_contexts() {
        let attributes: Attributes = (0..3 * LINEAR_SCAN_MAX_ATTRIBUTES)
            .map(|i| (format!("attribute-{i}"), json!(i)))
            .collect();
        for i in 0..3 * LINEAR_SCAN_MAX_ATTRIBUTES {
            let name = format!("attribute-{i}");
            assert_eq!(attributes.find(&named(&name)), Some(&json!(i)));
        }
        assert_eq!(attributes.find(&named("attribute-x")), None);
    }
}
