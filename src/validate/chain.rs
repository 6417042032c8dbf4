//! Trying several validators, and routing credentials by prefix.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use crate::{Credential, ValidationError, Validator, validate::ValidationErrorKind};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An object-safe view of a validator with identity `I`.
trait DynValidator<I>: Send + Sync + 'static {
    fn validate_boxed<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Result<I, ValidationError>>;

    fn validate_now_dyn(&self, credential: &Credential) -> Option<Result<I, ValidationError>>;
}

impl<V: Validator> DynValidator<V::Identity> for V {
    fn validate_boxed<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Result<V::Identity, ValidationError>> {
        Box::pin(self.validate(credential))
    }

    fn validate_now_dyn(
        &self,
        credential: &Credential,
    ) -> Option<Result<V::Identity, ValidationError>> {
        self.validate_now(credential)
    }
}

struct Route<I> {
    prefix: Box<str>,
    validator: Arc<dyn DynValidator<I>>,
}

impl<I> Clone for Route<I> {
    fn clone(&self) -> Self {
        Self {
            prefix: self.prefix.clone(),
            validator: self.validator.clone(),
        }
    }
}

/// Validators tried in order, with routes by credential prefix.
///
/// A [`Chain`] holds validators that share one identity type `I`. Validators
/// with other identity types join through a mapping closure
/// ([`then_map`](Chain::then_map), [`prefixed_map`](Chain::prefixed_map), or
/// [`ValidatorExt::map_identity`] anywhere else), typically into an enum of
/// your own.
///
/// # Order and outcomes
///
/// 1. **Routes.** If the credential starts with the prefix of a route added
///    with [`prefixed`](Chain::prefixed), only that route's validator sees
///    it, and its answer is final (a string that looks like your API key is
///    not tried as a JWT as well).
/// 2. **Fallbacks.** Otherwise the validators added with
///    [`then`](Chain::then) are tried in order. The first one that does not
///    answer [`Invalid`](ValidationErrorKind::Invalid) decides: an identity,
///    or expired, revoked, insufficient scope, **or unavailable**. A
///    validator whose backend is down stops the chain with `Unavailable`
///    (503): falling through to the next, possibly weaker, validator would
///    silently change who can get in. Give your credentials distinct
///    prefixes so each goes straight to its validator instead.
/// 3. When every validator answered invalid (or none applied), the chain
///    answers invalid, with the last validator's reason for logs.
///
/// # Example
///
/// ```
/// use portcullis::{Credential, CredentialSource, ValidationError, Validator, ValidationErrorKind};
/// use portcullis::validate::{ApiKeyIdentity, ApiKeys, Chain, KeyDigest};
///
/// #[derive(Clone, Debug, PartialEq)]
/// enum Principal {
///     Service(String),
///     User(String),
/// }
///
/// let keys = ApiKeys::builder("acme_")
///     .key(KeyDigest::of("acme_k3y"), ApiKeyIdentity::new("ci-bot"))
///     .build()?;
/// let sessions = |credential: Credential| async move {
///     match credential.secret() {
///         "session-1" => Ok("alice".to_owned()),
///         _ => Err(ValidationError::invalid()),
///     }
/// };
///
/// let chain = Chain::new()
///     .prefixed_map(keys.prefix().to_owned(), keys, |id| Principal::Service(id.id().to_owned()))
///     .then_map(sessions, Principal::User);
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bearer = |s: &str| Credential::new(s, CredentialSource::Bearer);
/// assert_eq!(chain.validate(&bearer("acme_k3y")).await.unwrap(), Principal::Service("ci-bot".into()));
/// assert_eq!(chain.validate(&bearer("session-1")).await.unwrap(), Principal::User("alice".into()));
/// assert_eq!(chain.validate(&bearer("nope")).await.unwrap_err().kind(), ValidationErrorKind::Invalid);
/// # });
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
///
/// Cheap to clone: clones share the validators.
pub struct Chain<I> {
    routes: Vec<Route<I>>,
    fallbacks: Vec<Arc<dyn DynValidator<I>>>,
}

impl<I> Clone for Chain<I> {
    fn clone(&self) -> Self {
        Self {
            routes: self.routes.clone(),
            fallbacks: self.fallbacks.clone(),
        }
    }
}

impl<I> fmt::Debug for Chain<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field(
                "routes",
                &self.routes.iter().map(|r| &*r.prefix).collect::<Vec<_>>(),
            )
            .field("fallbacks", &self.fallbacks.len())
            .finish()
    }
}

impl<I: Clone + Send + Sync + 'static> Default for Chain<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Clone + Send + Sync + 'static> Chain<I> {
    /// An empty chain (it answers invalid to everything).
    #[must_use]
    pub fn new() -> Self {
        Self {
            routes: Vec::new(),
            fallbacks: Vec::new(),
        }
    }

    /// Sends every credential that starts with `prefix` to `validator`, and
    /// to no other. Routes are matched in the order they were added.
    #[must_use]
    pub fn prefixed<V>(mut self, prefix: impl Into<Box<str>>, validator: V) -> Self
    where
        V: Validator<Identity = I>,
    {
        self.routes.push(Route {
            prefix: prefix.into(),
            validator: Arc::new(validator),
        });
        self
    }

    /// Like [`prefixed`](Self::prefixed), mapping the validator's identity
    /// into the chain's with `map`.
    #[must_use]
    pub fn prefixed_map<V, F>(self, prefix: impl Into<Box<str>>, validator: V, map: F) -> Self
    where
        V: Validator,
        F: Fn(V::Identity) -> I + Send + Sync + 'static,
    {
        self.prefixed(prefix, validator.map_identity(map))
    }

    /// Tries `validator` after the ones added before it, for credentials no
    /// route claimed.
    #[must_use]
    pub fn then<V>(mut self, validator: V) -> Self
    where
        V: Validator<Identity = I>,
    {
        self.fallbacks.push(Arc::new(validator));
        self
    }

    /// Like [`then`](Self::then), mapping the validator's identity into the
    /// chain's with `map`.
    #[must_use]
    pub fn then_map<V, F>(self, validator: V, map: F) -> Self
    where
        V: Validator,
        F: Fn(V::Identity) -> I + Send + Sync + 'static,
    {
        self.then(validator.map_identity(map))
    }

    async fn run(&self, credential: &Credential) -> Result<I, ValidationError> {
        let secret = credential.secret();
        if let Some(route) = self.routes.iter().find(|r| secret.starts_with(&*r.prefix)) {
            return route.validator.validate_boxed(credential).await;
        }
        let mut last = None;
        for validator in &self.fallbacks {
            match validator.validate_boxed(credential).await {
                Err(e) if e.kind() == ValidationErrorKind::Invalid => last = Some(e),
                decided => return decided,
            }
        }
        Err(last.unwrap_or_else(|| ValidationError::invalid().with_reason("no validator applies")))
    }
}

impl<I: Clone + Send + Sync + 'static> Validator for Chain<I> {
    type Identity = I;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<I, ValidationError>> + Send {
        self.run(credential)
    }

    /// Answers at once when every validator the credential reaches does:
    /// its prefix's, or the fallbacks in order up to the first answer that
    /// is not "invalid".
    fn validate_now(&self, credential: &Credential) -> Option<Result<I, ValidationError>> {
        let secret = credential.secret();
        if let Some(route) = self.routes.iter().find(|r| secret.starts_with(&*r.prefix)) {
            return route.validator.validate_now_dyn(credential);
        }
        let mut last = None;
        for validator in &self.fallbacks {
            match validator.validate_now_dyn(credential)? {
                Err(e) if e.kind() == ValidationErrorKind::Invalid => last = Some(e),
                decided => return Some(decided),
            }
        }
        Some(Err(last.unwrap_or_else(|| {
            ValidationError::invalid().with_reason("no validator applies")
        })))
    }
}

/// Adapters for any [`Validator`].
pub trait ValidatorExt: Validator + Sized {
    /// Maps the identity of every accepted credential with `map`.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::{Credential, CredentialSource, ValidationError, Validator};
    /// use portcullis::validate::ValidatorExt;
    ///
    /// let ids = (|_: Credential| async { Ok::<_, ValidationError>(7u32) }).map_identity(|n| n * 6);
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let id = ids.validate(&Credential::new("t", CredentialSource::Bearer)).await;
    /// assert_eq!(id.unwrap(), 42);
    /// # });
    /// ```
    fn map_identity<F, I>(self, map: F) -> MapIdentity<Self, F>
    where
        F: Fn(Self::Identity) -> I + Send + Sync + 'static,
        I: Clone + Send + Sync + 'static,
    {
        MapIdentity { inner: self, map }
    }
}

impl<V: Validator> ValidatorExt for V {}

/// A validator whose identities are mapped by a closure; see
/// [`ValidatorExt::map_identity`].
#[derive(Clone)]
pub struct MapIdentity<V, F> {
    inner: V,
    map: F,
}

impl<V: fmt::Debug, F> fmt::Debug for MapIdentity<V, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapIdentity")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<V, F, I> Validator for MapIdentity<V, F>
where
    V: Validator,
    F: Fn(V::Identity) -> I + Send + Sync + 'static,
    I: Clone + Send + Sync + 'static,
{
    type Identity = I;

    async fn validate(&self, credential: &Credential) -> Result<I, ValidationError> {
        self.inner.validate(credential).await.map(&self.map)
    }

    fn validate_now(&self, credential: &Credential) -> Option<Result<I, ValidationError>> {
        Some(self.inner.validate_now(credential)?.map(&self.map))
    }
}
