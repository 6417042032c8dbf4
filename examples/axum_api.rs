//! An axum API behind `AuthLayer`, with a failed-attempt limiter and an
//! optional rate limiter in front: a public health check, a login form that
//! sets a session cookie, a `/me` route that answers with the caller's
//! subject, and an `/admin` route that needs the `admin` scope.
//!
//! The credential may come from `Authorization: Bearer`, the `session` cookie
//! or the `X-API-Key` header; two different credentials in one request are
//! refused as ambiguous. Three validators are combined with a `Chain`:
//!
//! - **API keys** (`ApiKeys`): keys starting with `demo_` go to this
//!   validator and no other. It knows one key, for subject `ci-bot` (no
//!   scopes), stored only as its SHA-256 digest.
//! - **Demo tokens** (never printed or logged):
//!
//!   | token         | subject | scopes  |
//!   |---------------|---------|---------|
//!   | `alice-token` | `alice` | `admin` |
//!   | `bob-token`   | `bob`   | none    |
//!
//! - **JWTs** (feature `jwt`, when `PORTCULLIS_JWT_SECRET` is set): HS256,
//!   `iss` = `portcullis-demo`, `aud` = `portcullis-api`, `exp` required; the
//!   subject is `sub` and the scopes come from the `scope` claim.
//!
//! `POST /login` takes the form fields `username` and `password`:
//! `alice` / `wonderland` gets `session=alice-token` (`HttpOnly`,
//! `SameSite=Lax`, `Path=/`); anything else gets 401.
//!
//! Requests pass, outermost first, through `RateLimitLayer` (when
//! configured), `LockoutLayer` and `AuthLayer`. Both limiters key on the
//! client's address (the server runs with connect info). The lockout counts
//! rejected credentials and failed logins, not missing credentials; a
//! locked-out client gets 429 with `Retry-After` for every request, even
//! with a valid credential, until the lockout ends (it doubles for repeat
//! offenders, up to a day).
//!
//! Configuration, from the environment:
//!
//! | variable                | meaning |
//! |-------------------------|---------|
//! | `PORTCULLIS_ADDR`       | listen address (default `127.0.0.1:3000`; port 0 picks a free port) |
//! | `PORTCULLIS_API_KEY`    | the API key of `ci-bot`: `demo_` and at least 32 more characters from `A-Z a-z 0-9 - _`. Unset: a key is generated that nobody knows, and only its prefix is printed |
//! | `PORTCULLIS_JWT_SECRET` | HS256 secret (at least 32 bytes) that turns JWT support on; needs `--features jwt` |
//! | `PORTCULLIS_MAX_FAILURES` | failed attempts that lock a client out (default 5) |
//! | `PORTCULLIS_LOCKOUT_SECS` | how long a first lockout lasts, in seconds (default 60) |
//! | `PORTCULLIS_CAPACITY`   | clients each limiter remembers at most (default 100000) |
//! | `PORTCULLIS_TRUSTED_PROXIES` | comma-separated CIDRs whose `X-Forwarded-For` / `Forwarded` are believed (default none) |
//! | `PORTCULLIS_RATE_PER_SEC` | requests per second per client; rate limiting is off when unset |
//! | `PORTCULLIS_RATE_BURST` | requests a quiet client may send at once (default: the rate) |
//! | `PORTCULLIS_REDIS_URL`  | Redis server (`redis://host:port`) where both limiters keep their state, shared with other instances; needs `--features redis`. Unset: each instance counts on its own |
//! | `RUST_LOG`              | log filter (default `info,portcullis=debug`) |
//!
//! A value that cannot be used is reported on stderr (never echoing a
//! secret) and the example exits with code 2.
//!
//! Run it; the bound address is printed as `listening on http://ADDR`,
//! followed by the configuration in effect:
//!
//! ```text
//! cargo run --example axum_api
//!
//! # with a key for ci-bot and JWT support:
//! export PORTCULLIS_API_KEY=demo_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
//! export PORTCULLIS_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
//! cargo run --example axum_api --features jwt
//!
//! # a JWT signed with that secret, e.g. with jwt-cli:
//! JWT=$(jwt encode --secret "$PORTCULLIS_JWT_SECRET" --iss portcullis-demo \
//!       --aud portcullis-api --sub carol --exp=+1h '{"scope":"admin"}')
//! ```
//!
//! Then:
//!
//! ```text
//! curl -i http://127.0.0.1:3000/health                                        # 200
//! curl -i http://127.0.0.1:3000/me                                            # 401, WWW-Authenticate: Bearer realm="portcullis"
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/me     # 200 {"subject":"alice"}
//! curl -i --cookie 'session=bob-token' http://127.0.0.1:3000/me               # 200 {"subject":"bob"}
//! curl -i -H 'X-API-Key: alice-token' http://127.0.0.1:3000/me                # 200 {"subject":"alice"}
//! curl -i -H "X-API-Key: $PORTCULLIS_API_KEY" http://127.0.0.1:3000/me        # 200 {"subject":"ci-bot"}
//! curl -i -H 'Authorization: Bearer nope' http://127.0.0.1:3000/me            # 401, error="invalid_token"
//! curl -i -H 'Authorization: Bearer alice-token' --cookie 'session=bob-token' \
//!      http://127.0.0.1:3000/me                                               # 400, error="invalid_request"
//! curl -i -d 'username=alice&password=wonderland' http://127.0.0.1:3000/login # 200, Set-Cookie: session=alice-token; HttpOnly; SameSite=Lax; Path=/
//! curl -i -d 'username=alice&password=guess' http://127.0.0.1:3000/login      # 401 (counts as a failed attempt)
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/admin  # 200 {"scope":"admin","subject":"alice"}
//! curl -i -H 'Authorization: Bearer bob-token' http://127.0.0.1:3000/admin    # 403, error="insufficient_scope", scope="admin"
//! curl -i -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/me            # 200 {"subject":"carol"}
//! curl -i -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/admin         # 200 {"scope":"admin","subject":"carol"}
//!
//! # five failed attempts, then even alice's token is refused for a minute:
//! for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}\n' \
//!     -d 'username=alice&password=guess' http://127.0.0.1:3000/login; done  # 401 ×5
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/me     # 429, Retry-After: 60
//! ```
//!
//! Logs go to stderr; rejected credentials are logged by fingerprint, never
//! by value. Ctrl-C or SIGTERM shuts the server down gracefully.

use std::{
    collections::HashMap,
    fmt::Display,
    io::{self, IsTerminal, Write},
    net::SocketAddr,
    process::ExitCode,
    str::FromStr,
    time::Duration,
};

use axum::{
    Form, Json, Router,
    http::HeaderName,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{Method, StatusCode, header};
use portcullis::{
    AuthLayer, ClientIp, Credential, ValidationError, Validator,
    extract::{Bearer, Cookie, Extractor, Header},
    integration::axum::Identity,
    lockout::{LockoutLayer, Policy, Tracker},
    rate_limit::RateLimitLayer,
    reject::DefaultRenderer,
    scope::{RequireScopeLayer, Scopes},
    validate::{ApiKeyIdentity, ApiKeys, Chain, GeneratedKey, KeyDigest},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// The prefix of this example's API keys; the `Chain` routes on it.
const API_KEY_PREFIX: &str = "demo_";
/// Characters an API key must have after its prefix (at least 192 bits of
/// base64url).
const API_KEY_MIN_RANDOM: usize = 32;
/// How a user makes a key of their own (never one the server printed).
const API_KEY_HOWTO: &str =
    "PORTCULLIS_API_KEY=demo_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')";

#[cfg(feature = "jwt")]
const JWT_ISSUER: &str = "portcullis-demo";
#[cfg(feature = "jwt")]
const JWT_AUDIENCE: &str = "portcullis-api";

/// The caller, whichever validator recognised it.
#[derive(Clone, Debug)]
struct User {
    subject: String,
    scopes: Vec<String>,
}

impl Scopes for User {
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl User {
    fn from_api_key(key: ApiKeyIdentity) -> Self {
        Self {
            subject: key.id().to_owned(),
            scopes: key.scopes().map(str::to_owned).collect(),
        }
    }
}

/// A fixed table of demo tokens. A real service would ask its database or
/// identity provider here.
struct DemoTokens(HashMap<&'static str, (&'static str, &'static [&'static str])>);

impl DemoTokens {
    fn new() -> Self {
        Self(HashMap::from([
            ("alice-token", ("alice", &["admin"][..])),
            ("bob-token", ("bob", &[][..])),
        ]))
    }
}

impl Validator for DemoTokens {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        match self.0.get(credential.secret()) {
            Some((subject, scopes)) => Ok(User {
                subject: (*subject).to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            }),
            None => Err(ValidationError::invalid().with_reason("unknown token")),
        }
    }
}

/// The claims this API reads from a JWT (`iss`, `aud`, `exp` and `scope` are
/// checked and read by the validator).
#[cfg(feature = "jwt")]
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
}

#[cfg(feature = "jwt")]
impl User {
    fn from_jwt(claims: portcullis::validate::Claims<TokenClaims>) -> Self {
        Self {
            subject: claims.sub.clone(),
            scopes: claims.scopes().map(str::to_owned).collect(),
        }
    }
}

/// The example's configuration, read from the environment.
struct Config {
    addr: String,
    /// `ci-bot`'s key, as its digest only.
    api_key: KeyDigest,
    /// Whether the key came from `PORTCULLIS_API_KEY` (else it was generated).
    api_key_from_env: bool,
    /// Set when `PORTCULLIS_JWT_SECRET` is set.
    #[cfg(feature = "jwt")]
    jwt: Option<portcullis::validate::JwtValidator<TokenClaims>>,
    /// `PORTCULLIS_JWT_SECRET` is set in a build without JWT support.
    #[cfg(not(feature = "jwt"))]
    jwt_secret_ignored: bool,
    limits: Limits,
}

/// The settings of the limiters.
struct Limits {
    /// Failures that lock a client out.
    max_failures: u32,
    /// How long a first lockout lasts.
    lockout: Duration,
    /// Clients each limiter's tables remember at most.
    capacity: u64,
    /// How both limiters find the client's address.
    client_ip: ClientIp,
    /// `PORTCULLIS_TRUSTED_PROXIES`, as given, for the startup lines.
    trusted_proxies: Vec<String>,
    /// Requests per second and burst; `None` turns rate limiting off.
    rate: Option<(u32, u32)>,
    /// `PORTCULLIS_REDIS_URL` (it may hold a password: never printed).
    redis_url: Option<String>,
    /// The shared store, once connected.
    #[cfg(feature = "redis")]
    redis: Option<portcullis::lockout::RedisStore>,
}

impl Limits {
    fn from_env() -> Result<Self, String> {
        let max_failures = number("PORTCULLIS_MAX_FAILURES", 1, 5)?;
        let lockout = Duration::from_secs(number("PORTCULLIS_LOCKOUT_SECS", 1, 60)?);
        let capacity = number("PORTCULLIS_CAPACITY", 1, 100_000)?;
        let trusted_proxies: Vec<String> = env("PORTCULLIS_TRUSTED_PROXIES")?
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|cidr| !cidr.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let client_ip = ClientIp::new()
            .trust_proxies(&trusted_proxies)
            .map_err(|e| format!("PORTCULLIS_TRUSTED_PROXIES: {e}"))?;
        let rate = match (
            optional_number::<u32>("PORTCULLIS_RATE_PER_SEC", 1)?,
            optional_number::<u32>("PORTCULLIS_RATE_BURST", 1)?,
        ) {
            (None, None) => None,
            (Some(per_sec), burst) => Some((per_sec, burst.unwrap_or(per_sec))),
            (None, Some(_)) => {
                return Err(
                    "PORTCULLIS_RATE_BURST is set without PORTCULLIS_RATE_PER_SEC; set both \
                     to turn rate limiting on"
                        .to_owned(),
                );
            }
        };
        Ok(Self {
            max_failures,
            lockout,
            capacity,
            client_ip,
            trusted_proxies,
            rate,
            redis_url: env("PORTCULLIS_REDIS_URL")?,
            #[cfg(feature = "redis")]
            redis: None,
        })
    }

    /// Connects to `PORTCULLIS_REDIS_URL`, when it is set.
    #[cfg(feature = "redis")]
    async fn connect_redis(&mut self) -> Result<(), String> {
        if let Some(url) = &self.redis_url {
            // The error names what failed, never the URL (it may hold a
            // password).
            let store = portcullis::lockout::RedisStore::connect(url)
                .await
                .map_err(|e| format!("PORTCULLIS_REDIS_URL: cannot connect: {:?}", e.kind()))?;
            self.redis = Some(store);
        }
        Ok(())
    }

    /// Without Redis support there is nothing to connect to.
    #[cfg(not(feature = "redis"))]
    async fn connect_redis(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// The `LockoutLayer`: keyed by the client's address, it counts the
    /// credentials `AuthLayer` rejects and the 401s of `/login`.
    fn lockout(&self, renderer: &DefaultRenderer) -> Result<LockoutLayer, String> {
        let policy = Policy::builder()
            .max_failures(self.max_failures)
            .lockout(self.lockout)
            // Repeat offenders wait longer, up to a day (or the first
            // lockout, if that is longer).
            .max_lockout(self.lockout.max(Policy::default().max_lockout()))
            .capacity(self.capacity)
            .build()
            .map_err(|e| format!("PORTCULLIS_LOCKOUT_SECS / PORTCULLIS_CAPACITY: {e}"))?;
        #[cfg(feature = "redis")]
        let tracker = match &self.redis {
            // With the key prefix `portcullis:lockout:`.
            Some(store) => Tracker::with_redis(policy, store.clone()),
            None => Tracker::new(policy),
        };
        #[cfg(not(feature = "redis"))]
        let tracker = Tracker::new(policy);
        Ok(LockoutLayer::with_tracker(self.client_ip.clone(), tracker).renderer(renderer.clone()))
    }

    /// A `RateLimitLayer`, when rate limiting is on.
    fn rate_limit(
        &self,
        renderer: &DefaultRenderer,
    ) -> Result<Option<RateLimitLayer<ClientIp>>, String> {
        let Some((per_sec, burst)) = self.rate else {
            return Ok(None);
        };
        let builder = RateLimitLayer::builder()
            .per_second(per_sec)
            .burst(burst)
            .max_capacity(self.capacity)
            .key(self.client_ip.clone())
            .renderer(renderer.clone());
        // With the key prefix `portcullis:rate:`.
        #[cfg(feature = "redis")]
        let builder = match &self.redis {
            Some(store) => builder.redis(store.clone()),
            None => builder,
        };
        builder
            .build()
            .map(Some)
            .map_err(|e| format!("PORTCULLIS_RATE_PER_SEC / PORTCULLIS_RATE_BURST: {e}"))
    }

    fn describe(&self, lines: &mut Vec<String>) {
        lines.push(format!(
            "lockout: {} failed attempts lock a client out for {} s (doubling for repeat \
             offenders); at most {} clients are tracked",
            self.max_failures,
            self.lockout.as_secs(),
            self.capacity
        ));
        lines.push(match self.rate {
            Some((per_sec, burst)) => {
                format!("rate limit: {per_sec}/s per client, burst {burst}")
            }
            None => {
                "rate limit: off (set PORTCULLIS_RATE_PER_SEC and PORTCULLIS_RATE_BURST)".to_owned()
            }
        });
        #[cfg(feature = "redis")]
        lines.push(if self.redis.is_some() {
            "shared state: redis (the limiters count together with every instance using the \
             same server; each falls back to counting on its own while redis is unavailable)"
                .to_owned()
        } else {
            "shared state: off (set PORTCULLIS_REDIS_URL to share the limiters with other \
             instances)"
                .to_owned()
        });
        #[cfg(not(feature = "redis"))]
        lines.push(if self.redis_url.is_some() {
            "shared state: PORTCULLIS_REDIS_URL is set, but this build has no Redis support, so \
             this instance counts on its own; run with `--features redis` to share the limiters"
                .to_owned()
        } else {
            "shared state: off (build with `--features redis` and set PORTCULLIS_REDIS_URL to \
             share the limiters with other instances)"
                .to_owned()
        });
        lines.push(if self.trusted_proxies.is_empty() {
            "trusted proxies: none (the client is the socket peer)".to_owned()
        } else {
            format!(
                "trusted proxies: {} (X-Forwarded-For / Forwarded are read from them)",
                self.trusted_proxies.join(", ")
            )
        });
    }
}

/// Reads variable `name`; unset and empty are both `None`.
fn env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

/// Reads a whole number of at least `min` from variable `name`.
fn optional_number<T>(name: &str, min: T) -> Result<Option<T>, String>
where
    T: FromStr + PartialOrd + Display,
{
    let Some(value) = env(name)? else {
        return Ok(None);
    };
    match value.trim().parse::<T>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(format!(
            "{name} must be a whole number, at least {min}; got {value:?}"
        )),
    }
}

/// Like [`optional_number`], with a default for an unset variable.
fn number<T>(name: &str, min: T, default: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    Ok(optional_number(name, min)?.unwrap_or(default))
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let addr = env("PORTCULLIS_ADDR")?.unwrap_or_else(|| "127.0.0.1:3000".to_owned());

        let (api_key, api_key_from_env) = match env("PORTCULLIS_API_KEY")? {
            Some(key) => {
                check_api_key(&key)?;
                (KeyDigest::of(&key), true)
            }
            None => {
                // Nobody learns this key: it stands for "ci-bot has a key".
                let key = GeneratedKey::new(API_KEY_PREFIX)
                    .map_err(|e| format!("cannot generate an API key: {e}"))?;
                (key.digest(), false)
            }
        };

        #[cfg(feature = "jwt")]
        let jwt = match env("PORTCULLIS_JWT_SECRET")? {
            None => None,
            Some(secret) => {
                use portcullis::validate::jwt::{Algorithm, JwtKey, JwtValidator};
                let validator = JwtValidator::<TokenClaims>::builder()
                    .algorithm(Algorithm::HS256)
                    .key(JwtKey::secret(secret.as_bytes()))
                    .issuer(JWT_ISSUER)
                    .audience(JWT_AUDIENCE)
                    .build()
                    // The error names lengths and algorithms, never the secret.
                    .map_err(|e| format!("PORTCULLIS_JWT_SECRET: {e}"))?;
                Some(validator)
            }
        };
        #[cfg(not(feature = "jwt"))]
        let jwt_secret_ignored = env("PORTCULLIS_JWT_SECRET")?.is_some();

        let limits = Limits::from_env()?;

        Ok(Self {
            addr,
            api_key,
            api_key_from_env,
            #[cfg(feature = "jwt")]
            jwt,
            #[cfg(not(feature = "jwt"))]
            jwt_secret_ignored,
            limits,
        })
    }

    /// What the server accepts, for the lines after `listening on`.
    fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.api_key_from_env {
            lines.push(
                "api key of ci-bot: from PORTCULLIS_API_KEY (only its SHA-256 digest is kept)"
                    .to_owned(),
            );
        } else {
            lines.push(format!(
                "api key of ci-bot: generated {API_KEY_PREFIX}… (not shown); to call as ci-bot, \
                 set PORTCULLIS_API_KEY to a key you generated, e.g. {API_KEY_HOWTO}"
            ));
        }
        #[cfg(feature = "jwt")]
        lines.push(if self.jwt.is_some() {
            format!("jwt: HS256 tokens with iss={JWT_ISSUER} and aud={JWT_AUDIENCE} are accepted")
        } else {
            "jwt: off (set PORTCULLIS_JWT_SECRET, at least 32 bytes, to accept HS256 tokens)"
                .to_owned()
        });
        #[cfg(not(feature = "jwt"))]
        lines.push(if self.jwt_secret_ignored {
            "jwt: PORTCULLIS_JWT_SECRET is set, but this build has no JWT support, so every JWT \
             is refused; run with `--features jwt` to accept them"
                .to_owned()
        } else {
            "jwt: off (build with `--features jwt` and set PORTCULLIS_JWT_SECRET to accept JWTs)"
                .to_owned()
        });
        self.limits.describe(&mut lines);
        lines
    }
}

/// Checks a user-supplied API key without ever echoing it.
fn check_api_key(key: &str) -> Result<(), String> {
    let random = key.strip_prefix(API_KEY_PREFIX);
    let ok = random.is_some_and(|random| {
        random.len() >= API_KEY_MIN_RANDOM
            && random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "PORTCULLIS_API_KEY must be \"{API_KEY_PREFIX}\" followed by at least \
             {API_KEY_MIN_RANDOM} characters from A-Z a-z 0-9 - _ (the value was not shown); \
             make one with: {API_KEY_HOWTO}"
        ))
    }
}

/// The validators, tried as `Chain` says: `demo_` keys go to the API-key
/// table only; anything else is tried as a demo token, then as a JWT.
fn validator(config: &Config) -> Result<Chain<User>, String> {
    let keys = ApiKeys::builder(API_KEY_PREFIX)
        .key(config.api_key, ApiKeyIdentity::new("ci-bot"))
        .build()
        .map_err(|e| format!("cannot build the API-key validator: {e}"))?;
    let chain = Chain::new()
        .prefixed_map(API_KEY_PREFIX, keys, User::from_api_key)
        .then(DemoTokens::new());
    #[cfg(feature = "jwt")]
    let chain = match &config.jwt {
        Some(jwt) => chain.then_map(jwt.clone(), User::from_jwt),
        None => chain,
    };
    Ok(chain)
}

async fn health() -> &'static str {
    "ok"
}

async fn me(Identity(user): Identity<User>) -> Json<Value> {
    tracing::info!(subject = %user.subject, "served /me");
    Json(json!({ "subject": user.subject }))
}

async fn admin(Identity(user): Identity<User>) -> Json<Value> {
    tracing::info!(subject = %user.subject, "served /admin");
    Json(json!({ "subject": user.subject, "scope": "admin" }))
}

/// The fields of the login form.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

/// Signs `alice` in with a session cookie; answers 401 to anything else,
/// which the lockout layer counts as a failed attempt.
///
/// A real service would check a password hash (argon2, scrypt) here.
async fn login(Form(form): Form<LoginForm>) -> Response {
    if form.username == "alice" && form.password == "wonderland" {
        tracing::info!(subject = "alice", "signed in");
        let cookie = Cookie::new("session").set_cookie("alice-token").build();
        (
            [(header::SET_COOKIE, cookie.to_string())],
            Json(json!({ "subject": "alice" })),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer realm="portcullis""#)],
            "wrong username or password",
        )
            .into_response()
    }
}

/// Whether a request needs no credential.
fn is_public(parts: &http::request::Parts) -> bool {
    matches!(
        (&parts.method, parts.uri.path()),
        (&Method::GET, "/health") | (&Method::POST, "/login")
    )
}

/// The app: the routes behind `AuthLayer`, with the limiters in front of it
/// (outermost first: `RateLimitLayer`, when configured, `LockoutLayer`, then
/// `AuthLayer`).
fn app(validator: Chain<User>, limits: &Limits) -> Result<Router, String> {
    let renderer = DefaultRenderer::new().realm("portcullis");
    let auth = AuthLayer::new(validator)
        .extractor(
            Extractor::new(Bearer::new())
                .or(Cookie::new("session"))
                .or(Header::new(HeaderName::from_static("x-api-key"))),
        )
        .public(is_public)
        .renderer(renderer.clone());
    let admin_only = RequireScopeLayer::<User>::new("admin").renderer(renderer.clone());

    let router = Router::new()
        .route("/health", get(health))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/admin", get(admin).route_layer(admin_only))
        .layer(auth)
        .layer(limits.lockout(&renderer)?);
    // `Router::layer` wraps what is there already: the last layer added is
    // the first to see a request.
    Ok(match limits.rate_limit(&renderer)? {
        Some(rate_limit) => router.layer(rate_limit),
        None => router,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,portcullis=debug")),
        )
        .init();

    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("axum_api: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = config.limits.connect_redis().await {
        eprintln!("axum_api: {message}");
        return ExitCode::from(2);
    }
    let app = match validator(&config).and_then(|validator| app(validator, &config.limits)) {
        Ok(app) => app,
        Err(message) => {
            eprintln!("axum_api: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&config, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum_api: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config, app: Router) -> io::Result<()> {
    let listener = TcpListener::bind(&config.addr).await?;
    let local = listener.local_addr()?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{local}")?;
    for line in config.describe() {
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    drop(stdout);

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("shut down");
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
