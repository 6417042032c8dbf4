//! The lockout policy: thresholds, windows and escalation.

use std::time::Duration;

use crate::ConfigError;

const HOUR: Duration = Duration::from_secs(3600);
/// The longest window or lockout a policy accepts.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// When a key is locked out, for how long, and how long failures are
/// remembered.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`max_failures`](PolicyBuilder::max_failures) | 5 | failures that lock a key out |
/// | [`window`](PolicyBuilder::window) | 24 h | failures are forgotten this long after the last one |
/// | [`lockout`](PolicyBuilder::lockout) | 30 min | the first lockout |
/// | [`multiplier`](PolicyBuilder::multiplier) | 2 | each further lockout lasts this much longer… |
/// | [`max_lockout`](PolicyBuilder::max_lockout) | 24 h | …up to this cap |
/// | [`reset_on_success`](PolicyBuilder::reset_on_success) | off | a sign-in marked [`Succeeded`](super::Succeeded) clears the failure count |
/// | [`capacity`](PolicyBuilder::capacity) | 100 000 | keys each table holds at most |
/// | [`max_waiting`](PolicyBuilder::max_waiting) | 256 | requests of one key that may wait for a reservation; more get 429 |
/// | [`remember_guesses`](PolicyBuilder::remember_guesses) | 4 | wrong guesses remembered per key: repeating one of them is not counted again (smart counting) |
/// | [`delay_after`](PolicyBuilder::delay_after) | off | failures after which each attempt waits, one at a time (progressive delay)… |
/// | [`delay`](PolicyBuilder::delay) | 1 s | …this long at first, doubling with every further failure… |
/// | [`max_delay`](PolicyBuilder::max_delay) | 30 s | …up to this cap |
///
/// # Progressive delay
///
/// With [`delay_after(n)`](PolicyBuilder::delay_after), a key with `n` or
/// more failures within the window is slowed down before it is locked out
/// (or instead of it, with a large `max_failures`): it may have one attempt
/// in flight at a time, and each attempt waits
/// `min(delay × 2^(failures − n), max_delay)` before it goes on, holding
/// the key's one slot. The wait is cancel-safe (a client that goes away
/// frees the slot) and bounded per key: one request waits out the delay,
/// at most [`max_waiting`](PolicyBuilder::max_waiting) others queue behind
/// it, and further ones get 429.
///
/// # Escalation
///
/// A key's `n`-th lockout (counting from 0) lasts
/// `min(lockout × multiplierⁿ, max_lockout)`. A key counts as a repeat
/// offender while its previous lockout is remembered: until `window` has
/// passed since that lockout ended. Once forgotten, the next lockout is a
/// first one again.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::lockout::Policy;
///
/// let policy = Policy::builder()
///     .max_failures(3)
///     .lockout(Duration::from_secs(60))
///     .multiplier(4.0)
///     .max_lockout(Duration::from_secs(600))
///     .build()
///     .unwrap();
/// assert_eq!(policy.lockout_duration(0), Duration::from_secs(60));
/// assert_eq!(policy.lockout_duration(1), Duration::from_secs(240));
/// assert_eq!(policy.lockout_duration(2), Duration::from_secs(600)); // capped
///
/// assert!(Policy::builder().max_failures(0).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    multiplier: f64,
    max_lockout: Duration,
    reset_on_success: bool,
    capacity: u64,
    max_waiting: u32,
    remember_guesses: u8,
    delay_after: Option<u32>,
    delay: Duration,
    max_delay: Duration,
}

/// The most wrong guesses a policy remembers per key.
pub(crate) const MAX_REMEMBERED: usize = 8;

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Self::default(),
        }
    }

    /// Failures within the window that lock a key out.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// How long failures are remembered after the last one.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The length of a first lockout.
    pub fn lockout(&self) -> Duration {
        self.lockout
    }

    /// How much longer each further lockout of a repeat offender lasts.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The longest lockout.
    pub fn max_lockout(&self) -> Duration {
        self.max_lockout
    }

    /// Whether a success ([`Succeeded`](super::Succeeded)) clears the
    /// failure count of its key.
    pub fn reset_on_success(&self) -> bool {
        self.reset_on_success
    }

    /// The most keys each table of the tracker holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// How many requests of one key may wait for a reservation at once;
    /// see [`PolicyBuilder::max_waiting`].
    pub fn max_waiting(&self) -> u32 {
        self.max_waiting
    }

    /// How many wrong guesses are remembered per key for smart counting
    /// (0: every failure counts).
    pub fn remember_guesses(&self) -> u8 {
        self.remember_guesses
    }

    /// Failures after which attempts are delayed, if progressive delay is
    /// on.
    pub fn delay_after(&self) -> Option<u32> {
        self.delay_after
    }

    /// How long an attempt of a key with `failures` failures waits before
    /// it goes on: `None` below [`delay_after`](Self::delay_after), else
    /// `min(delay × 2^(failures − delay_after), max_delay)`.
    pub fn delay_for(&self, failures: u32) -> Option<Duration> {
        let after = self.delay_after?;
        let steps = failures.checked_sub(after)?;
        let factor = 2u32.checked_pow(steps.min(31)).unwrap_or(u32::MAX);
        Some(self.delay.saturating_mul(factor).min(self.max_delay))
    }

    /// How many attempts of a key with `failures` failures may be in flight
    /// at once: the failures left before a lockout, or one while the key's
    /// attempts are delayed.
    pub(crate) fn in_flight_limit(&self, failures: u32) -> u32 {
        let left = self.max_failures.saturating_sub(failures);
        match self.delay_after {
            Some(after) if failures >= after => left.min(1),
            _ => left,
        }
    }

    /// The length of a lockout imposed on a key that has been locked out
    /// `previous` times before (and whose last lockout is still remembered):
    /// `min(lockout × multiplier^previous, max_lockout)`.
    pub fn lockout_duration(&self, previous: u32) -> Duration {
        let exponent = i32::try_from(previous).unwrap_or(i32::MAX);
        let secs = self.lockout.as_secs_f64() * self.multiplier.powi(exponent);
        match Duration::try_from_secs_f64(secs) {
            Ok(duration) => duration.min(self.max_lockout),
            // Only an overflow gets here: the inputs are finite and positive.
            Err(_) => self.max_lockout,
        }
    }
}

impl Default for Policy {
    /// 5 failures in 24 h lock a key out for 30 minutes, doubling for repeat
    /// offenders up to 24 h; successes do not reset the count; 100 000 keys.
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: 24 * HOUR,
            lockout: HOUR / 2,
            multiplier: 2.0,
            max_lockout: 24 * HOUR,
            reset_on_success: false,
            capacity: 100_000,
            max_waiting: 256,
            remember_guesses: 4,
            delay_after: None,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Builds a [`Policy`]; see there for the settings and their defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    /// Failures within the window that lock a key out (at least 1).
    pub fn max_failures(mut self, max_failures: u32) -> Self {
        self.policy.max_failures = max_failures;
        self
    }

    /// How long failures are remembered after the last one (more than zero,
    /// at most 366 days). Also how long a lockout is remembered after it
    /// ends, for escalation.
    pub fn window(mut self, window: Duration) -> Self {
        self.policy.window = window;
        self
    }

    /// The length of a first lockout (more than zero, at most 366 days).
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.policy.lockout = lockout;
        self
    }

    /// How much longer each further lockout of a repeat offender lasts (a
    /// finite number, at least 1; 1 turns escalation off).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// The longest lockout (at least the first lockout, at most 366 days).
    pub fn max_lockout(mut self, max_lockout: Duration) -> Self {
        self.policy.max_lockout = max_lockout;
        self
    }

    /// Whether a success clears the failure count of its key.
    ///
    /// A success is a response carrying the
    /// [`Succeeded`](super::Succeeded) marker (or one your
    /// [`Classifier`](super::Classifier) calls a success), or
    /// [`Tracker::record_success`](super::Tracker::record_success) and
    /// [`Attempt::succeeded`](super::Attempt::succeeded); never a 2xx
    /// alone, nor a credential an `AuthLayer` accepted (SECURITY.md B19).
    /// It never lifts a lockout.
    ///
    /// # Security
    ///
    /// Leave this off when keys are client addresses: an attacker holding
    /// one valid credential could otherwise clear its own counter by
    /// interleaving it with its guesses. It suits per-account keys, where a
    /// sign-in the login handler marks `Succeeded` proves the account's
    /// owner is present.
    pub fn reset_on_success(mut self, reset: bool) -> Self {
        self.policy.reset_on_success = reset;
        self
    }

    /// The most keys each table of the tracker holds (at least 1): failure
    /// counters, lockouts, and the escalation history.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.policy.capacity = capacity;
        self
    }

    /// How many requests of one key may wait for a reservation at once
    /// (default 256). A request waits when its key's failures plus the
    /// requests in flight whose outcome is still undecided reach
    /// `max_failures`; past this bound it is answered 429 with
    /// `Retry-After: 1` (gRPC `RESOURCE_EXHAUSTED`) at once, which is not a
    /// failure. The bound keeps one client from parking unbounded numbers
    /// of requests.
    pub fn max_waiting(mut self, max_waiting: u32) -> Self {
        self.policy.max_waiting = max_waiting;
        self
    }

    /// How many distinct wrong guesses to remember per key (default 4, at
    /// most 8; 0 turns smart counting off).
    ///
    /// A failure whose guess is known (a credential `AuthLayer` rejected, a
    /// [`Failed::guess`](super::Failed::guess) from a login handler) and
    /// equals one of the key's remembered guesses within the window is not
    /// counted again: a browser resending a stale cookie, or a user
    /// retyping the same wrong password, costs one failure, not five. The
    /// guesses are compared by keyed fingerprint; they are forgotten
    /// `window` after the key's last remembered one, and when the table of
    /// remembered guesses (`capacity` keys, least recently used first) is
    /// full, which only ever makes a repeat count again.
    pub fn remember_guesses(mut self, guesses: u8) -> Self {
        self.policy.remember_guesses = guesses;
        self
    }

    /// Delays the attempts of a key once it has `failures` failures within
    /// the window; see [Progressive delay](Policy#progressive-delay).
    pub fn delay_after(mut self, failures: u32) -> Self {
        self.policy.delay_after = Some(failures);
        self
    }

    /// The first delay (default 1 s); it doubles with every further
    /// failure.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.policy.delay = delay;
        self
    }

    /// The longest delay (default 30 s).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.policy.max_delay = max_delay;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when `max_failures` or `capacity` is 0, a
    /// duration is zero or longer than 366 days, the multiplier is not a
    /// finite number of at least 1, `max_lockout` is shorter than
    /// `lockout`, more than 8 guesses are to be remembered, or
    /// `delay_after` is 0 or not below `max_failures`, or the delays are
    /// zero or `max_delay` is shorter than `delay`.
    pub fn build(self) -> Result<Policy, ConfigError> {
        let p = self.policy;
        if p.max_failures == 0 {
            return Err(ConfigError::out_of_range(
                "max_failures",
                "must be at least 1",
            ));
        }
        if p.capacity == 0 {
            return Err(ConfigError::out_of_range("capacity", "must be at least 1"));
        }
        for (setting, value) in [
            ("window", p.window),
            ("lockout", p.lockout),
            ("max_lockout", p.max_lockout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::out_of_range(setting, "must be more than zero"));
            }
            if value > MAX_DURATION {
                return Err(ConfigError::out_of_range(
                    setting,
                    "must be at most 366 days",
                ));
            }
        }
        if !p.multiplier.is_finite() || p.multiplier < 1.0 {
            return Err(ConfigError::out_of_range(
                "multiplier",
                format!(
                    "must be a finite number of at least 1, got {}",
                    p.multiplier
                ),
            ));
        }
        if p.max_lockout < p.lockout {
            return Err(ConfigError::out_of_range(
                "max_lockout",
                "must be at least the first lockout",
            ));
        }
        if usize::from(p.remember_guesses) > MAX_REMEMBERED {
            return Err(ConfigError::out_of_range(
                "remember_guesses",
                format!("must be at most {MAX_REMEMBERED}"),
            ));
        }
        if let Some(after) = p.delay_after {
            if after == 0 || after >= p.max_failures {
                return Err(ConfigError::out_of_range(
                    "delay_after",
                    "must be at least 1 and below max_failures",
                ));
            }
            if p.delay.is_zero() || p.delay > MAX_DURATION || p.max_delay > MAX_DURATION {
                return Err(ConfigError::out_of_range(
                    "delay",
                    "must be more than zero and at most 366 days",
                ));
            }
            if p.max_delay < p.delay {
                return Err(ConfigError::out_of_range(
                    "max_delay",
                    "must be at least the first delay",
                ));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn defaults_match_the_documented_table() {
        let p = Policy::default();
        assert_eq!(p.max_failures(), 5);
        assert_eq!(p.window(), 24 * HOUR);
        assert_eq!(p.lockout(), 30 * MIN);
        assert_eq!(p.multiplier(), 2.0);
        assert_eq!(p.max_lockout(), 24 * HOUR);
        assert!(!p.reset_on_success());
        assert_eq!(p.capacity(), 100_000);
        assert_eq!(Policy::builder().build().unwrap(), p);
    }

    #[test]
    fn default_escalation_doubles_from_thirty_minutes_up_to_a_day() {
        let p = Policy::default();
        let minutes: Vec<u64> = (0..8)
            .map(|n| p.lockout_duration(n).as_secs() / 60)
            .collect();
        assert_eq!(minutes, [30, 60, 120, 240, 480, 960, 1440, 1440]);
    }

    #[test]
    fn escalation_never_overflows_and_stays_at_the_cap() {
        let p = Policy::builder().multiplier(1e300).build().unwrap();
        assert_eq!(p.lockout_duration(1), p.max_lockout());
        assert_eq!(p.lockout_duration(u32::MAX), p.max_lockout());
        let p = Policy::default();
        assert_eq!(p.lockout_duration(u32::MAX), 24 * HOUR);
    }

    #[test]
    fn multiplier_of_one_keeps_every_lockout_at_the_base() {
        let p = Policy::builder().multiplier(1.0).build().unwrap();
        assert_eq!(p.lockout_duration(0), 30 * MIN);
        assert_eq!(p.lockout_duration(1000), 30 * MIN);
    }

    #[test]
    fn fractional_multiplier_escalates_gently() {
        let p = Policy::builder()
            .lockout(100 * MIN)
            .multiplier(1.5)
            .build()
            .unwrap();
        assert_eq!(p.lockout_duration(1), 150 * MIN);
        assert_eq!(p.lockout_duration(2), 225 * MIN);
    }

    fn rejected_setting(builder: PolicyBuilder) -> &'static str {
        match builder.build() {
            Err(ConfigError::OutOfRange { setting, .. }) => setting,
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn build_rejects_settings_that_cannot_work() {
        let b = Policy::builder;
        assert_eq!(rejected_setting(b().max_failures(0)), "max_failures");
        assert_eq!(rejected_setting(b().capacity(0)), "capacity");
        assert_eq!(rejected_setting(b().window(Duration::ZERO)), "window");
        assert_eq!(rejected_setting(b().lockout(Duration::ZERO)), "lockout");
        assert_eq!(
            rejected_setting(b().max_lockout(Duration::ZERO)),
            "max_lockout"
        );
        assert_eq!(rejected_setting(b().multiplier(0.5)), "multiplier");
        assert_eq!(rejected_setting(b().multiplier(f64::NAN)), "multiplier");
        assert_eq!(
            rejected_setting(b().multiplier(f64::INFINITY)),
            "multiplier"
        );
        assert_eq!(
            rejected_setting(b().lockout(2 * HOUR).max_lockout(HOUR)),
            "max_lockout"
        );
        assert_eq!(
            rejected_setting(b().window(Duration::from_secs(400 * 24 * 3600))),
            "window"
        );
    }

    #[test]
    fn progressive_delay_doubles_up_to_its_cap_and_serialises_the_key() {
        let p = Policy::builder()
            .max_failures(10)
            .delay_after(3)
            .delay(Duration::from_secs(2))
            .max_delay(Duration::from_secs(10))
            .build()
            .unwrap();
        let delays: Vec<_> = (0..8)
            .map(|f| p.delay_for(f).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            delays,
            [
                None,
                None,
                None,
                Some(2),
                Some(4),
                Some(8),
                Some(10),
                Some(10)
            ]
        );
        assert_eq!(p.delay_for(u32::MAX), Some(Duration::from_secs(10)));
        assert_eq!(p.in_flight_limit(2), 8);
        assert_eq!(p.in_flight_limit(3), 1);
        assert_eq!(Policy::default().delay_for(100), None);
        assert_eq!(
            rejected_setting(Policy::builder().delay_after(5)),
            "delay_after"
        );
        assert_eq!(
            rejected_setting(Policy::builder().delay_after(1).delay(Duration::ZERO)),
            "delay"
        );
        assert_eq!(
            rejected_setting(Policy::builder().remember_guesses(9)),
            "remember_guesses"
        );
    }

    #[test]
    fn errors_read_as_lowercase_sentences() {
        let err = Policy::builder().multiplier(0.5).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid multiplier: must be a finite number of at least 1, got 0.5"
        );
    }

    #[test]
    fn edge_values_are_accepted() {
        let p = Policy::builder()
            .max_failures(1)
            .capacity(1)
            .lockout(HOUR)
            .max_lockout(HOUR)
            .window(MAX_DURATION)
            .build()
            .unwrap();
        assert_eq!(p.lockout_duration(3), HOUR);
    }
}
