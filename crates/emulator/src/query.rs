//! Query strings as Stripe reads them: form encoding with bracketed keys (`created[gte]=…`,
//! `expand[]=…`, `types[0]=…`), parsed once at the boundary into [`Params`].

use crate::error::ApiError;
use std::ops::Bound;

/// One parameter: `base[sub]=value` (`sub` is `None` for a plain `base=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name before any bracket.
    pub base: String,
    /// Text inside the first bracket pair (`""` for `name[]`).
    pub sub: Option<String>,
    /// Decoded value.
    pub value: String,
    /// The key as sent, for error messages.
    pub raw_key: String,
}

/// All parameters of a request, in the order sent.
#[derive(Debug, Clone, Default)]
pub struct Params {
    items: Vec<Param>,
}

/// Parameters that hold lists (`expand[]`, `types[]`).
const ARRAY_PARAMS: &[&str] = &["expand", "types"];

impl Params {
    /// Parses a raw query string; undecodable input is a 400.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = match raw {
            None | Some("") => Vec::new(),
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|_| ApiError::invalid("query", "Invalid query string.".into()))?,
        };
        let items = pairs
            .into_iter()
            .map(|(key, value)| {
                let (base, sub) = match key.find('[') {
                    Some(i) if key.ends_with(']') => (
                        key[..i].to_string(),
                        Some(key[i + 1..key.len() - 1].to_string()),
                    ),
                    _ => (key.clone(), None),
                };
                Param {
                    base,
                    sub,
                    value,
                    raw_key: key,
                }
            })
            .collect();
        Ok(Params { items })
    }

    /// Rejects any parameter not in `allowed` (400 `parameter_unknown`), a sub-key on a plain
    /// parameter, and `created[x]` with `x` other than gt/gte/lt/lte.
    pub fn check_known(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for p in &self.items {
            if !allowed.contains(&p.base.as_str()) {
                return Err(ApiError::unknown_param(&p.raw_key));
            }
            match (&p.sub, p.base.as_str()) {
                (None, _) => {}
                (Some(s), "created") if matches!(s.as_str(), "gt" | "gte" | "lt" | "lte") => {}
                (Some(s), base)
                    if ARRAY_PARAMS.contains(&base)
                        && (s.is_empty() || s.chars().all(|c| c.is_ascii_digit())) => {}
                (Some(_), _) => return Err(ApiError::unknown_param(&p.raw_key)),
            }
        }
        Ok(())
    }

    /// The value of a plain parameter (the last one when repeated).
    pub fn get(&self, base: &str) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|p| p.base == base && p.sub.is_none())
            .map(|p| p.value.as_str())
    }

    /// All values of a list parameter (`expand[]=a&expand[]=b`, or a plain `expand=a`).
    pub fn list(&self, base: &str) -> Vec<&str> {
        self.items
            .iter()
            .filter(|p| p.base == base)
            .map(|p| p.value.as_str())
            .collect()
    }

    /// Whether any form of the parameter was sent.
    pub fn has(&self, base: &str) -> bool {
        self.items.iter().any(|p| p.base == base)
    }

    /// `limit`: default 10, integer 1..=100 (else 400, worded as Stripe does).
    pub fn limit(&self) -> Result<usize, ApiError> {
        let Some(raw) = self.get("limit") else {
            return Ok(10);
        };
        let n: i64 = raw
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid_integer("limit", raw))?;
        if n < 1 {
            return Err(ApiError::out_of_range(
                "limit",
                "This value must be greater than or equal to 1.",
            ));
        }
        if n > 100 {
            return Err(ApiError::out_of_range(
                "limit",
                "This value must be less than or equal to 100.",
            ));
        }
        Ok(n as usize)
    }

    /// `created` (plain or with gt/gte/lt/lte) as bounds on `created`.
    pub fn created(&self) -> Result<(Bound<i64>, Bound<i64>), ApiError> {
        let mut lo = Bound::Unbounded;
        let mut hi = Bound::Unbounded;
        for p in self.items.iter().filter(|p| p.base == "created") {
            let t: i64 = p
                .value
                .trim()
                .parse()
                .map_err(|_| ApiError::invalid_integer(&p.raw_key, &p.value))?;
            match p.sub.as_deref() {
                None => {
                    lo = tighten_lo(lo, Bound::Included(t));
                    hi = tighten_hi(hi, Bound::Included(t));
                }
                Some("gt") => lo = tighten_lo(lo, Bound::Excluded(t)),
                Some("gte") => lo = tighten_lo(lo, Bound::Included(t)),
                Some("lt") => hi = tighten_hi(hi, Bound::Excluded(t)),
                Some("lte") => hi = tighten_hi(hi, Bound::Included(t)),
                Some(_) => return Err(ApiError::unknown_param(&p.raw_key)),
            }
        }
        Ok((lo, hi))
    }
}

/// The stricter of two lower bounds on an integer.
pub fn tighten_lo(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    fn as_incl(b: Bound<i64>) -> Option<i64> {
        match b {
            Bound::Unbounded => None,
            Bound::Included(t) => Some(t),
            Bound::Excluded(t) => Some(t.saturating_add(1)),
        }
    }
    match (as_incl(a), as_incl(b)) {
        (None, None) => Bound::Unbounded,
        (Some(x), None) | (None, Some(x)) => Bound::Included(x),
        (Some(x), Some(y)) => Bound::Included(x.max(y)),
    }
}

/// The stricter of two upper bounds on an integer.
pub fn tighten_hi(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    fn as_incl(b: Bound<i64>) -> Option<i64> {
        match b {
            Bound::Unbounded => None,
            Bound::Included(t) => Some(t),
            Bound::Excluded(t) => Some(t.saturating_sub(1)),
        }
    }
    match (as_incl(a), as_incl(b)) {
        (None, None) => Bound::Unbounded,
        (Some(x), None) | (None, Some(x)) => Bound::Included(x),
        (Some(x), Some(y)) => Bound::Included(x.min(y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_arrays_and_encoded_keys() {
        let p = Params::parse(Some(
            "created%5Bgte%5D=5&created[lt]=9&expand[]=data.customer&expand[1]=x&limit=3",
        ))
        .expect("parses");
        assert_eq!(
            p.created().expect("ok"),
            (Bound::Included(5), Bound::Included(8))
        );
        assert_eq!(p.list("expand"), ["data.customer", "x"]);
        assert_eq!(p.limit().expect("ok"), 3);
        assert!(p.check_known(&["created", "expand", "limit"]).is_ok());
        let e = p
            .check_known(&["expand", "limit"])
            .expect_err("created unknown");
        assert_eq!(e.code, Some("parameter_unknown"));
    }

    #[test]
    fn limit_bounds() {
        for (q, ok) in [
            ("limit=0", false),
            ("limit=101", false),
            ("limit=x", false),
            ("limit=100", true),
            ("", true),
        ] {
            assert_eq!(
                Params::parse(Some(q)).expect("parses").limit().is_ok(),
                ok,
                "{q}"
            );
        }
    }
}
