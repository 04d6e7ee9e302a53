//! Carrying protocol state to another process (a hitless agent upgrade): the state types
//! derive serde, and their `Instant`s are written as signed nanoseconds from a reference
//! instant the caller names with [`at`] (it reads its clock, this crate does not), and read
//! back against the reference the receiving process names. Both processes read the same
//! monotonic clock; the handover's own duration is the only error.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};

thread_local! {
    static REFERENCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (which serializes or deserializes state) with `now` as the reference instant.
pub fn at<R>(now: Instant, f: impl FnOnce() -> R) -> R {
    let before = REFERENCE.replace(Some(now));
    let r = f();
    REFERENCE.set(before);
    r
}

fn reference() -> Option<Instant> {
    REFERENCE.get()
}

fn offset(t: Instant, now: Instant) -> i64 {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    if t >= now { ns(t - now) } else { -ns(now - t) }
}

fn instant(offset: i64, now: Instant) -> Instant {
    let d = Duration::from_nanos(offset.unsigned_abs());
    // Out of the clock's range only for offsets no process produces; the reference then.
    if offset >= 0 { now.checked_add(d) } else { now.checked_sub(d) }.unwrap_or(now)
}

const NO_REFERENCE: &str = "protocol state carried outside transport::carry::at";

/// For `#[serde(with = "crate::carry::time")]` on an `Instant`.
pub mod time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        let now = reference().ok_or_else(|| ser::Error::custom(NO_REFERENCE))?;
        offset(*t, now).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        let now = reference().ok_or_else(|| de::Error::custom(NO_REFERENCE))?;
        Ok(instant(i64::deserialize(d)?, now))
    }
}

/// For `#[serde(with = "crate::carry::optional_time")]` on an `Option<Instant>`.
pub mod optional_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        let now = reference().ok_or_else(|| ser::Error::custom(NO_REFERENCE))?;
        t.map(|t| offset(t, now)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        let now = reference().ok_or_else(|| de::Error::custom(NO_REFERENCE))?;
        Ok(Option::<i64>::deserialize(d)?.map(|o| instant(o, now)))
    }
}

/// For `#[serde(with = "crate::carry::optional_tagged_time")]` on an `Option<(u32, Instant)>`
/// (a value and when it was last seen).
pub mod optional_tagged_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<(u32, Instant)>, s: S) -> Result<S::Ok, S::Error> {
        let now = reference().ok_or_else(|| ser::Error::custom(NO_REFERENCE))?;
        t.map(|(v, t)| (v, offset(t, now))).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(u32, Instant)>, D::Error> {
        let now = reference().ok_or_else(|| de::Error::custom(NO_REFERENCE))?;
        Ok(Option::<(u32, i64)>::deserialize(d)?.map(|(v, o)| (v, instant(o, now))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Timed {
        #[serde(with = "time")]
        opened: Instant,
        #[serde(with = "optional_time")]
        due: Option<Instant>,
    }

    #[test]
    fn instants_keep_their_distance_from_the_reference() {
        let t0 = Instant::now();
        let v = Timed { opened: t0, due: Some(t0 + Duration::from_millis(5)) };
        let json = at(t0 + Duration::from_millis(2), || serde_json::to_string(&v)).unwrap();
        // Decoded 10 ms later in another process: everything is 10 ms later.
        let later = t0 + Duration::from_millis(12);
        let back: Timed = at(later, || serde_json::from_str(&json)).unwrap();
        assert_eq!(back.opened, t0 + Duration::from_millis(10));
        assert_eq!(back.due, Some(t0 + Duration::from_millis(15)));
        assert!(serde_json::to_string(&v).unwrap_err().to_string().contains("outside"));
    }
}
