//! Stripe's object shapes, from the committed digest `shapes/digest.json` (written by
//! `scripts/shapes-digest.py` from Stripe's official fixtures; only field names and JSON types are
//! kept). Every object the emulator serves goes through [`finish`], which emits the digest's
//! fields in the digest's order and fills the ones the generator did not set.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The digest file, compiled in.
pub const DIGEST_JSON: &str = include_str!("../shapes/digest.json");

/// JSON type of a field in Stripe's example (`"null"` when the example holds null, so any type
/// or null fits).
pub type FieldType = &'static str;

/// Digest key → ordered list of (field, JSON type).
pub type Digest = HashMap<String, Vec<(String, String)>>;

/// The parsed digest. The file is part of the crate, so a parse failure is a build mistake that
/// the crate's own tests catch; it yields an empty digest rather than a panic.
pub fn digest() -> &'static Digest {
    static DIGEST: OnceLock<Digest> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let parsed: Map<String, Value> = serde_json::from_str(DIGEST_JSON).unwrap_or_default();
        parsed
            .into_iter()
            .map(|(ty, fields)| {
                let fields = fields
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("null").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                (ty, fields)
            })
            .collect()
    })
}

/// The JSON type name of a value, in the digest's words.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Re-emits `fields` as an object of digest type `digest_key`: the digest's fields first, in its
/// order (a field left unset becomes `{}` for `metadata`, `[]` for arrays, `false` for booleans,
/// otherwise null), then any extra fields in the order given.
pub fn finish(digest_key: &str, mut fields: Map<String, Value>) -> Value {
    let Some(shape) = digest().get(digest_key) else {
        return Value::Object(fields);
    };
    let mut out = Map::with_capacity(shape.len() + 2);
    for (name, ty) in shape {
        // swap_remove: O(1) (shift-removing ~60 fields per object made generation quadratic), and
        // the owned key is reused rather than cloned.
        match fields.swap_remove_entry(name.as_str()) {
            Some((k, v)) => {
                out.insert(k, v);
            }
            None => {
                let v = if name == "metadata" {
                    Value::Object(Map::new())
                } else {
                    match ty.as_str() {
                        "array" => Value::Array(Vec::new()),
                        "boolean" => Value::Bool(false),
                        _ => Value::Null,
                    }
                };
                out.insert(name.clone(), v);
            }
        }
    }
    for (k, v) in fields {
        out.insert(k, v);
    }
    Value::Object(out)
}

/// A mismatch between an object and the digest, reported by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// Digest key checked against.
    pub digest_key: String,
    /// Field concerned.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// Checks an object against the digest: every field present, with the example's JSON type or null.
pub fn check(digest_key: &str, object: &Value) -> Vec<ShapeError> {
    let mut errors = Vec::new();
    let err = |field: &str, problem: String| ShapeError {
        digest_key: digest_key.to_string(),
        field: field.to_string(),
        problem,
    };
    let Some(shape) = digest().get(digest_key) else {
        errors.push(err("", "no such type in the digest".into()));
        return errors;
    };
    let Some(map) = object.as_object() else {
        errors.push(err("", "not a JSON object".into()));
        return errors;
    };
    for (name, ty) in shape {
        match map.get(name.as_str()) {
            None => errors.push(err(name, "missing".into())),
            Some(v) => {
                let got = json_type(v);
                if got != "null" && ty != "null" && got != ty {
                    errors.push(err(name, format!("is {got}, Stripe's example has {ty}")));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_parses_and_covers_the_served_types() {
        for key in [
            "customer",
            "deleted_customer",
            "invoice",
            "line_item",
            "event",
            "item",
        ] {
            assert!(digest().contains_key(key), "{key} missing from the digest");
        }
    }

    #[test]
    fn finish_orders_fields_and_fills_defaults() {
        let mut m = Map::new();
        m.insert("id".into(), json!("cus_1"));
        m.insert("extra".into(), json!(1));
        let v = finish("deleted_customer", m);
        let keys: Vec<_> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys, vec!["deleted", "id", "object", "extra"]);
        assert!(check("deleted_customer", &v)
            .iter()
            .all(|e| e.field == "object" || e.field == "deleted"));
    }
}
