//! The handshake end to end with real keys, and every refusal the edge decides from bytes.

use rand::{Rng, SeedableRng, rngs::SmallRng};
use ring::rand::SystemRandom;

use super::*;
use crate::{
    b64,
    creds::Creds,
    key::SigningKey,
    testkit::{self, DAY, EDGE, NOW_MS, NOW_S, World},
    token::{Op, Role},
};

const ADDR: u32 = 0x0a00_0001;

/// A full handshake of `client` as `name` with `w.edge`: the keys of both ends.
fn handshake(w: &World, client: &Creds) -> (Attached, wecan_common::maps::HopKeys) {
    let (pending, reg) = Attach::start(client, &client.claims().name, EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS + 20).unwrap();
    let (acc, edge_keys) = accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap();
    (pending.finish(&acc, NOW_MS + 40).unwrap(), edge_keys)
}

/// A Register payload built by hand: any token text, signed by any key.
fn register(token: &str, key: &SigningKey, name: &str, edge: u32, ts_ms: u64) -> Vec<u8> {
    let mut r = Register {
        token: token.into(),
        name: name.into(),
        edge_node: edge,
        eph_pub: [9; 32],
        ts_ms,
        nonce: [1; 16],
        sig: [0; 64],
    };
    r.sig = key.sign(&r.transcript());
    r.encode()
}

#[test]
fn full_handshake_keys_match_crosswise() {
    let w = World::new();
    let (pending, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    assert_eq!(reg[0], msg::REGISTER);
    let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS + 20).unwrap();
    assert_eq!(v.claims.name, "alice");
    assert_eq!(v.claims.key, w.alice.signing_key().public());
    assert_eq!(v.nonce, pending.nonce());
    assert_eq!(v.ts_ms, NOW_MS);
    let (acc, edge_keys) = accept(&v, &w.edge, EDGE, ADDR, 3, 5_000, 30_000).unwrap();
    assert_eq!(acc[0], msg::ACCEPTED);
    let a = pending.finish(&acc, NOW_MS + 40).unwrap();
    assert_eq!(a.overlay_addr, ADDR);
    assert_eq!(a.edge_node, EDGE);
    assert_eq!((a.keepalive_ms, a.timeout_ms), (5_000, 30_000));
    assert_eq!(a.edge_name, "edge-1");
    assert_eq!((a.keys.id, edge_keys.id), (3, 3));
    assert_eq!(a.keys.tx, edge_keys.rx, "what the client tags, the edge verifies");
    assert_eq!(a.keys.rx, edge_keys.tx, "what the edge tags, the client verifies");
    assert_ne!(a.keys.tx, a.keys.rx, "each direction its own key");
    assert_ne!(a.keys.tx, [0, 0]);

    // Another attachment of the same client: fresh ephemerals, fresh keys.
    let (b, _) = handshake(&w, &w.alice);
    assert_ne!(b.keys, a.keys);
}

#[test]
fn every_refusal_from_bytes() {
    let w = World::new();
    let trusted = w.edge.operators();
    let alice = w.alice.signing_key();
    let alice_token = w.alice.token().to_string();
    let start =
        |c: &Creds, name: &str, edge: u32, now: u64| Attach::start(c, name, edge, now).unwrap().1;
    let verify = |payload: &[u8]| verify_register(payload, trusted, EDGE, NOW_MS).map(|_| ());

    // Malformed: not a Register at all.
    let good = start(&w.alice, "alice", EDGE, NOW_MS);
    let mut trailing = good.clone();
    trailing.push(0);
    for bad in [
        vec![],
        vec![msg::REGISTER],
        vec![0; 40],
        vec![msg::ACCEPTED; 300],
        refuse([0; 16], Refusal::Full),
        good[..good.len() - 1].to_vec(),
        trailing,
    ] {
        assert_eq!(verify(&bad), Err(Refusal::Malformed), "{bad:?}");
    }
    assert_eq!(verify(&good), Ok(()));

    // BadToken: a token that does not parse, however well the registration is signed.
    for t in ["", "wecan1.x.y", "garbage", &alice_token[..alice_token.len() - 2]] {
        assert_eq!(verify(&register(t, alice, "alice", EDGE, NOW_MS)), Err(Refusal::BadToken));
    }

    // UnknownIssuer: another operator's client.
    let stranger_op = SigningKey::generate(&SystemRandom::new()).unwrap();
    let stranger = testkit::creds(&stranger_op, Role::Client, "alice", &Op::ALL, NOW_S, DAY);
    assert_eq!(verify(&start(&stranger, "alice", EDGE, NOW_MS)), Err(Refusal::UnknownIssuer));

    // BadSignature: alice's token with one signature bit flipped.
    let (head, sig) = alice_token.rsplit_once('.').unwrap();
    let mut sig = b64::decode(sig).unwrap();
    sig[10] ^= 0x20;
    let forged = format!("{head}.{}", b64::encode(&sig));
    assert_eq!(
        verify(&register(&forged, alice, "alice", EDGE, NOW_MS)),
        Err(Refusal::BadSignature)
    );

    // Expired, NotYetValid.
    let old = w.creds(Role::Client, "alice", &Op::ALL, NOW_S - 2 * DAY, DAY);
    assert_eq!(verify(&start(&old, "alice", EDGE, NOW_MS)), Err(Refusal::Expired));
    let future = w.creds(Role::Client, "alice", &Op::ALL, NOW_S + 3_600, DAY);
    assert_eq!(verify(&start(&future, "alice", EDGE, NOW_MS)), Err(Refusal::NotYetValid));

    // WrongRole: an edge's token used to attach.
    assert_eq!(verify(&start(&w.edge, "edge-1", EDGE, NOW_MS)), Err(Refusal::WrongRole));

    // NotAllowed: a token without attach.
    let no_attach = w.creds(Role::Client, "alice", &[Op::Send, Op::Receive], NOW_S, DAY);
    assert_eq!(verify(&start(&no_attach, "alice", EDGE, NOW_MS)), Err(Refusal::NotAllowed));

    // WrongName: alice asking to be reached as bob.
    assert_eq!(verify(&start(&w.alice, "bob", EDGE, NOW_MS)), Err(Refusal::WrongName));

    // WrongEdge: a registration for another edge (replayed here, say).
    assert_eq!(verify(&start(&w.alice, "alice", EDGE + 1, NOW_MS)), Err(Refusal::WrongEdge));

    // BadClientSignature: alice's token with bob's key; a changed field after signing.
    let bob = w.bob.signing_key();
    assert_eq!(
        verify(&register(&alice_token, bob, "alice", EDGE, NOW_MS)),
        Err(Refusal::BadClientSignature)
    );
    let Ok(Msg::Register(mut r)) = Msg::decode(&good) else { panic!() };
    r.ts_ms += 1;
    assert_eq!(verify(&r.encode()), Err(Refusal::BadClientSignature));
    let Ok(Msg::Register(mut r)) = Msg::decode(&good) else { panic!() };
    r.eph_pub[0] ^= 1;
    assert_eq!(verify(&r.encode()), Err(Refusal::BadClientSignature));
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 0x80;
    assert_eq!(verify(&flipped), Err(Refusal::BadClientSignature));

    // StaleTimestamp: more than 30 s either way; 30 s exactly is still fine.
    assert_eq!(
        verify(&start(&w.alice, "alice", EDGE, NOW_MS - 30_001)),
        Err(Refusal::StaleTimestamp)
    );
    assert_eq!(
        verify(&start(&w.alice, "alice", EDGE, NOW_MS + 30_001)),
        Err(Refusal::StaleTimestamp)
    );
    assert_eq!(verify(&start(&w.alice, "alice", EDGE, NOW_MS - 30_000)), Ok(()));
    assert_eq!(verify(&start(&w.alice, "alice", EDGE, NOW_MS + 30_000)), Ok(()));
}

#[test]
fn the_first_failing_check_is_the_reason() {
    let w = World::new();
    let trusted = w.edge.operators();
    // An expired edge-role token, wrong name, wrong edge, stale: Expired comes first.
    let old_edge = w.creds(Role::Edge, "edge-9", &[], NOW_S - 2 * DAY, DAY);
    let (_, reg) = Attach::start(&old_edge, "zed", EDGE + 1, NOW_MS - 60_000).unwrap();
    assert_eq!(verify_register(&reg, trusted, EDGE, NOW_MS), Err(Refusal::Expired));
    // Valid now: the role.
    let edge = w.creds(Role::Edge, "edge-9", &[], NOW_S, DAY);
    let (_, reg) = Attach::start(&edge, "zed", EDGE + 1, NOW_MS - 60_000).unwrap();
    assert_eq!(verify_register(&reg, trusted, EDGE, NOW_MS), Err(Refusal::WrongRole));
    // A client without attach, wrong name, wrong edge: NotAllowed.
    let c = w.creds(Role::Client, "carol", &[], NOW_S, DAY);
    let (_, reg) = Attach::start(&c, "zed", EDGE + 1, NOW_MS - 60_000).unwrap();
    assert_eq!(verify_register(&reg, trusted, EDGE, NOW_MS), Err(Refusal::NotAllowed));
    // Allowed: name before edge before timestamp.
    let (_, reg) = Attach::start(&w.alice, "zed", EDGE + 1, NOW_MS - 60_000).unwrap();
    assert_eq!(verify_register(&reg, trusted, EDGE, NOW_MS), Err(Refusal::WrongName));
    let (_, reg) = Attach::start(&w.alice, "alice", EDGE + 1, NOW_MS - 60_000).unwrap();
    assert_eq!(verify_register(&reg, trusted, EDGE, NOW_MS), Err(Refusal::WrongEdge));
}

#[test]
fn tampered_accepted_fails() {
    let w = World::new();
    let run = |tamper: &dyn Fn(&mut Vec<u8>)| {
        let (pending, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
        let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS).unwrap();
        let (mut acc, _) = accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap();
        tamper(&mut acc);
        pending.finish(&acc, NOW_MS)
    };
    assert!(run(&|_| {}).is_ok());
    let len = run_len(&w);
    for i in 0..len {
        let r = run(&|acc: &mut Vec<u8>| acc[i] ^= 1 << (i % 8));
        assert!(r.is_err(), "byte {i} flipped and accepted");
    }
    assert!(run(&|acc: &mut Vec<u8>| acc.push(0)).is_err());
    assert!(
        run(&|acc: &mut Vec<u8>| {
            acc.pop();
        })
        .is_err()
    );
}

fn run_len(w: &World) -> usize {
    let (_, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS).unwrap();
    accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap().0.len()
}

#[test]
fn a_reply_to_another_registration_fails() {
    let w = World::new();
    let (first, _) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let (second, reg2) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg2, w.edge.operators(), EDGE, NOW_MS).unwrap();
    let (acc, _) = accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap();
    assert_eq!(first.finish(&acc, NOW_MS).unwrap_err(), AttachError::WrongNonce);
    assert!(second.finish(&acc, NOW_MS).is_ok());

    // The right nonce, but signed over another client ephemeral key: a replayed answer
    // with its nonce patched is caught by the signature.
    let (third, reg3) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let Ok(Msg::Accepted(mut a)) = Msg::decode(&acc) else { panic!() };
    let Some(n3) = register_nonce(&reg3) else { panic!() };
    a.nonce = n3;
    assert_eq!(third.finish(&a.encode(), NOW_MS).unwrap_err(), AttachError::BadEdgeSignature);

    // Refused: for our nonce it is the reason; for another it is ignored.
    let (p, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let nonce = register_nonce(&reg).unwrap();
    assert_eq!(p.nonce(), nonce);
    assert_eq!(
        p.finish(&refuse(nonce, Refusal::Full), NOW_MS),
        Err(AttachError::Refused(Refusal::Full))
    );
    let (p, _) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    assert_eq!(p.finish(&refuse(nonce, Refusal::Full), NOW_MS), Err(AttachError::WrongNonce));
    // A Register is not a reply; bytes are not either.
    let (p, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    assert_eq!(p.finish(&reg, NOW_MS), Err(AttachError::NotAReply));
    let (p, _) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    assert!(matches!(p.finish(&[2, 0, 1], NOW_MS), Err(AttachError::Malformed(_))));
}

#[test]
fn the_edge_must_prove_itself() {
    let w = World::new();
    let attempt = |edge: &Creds, reply_node: u32, now: u64| {
        let (p, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
        let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS).unwrap();
        let (acc, _) = accept(&v, edge, reply_node, ADDR, 1, 5_000, 30_000).unwrap();
        p.finish(&acc, now)
    };
    assert!(attempt(&w.edge, EDGE, NOW_MS).is_ok());

    // An edge token from an operator alice does not trust.
    let rogue_op = SigningKey::generate(&SystemRandom::new()).unwrap();
    let rogue = testkit::creds(&rogue_op, Role::Edge, "edge-1", &Op::ALL, NOW_S, DAY);
    assert_eq!(
        attempt(&rogue, EDGE, NOW_MS).unwrap_err(),
        AttachError::EdgeToken(crate::TokenError::UnknownIssuer(rogue_op.public()))
    );
    // The edge's token expired (the client checks it with its own clock).
    assert!(matches!(
        attempt(&w.edge, EDGE, NOW_MS + 2 * DAY * 1000).unwrap_err(),
        AttachError::EdgeToken(crate::TokenError::Expired { .. })
    ));
    // Another node answering.
    assert_eq!(
        attempt(&w.edge, EDGE + 1, NOW_MS).unwrap_err(),
        AttachError::WrongEdge { asked: EDGE, replied: EDGE + 1 }
    );

    // A client (bob) posing as the edge: accept refuses client creds, and a hand-signed
    // Accepted with bob's token is not an edge's.
    let (p, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS).unwrap();
    assert_eq!(
        accept(&v, &w.bob, EDGE, ADDR, 1, 5_000, 30_000).unwrap_err(),
        AcceptError::NotEdgeCreds(Role::Client)
    );
    let (acc, _) = accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap();
    let Ok(Msg::Accepted(mut a)) = Msg::decode(&acc) else { panic!() };
    a.edge_token = w.bob.token().to_string();
    a.sig = w.bob.signing_key().sign(&a.transcript(&v.eph_pub));
    assert_eq!(p.finish(&a.encode(), NOW_MS).unwrap_err(), AttachError::NotAnEdge(Role::Client));

    // The edge's token, but signed by another key (a stolen token without its seed).
    let (p, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS).unwrap();
    let (acc, _) = accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap();
    let Ok(Msg::Accepted(mut a)) = Msg::decode(&acc) else { panic!() };
    a.sig = w.bob.signing_key().sign(&a.transcript(&v.eph_pub));
    assert_eq!(p.finish(&a.encode(), NOW_MS).unwrap_err(), AttachError::BadEdgeSignature);
}

#[test]
fn accept_and_start_check_their_arguments() {
    let w = World::new();
    let (_, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg, w.edge.operators(), EDGE, NOW_MS).unwrap();
    let acc = |node, addr, key, ka, to| accept(&v, &w.edge, node, addr, key, ka, to).map(|_| ());
    assert_eq!(acc(EDGE, 0, 1, 5, 10), Err(AcceptError::BadAddress));
    assert_eq!(acc(EDGE, EDGE, 1, 5, 10), Err(AcceptError::BadAddress));
    assert_eq!(acc(0, ADDR, 1, 5, 10), Err(AcceptError::BadAddress));
    assert_eq!(acc(EDGE, ADDR, 0, 5, 10), Err(AcceptError::BadKeyId));
    assert_eq!(acc(EDGE, ADDR, 1, 0, 10), Err(AcceptError::BadTimers));
    assert_eq!(acc(EDGE, ADDR, 1, 10, 10), Err(AcceptError::BadTimers));
    assert_eq!(acc(EDGE, ADDR, 1, 5, 10), Ok(()));
    // A low-order client ephemeral key.
    let mut bad = v.clone();
    bad.eph_pub = [0; 32];
    assert_eq!(accept(&bad, &w.edge, EDGE, ADDR, 1, 5, 10).unwrap_err(), AcceptError::BadClientKey);

    assert!(matches!(Attach::start(&w.alice, "", EDGE, NOW_MS), Err(AttachError::BadName(_))));
    assert!(matches!(Attach::start(&w.alice, "a b", EDGE, NOW_MS), Err(AttachError::BadName(_))));
    assert!(matches!(Attach::start(&w.alice, "alice", 0, NOW_MS), Err(AttachError::NoEdge)));
}

#[test]
fn random_bytes_never_panic() {
    let w = World::new();
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let trusted = w.edge.operators();
    let (_, reg) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
    let v = verify_register(&reg, trusted, EDGE, NOW_MS).unwrap();
    let (acc, _) = accept(&v, &w.edge, EDGE, ADDR, 1, 5_000, 30_000).unwrap();
    let seeds = [reg, acc, refuse([7; 16], Refusal::Revoked)];
    let mut decoded = 0;
    for i in 0..10_000 {
        let bytes = if i % 2 == 0 {
            // Random bytes, with a valid type byte most of the time.
            let mut b = vec![0u8; rng.random_range(0..msg::MAX_MSG_LEN + 8)];
            rng.fill(&mut b[..]);
            if let Some(t) = b.first_mut().filter(|_| i % 10 != 0) {
                *t = rng.random_range(1..=3);
            }
            b
        } else {
            // A valid message with a few random changes, cut or extended.
            let mut b = seeds[i % 3].clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..b.len());
                b[at] ^= rng.random_range(1..=255u8);
            }
            match rng.random_range(0..4) {
                0 => b.truncate(rng.random_range(0..b.len())),
                1 => b.extend((0..rng.random_range(1..8)).map(|_| rng.random::<u8>())),
                _ => {}
            }
            b
        };
        if Msg::decode(&bytes).is_ok() {
            decoded += 1;
        }
        // Whatever decodes does not verify (it was changed), and nothing panics.
        assert!(verify_register(&bytes, trusted, EDGE, NOW_MS).is_err());
        let _ = register_nonce(&bytes);
        if i % 10 == 1 {
            let (p, _) = Attach::start(&w.alice, "alice", EDGE, NOW_MS).unwrap();
            assert!(p.finish(&bytes, NOW_MS).is_err());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(crate::Token::parse(&text).is_err());
        let _ = Creds::parse(&text);
    }
    assert!(decoded > 100, "the mutations should reach past decoding ({decoded})");
}
