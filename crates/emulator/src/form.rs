//! Request bodies of writes as Stripe reads them: `application/x-www-form-urlencoded` with bracketed
//! nested keys (`metadata[plan]=pro`, `address[city]=Paris`, `expand[]=customer`), checked against
//! the endpoint's parameter list and typed once at the boundary.
//!
//! Stripe's conventions kept here: an empty value unsets a field (`description=` → null,
//! `metadata[plan]=` removes that key, `metadata=` clears every key); booleans are `true`/`false`;
//! integers are decimal text; an unknown parameter (or sub-key) is a 400 `parameter_unknown`.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// The type of one accepted parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// Free text; empty means null.
    Text,
    /// Decimal integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// One of these values.
    OneOf(&'static [&'static str]),
    /// A string→string map (`metadata[k]=v`); an empty value removes the key.
    Metadata,
    /// A hash with these sub-keys (each text; an integer when listed in [`INT_SUBKEYS`]).
    Hash(&'static [&'static str]),
    /// A list of strings (`expand[]=a`, `expand[0]=a`).
    List,
}

/// Sub-keys of hashes that hold integers (`recurring[interval_count]`).
pub const INT_SUBKEYS: &[&str] = &["interval_count", "trial_period_days"];

/// One parsed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Text, integer, boolean or enum value; `Value::Null` when sent empty (unset).
    Scalar(Value),
    /// Metadata changes: key → `Some(value)` to set, `None` to remove; `clear` when `metadata=` was
    /// sent empty (every key removed first).
    Metadata {
        /// Whether every existing key is removed first.
        clear: bool,
        /// Keys to set or remove, in the order sent.
        changes: Vec<(String, Option<String>)>,
    },
    /// A hash (`address[city]=…`); `None` when sent empty (`address=`, unset).
    Hash(Option<Map<String, Value>>),
    /// A list of strings.
    List(Vec<String>),
}

/// The parsed parameters of one write, by name, in the order first sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form {
    fields: Vec<(String, Field)>,
}

impl Form {
    /// An empty form (mutations build theirs with [`Form::set`]).
    pub fn new() -> Self {
        Form::default()
    }

    /// Parses `raw` (form-encoded; a query string and a body may be joined with `&`) against `spec`.
    pub fn parse(raw: &str, spec: &[(&'static str, Param)]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|_| ApiError::invalid("body", "Invalid request body.".into()))?;
        let mut form = Form::default();
        for (key, value) in pairs {
            let (base, subs) = split_key(&key).ok_or_else(|| ApiError::unknown_param(&key))?;
            let Some((_, ty)) = spec.iter().find(|(name, _)| *name == base) else {
                return Err(ApiError::unknown_param(&key));
            };
            form.add(&key, base, &subs, value, *ty)?;
        }
        Ok(form)
    }

    fn add(
        &mut self,
        key: &str,
        base: &str,
        subs: &[&str],
        value: String,
        ty: Param,
    ) -> Result<(), ApiError> {
        match (ty, subs) {
            (Param::Text, []) => self.put(base, Field::Scalar(text(value))),
            (Param::Int, []) => {
                let v = if value.is_empty() {
                    Value::Null
                } else {
                    Value::from(
                        value
                            .trim()
                            .parse::<i64>()
                            .map_err(|_| ApiError::invalid_integer(key, &value))?,
                    )
                };
                self.put(base, Field::Scalar(v));
            }
            (Param::Bool, []) => {
                let b = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::invalid(key, format!("Invalid boolean: {value}"))),
                };
                self.put(base, Field::Scalar(Value::Bool(b)));
            }
            (Param::OneOf(allowed), []) => {
                if !allowed.contains(&value.as_str()) {
                    return Err(ApiError::invalid(
                        key,
                        format!("Invalid {base}: must be one of {}", allowed.join(", ")),
                    ));
                }
                self.put(base, Field::Scalar(Value::String(value)));
            }
            (Param::Metadata, []) => {
                if !value.is_empty() {
                    return Err(ApiError::invalid(key, "Invalid object".to_string()));
                }
                self.put(
                    base,
                    Field::Metadata {
                        clear: true,
                        changes: Vec::new(),
                    },
                );
            }
            (Param::Metadata, [k]) if !k.is_empty() => {
                let change = ((*k).to_string(), (!value.is_empty()).then_some(value));
                match self.get_mut(base) {
                    Some(Field::Metadata { changes, .. }) => changes.push(change),
                    _ => self.put(
                        base,
                        Field::Metadata {
                            clear: false,
                            changes: vec![change],
                        },
                    ),
                }
            }
            (Param::Hash(_), []) if value.is_empty() => self.put(base, Field::Hash(None)),
            (Param::Hash(keys), [k]) if keys.contains(k) => {
                let v = if INT_SUBKEYS.contains(k) && !value.is_empty() {
                    Value::from(
                        value
                            .trim()
                            .parse::<i64>()
                            .map_err(|_| ApiError::invalid_integer(key, &value))?,
                    )
                } else {
                    text(value)
                };
                match self.get_mut(base) {
                    Some(Field::Hash(Some(m))) => {
                        m.insert((*k).to_string(), v);
                    }
                    _ => {
                        let mut m = Map::new();
                        m.insert((*k).to_string(), v);
                        self.put(base, Field::Hash(Some(m)));
                    }
                }
            }
            (Param::List, [] | [_]) => {
                if let [i] = subs {
                    if !(i.is_empty() || i.chars().all(|c| c.is_ascii_digit())) {
                        return Err(ApiError::unknown_param(key));
                    }
                }
                match self.get_mut(base) {
                    Some(Field::List(items)) => items.push(value),
                    _ => self.put(base, Field::List(vec![value])),
                }
            }
            _ => return Err(ApiError::unknown_param(key)),
        }
        Ok(())
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Field> {
        self.fields
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f)
    }

    /// Sets a parameter (replacing an earlier value of the same name).
    pub fn put(&mut self, name: &str, field: Field) {
        match self.get_mut(name) {
            Some(f) => *f = field,
            None => self.fields.push((name.to_string(), field)),
        }
    }

    /// Sets a scalar parameter (builder style, for mutations).
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.put(name, Field::Scalar(value.into()));
        self
    }

    /// Sets one metadata key (builder style, for mutations).
    pub fn meta(mut self, key: &str, value: Option<&str>) -> Self {
        let change = (key.to_string(), value.map(str::to_string));
        match self.get_mut("metadata") {
            Some(Field::Metadata { changes, .. }) => changes.push(change),
            _ => self.put(
                "metadata",
                Field::Metadata {
                    clear: false,
                    changes: vec![change],
                },
            ),
        }
        self
    }

    /// A parameter by name.
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    /// A scalar parameter's value (null when sent empty).
    pub fn scalar(&self, name: &str) -> Option<&Value> {
        match self.get(name) {
            Some(Field::Scalar(v)) => Some(v),
            _ => None,
        }
    }

    /// A text parameter, when sent non-empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.scalar(name).and_then(Value::as_str)
    }

    /// Every parameter, in the order first sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Field)> + '_ {
        self.fields.iter().map(|(n, f)| (n.as_str(), f))
    }
}

fn text(value: String) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::String(value)
    }
}

/// `a[b][c]` → (`a`, [`b`, `c`]); `None` for a malformed key.
fn split_key(key: &str) -> Option<(&str, Vec<&str>)> {
    let Some(open) = key.find('[') else {
        return Some((key, Vec::new()));
    };
    let base = &key[..open];
    let mut rest = &key[open..];
    let mut subs = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        subs.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    Some((base, subs))
}

/// Applies a metadata change to an object's `metadata` map.
pub fn apply_metadata(target: &mut Value, clear: bool, changes: &[(String, Option<String>)]) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(m) = target {
        if clear {
            m.clear();
        }
        for (k, v) in changes {
            match v {
                Some(v) => {
                    m.insert(k.clone(), Value::String(v.clone()));
                }
                None => {
                    m.shift_remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: &[(&str, Param)] = &[
        ("email", Param::Text),
        ("balance", Param::Int),
        ("active", Param::Bool),
        ("metadata", Param::Metadata),
        ("address", Param::Hash(&["city", "country"])),
        ("expand", Param::List),
    ];

    #[test]
    fn nested_keys_and_types() {
        let f = Form::parse(
            "email=a%40b.c&balance=-5&active=false&metadata%5Bplan%5D=pro&metadata[old]=&address[city]=Paris&expand[]=x",
            SPEC,
        )
        .expect("parses");
        assert_eq!(f.text("email"), Some("a@b.c"));
        assert_eq!(f.scalar("balance"), Some(&json!(-5)));
        assert_eq!(f.scalar("active"), Some(&json!(false)));
        assert_eq!(
            f.get("metadata"),
            Some(&Field::Metadata {
                clear: false,
                changes: vec![("plan".into(), Some("pro".into())), ("old".into(), None)]
            })
        );
        let mut meta = json!({"old": "1", "keep": "2"});
        if let Some(Field::Metadata { clear, changes }) = f.get("metadata") {
            apply_metadata(&mut meta, *clear, changes);
        }
        assert_eq!(meta, json!({"keep": "2", "plan": "pro"}));
        assert_eq!(f.get("expand"), Some(&Field::List(vec!["x".into()])));
    }

    #[test]
    fn unknown_and_badly_typed_parameters_are_400s() {
        let e = Form::parse("nope=1", SPEC).expect_err("unknown");
        assert_eq!(e.code, Some("parameter_unknown"));
        assert_eq!(e.param.as_deref(), Some("nope"));
        let e = Form::parse("address[planet]=Mars", SPEC).expect_err("unknown sub-key");
        assert_eq!(e.param.as_deref(), Some("address[planet]"));
        let e = Form::parse("balance=lots", SPEC).expect_err("integer");
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "Invalid integer: lots")
        );
        let e = Form::parse("active=yes", SPEC).expect_err("boolean");
        assert_eq!(e.message, "Invalid boolean: yes");
    }
}
