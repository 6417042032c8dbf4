//! Lifetimes: idle and absolute, on tokio's clock; the cookie and the
//! access tokens end with the session.

use std::time::Duration;

use portcullis::session::SessionErrorKind;
use tokio::time::advance;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn lived(absolute: Duration, idle: Duration) -> Sessions {
    support::logs::capture();
    let tokens = AccessTokens::generate().unwrap().lifetime(HOUR);
    Sessions::builder(tokens, &Revocations::new())
        .absolute_lifetime(absolute)
        .idle_lifetime(idle)
        .grace(Duration::ZERO)
        .build()
        .unwrap()
}

fn max_age(grant: &Grant) -> u64 {
    let set_cookie = grant.set_cookie().to_str().unwrap();
    set_cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_refresh_starts_the_idle_lifetime_again_and_an_idle_session_ends() {
    let sessions = lived(30 * 24 * HOUR, 24 * HOUR);
    let mut grant = sessions.sign_in("alice").await.unwrap();
    assert_eq!(max_age(&grant), 24 * 3600);
    for _ in 0..5 {
        advance(24 * HOUR - Duration::from_secs(1)).await;
        grant = sessions.refresh_with(grant.refresh_token()).await.unwrap();
        assert_eq!(max_age(&grant), 24 * 3600);
    }
    advance(24 * HOUR).await;
    let refused = sessions
        .refresh_with(grant.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unknown);
    assert_eq!(sessions.stats().families, Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let sessions = lived(10 * HOUR, 4 * HOUR);
    let mut grant = sessions.sign_in("alice").await.unwrap();
    for hours in 1..10 {
        advance(HOUR).await;
        grant = sessions.refresh_with(grant.refresh_token()).await.unwrap();
        // The cookie ends with the session: at most what is left of it.
        assert_eq!(max_age(&grant), (10 - hours).min(4) * 3600);
        // And so does the access token.
        assert!(grant.expires_in() <= HOUR);
    }
    advance(Duration::from_secs(30 * 60)).await;
    grant = sessions.refresh_with(grant.refresh_token()).await.unwrap();
    assert_eq!(max_age(&grant), 30 * 60);
    assert_eq!(grant.expires_in(), Duration::from_secs(30 * 60));
    advance(Duration::from_secs(30 * 60)).await;
    let refused = sessions
        .refresh_with(grant.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unknown);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_that_cannot_work_are_configuration_errors() {
    let tokens = || AccessTokens::generate().unwrap();
    let list = Revocations::new();
    for builder in [
        Sessions::builder(tokens(), &list).idle_lifetime(Duration::ZERO),
        Sessions::builder(tokens(), &list).absolute_lifetime(Duration::ZERO),
        Sessions::builder(tokens(), &list)
            .idle_lifetime(Duration::from_secs(5))
            .grace(Duration::from_secs(5)),
        Sessions::builder(tokens(), &list).capacity(0),
        Sessions::builder(tokens(), &list).cookie_path("auth"),
        Sessions::builder(tokens(), &list).cookie_name("re fresh"),
        // Browsers would drop these cookies: prefixes have rules.
        Sessions::builder(tokens(), &list).cookie_name("__Host-refresh"),
        Sessions::builder(tokens(), &list)
            .cookie_name("__Secure-refresh")
            .secure_cookie(false),
        // Past what a browser keeps a cookie, and what a clock can add.
        Sessions::builder(tokens(), &list).absolute_lifetime(Duration::MAX),
        Sessions::builder(tokens(), &list).idle_lifetime(Duration::from_secs(401 * 86_400)),
    ] {
        assert!(builder.build().is_err());
    }
    let year = Duration::from_secs(365 * 86_400);
    let long = Sessions::builder(tokens(), &list)
        .absolute_lifetime(year)
        .idle_lifetime(year)
        .build()
        .unwrap();
    long.sign_in("alice").await.unwrap();
    for prefixed in [
        Sessions::builder(tokens(), &list).cookie_name("__Secure-refresh"),
        Sessions::builder(tokens(), &list)
            .cookie_name("__Host-refresh")
            .cookie_path("/"),
    ] {
        assert!(prefixed.build().is_ok());
    }
    // Access tokens the list would forget before they expire.
    let short = Revocations::builder()
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let error = Sessions::builder(tokens(), &short).build().unwrap_err();
    assert!(error.to_string().contains("max_lifetime"), "{error}");
    assert!(
        Sessions::builder(tokens().lifetime(Duration::from_secs(60)), &short)
            .build()
            .is_ok()
    );
}
