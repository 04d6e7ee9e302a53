use ring::rand::SystemRandom;

use super::*;
use crate::testkit::{DAY, NOW_S, World};

fn claims(op: &SigningKey, subject: &SigningKey) -> Claims {
    Claims::new(
        Role::Client,
        "alice",
        Op::ALL.to_vec(),
        subject.public(),
        op.public(),
        NOW_S,
        DAY,
        &SystemRandom::new(),
    )
    .unwrap()
}

fn keys() -> (SigningKey, SigningKey) {
    let rng = SystemRandom::new();
    (SigningKey::generate(&rng).unwrap(), SigningKey::generate(&rng).unwrap())
}

/// `text` with its claims part replaced by `f(claims JSON)`, signature kept.
fn with_claims(text: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let parts: Vec<&str> = text.split('.').collect();
    let mut json = b64::decode(parts[1]).unwrap();
    f(&mut json);
    format!("{}.{}.{}", parts[0], b64::encode(&json), parts[2])
}

#[test]
fn issue_verify_roundtrip() {
    let (op, subject) = keys();
    let c = claims(&op, &subject);
    assert_eq!(c.id.len(), 32);
    assert_eq!(c.exp, NOW_S + DAY);
    let text = issue(&op, &c).unwrap();
    assert!(text.starts_with("wecan1.") && text.len() <= MAX_TOKEN_LEN, "{text}");
    let t = Token::parse(&text).unwrap();
    assert_eq!(t.as_str(), text);
    assert_eq!(t.verify(&[op.public()], NOW_S), Ok(&c));
    // Among several trusted operators, at the last second of its life.
    let (other, _) = keys();
    assert_eq!(t.verify(&[other.public(), op.public()], NOW_S + DAY - 1), Ok(&c));
    assert_ne!(claims(&op, &subject).id, c.id, "ids are random");
    assert!(c.allows(Op::Attach));
}

#[test]
fn wrong_operator_is_unknown_issuer() {
    let (op, subject) = keys();
    let (other, _) = keys();
    let t = Token::parse(&issue(&op, &claims(&op, &subject)).unwrap()).unwrap();
    assert_eq!(t.verify(&[other.public()], NOW_S), Err(TokenError::UnknownIssuer(op.public())));
    assert_eq!(t.verify(&[], NOW_S), Err(TokenError::UnknownIssuer(op.public())));
    // Claiming a trusted issuer does not help a token another key signed.
    let mut c = claims(&op, &subject);
    c.iss = other.public();
    assert_eq!(issue(&op, &c), Err(TokenError::IssuerMismatch));
    let forged = with_claims(&issue(&op, &claims(&op, &subject)).unwrap(), |json| {
        let s = String::from_utf8(json.clone()).unwrap();
        *json = s.replace(&op.public().to_string(), &other.public().to_string()).into_bytes();
    });
    let t = Token::parse(&forged).unwrap();
    assert_eq!(t.verify(&[other.public()], NOW_S), Err(TokenError::BadSignature));
}

#[test]
fn flipped_bytes_are_bad_signatures() {
    let (op, subject) = keys();
    let text = issue(&op, &claims(&op, &subject)).unwrap();
    let trusted = [op.public()];
    // Every bit of the signature.
    let parts: Vec<&str> = text.split('.').collect();
    let sig = b64::decode(parts[2]).unwrap();
    for bit in 0..sig.len() * 8 {
        let mut s = sig.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        let t = Token::parse(&format!("{}.{}.{}", parts[0], parts[1], b64::encode(&s))).unwrap();
        assert_eq!(t.verify(&trusted, NOW_S), Err(TokenError::BadSignature), "sig bit {bit}");
    }
    // Claims changed so they still parse: the name, the expiry, the role.
    for (from, to) in [("alice", "alica"), ("\"exp\":1700", "\"exp\":1800"), ("client", "edge")] {
        let changed = with_claims(&text, |json| {
            let s = String::from_utf8(json.clone()).unwrap();
            assert!(s.contains(from), "{s}");
            *json = s.replacen(from, to, 1).into_bytes();
        });
        let t = Token::parse(&changed).unwrap();
        assert_eq!(t.verify(&trusted, NOW_S), Err(TokenError::BadSignature), "{from} → {to}");
    }
    // Any byte of the claims JSON: either it no longer parses or it no longer verifies.
    let json_len = b64::decode(parts[1]).unwrap().len();
    for i in 0..json_len {
        let changed = with_claims(&text, |json| json[i] ^= 0x01);
        if let Ok(t) = Token::parse(&changed) {
            assert!(t.verify(&trusted, NOW_S).is_err(), "claims byte {i}");
        }
    }
    // The version prefix is signed too.
    let t = Token::parse(&text).unwrap();
    assert_eq!(t.signed_len, parts[0].len() + 1 + parts[1].len());
}

#[test]
fn expiry_and_issue_time() {
    let (op, subject) = keys();
    let c = claims(&op, &subject);
    let t = Token::parse(&issue(&op, &c).unwrap()).unwrap();
    let trusted = [op.public()];
    let exp = NOW_S + DAY;
    assert_eq!(t.verify(&trusted, exp), Err(TokenError::Expired { exp, now: exp }));
    assert_eq!(t.verify(&trusted, exp + 5), Err(TokenError::Expired { exp, now: exp + 5 }));
    assert!(t.verify(&trusted, exp + 5).unwrap_err().to_string().contains("expired 5 s ago"));
    // Up to 60 s of clock difference is tolerated, not more.
    assert!(t.verify(&trusted, NOW_S - 60).is_ok());
    assert_eq!(
        t.verify(&trusted, NOW_S - 61),
        Err(TokenError::NotYetValid { iat: NOW_S, now: NOW_S - 61 })
    );
    assert!(t.verify(&trusted, 0).is_err());
}

#[test]
fn claims_rules_hold_at_issue_and_parse() {
    let (op, subject) = keys();
    let rng = SystemRandom::new();
    let new = |name: &str, ops: Vec<Op>, ttl| {
        Claims::new(Role::Client, name, ops, subject.public(), op.public(), NOW_S, ttl, &rng)
    };
    assert_eq!(new("", vec![], DAY).unwrap_err(), TokenError::Name(NameError::Empty));
    assert!(matches!(new("a b", vec![], DAY), Err(TokenError::Name(NameError::BadChar(' ')))));
    assert!(matches!(new(&"x".repeat(65), vec![], DAY), Err(TokenError::Name(_))));
    assert_eq!(new("a", vec![], 0).unwrap_err(), TokenError::BadLifetime);
    assert_eq!(new("a", vec![], u64::MAX).unwrap_err(), TokenError::BadLifetime);
    assert_eq!(
        new("a", vec![Op::Send, Op::Send], DAY).unwrap_err(),
        TokenError::DuplicateOp(Op::Send)
    );
    assert!(new("a", vec![], DAY).is_ok(), "no operations is a valid, useless token");

    // Claims edited before signing (so the signature is good) are still refused by parse.
    let good = claims(&op, &subject);
    let signed = |c: &Claims| {
        let json = serde_json::to_vec(c).unwrap();
        let s = format!("wecan1.{}", b64::encode(&json));
        format!("{s}.{}", b64::encode(&op.sign(s.as_bytes())))
    };
    let mut c = good.clone();
    c.name = "bad name".into();
    assert!(matches!(Token::parse(&signed(&c)), Err(TokenError::Name(_))));
    assert!(matches!(issue(&op, &c), Err(TokenError::Name(_))));
    let mut c = good.clone();
    c.id = "ABC".into();
    assert_eq!(Token::parse(&signed(&c)).unwrap_err(), TokenError::BadId);
    c.id = "G".repeat(32);
    assert_eq!(Token::parse(&signed(&c)).unwrap_err(), TokenError::BadId);
    let mut c = good.clone();
    c.exp = c.iat;
    assert_eq!(Token::parse(&signed(&c)).unwrap_err(), TokenError::BadLifetime);
    // Unknown fields, unknown roles and operations.
    let extra = with_claims(&signed(&good), |json| {
        json.pop();
        json.extend_from_slice(b",\"admin\":true}");
    });
    let e = Token::parse(&extra).unwrap_err();
    assert!(e.to_string().contains("unknown field `admin`"), "{e}");
    for (from, to) in [("client", "root"), ("attach", "delete")] {
        let t = with_claims(&signed(&good), |json| {
            *json = String::from_utf8(json.clone()).unwrap().replacen(from, to, 1).into_bytes();
        });
        assert!(matches!(Token::parse(&t), Err(TokenError::ClaimsJson(_))), "{to}");
    }
    // The largest claims there can be still make a token within the bound.
    let mut c = good.clone();
    c.name = "n".repeat(crate::name::MAX_NAME_LEN);
    (c.iat, c.exp) = (u64::MAX - 1, u64::MAX);
    let t = issue(&op, &c).unwrap();
    assert!(t.len() <= MAX_TOKEN_LEN && Token::parse(&t).is_ok(), "{}", t.len());
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let (op, subject) = keys();
    let good = issue(&op, &claims(&op, &subject)).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    let cases: Vec<(String, TokenError)> = vec![
        (String::new(), TokenError::NotAToken),
        (".".into(), TokenError::NotAToken),
        ("wecan1".into(), TokenError::Structure),
        ("wecan1.".into(), TokenError::Structure),
        ("wecan1..".into(), TokenError::SignatureLength(0)),
        ("wecan2.a.b".into(), TokenError::NotAToken),
        ("WECAN1.a.b".into(), TokenError::NotAToken),
        (format!("{}.{}", parts[0], parts[1]), TokenError::Structure),
        (format!("{good}.x"), TokenError::Structure),
        (format!("{}.{}!.{}", parts[0], parts[1], parts[2]), TokenError::ClaimsEncoding),
        (format!("{}.{}.{}=", parts[0], parts[1], parts[2]), TokenError::SignatureEncoding),
        (format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]), TokenError::SignatureLength(30)),
        (
            format!("wecan1.{}.{}", b64::encode(b"{}"), parts[2]),
            TokenError::ClaimsJson(String::new()),
        ),
        (
            format!("wecan1.{}.{}", b64::encode(b"\xff"), parts[2]),
            TokenError::ClaimsJson(String::new()),
        ),
        (
            format!("wecan1.{}.{}", b64::encode(b"[]"), parts[2]),
            TokenError::ClaimsJson(String::new()),
        ),
        (format!(" {good}"), TokenError::NotAToken),
        (format!("{good}\n"), TokenError::SignatureEncoding),
        (long, TokenError::TooLong(MAX_TOKEN_LEN + 1)),
        ("wecan-pk:AAAA".into(), TokenError::NotAToken),
        ("ünïcödé.ü.ü".into(), TokenError::NotAToken),
        ("wecan1.ü.ü".into(), TokenError::ClaimsEncoding),
    ];
    for (text, want) in cases {
        let got = Token::parse(&text).unwrap_err();
        match want {
            TokenError::ClaimsJson(_) => {
                assert!(matches!(got, TokenError::ClaimsJson(_)), "{text:?}: {got}")
            }
            want => assert_eq!(got, want, "{text:?}"),
        }
        assert!(!got.to_string().is_empty());
    }
    // Every prefix of a good token, and every single-character change.
    for n in 0..good.len() {
        assert!(Token::parse(&good[..n]).is_err(), "prefix {n}");
    }
    let trusted = [op.public()];
    for i in 0..good.len() {
        let mut b = good.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let Ok(text) = String::from_utf8(b) else { continue };
        if let Ok(t) = Token::parse(&text) {
            assert!(t.verify(&trusted, NOW_S).is_err(), "char {i} changed and still verifies");
        }
    }
}

#[test]
fn ops_and_roles_by_name() {
    for op in Op::ALL {
        assert_eq!(op.name().parse::<Op>(), Ok(op));
        assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{op}\""));
    }
    let e = "write".parse::<Op>().unwrap_err();
    assert!(e.to_string().contains("attach, send or receive"), "{e}");
    assert_eq!(serde_json::to_string(&Role::Edge).unwrap(), "\"edge\"");
    let w = World::new();
    assert_eq!(w.edge.claims().role, Role::Edge);
    assert_eq!(Role::Client.to_string(), "client");
}
