//! The evaluation context: OpenFeature's `targetingKey` plus free attributes.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Name of the attribute that carries the randomization unit.
pub const TARGETING_KEY: &str = "targetingKey";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub targeting_key: Option<String>,
    pub attributes: Map<String, Value>,
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
            attributes: Map::new(),
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
            attributes,
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
        // Contexts are small. A scan compares lengths first and so mostly
        // skips reading key bytes, where a lookup would compare whole strings
        // down a B-tree or, should serde_json's `preserve_order` ever be
        // turned on, hash the name with SipHash: both slower for a handful
        // of attributes.
        let found = if self.attributes.len() <= LINEAR_SCAN_MAX_ATTRIBUTES {
            self.attributes
                .iter()
                .find_map(|(k, v)| (k == name).then_some(v))
        } else {
            self.attributes.get(name)
        };
        found.filter(|v| !v.is_null())
    }
}

/// Up to this many attributes, a lookup scans instead of searching.
const LINEAR_SCAN_MAX_ATTRIBUTES: usize = 16;

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
                let mut ctx = Context::default();
                while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == TARGETING_KEY {
                        match access.next_value::<Value>()? {
                            Value::String(s) => ctx.targeting_key = Some(s),
                            Value::Null => ctx.targeting_key = None,
                            _ => return Err(de::Error::custom("targetingKey must be a string")),
                        }
                    } else {
                        let value = access.next_value::<Value>()?;
                        ctx.attributes.insert(key.into_owned(), value);
                    }
                }
                Ok(ctx)
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
}
