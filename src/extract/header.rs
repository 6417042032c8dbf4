use http::{HeaderMap, HeaderName};

use super::{
    ExtractError, InHeader,
    syntax::{is_vchar, range_in, trim_ows},
};

/// A custom header that carries the credential as its whole value, such as
/// `X-API-Key`.
///
/// Optional whitespace around the value is ignored; the value must be
/// visible ASCII (no spaces, no control or non-ASCII bytes). The header
/// given twice is ambiguous, an empty value is malformed.
///
/// # Example
///
/// ```
/// use http::{HeaderName, Request};
/// use portcullis::extract::{Extractor, Header};
///
/// let extractor = Extractor::new(Header::new(HeaderName::from_static("x-api-key")));
/// let (parts, ()) = Request::builder()
///     .header("x-api-key", "pk_live_abc")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "pk_live_abc");
/// ```
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// The header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }

    /// The header name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    pub(super) fn find<'a>(
        &self,
        headers: &'a HeaderMap,
        max_len: usize,
    ) -> Result<InHeader<'a>, ExtractError> {
        let mut fields = headers.get_all(&self.name).iter();
        let Some(field) = fields.next() else {
            return Ok(None);
        };
        if fields.next().is_some() {
            return Err(ExtractError::Ambiguous);
        }
        let value = trim_ows(field.as_bytes());
        if value.len() > max_len {
            return Err(ExtractError::TooLarge { max: max_len });
        }
        if value.is_empty() {
            return Err(ExtractError::Malformed("the credential header is empty"));
        }
        if !value.iter().all(|&b| is_vchar(b)) {
            return Err(ExtractError::Malformed(
                "the credential header holds a byte that is not visible ASCII",
            ));
        }
        Ok(Some((field, range_in(field.as_bytes(), value))))
    }
}
