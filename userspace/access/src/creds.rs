//! The credentials file a client or an edge holds: its token, the seed of the key the token
//! is for, and the operator keys it trusts (a client uses them to verify its edge's token, an
//! edge to verify its clients'). One small TOML file, so one file is all a client needs:
//!
//! ```toml
//! token = "wecan1...."
//! seed = "<43 base64url characters>"
//! operators = ["wecan-pk:..."]
//! ```
//!
//! Reading checks that the seed belongs to the token (a mixed-up pair would otherwise fail
//! only at attach time, with a less helpful refusal). Trust and expiry are checked where a
//! token is used, with that moment's clock.

use std::fmt;

use crate::{
    key::{KeyError, PublicKey, SigningKey},
    token::{Claims, Token, TokenError},
};

/// A holder's token, key and trusted operators.
#[derive(Clone, Debug)]
pub struct Creds {
    token: Token,
    key: SigningKey,
    operators: Vec<PublicKey>,
}

impl Creds {
    /// Credentials from their parts; the key must be the token's subject key.
    pub fn new(
        token: Token,
        key: SigningKey,
        operators: Vec<PublicKey>,
    ) -> Result<Self, CredsError> {
        if operators.is_empty() {
            return Err(CredsError::NoOperators);
        }
        let claimed = token.unverified_claims().key;
        if key.public() != claimed {
            return Err(CredsError::SeedMismatch { seed: key.public(), token: claimed });
        }
        Ok(Self { token, key, operators })
    }

    /// Credentials from the text of a credentials file.
    pub fn parse(text: &str) -> Result<Self, CredsError> {
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| CredsError::Syntax(e.message().into()))?;
        let mut string = |field: &'static str| match table.remove(field) {
            None => Err(CredsError::Missing(field)),
            Some(toml::Value::String(s)) => Ok(s),
            Some(v) => Err(CredsError::NotAString { field, found: v.type_str() }),
        };
        let token = Token::parse(&string("token")?).map_err(CredsError::Token)?;
        let key = SigningKey::from_seed_text(&string("seed")?).map_err(CredsError::Seed)?;
        let operators = match table.remove("operators") {
            None => return Err(CredsError::Missing("operators")),
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    toml::Value::String(s) => {
                        s.parse().map_err(|e| CredsError::Operator { index: i, error: e })
                    }
                    v => Err(CredsError::OperatorNotAString { index: i, found: v.type_str() }),
                })
                .collect::<Result<Vec<PublicKey>, _>>()?,
            Some(v) => return Err(CredsError::OperatorsNotAList(v.type_str())),
        };
        if let Some(field) = table.keys().next() {
            return Err(CredsError::Unknown(field.clone()));
        }
        Self::new(token, key, operators)
    }

    /// The file's text ([`Creds::parse`] reads it back).
    pub fn to_toml(&self) -> String {
        // Tokens, seeds and keys are base64url, dots, dashes and a colon: nothing TOML would
        // need escaped inside a basic string.
        let ops: Vec<String> = self.operators.iter().map(|k| format!("\"{k}\"")).collect();
        format!(
            "# wecan credentials for {} {:?}: keep this file secret, it holds the seed.\ntoken = \"{}\"\nseed = \"{}\"\noperators = [{}]\n",
            self.claims().role,
            self.claims().name,
            self.token,
            self.key.seed_text(),
            ops.join(", ")
        )
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The token's claims, not verified (the holder's own: for display and for filling in
    /// requests).
    pub fn claims(&self) -> &Claims {
        self.token.unverified_claims()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The operator keys this holder trusts.
    pub fn operators(&self) -> &[PublicKey] {
        &self.operators
    }
}

/// Why a credentials file cannot be read; each names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredsError {
    Syntax(String),
    Missing(&'static str),
    NotAString { field: &'static str, found: &'static str },
    Unknown(String),
    Token(TokenError),
    Seed(KeyError),
    OperatorsNotAList(&'static str),
    OperatorNotAString { index: usize, found: &'static str },
    Operator { index: usize, error: KeyError },
    NoOperators,
    SeedMismatch { seed: PublicKey, token: PublicKey },
}

impl fmt::Display for CredsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REISSUE: &str = "use the file `wecan token issue` wrote";
        match self {
            Self::Syntax(e) => write!(
                f,
                "not a credentials file (TOML: {e}); it holds token = \"...\", seed = \"...\", operators = [\"...\"]"
            ),
            Self::Missing("operators") => f.write_str(
                "`operators` is missing; add operators = [\"wecan-pk:...\"], the operator keys to trust",
            ),
            Self::Missing(field) => write!(f, "`{field}` is missing; {REISSUE}"),
            Self::NotAString { field, found } => {
                write!(f, "`{field}` is not a string (found {found}); write {field} = \"...\"")
            }
            Self::Unknown(field) => write!(
                f,
                "unknown field `{field}`; a credentials file has only token, seed and operators"
            ),
            Self::Token(e) => write!(f, "`token`: {e}"),
            Self::Seed(e) => write!(f, "`seed`: {e}"),
            Self::OperatorsNotAList(found) => write!(
                f,
                "`operators` is not a list (found {found}); write operators = [\"wecan-pk:...\"]"
            ),
            Self::OperatorNotAString { index, found } => write!(
                f,
                "`operators[{index}]` is not a string (found {found}); write the key in quotes"
            ),
            Self::Operator { index, error } => write!(f, "`operators[{index}]`: {error}"),
            Self::NoOperators => f.write_str(
                "`operators` is empty; list at least one operator key to trust (`wecan token keygen` printed it)",
            ),
            Self::SeedMismatch { seed, token } => write!(
                f,
                "`seed` is the key {seed} but `token` is for {token}: they come from different issues; {REISSUE}"
            ),
        }
    }
}

impl std::error::Error for CredsError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{NOW_S, World};

    #[test]
    fn roundtrip() {
        let w = World::new();
        let text = w.alice.to_toml();
        let back = Creds::parse(&text).unwrap();
        assert_eq!(back.token(), w.alice.token());
        assert_eq!(back.signing_key().public(), w.alice.signing_key().public());
        assert_eq!(back.operators(), w.alice.operators());
        assert_eq!(back.claims().name, "alice");
        assert!(back.token().verify(back.operators(), NOW_S).is_ok());
    }

    #[test]
    fn every_error_names_the_field() {
        let w = World::new();
        let (token, seed) = (w.alice.token().to_string(), w.alice.signing_key().seed_text());
        let op = w.operator.public().to_string();
        let file =
            |t: &str, s: &str, o: &str| format!("token = {t}\nseed = {s}\noperators = {o}\n");
        let (t, s, o) = (format!("{token:?}"), format!("{seed:?}"), format!("[{op:?}]"));
        let bob_seed = format!("{:?}", w.bob.signing_key().seed_text());
        let cases: Vec<(String, &str)> = vec![
            ("token = ".into(), "TOML"),
            (format!("seed = {s}\noperators = {o}"), "`token` is missing"),
            (format!("token = {t}\noperators = {o}"), "`seed` is missing"),
            (format!("token = {t}\nseed = {s}"), "`operators` is missing"),
            (file("1", &s, &o), "`token` is not a string (found integer)"),
            (file("\"wecan1.x\"", &s, &o), "`token`: a token is three parts"),
            (file("\"abc\"", &s, &o), "`token`: a token starts with"),
            (file(&t, "\"a b\"", &o), "`seed`: a seed is 43 base64url"),
            (file(&t, "\"abc\"", &o), "`seed`: a seed is 32 bytes; this one is 2"),
            (file(&t, &format!("{op:?}"), &o), "`seed`: this is a public key"),
            (file(&t, &s, &format!("{op:?}")), "`operators` is not a list (found string)"),
            (file(&t, &s, "[]"), "`operators` is empty"),
            (file(&t, &s, "[1]"), "`operators[0]` is not a string (found integer)"),
            (file(&t, &s, &format!("[{op:?}, \"pk\"]")), "`operators[1]`: a public key starts"),
            (file(&t, &bob_seed, &o), "`seed` is the key"),
            (format!("{}extra = 1\n", file(&t, &s, &o)), "unknown field `extra`"),
        ];
        for (text, want) in cases {
            let e = Creds::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}\n=> {e}\n(wanted {want:?})");
        }
        assert!(Creds::parse(&file(&t, &s, &o)).is_ok());
    }
}
