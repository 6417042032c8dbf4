//! Deciding whether a response is a failed attempt.

use http::{HeaderName, HeaderValue, StatusCode, response::Parts};
use zeroize::Zeroizing;

use crate::{Fingerprint, reject::Protocol};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What a response says about the attempt that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// A failed guess: it counts towards a lockout.
    Failure,
    /// A sign-in that succeeded: clears the key's failures when the policy
    /// [resets on success](super::PolicyBuilder::reset_on_success). Only
    /// the [`Succeeded`] marker (or a classifier of yours) says so; a 2xx
    /// alone is [`Neutral`](Self::Neutral) (SECURITY.md B19).
    Success,
    /// Neither (a missing credential, an accepted credential, a server
    /// error, a public page, any other answer).
    Neutral,
}

/// A response marker that counts the response as a failed attempt.
///
/// Insert it into the response extensions from a handler that rejects a
/// guess without answering 401 (a login form that re-renders with 200, say),
/// or next to a 401, to say which guess failed: [`Failed::guess`] carries a
/// keyed fingerprint of the account and the wrong password, so the lockout
/// counts the same wrong password repeated by one key once (smart counting,
/// SECURITY.md B14).
///
/// It always counts, on every key of the request, whatever credential the
/// request carried: even when an `AuthLayer` accepted a credential and
/// released the request's reservation before the handler ran (B11), the
/// failure is still recorded (SECURITY.md B20).
///
/// # Example
///
/// ```
/// use http::Response;
/// use portcullis::lockout::Failed;
///
/// let mut res = Response::new("wrong username or password");
/// res.extensions_mut().insert(Failed::guess("alice", "hunter3"));
/// # assert!(res.extensions().get::<Failed>().is_some());
/// assert_eq!(Failed::guess("alice", "hunter3"), Failed::guess("alice", "hunter3"));
/// assert_ne!(Failed::guess("alice", "hunter3"), Failed::guess("bob", "hunter3"));
/// assert!(Failed::new().fingerprint().is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Failed {
    guess: Option<Fingerprint>,
}

impl Failed {
    /// A failed attempt whose guess is not known: it always counts.
    pub const fn new() -> Self {
        Self { guess: None }
    }

    /// A failed attempt at `secret` (a password) for `account`. Only a
    /// keyed fingerprint of the pair is kept, never the secret; the account
    /// is part of it, so one password sprayed over many accounts is a new
    /// guess for every account.
    ///
    /// The account is taken as given, not normalised. Pass it as the
    /// account key has it, so that `Alice` and ` alice` retyping one wrong
    /// password count once: the value of the request's
    /// [`BodyField`](crate::body_key::BodyField), which
    /// [`BodyKeyLayer`](crate::body_key::BodyKeyLayer) trims and lowercases
    /// (unless [case-sensitive](crate::body_key::BodyKeyLayer::case_sensitive)),
    /// as [`DeviceCookies`](super::DeviceCookies) compare accounts too. An
    /// account passed in another spelling still counts, only as a new
    /// guess.
    pub fn guess(account: &str, secret: &str) -> Self {
        // Sized once and wiped when dropped: the guess is a password.
        let mut bytes = Zeroizing::new(Vec::with_capacity(8 + account.len() + secret.len()));
        bytes.extend_from_slice(&(account.len() as u64).to_le_bytes());
        bytes.extend_from_slice(account.as_bytes());
        bytes.extend_from_slice(secret.as_bytes());
        let guess = Fingerprint::of(&bytes);
        Self { guess: Some(guess) }
    }

    /// A failed attempt whose guess has this fingerprint (from
    /// [`Fingerprint::of`] or a [`FingerprintKey`](crate::FingerprintKey)).
    pub const fn fingerprint_of(guess: Fingerprint) -> Self {
        Self { guess: Some(guess) }
    }

    /// The fingerprint of the failed guess, if known.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.guess
    }
}

/// A response marker that says the request signed its account in: the
/// password (or other secret) it carried for the account it names was
/// right.
///
/// Keys whose policy [resets on success](super::PolicyBuilder::reset_on_success)
/// forget their failures when a response carries it, on every key of the
/// request; nothing else resets them. A 2xx alone does not (SECURITY.md
/// B19): a request that merely names an account (a login page, a
/// password-reset form, a sign-in with the attacker's own token attached)
/// is answered 2xx without proving anything about the account.
///
/// # Security
///
/// Insert it only from the handler that checked the account's secret, and
/// only when it was right: with an account key that resets on success, a
/// response marked for the wrong reason hands an attacker a fresh budget
/// of guesses for that account. A response that carries [`Failed`] as well
/// counts as a failure.
///
/// # Example
///
/// ```
/// use http::Response;
/// use portcullis::lockout::Succeeded;
///
/// // In the login handler, once the password checked out:
/// let mut res = Response::new("welcome");
/// res.extensions_mut().insert(Succeeded);
/// # assert!(res.extensions().get::<Succeeded>().is_some());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Succeeded;

/// Classifies responses that carry neither an
/// [`AuthRejection`](crate::AuthRejection) nor a [`Failed`] or
/// [`Succeeded`] marker.
///
/// The [`LockoutLayer`](super::LockoutLayer) decides those itself, before
/// any classifier runs, so a classifier cannot make a missing credential or
/// an unavailable validator count, nor miss a rejected credential. Closures
/// `Fn(&http::response::Parts) -> Outcome` are classifiers.
///
/// # Security
///
/// [`Outcome::Success`] resets keys whose policy resets on success: return
/// it only for responses that prove the sign-in of the account the request
/// names, never for any 2xx (SECURITY.md B19). The [`Succeeded`] marker is
/// the simpler way.
///
/// # Example
///
/// ```
/// use http::{HeaderName, HeaderValue, StatusCode, response::Parts};
/// use portcullis::lockout::{Classifier, Outcome};
///
/// // A login form that answers a wrong password with 422.
/// let form = |res: &Parts| match res.status {
///     StatusCode::UNPROCESSABLE_ENTITY => Outcome::Failure,
///     _ => Outcome::Neutral,
/// };
/// let (parts, ()) = http::Response::builder().status(422).body(()).unwrap().into_parts();
/// assert_eq!(form.classify(&parts), Outcome::Failure);
/// ```
pub trait Classifier: Send + Sync + 'static {
    /// The outcome of the attempt that produced `response`.
    fn classify(&self, response: &Parts) -> Outcome;
}

impl<F> Classifier for F
where
    F: Fn(&Parts) -> Outcome + Send + Sync + 'static,
{
    fn classify(&self, response: &Parts) -> Outcome {
        self(response)
    }
}

/// The classifier the layer uses unless told otherwise.
///
/// | response | outcome |
/// |---|---|
/// | 401 | failure (a login handler rejecting a password) |
/// | gRPC or gRPC-Web, trailers-only with `grpc-status: 16` (`UNAUTHENTICATED`) | failure |
/// | anything else (2xx included) | neutral |
///
/// It never answers [`Outcome::Success`]: a 2xx says nothing about whose
/// sign-in it was (SECURITY.md B19). Mark real sign-ins with [`Succeeded`].
///
/// A unary Connect error is an HTTP status (`unauthenticated` is 401), so it
/// is classified like HTTP. A streaming Connect call answers 200 and puts
/// its error in the last message of the body, which no classifier sees: a
/// handler that rejects a guess there inserts the [`Failed`] marker.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl Classifier for DefaultClassifier {
    fn classify(&self, response: &Parts) -> Outcome {
        // `grpc-status` is looked up first: an HTTP answer has none, and
        // its content type is then never parsed.
        let unauthenticated = response.status == StatusCode::UNAUTHORIZED
            || (response.headers.get(GRPC_STATUS).map(HeaderValue::as_bytes) == Some(b"16")
                && Protocol::from_content_type(&response.headers)
                    .is_some_and(Protocol::has_grpc_status));
        if unauthenticated {
            Outcome::Failure
        } else {
            Outcome::Neutral
        }
    }
}

/// The layer's decision: rejections and the markers first (a failure before
/// a success), then the classifier. A failure comes with the fingerprint of
/// its guess, when known (B14).
pub(crate) fn judge(
    response: &Parts,
    classifier: Option<&dyn Classifier>,
) -> (Outcome, Option<Fingerprint>) {
    if let Some(rejection) = crate::reject::carried(&response.extensions) {
        // B1: only presented-and-rejected credentials count; a missing or
        // malformed credential, a missing scope, an expired token or an
        // unavailable validator never does, whatever the status.
        if rejection.counts_as_failure() {
            (Outcome::Failure, rejection.fingerprint())
        } else {
            (Outcome::Neutral, None)
        }
    } else if let Some(failed) = response.extensions.get::<Failed>() {
        (Outcome::Failure, failed.fingerprint())
    } else if response.extensions.get::<Succeeded>().is_some() {
        (Outcome::Success, None)
    } else {
        let outcome = match classifier {
            Some(classifier) => classifier.classify(response),
            None => DefaultClassifier.classify(response),
        };
        (outcome, None)
    }
}

#[cfg(test)]
fn outcome(response: &Parts, classifier: Option<&dyn Classifier>) -> Outcome {
    judge(response, classifier).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthRejection, reject::RejectionKind};

    fn parts(status: u16) -> Parts {
        http::Response::builder()
            .status(status)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn default_classifier_counts_401_and_grpc_unauthenticated() {
        assert_eq!(DefaultClassifier.classify(&parts(401)), Outcome::Failure);
        // B19: a 2xx is no proof of a sign-in.
        assert_eq!(DefaultClassifier.classify(&parts(200)), Outcome::Neutral);
        assert_eq!(DefaultClassifier.classify(&parts(302)), Outcome::Neutral);
        assert_eq!(DefaultClassifier.classify(&parts(403)), Outcome::Neutral);
        assert_eq!(DefaultClassifier.classify(&parts(500)), Outcome::Neutral);
        let mut grpc = parts(200);
        grpc.headers
            .insert("content-type", "application/grpc".parse().unwrap());
        assert_eq!(DefaultClassifier.classify(&grpc), Outcome::Neutral);
        grpc.headers.insert("grpc-status", "16".parse().unwrap());
        assert_eq!(DefaultClassifier.classify(&grpc), Outcome::Failure);
        grpc.headers.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(DefaultClassifier.classify(&grpc), Outcome::Neutral);
        let mut web = parts(200);
        web.headers.insert(
            "content-type",
            "application/grpc-web+proto".parse().unwrap(),
        );
        assert_eq!(DefaultClassifier.classify(&web), Outcome::Neutral);
        web.headers.insert("grpc-status", "16".parse().unwrap());
        assert_eq!(DefaultClassifier.classify(&web), Outcome::Failure);
        let mut connect = parts(401);
        connect
            .headers
            .insert("content-type", "application/json".parse().unwrap());
        assert_eq!(DefaultClassifier.classify(&connect), Outcome::Failure);
    }

    #[test]
    fn rejections_decide_before_the_classifier() {
        let always_fail = |_: &Parts| Outcome::Failure;
        let mut res = parts(401);
        res.extensions
            .insert(AuthRejection::new(RejectionKind::Missing));
        assert_eq!(outcome(&res, Some(&always_fail)), Outcome::Neutral);
        res.extensions
            .insert(AuthRejection::new(RejectionKind::Revoked));
        assert_eq!(outcome(&res, None), Outcome::Failure);
    }

    #[test]
    fn the_marker_counts_whatever_the_status() {
        let mut res = parts(200);
        res.extensions.insert(Failed::new());
        assert_eq!(outcome(&res, None), Outcome::Failure);
    }

    #[test]
    fn only_the_success_marker_is_a_success_and_a_failure_wins() {
        let mut res = parts(200);
        assert_eq!(outcome(&res, None), Outcome::Neutral);
        res.extensions.insert(Succeeded);
        assert_eq!(outcome(&res, None), Outcome::Success);
        res.extensions.insert(Failed::new());
        assert_eq!(outcome(&res, None), Outcome::Failure);
    }
}
