//! The scheduler: which edges a client may attach to, best first. The controller knows each
//! edge from its reports (whom it serves, its region, its load); a client proves whose it is
//! with its edge-access token, checked against the operators the edges serve. The ranking
//! only orders and filters; the client probes the candidates and picks the nearest of the
//! best class, because measured RTT beats any map of regions.

use wecan_access::{Op, PublicKey, Role, Token};
use wecan_api::{EdgeCandidate, EdgeReport};

/// Candidates a reply holds unless the client asks for another number.
pub const DEFAULT_CANDIDATES: usize = 4;
/// The most a client may ask for.
pub const MAX_CANDIDATES: usize = 16;

/// The operator (its key, as edges report it) of the client whose `token` this is, if the
/// token verifies at `now_s` with one of the operators `edges` serve and lets it attach.
pub fn client_operator<'a>(
    token: &str,
    edges: impl IntoIterator<Item = &'a EdgeReport>,
    now_s: u64,
) -> Result<String, String> {
    let token = Token::parse(token).map_err(|e| format!("token: {e}"))?;
    let mut trusted: Vec<PublicKey> =
        edges.into_iter().flat_map(|e| &e.serves).filter_map(|k| k.parse().ok()).collect();
    trusted.sort_by_key(|k| k.0);
    trusted.dedup();
    let claims = token.verify(&trusted, now_s).map_err(|e| format!("token: {e}"))?;
    if claims.role != Role::Client || !claims.allows(Op::Attach) {
        return Err("token: not a client's token allowed to attach".into());
    }
    Ok(claims.iss.to_string())
}

/// The edges of `edges` that admit clients of `operator`, best first (own operator, then
/// `region`, then load), full ones left out, at most `max`.
pub fn rank<'a>(
    edges: impl IntoIterator<Item = (u32, &'a EdgeReport)>,
    operator: &str,
    region: Option<&str>,
    max: usize,
) -> Vec<EdgeCandidate> {
    let mut out: Vec<EdgeCandidate> = edges
        .into_iter()
        .filter(|(_, e)| e.serves.iter().any(|s| s == operator) && e.clients < e.capacity)
        .filter(|(_, e)| !e.addrs.is_empty())
        .map(|(node, e)| EdgeCandidate {
            node,
            same_operator: e.operator == operator,
            region: e.region.clone(),
            addrs: e.addrs.clone(),
            load: f64::from(e.clients) / f64::from(e.capacity.max(1)),
            clients: e.clients,
            capacity: e.capacity,
        })
        .collect();
    out.sort_by(|a, b| {
        let other_region = |c: &EdgeCandidate| region.is_some_and(|r| r != c.region);
        (!a.same_operator, other_region(a))
            .cmp(&(!b.same_operator, other_region(b)))
            .then(a.load.total_cmp(&b.load))
            .then(a.node.cmp(&b.node))
    });
    out.truncate(max.min(MAX_CANDIDATES));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(operator: &str, serves: &[&str], region: &str, clients: u32) -> EdgeReport {
        EdgeReport {
            operator: operator.into(),
            serves: serves.iter().map(|s| s.to_string()).collect(),
            region: region.into(),
            addrs: vec!["192.0.2.1:7300".parse().unwrap()],
            clients,
            capacity: 10,
        }
    }

    #[test]
    fn own_operator_first_then_region_then_load_and_never_full_or_foreign() {
        let edges = [
            (1, edge("b", &["a", "b"], "eu", 0)), // a partner of a's
            (2, edge("a", &["a"], "us", 1)),
            (3, edge("a", &["a"], "eu", 5)),
            (4, edge("a", &["a"], "eu", 2)),
            (5, edge("a", &["a"], "eu", 10)), // full
            (6, edge("c", &["c"], "eu", 0)),  // does not admit a's clients
        ];
        let nodes = |r: Vec<EdgeCandidate>| r.iter().map(|c| c.node).collect::<Vec<_>>();
        let all = || edges.iter().map(|(n, e)| (*n, e));
        assert_eq!(nodes(rank(all(), "a", Some("eu"), 16)), [4, 3, 2, 1]);
        assert_eq!(nodes(rank(all(), "a", None, 16)), [2, 4, 3, 1]);
        assert_eq!(nodes(rank(all(), "a", Some("eu"), 2)), [4, 3]);
        assert_eq!(nodes(rank(all(), "c", None, 16)), [6]);
        let r = rank(all(), "a", Some("eu"), 16);
        assert!(r[0].same_operator && !r[3].same_operator);
        assert_eq!(r[0].load, 0.2);
    }

    #[test]
    fn a_token_must_verify_with_an_operator_the_edges_serve() {
        use ring::rand::SystemRandom;
        use wecan_access::{Claims, SigningKey, issue};
        let rng = SystemRandom::new();
        let op = SigningKey::generate(&rng).unwrap();
        let me = SigningKey::generate(&rng).unwrap();
        let now = 1_700_000_000;
        let claims = |role, ops| {
            Claims::new(role, "alice", ops, me.public(), op.public(), now, 3600, &rng).unwrap()
        };
        let token = issue(&op, &claims(Role::Client, vec![Op::Attach])).unwrap();
        let served = edge(&op.public().to_string(), &[&op.public().to_string()], "eu", 0);
        let stranger =
            edge("x", &["wecan-pk:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"], "eu", 0);
        assert_eq!(client_operator(&token, [&served], now), Ok(op.public().to_string()));
        assert!(client_operator(&token, [&stranger], now).is_err(), "an operator no edge serves");
        assert!(client_operator(&token, [&served], now + 7200).unwrap_err().contains("expired"));
        assert!(client_operator("garbage", [&served], now).is_err());
        let edge_token = issue(&op, &claims(Role::Edge, vec![Op::Attach])).unwrap();
        assert!(client_operator(&edge_token, [&served], now).is_err());
        let no_attach = issue(&op, &claims(Role::Client, vec![Op::Send])).unwrap();
        assert!(client_operator(&no_attach, [&served], now).is_err());
    }
}
