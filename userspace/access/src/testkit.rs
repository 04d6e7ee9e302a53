//! Fixtures for the crate's tests: an operator, two clients and an edge, real keys.

use ring::rand::SystemRandom;

use crate::{
    creds::Creds,
    key::SigningKey,
    token::{Claims, Op, Role, Token, issue},
};

pub(crate) const NOW_S: u64 = 1_700_000_000;
pub(crate) const NOW_MS: u64 = NOW_S * 1000;
pub(crate) const DAY: u64 = 86_400;
pub(crate) const EDGE: u32 = 100;

pub(crate) struct World {
    pub operator: SigningKey,
    pub alice: Creds,
    pub bob: Creds,
    pub edge: Creds,
}

impl World {
    pub fn new() -> Self {
        let operator = SigningKey::generate(&SystemRandom::new()).unwrap();
        let alice = creds(&operator, Role::Client, "alice", &Op::ALL, NOW_S, DAY);
        let bob = creds(&operator, Role::Client, "bob", &Op::ALL, NOW_S, DAY);
        let edge = creds(&operator, Role::Edge, "edge-1", &Op::ALL, NOW_S, DAY);
        Self { operator, alice, bob, edge }
    }

    /// Credentials issued by this world's operator, trusting it.
    pub fn creds(&self, role: Role, name: &str, ops: &[Op], iat: u64, ttl: u64) -> Creds {
        creds(&self.operator, role, name, ops, iat, ttl)
    }
}

/// Credentials for a fresh subject key, issued by `operator` and trusting it.
pub(crate) fn creds(
    operator: &SigningKey,
    role: Role,
    name: &str,
    ops: &[Op],
    iat: u64,
    ttl: u64,
) -> Creds {
    let rng = SystemRandom::new();
    let key = SigningKey::generate(&rng).unwrap();
    let claims =
        Claims::new(role, name, ops.to_vec(), key.public(), operator.public(), iat, ttl, &rng)
            .unwrap();
    let token = Token::parse(&issue(operator, &claims).unwrap()).unwrap();
    Creds::new(token, key, vec![operator.public()]).unwrap()
}
