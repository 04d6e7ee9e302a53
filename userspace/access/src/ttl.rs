//! Token lifetimes as people type them (`30s`, `15m`, `24h`, `7d`), for the CLI. Bounded, so
//! that `iat + ttl` can never overflow and a typo of extra digits is caught, not honoured.

use std::fmt;

/// Longest lifetime a token can be issued for: ten years.
pub const MAX_TTL_S: u64 = 3650 * 86_400;

/// A lifetime that is not `<N>s`, `<N>m`, `<N>h` or `<N>d`, or is 0 or too long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlError {
    pub input: String,
    pub problem: &'static str,
}

impl fmt::Display for TtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ttl {:?}: {}; give a whole number and a unit: 30s, 15m, 24h or 7d (at most 3650d)",
            self.input, self.problem
        )
    }
}

impl std::error::Error for TtlError {}

/// The lifetime `s` in seconds.
pub fn parse_ttl(s: &str) -> Result<u64, TtlError> {
    let err = |problem| TtlError { input: s.to_string(), problem };
    let unit = s.chars().next_back().ok_or(err("empty"))?;
    let digits = &s[..s.len() - unit.len_utf8()];
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(err("no unit")),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("not a whole number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("too long"))?;
    let secs = n.checked_mul(scale).filter(|&t| t <= MAX_TTL_S).ok_or(err("too long"))?;
    if secs == 0 {
        return Err(err("zero"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_ttl("30s"), Ok(30));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert_eq!(parse_ttl("3650d"), Ok(MAX_TTL_S));
    }

    #[test]
    fn bad_forms_say_what_is_accepted() {
        for bad in [
            "",
            "s",
            "30",
            "30x",
            "1.5h",
            "-1d",
            "+1d",
            " 1d",
            "1 d",
            "0s",
            "3651d",
            "1d1",
            "99999999999999999999999d",
            "1é",
            "é",
        ] {
            let e = parse_ttl(bad).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("30s, 15m, 24h or 7d"), "{bad:?}: {text}");
        }
        assert_eq!(parse_ttl("0m").unwrap_err().problem, "zero");
        assert_eq!(parse_ttl("24").unwrap_err().problem, "no unit");
    }
}
