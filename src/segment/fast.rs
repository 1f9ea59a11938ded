//! The fast path of the document check: one pass over the bytes that accepts the documents
//! SDKs send (a JSON object, plain keys) and picks out `trace_id` and `id`, with no allocation.
//!
//! It decides only acceptance. Whenever it meets anything it does not fully handle — any syntax
//! error, an escape in a top-level key or in an id, an id that is not a plain string, nesting
//! deeper than [`MAX_DEPTH`] — it answers `None` and the caller runs the complete `serde_json`
//! check, which gives the same verdict and the error message. So it must never accept what
//! `serde_json` refuses; the tests below compare the two on many mutated documents.
//!
//! The grammar is RFC 8259's, as `serde_json` applies it to values it skips: strings without
//! control characters and with only the standard escapes (`\u` with four hex digits), numbers
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, `true`, `false`, `null`. UTF-8 has been
//! checked by the caller.

/// Nesting handled by the fast path (a bit per level in a `u64`); deeper goes to `serde_json`.
pub(super) const MAX_DEPTH: usize = 64;

/// The two top-level string ids, as byte ranges of the document.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct IdRanges {
    pub trace_id: Option<(usize, usize)>,
    pub id: Option<(usize, usize)>,
}

/// What a byte is inside a string: 0 plain, 1 ends or escapes (`"`, `\`), 2 control character.
static STRING_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 2;
        i += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// At an opening `"`: moves past the closing one. Returns the content's range and whether
    /// it held an escape.
    fn string(&mut self) -> Option<((usize, usize), bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..)?;
            let skip = rest.iter().position(|&c| STRING_CLASS[c as usize] != 0)?;
            self.i += skip;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(((start, self.i - 1), escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// One scalar value (string, number, literal) at the cursor.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }
}

/// Scans `body` (valid UTF-8); `Some` only when it is certainly one well-formed JSON object.
pub(super) fn scan(body: &[u8]) -> Option<IdRanges> {
    let mut s = Scanner { b: body, i: 0 };
    let mut ids = IdRanges::default();
    s.skip_ws();
    if s.peek()? != b'{' {
        return None;
    }
    s.i += 1;
    // One bit per open container below the top-level object: 1 = object, 0 = array.
    let mut stack: u64 = 0;
    let mut depth = 0usize;
    // Expecting the first key of an object (or `}`), or the first element of an array (or `]`).
    let mut first = true;
    loop {
        s.skip_ws();
        let in_object = depth == 0 || stack & (1 << (depth - 1)) != 0;
        // Close, or expect a separator between members.
        match s.peek()? {
            b'}' if in_object => {
                s.i += 1;
                if depth == 0 {
                    s.skip_ws();
                    return (s.i == body.len()).then_some(ids);
                }
                depth -= 1;
                first = false;
                continue;
            }
            b']' if !in_object => {
                s.i += 1;
                depth -= 1;
                first = false;
                continue;
            }
            b',' if !first => {
                s.i += 1;
                s.skip_ws();
            }
            _ if first => {}
            _ => return None,
        }
        first = false;
        // A member: `"key": value` in an object, a value in an array.
        let mut slot = None;
        if in_object {
            if s.peek()? != b'"' {
                return None;
            }
            let ((start, end), escaped) = s.string()?;
            if depth == 0 {
                if escaped {
                    return None; // might spell an id key: leave it to serde_json
                }
                slot = match &body[start..end] {
                    b"trace_id" => Some(&mut ids.trace_id),
                    b"id" => Some(&mut ids.id),
                    _ => None,
                };
            }
            s.skip_ws();
            if s.peek()? != b':' {
                return None;
            }
            s.i += 1;
            s.skip_ws();
        }
        if let Some(slot) = slot {
            // A top-level id: only a plain string takes the fast path.
            if s.peek()? != b'"' {
                return None;
            }
            let (range, escaped) = s.string()?;
            if escaped {
                return None;
            }
            *slot = Some(range);
            continue;
        }
        match s.peek()? {
            c @ (b'{' | b'[') => {
                if depth == MAX_DEPTH {
                    return None;
                }
                if c == b'{' {
                    stack |= 1 << depth;
                } else {
                    stack &= !(1 << depth);
                }
                depth += 1;
                s.i += 1;
                first = true;
            }
            _ => s.scalar()?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The complete check, as the slow path runs it: accepts, and the ids.
    fn serde_verdict(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
        std::str::from_utf8(body).ok()?;
        let mut de = serde_json::Deserializer::from_slice(body);
        de.disable_recursion_limit();
        let ids = serde::Deserializer::deserialize_map(&mut de, super::super::DocumentVisitor)
            .and_then(|ids| de.end().map(|()| ids))
            .ok()?;
        Some((
            ids.trace_id.map(|s| s.to_string()),
            ids.id.map(|s| s.to_string()),
        ))
    }

    fn fast_verdict(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
        std::str::from_utf8(body).ok()?;
        let r = scan(body)?;
        let text = |r: Option<(usize, usize)>| {
            r.map(|(a, b)| String::from_utf8_lossy(&body[a..b]).into_owned())
        };
        Some((text(r.trace_id), text(r.id)))
    }

    const SAMPLES: &[&str] = &[
        r#"{"id": "8f630cda78aa2d51", "name": "flask-test", "start_time": 1795770833.332308, "in_progress": false, "http": {"request": {"url": "http://localhost/work", "method": "GET"}, "response": {"status": 200, "content_length": 12}}, "subsegments": [{"id": "6453157fce9eb7e5", "annotations": {"step": "db"}, "end_time": 1.5e3}], "trace_id": "1-6b0949d1-e20ce1988a454fb4c50eeca3", "end_time": 1795770833.332722}"#,
        r#"{"trace_id":"1-5f-abc","id":"a1","name":"caf\u00e9 \n\"q\"","x":[true,false,null,-0,0.5,1E+2,[],{}]}"#,
        r#" { } "#,
        r#"{"a":{"b":{"c":[[[{"d":"\/\\\b\f\n\r\t"}]]]}}}"#,
    ];

    #[test]
    fn accepts_sdk_documents_with_the_same_ids() {
        for doc in SAMPLES {
            let fast = fast_verdict(doc.as_bytes());
            assert!(fast.is_some(), "fast path refused {doc}");
            assert_eq!(fast, serde_verdict(doc.as_bytes()), "{doc}");
        }
    }

    #[test]
    fn never_accepts_what_serde_json_refuses() {
        // Every document from the samples with one byte deleted, duplicated or replaced by a
        // byte that matters to JSON: the fast path may defer (None), but whenever it accepts,
        // serde_json must accept with the same ids.
        const BYTES: &[u8] = b"{}[]\",:\\-+.eE0a \x01tfnu";
        let mut checked = 0;
        for doc in SAMPLES {
            let doc = doc.as_bytes();
            for i in 0..doc.len() {
                let mut variants = vec![
                    [&doc[..i], &doc[i + 1..]].concat(),
                    [&doc[..=i], &doc[i..]].concat(),
                ];
                for &b in BYTES {
                    let mut v = doc.to_vec();
                    v[i] = b;
                    variants.push(v);
                }
                for v in variants {
                    if let Some(fast) = fast_verdict(&v) {
                        assert_eq!(
                            Some(fast),
                            serde_verdict(&v),
                            "{}",
                            String::from_utf8_lossy(&v)
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "only {checked} variants accepted");
    }

    #[test]
    fn defers_what_it_does_not_handle() {
        for doc in [
            r#"{"\u0069d": "x"}"#,
            r#"{"id": "a\"b"}"#,
            r#"{"id": 5}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 01}"#,
            r#"{"a": "x"} {}"#,
        ] {
            assert_eq!(scan(doc.as_bytes()), None, "{doc}");
        }
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(scan(deep.as_bytes()).is_some());
        let deeper = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(scan(deeper.as_bytes()), None);
    }
}
