//! Encoder for PostgreSQL's `COPY … FROM STDIN` text format.
//!
//! Columns are separated by a tab, rows end with a newline, NULL is `\N`, and backslash,
//! newline, carriage return and tab inside a value are backslash-escaped (PostgreSQL's rules for
//! the text format; every other character, any Unicode included, goes through as UTF-8).
//!
//! NUL: PostgreSQL `text` cannot hold U+0000 and `jsonb` refuses the `\u0000` escape, so a NUL
//! in a string (JSON strings and keys included) is stored as U+FFFD (the Unicode replacement
//! character). This is the one place the PostgreSQL copy of an object may differ from Stripe's;
//! Stripe does not put NUL in its objects in practice, and SQLite keeps them exactly.

use serde_json::Value;

/// What a NUL character becomes in PostgreSQL.
pub(crate) const NUL_REPLACEMENT: char = '\u{FFFD}';

/// A buffer of encoded rows.
#[derive(Debug, Default)]
pub(crate) struct CopyText {
    buf: Vec<u8>,
    /// Whether the current row already has a column (so the next one needs a tab).
    in_row: bool,
}

impl CopyText {
    pub(crate) fn new() -> Self {
        CopyText::default()
    }

    /// Encoded bytes so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Hands the encoded bytes out and starts over.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn sep(&mut self) {
        if self.in_row {
            self.buf.push(b'\t');
        }
        self.in_row = true;
    }

    /// A SQL NULL.
    pub(crate) fn null(&mut self) {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
    }

    /// A value that needs no escaping (numbers, `t`/`f`, RFC 3339 timestamps).
    pub(crate) fn plain(&mut self, s: &str) {
        self.sep();
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A text value, escaped.
    pub(crate) fn text(&mut self, s: &str) {
        self.sep();
        let needs_escape = s
            .bytes()
            .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t' | 0));
        if !needs_escape {
            self.buf.extend_from_slice(s.as_bytes());
            return;
        }
        for c in s.chars() {
            match c {
                '\\' => self.buf.extend_from_slice(b"\\\\"),
                '\n' => self.buf.extend_from_slice(b"\\n"),
                '\r' => self.buf.extend_from_slice(b"\\r"),
                '\t' => self.buf.extend_from_slice(b"\\t"),
                '\0' => {
                    let mut tmp = [0u8; 4];
                    self.buf
                        .extend_from_slice(NUL_REPLACEMENT.encode_utf8(&mut tmp).as_bytes());
                }
                c => {
                    let mut tmp = [0u8; 4];
                    self.buf
                        .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
    }

    /// A JSON value, serialized for `jsonb` (see the module doc about NUL) and escaped.
    pub(crate) fn json(&mut self, v: &Value) {
        let s = json_for_postgres(v);
        self.text(&s);
    }

    /// JSON text (compact, as `serde_json` writes it) for `jsonb`, escaped. Only text holding
    /// a `\u0000` escape is parsed again, to replace the NUL (see the module doc).
    pub(crate) fn json_text(&mut self, json: &str) {
        if !json.contains("\\u0000") {
            self.text(json);
            return;
        }
        match serde_json::from_str::<Value>(json) {
            Ok(v) => self.json(&v),
            // Not JSON after all (never made by `PreparedRow`): PostgreSQL will refuse it.
            Err(_) => self.text(json),
        }
    }

    /// Ends the current row.
    pub(crate) fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.in_row = false;
    }
}

/// Serializes a JSON value so `jsonb` accepts it: NUL characters in strings and keys become
/// U+FFFD. Serialization escapes NUL as `\u0000`; only when that text appears is the value
/// walked (a literal backslash followed by `u0000` also triggers the walk, harmlessly).
pub(crate) fn json_for_postgres(v: &Value) -> String {
    let s = v.to_string();
    if !s.contains("\\u0000") {
        return s;
    }
    let mut clean = v.clone();
    replace_nul(&mut clean);
    clean.to_string()
}

/// Replaces NUL with U+FFFD in text bound as a PostgreSQL parameter.
pub(crate) fn text_for_postgres(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn replace_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, mut val) in old {
                    replace_nul(&mut val);
                    map.insert(k.replace('\0', "\u{FFFD}"), val);
                }
            } else {
                map.values_mut().for_each(replace_nul);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decodes one text-format line back into fields (the inverse, for tests).
    fn decode(line: &str) -> Vec<Option<String>> {
        line.split('\t')
            .map(|f| {
                if f == "\\N" {
                    return None;
                }
                let mut out = String::new();
                let mut chars = f.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        match chars.next() {
                            Some('n') => out.push('\n'),
                            Some('r') => out.push('\r'),
                            Some('t') => out.push('\t'),
                            Some('\\') => out.push('\\'),
                            other => panic!("unexpected escape {other:?}"),
                        }
                    } else {
                        out.push(c);
                    }
                }
                Some(out)
            })
            .collect()
    }

    #[test]
    fn escapes_specials_and_marks_null() {
        let mut c = CopyText::new();
        c.text("a\tb\nc\\d\re");
        c.null();
        c.plain("42");
        c.text("émoji 🎉 \"quoted\" 'single'");
        c.end_row();
        let bytes = c.take();
        let line = String::from_utf8(bytes).expect("utf8");
        assert_eq!(
            line.matches('\n').count(),
            1,
            "only the row end is a raw newline"
        );
        let fields = decode(line.trim_end_matches('\n'));
        assert_eq!(
            fields,
            vec![
                Some("a\tb\nc\\d\re".to_string()),
                None,
                Some("42".to_string()),
                Some("émoji 🎉 \"quoted\" 'single'".to_string()),
            ]
        );
    }

    #[test]
    fn json_nul_becomes_replacement_character() {
        let v = json!({"a\u{0}": ["x\u{0}y", {"k": "\u{0}"}], "b": "back\\u0000slash"});
        let s = json_for_postgres(&v);
        let back: Value = serde_json::from_str(&s).expect("json");
        assert_eq!(
            back,
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "b": "back\\u0000slash"})
        );
        let plain = json!({"a": 1});
        assert_eq!(json_for_postgres(&plain), plain.to_string());
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips_through_the_encoding(s in "\\PC*|[\\t\\n\\r\\\\a-z]*") {
            let mut c = CopyText::new();
            c.text(&s);
            c.text("end");
            c.end_row();
            let line = String::from_utf8(c.take()).expect("utf8");
            let fields = decode(line.trim_end_matches('\n'));
            proptest::prop_assert_eq!(fields, vec![Some(s.replace('\0', "\u{FFFD}")), Some("end".to_string())]);
        }
    }
}
