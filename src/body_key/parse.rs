//! Reading one field of a form or JSON body, strictly: a body that cannot
//! be read as a whole is refused, never passed on without its key (B18).

use http::{HeaderMap, header};

/// The most bytes a key field may hold: a key is logged and kept in the
/// limiters' tables, so it stays small whatever the body limit.
pub(crate) const MAX_FIELD_LEN: usize = 256;

/// The deepest JSON nesting read; deeper documents are refused (a handler's
/// `serde_json` refuses them too, at 128).
#[cfg(feature = "json")]
const MAX_DEPTH: usize = 128;

/// The body formats the layer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Form,
    #[cfg(feature = "json")]
    Json,
}

/// The format of a request body, from its `Content-Type` (media type
/// essence, case-insensitive; parameters such as `charset` are ignored).
pub(crate) fn format(headers: &HeaderMap) -> Option<Format> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Some(Format::Form),
        #[cfg(feature = "json")]
        "application/json" => Some(Format::Json),
        #[cfg(feature = "json")]
        _ if essence.starts_with("application/") && essence.ends_with("+json") => {
            Some(Format::Json)
        }
        _ => None,
    }
}

/// What a body says about the field.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// The field's value.
    Value(String),
    /// The body has no such field.
    Absent,
    /// The field appears twice: handlers may read either one, so the
    /// request is refused rather than keyed on a guess.
    Ambiguous,
    /// The body cannot be read: not valid in its format, not UTF-8, a JSON
    /// document that is not an object, or a key field that is not a string.
    Unreadable,
    /// The field is longer than [`MAX_FIELD_LEN`].
    TooLong,
}

/// Finds field `name` in `body`.
pub(crate) fn field(format: Format, body: &[u8], name: &str) -> Field {
    let value = match format {
        Format::Form => form_field(body, name),
        #[cfg(feature = "json")]
        Format::Json => json::field(body, name),
    };
    match value {
        Ok(None) => Field::Absent,
        Ok(Some(value)) if value.len() > MAX_FIELD_LEN => Field::TooLong,
        Ok(Some(value)) => Field::Value(value),
        Err(refused) => refused,
    }
}

/// The field of a form body, decoded as `form_urlencoded` (and so axum's
/// `Form`) decodes it: pairs split on `&`, name and value on the first `=`,
/// `+` is a space, `%XX` a byte. Names are compared as the handler's parser
/// sees them (lossily decoded); the field's value must be UTF-8, since a
/// lossy decoding would map many byte strings onto one key.
fn form_field(body: &[u8], name: &str) -> Result<Option<String>, Field> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if String::from_utf8_lossy(&percent_decode(key)) != name {
            continue;
        }
        if found.is_some() {
            return Err(Field::Ambiguous);
        }
        let value = String::from_utf8(percent_decode(value)).map_err(|_| Field::Unreadable)?;
        found = Some(value);
    }
    Ok(found)
}

/// `application/x-www-form-urlencoded` byte decoding: `+` is a space, `%`
/// and two hex digits a byte, any other `%` itself.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(digit: Option<&u8>) -> Option<u8> {
    char::from(*digit?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(feature = "json")]
mod json {
    //! A strict JSON reader (RFC 8259) that decodes only the key field: it
    //! checks the whole document (UTF-8, escapes, surrogate pairs, number
    //! syntax, nesting) without building values, so no value of another
    //! field (a number out of `f64`'s range, a long array) can make it give
    //! up.

    use super::{Field, MAX_DEPTH};

    const UNREADABLE: Field = Field::Unreadable;

    /// Field `name` of the JSON object `body`: its string value, or `None`
    /// when the object has no such field.
    pub(super) fn field(body: &[u8], name: &str) -> Result<Option<String>, Field> {
        let text = std::str::from_utf8(body).map_err(|_| UNREADABLE)?;
        Reader { text, pos: 0 }.document(name)
    }

    struct Reader<'a> {
        text: &'a str,
        pos: usize,
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.pos).copied()
        }

        fn skip_whitespace(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }

        /// Skips whitespace, then `byte` if it comes next.
        fn eat(&mut self, byte: u8) -> bool {
            self.skip_whitespace();
            let next = self.peek() == Some(byte);
            if next {
                self.pos += 1;
            }
            next
        }

        fn expect(&mut self, byte: u8) -> Result<(), Field> {
            if self.eat(byte) {
                Ok(())
            } else {
                Err(UNREADABLE)
            }
        }

        /// The whole document: one object, field `name` in it at most once
        /// and a string, nothing after it but whitespace.
        fn document(&mut self, name: &str) -> Result<Option<String>, Field> {
            self.expect(b'{')?;
            let mut found = None;
            if !self.eat(b'}') {
                loop {
                    self.skip_whitespace();
                    let mut key = String::new();
                    self.string(Some(&mut key))?;
                    self.expect(b':')?;
                    self.skip_whitespace();
                    if key == name {
                        if found.is_some() {
                            return Err(Field::Ambiguous);
                        }
                        let mut value = String::new();
                        self.string(Some(&mut value))?;
                        found = Some(value);
                    } else {
                        self.value(1)?;
                    }
                    if !self.eat(b',') {
                        self.expect(b'}')?;
                        break;
                    }
                }
            }
            self.skip_whitespace();
            if self.pos == self.text.len() {
                Ok(found)
            } else {
                Err(UNREADABLE)
            }
        }

        /// Checks one value, `depth` containers deep.
        fn value(&mut self, depth: usize) -> Result<(), Field> {
            if depth > MAX_DEPTH {
                return Err(UNREADABLE);
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => self.string(None),
                Some(b'{') => {
                    self.pos += 1;
                    if self.eat(b'}') {
                        return Ok(());
                    }
                    loop {
                        self.skip_whitespace();
                        self.string(None)?;
                        self.expect(b':')?;
                        self.value(depth + 1)?;
                        if !self.eat(b',') {
                            return self.expect(b'}');
                        }
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if self.eat(b']') {
                        return Ok(());
                    }
                    loop {
                        self.value(depth + 1)?;
                        if !self.eat(b',') {
                            return self.expect(b']');
                        }
                    }
                }
                Some(b't') => self.literal("true"),
                Some(b'f') => self.literal("false"),
                Some(b'n') => self.literal("null"),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => Err(UNREADABLE),
            }
        }

        fn literal(&mut self, word: &str) -> Result<(), Field> {
            if self.text[self.pos..].starts_with(word) {
                self.pos += word.len();
                Ok(())
            } else {
                Err(UNREADABLE)
            }
        }

        /// A number's syntax; its value is never computed.
        fn number(&mut self) -> Result<(), Field> {
            if self.peek() == Some(b'-') {
                self.pos += 1;
            }
            match self.peek() {
                Some(b'0') => self.pos += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(UNREADABLE),
            }
            if self.peek() == Some(b'.') {
                self.pos += 1;
                if self.digits() == 0 {
                    return Err(UNREADABLE);
                }
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.pos += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
                if self.digits() == 0 {
                    return Err(UNREADABLE);
                }
            }
            Ok(())
        }

        fn digits(&mut self) -> usize {
            let start = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            self.pos - start
        }

        /// A string, decoded into `out` when given.
        fn string(&mut self, mut out: Option<&mut String>) -> Result<(), Field> {
            if self.peek() != Some(b'"') {
                return Err(UNREADABLE);
            }
            self.pos += 1;
            // The text is UTF-8 and every byte the loop stops at is ASCII,
            // so the runs between them are whole characters.
            let mut run = self.pos;
            loop {
                let byte = self.peek().ok_or(UNREADABLE)?;
                match byte {
                    b'"' | b'\\' => {
                        if let Some(out) = out.as_deref_mut() {
                            out.push_str(&self.text[run..self.pos]);
                        }
                        self.pos += 1;
                        if byte == b'"' {
                            return Ok(());
                        }
                        let c = self.escape()?;
                        if let Some(out) = out.as_deref_mut() {
                            out.push(c);
                        }
                        run = self.pos;
                    }
                    // Control characters must be escaped.
                    0x00..=0x1f => return Err(UNREADABLE),
                    _ => self.pos += 1,
                }
            }
        }

        /// The character of the escape after a backslash; a lone or
        /// reversed surrogate is unreadable.
        fn escape(&mut self) -> Result<char, Field> {
            let byte = self.peek().ok_or(UNREADABLE)?;
            self.pos += 1;
            Ok(match byte {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => match self.hex4()? {
                    high @ 0xD800..=0xDBFF => {
                        if self.text.as_bytes().get(self.pos..self.pos + 2) != Some(&b"\\u"[..]) {
                            return Err(UNREADABLE);
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(UNREADABLE);
                        }
                        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                            .ok_or(UNREADABLE)?
                    }
                    code => char::from_u32(code).ok_or(UNREADABLE)?,
                },
                _ => return Err(UNREADABLE),
            })
        }

        fn hex4(&mut self) -> Result<u32, Field> {
            let digits = self
                .text
                .as_bytes()
                .get(self.pos..self.pos + 4)
                .ok_or(UNREADABLE)?;
            let mut code = 0;
            for &digit in digits {
                code = code * 16 + char::from(digit).to_digit(16).ok_or(UNREADABLE)?;
            }
            self.pos += 4;
            Ok(code)
        }
    }
}

/// The key of a field value: trimmed, and lowercased unless case matters,
/// so `Alice ` and `alice` are one account.
pub(crate) fn normalize(value: &str, case_sensitive: bool) -> String {
    let value = value.trim();
    if case_sensitive {
        value.to_owned()
    } else {
        value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    #[test]
    fn forms_are_read_by_media_type_and_fields_strictly() {
        assert_eq!(
            format(&headers("Application/X-WWW-Form-Urlencoded; charset=utf-8")),
            Some(Format::Form)
        );
        assert_eq!(format(&headers("multipart/form-data")), None);
        assert_eq!(format(&HeaderMap::new()), None);
        let f = |body: &str| field(Format::Form, body.as_bytes(), "username");
        assert_eq!(
            f("username=al%20ice&password=x"),
            Field::Value("al ice".into())
        );
        assert_eq!(f("a+b=1&username=b+o%2Bb&&x"), Field::Value("b o+b".into()));
        assert_eq!(f("username=100%&x=%zz"), Field::Value("100%".into()));
        assert_eq!(f("username"), Field::Value(String::new()));
        assert_eq!(f("password=x"), Field::Absent);
        assert_eq!(f("username=a&username=b"), Field::Ambiguous);
        assert_eq!(f("user%6eame=a&username=b"), Field::Ambiguous);
        assert_eq!(f("username=a%FF"), Field::Unreadable);
        assert_eq!(f("password=%FF&username=a"), Field::Value("a".into()));
        assert_eq!(f(&format!("username={}", "a".repeat(257))), Field::TooLong);
        assert_eq!(normalize("  Alice ", false), "alice");
        assert_eq!(normalize("  Alice ", true), "Alice");
    }

    #[test]
    fn form_decoding_matches_form_urlencoded() {
        for body in ["a=%41%4a%zz%4", "a=+%2B+", "a=%e2%82%ac", "a=b=c", "a"] {
            let (_, expected) = form_urlencoded::parse(body.as_bytes()).next().unwrap();
            assert_eq!(
                field(Format::Form, body.as_bytes(), "a"),
                Field::Value(expected.into_owned()),
                "{body}"
            );
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_objects_are_read_strictly() {
        assert_eq!(format(&headers("application/json")), Some(Format::Json));
        assert_eq!(
            format(&headers("application/vnd.api+json")),
            Some(Format::Json)
        );
        let f = |body: &[u8]| field(Format::Json, body, "username");
        assert_eq!(
            f(br#"{"username":"bob","password":"x"}"#),
            Field::Value("bob".into())
        );
        assert_eq!(
            f(br#" { "n" : -0.5e+3 , "a":[1,[true,false,null],{"x":{}}], "user\u006eame" : "b\u00f6b\ud83d\ude00\n" } "#),
            Field::Value("b\u{f6}b\u{1f600}\n".into())
        );
        assert_eq!(
            f(br#"{"n":1e400,"username":"bob"}"#),
            Field::Value("bob".into())
        );
        assert_eq!(f(br#"{"password":"x"}"#), Field::Absent);
        assert_eq!(f(b"{}"), Field::Absent);
        assert_eq!(f(br#"{"username":"a","username":"a"}"#), Field::Ambiguous);
        for unreadable in [
            &br#"{"username":42}"#[..],
            br#"{"username":null}"#,
            br#"["username"]"#,
            b"\"username\"",
            b"not json",
            b"",
            br#"{"username":"a"} {}"#,
            br#"{"username":"a",}"#,
            br#"{"x":"\ud800","username":"a"}"#,
            br#"{"x":"\udc00\ud800","username":"a"}"#,
            br#"{"x":"\ud800\u0041","username":"a"}"#,
            br#"{"x":"\x","username":"a"}"#,
            br#"{"x":"\u12","username":"a"}"#,
            b"{\"x\":\"\xff\",\"username\":\"a\"}",
            b"{\"x\":\"a\nb\",\"username\":\"a\"}",
            br#"{"x":01,"username":"a"}"#,
            br#"{"x":1.,"username":"a"}"#,
            br#"{"x":1e,"username":"a"}"#,
            br#"{"x":-,"username":"a"}"#,
            br#"{"x":tru,"username":"a"}"#,
            br#"{"x":[1,],"username":"a"}"#,
            br#"{"x":{"a"},"username":"a"}"#,
            b"\xef\xbb\xbf{}",
        ] {
            assert_eq!(
                f(unreadable),
                Field::Unreadable,
                "{}",
                String::from_utf8_lossy(unreadable)
            );
        }
        let deep = format!(
            "{{\"x\":{}{},\"username\":\"a\"}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(f(deep.as_bytes()), Field::Unreadable);
        let fine = format!(
            "{{\"x\":{}{},\"username\":\"a\"}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(f(fine.as_bytes()), Field::Value("a".into()));
    }
}
