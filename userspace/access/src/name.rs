//! Names of clients and edges: what a token is issued for and what a client asks to be
//! reached by. One rule everywhere (issue, parse, registration), so a name that can be
//! issued is always one that can register, and a name is safe in logs, tables and file names.

use std::fmt;

/// Longest name, in characters (all ASCII, so also bytes).
pub const MAX_NAME_LEN: usize = 64;

/// Why a name is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(usize),
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "a name is 1 to 64 characters of A-Z a-z 0-9 . _ -";
        match self {
            Self::Empty => write!(f, "the name is empty; {RULE}"),
            Self::TooLong(n) => write!(f, "the name is {n} characters long; {RULE}"),
            Self::BadChar(c) => write!(f, "the name contains {c:?}; {RULE}"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks `name` against the rule: 1..=[`MAX_NAME_LEN`] characters of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(NameError::BadChar(c));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name("alice"), Ok(()));
        assert_eq!(check_name("edge-1.eu_west"), Ok(()));
        assert_eq!(check_name(&"a".repeat(64)), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"a".repeat(65)), Err(NameError::TooLong(65)));
        assert_eq!(check_name("al ice"), Err(NameError::BadChar(' ')));
        assert_eq!(check_name("alïce"), Err(NameError::BadChar('ï')));
        assert_eq!(check_name("a/b"), Err(NameError::BadChar('/')));
        assert!(check_name("a\n").unwrap_err().to_string().contains("1 to 64"));
    }
}
