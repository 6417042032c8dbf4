//! Reading one field of a form or JSON body.

use http::{HeaderMap, header};

/// The most bytes a key field may hold: a key is logged and kept in the
/// limiters' tables, so it stays small whatever the body limit.
pub(crate) const MAX_FIELD_LEN: usize = 256;

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
    /// The body has no such field (or is not a form or JSON object).
    Absent,
    /// The field appears twice: handlers may read either one, so the
    /// request is refused rather than keyed on a guess.
    Ambiguous,
    /// The field is longer than [`MAX_FIELD_LEN`].
    TooLong,
}

/// Finds field `name` in `body`.
pub(crate) fn field(format: Format, body: &[u8], name: &str) -> Field {
    let value = match format {
        Format::Form => {
            let mut found = None;
            for (key, value) in form_urlencoded::parse(body) {
                if key == name {
                    if found.is_some() {
                        return Field::Ambiguous;
                    }
                    found = Some(value.into_owned());
                }
            }
            found
        }
        #[cfg(feature = "json")]
        Format::Json => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => match map.get(name) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
            _ => None,
        },
    };
    match value {
        None => Field::Absent,
        Some(value) if value.len() > MAX_FIELD_LEN => Field::TooLong,
        Some(value) => Field::Value(value),
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
        assert_eq!(f("password=x"), Field::Absent);
        assert_eq!(f("username=a&username=b"), Field::Ambiguous);
        assert_eq!(f(&format!("username={}", "a".repeat(257))), Field::TooLong);
        assert_eq!(normalize("  Alice ", false), "alice");
        assert_eq!(normalize("  Alice ", true), "Alice");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_objects_are_read_and_anything_else_has_no_field() {
        assert_eq!(format(&headers("application/json")), Some(Format::Json));
        assert_eq!(
            format(&headers("application/vnd.api+json")),
            Some(Format::Json)
        );
        let f = |body: &str| field(Format::Json, body.as_bytes(), "username");
        assert_eq!(
            f(r#"{"username":"bob","password":"x"}"#),
            Field::Value("bob".into())
        );
        assert_eq!(f(r#"{"username":42}"#), Field::Value("42".into()));
        assert_eq!(f(r#"["username"]"#), Field::Absent);
        assert_eq!(f("not json"), Field::Absent);
    }
}
