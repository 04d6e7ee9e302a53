//! Operator-facing output, shaped like `ip` and `bpftool`: aligned tables for people,
//! one JSON document (`--json`) for scripts.

use anyhow::Result;
use serde::Serialize;
use wecan_common::{
    maps::{ClientValue, LinkValue, PeerValue, RouteAction, RouteOrigin, RouteValue, route_flags},
    stats::{Counter, Stat, xdp},
    wire::overlay,
};

use wecan_datapath::maps::{RouteSel, addr_from};
use wecan_transport::hop::ProtectMode;

use crate::{gateway::Attached, protection::ProtectionReport};

/// Prints rows as an aligned table, or as a JSON array.
pub fn print<T: Serialize + Row>(rows: &[T], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    print!("{}", table(T::HEADER, rows.iter().map(Row::cells)));
    Ok(())
}

/// A value shown as one table row.
pub trait Row {
    const HEADER: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

/// Left-aligned columns, two spaces apart; numeric columns right-aligned.
pub fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r[i].parse::<f64>().is_ok()))
        .collect();
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if numeric[i] {
                s.push_str(&format!("{c:>w$}", w = widths[i]));
            } else {
                s.push_str(&format!("{c:<w$}", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RouteRow {
    pub dst: u32,
    pub flow: Option<u32>,
    pub action: String,
    pub next_node: Option<u32>,
    pub next_hop: Option<String>,
    pub src: Option<String>,
    pub origin: String,
    pub generation: u32,
    /// The controller's other next hop (backup, or the primary while on the backup).
    pub alternate: Option<u32>,
    /// The primary's link is down and the backup carries the traffic.
    pub on_backup: bool,
    /// Per-hop protection on the link to the next hop (`none`, `fec`, `arq`, `fec+arq`).
    pub protect: &'static str,
}

impl RouteRow {
    pub fn new(sel: RouteSel, v: &RouteValue) -> Self {
        let action = RouteAction::from_u8(v.action);
        let forwards = matches!(action, Some(RouteAction::Forward | RouteAction::SlowPath));
        let hop = |bytes| addr_from(v.family, bytes).filter(|_| forwards);
        Self {
            dst: sel.dst(),
            flow: sel.flow(),
            action: action.map_or_else(|| format!("invalid({})", v.action), |a| a.name().into()),
            next_node: forwards.then_some(v.next_node),
            next_hop: hop(&v.next_addr).map(|a| match a {
                std::net::IpAddr::V4(a) => format!("{a}:{}", v.next_port),
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", v.next_port),
            }),
            src: hop(&v.src_addr).map(|a| a.to_string()),
            origin: RouteOrigin::from_u8(v.origin)
                .map_or_else(|| format!("invalid({})", v.origin), |o| o.name().into()),
            generation: v.generation,
            alternate: (v.backup_node != 0).then_some(v.backup_node),
            on_backup: v.flags & route_flags::ON_BACKUP != 0,
            protect: ProtectMode::from_route_flags(v.flags).name(),
        }
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

impl Row for RouteRow {
    const HEADER: &'static [&'static str] = &[
        "DST",
        "FLOW",
        "ACTION",
        "NEXT-NODE",
        "NEXT-HOP",
        "SRC",
        "ORIGIN",
        "GEN",
        "ALTERNATE",
        "PROTECT",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.dst.to_string(),
            opt(&self.flow),
            self.action.clone(),
            opt(&self.next_node),
            opt(&self.next_hop),
            opt(&self.src),
            self.origin.clone(),
            self.generation.to_string(),
            match (self.alternate, self.on_backup) {
                (Some(n), true) => format!("{n} (primary, down)"),
                (Some(n), false) => format!("{n} (backup)"),
                (None, _) => "-".into(),
            },
            self.protect.into(),
        ]
    }
}

/// A client attached through this edge's gateway.
#[derive(Debug, Serialize, PartialEq)]
pub struct ClientRow {
    /// Overlay address (`wire::overlay`), in hex as people write it, and as a number.
    pub addr: String,
    pub node: u32,
    pub slot: u16,
    /// The name its token carries (empty if this agent adopted it without its state).
    pub name: String,
    /// Where its last authenticated packet came from (replies go there).
    pub from: String,
    /// Milliseconds since its last authenticated packet.
    pub idle_ms: u64,
    /// Token expiry, unix seconds.
    pub expires: Option<u64>,
}

impl ClientRow {
    pub fn new(v: &ClientValue, known: Option<&Attached>, now_ns: u64) -> Self {
        let r = &v.route;
        let from = addr_from(r.family, &r.next_addr)
            .map_or_else(|| "?".into(), |a| std::net::SocketAddr::new(a, r.next_port).to_string());
        let node = v.peer.node_id;
        Self {
            addr: format!("{node:#010x}"),
            node,
            slot: overlay::slot_of(node),
            name: known.map(|a| a.name.clone()).unwrap_or_default(),
            from,
            idle_ms: now_ns.saturating_sub(v.last_seen_ns) / 1_000_000,
            expires: known.map(|a| a.expires).filter(|&e| e != u64::MAX),
        }
    }
}

impl Row for ClientRow {
    const HEADER: &'static [&'static str] = &["ADDRESS", "NAME", "FROM", "IDLE_MS", "EXPIRES"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.addr.clone(),
            self.name.clone(),
            self.from.clone(),
            self.idle_ms.to_string(),
            opt(&self.expires),
        ]
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PeerRow {
    pub node: u32,
    pub addr: String,
    pub kind: &'static str,
    /// Key IDs the link accepts (none if it is not authenticated) and the one that sends.
    pub keys: Vec<u8>,
    pub send_key: Option<u8>,
    pub auth: bool,
}

impl PeerRow {
    pub fn new(addr: std::net::IpAddr, v: &PeerValue) -> Self {
        let kind = v.kind().map_or("unknown", |k| k.name());
        let keys = v.keys.iter().map(|k| k.id).filter(|&id| id != 0).collect();
        let send_key = v.send_key().map(|k| k.id);
        Self { node: v.node_id, addr: addr.to_string(), kind, keys, send_key, auth: !v.no_auth() }
    }
}

impl Row for PeerRow {
    const HEADER: &'static [&'static str] = &["NODE", "ADDRESS", "KIND", "KEYS", "SENDS"];
    fn cells(&self) -> Vec<String> {
        let keys = if self.auth {
            self.keys.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
        } else {
            "no auth".into()
        };
        vec![self.node.to_string(), self.addr.clone(), self.kind.into(), keys, opt(&self.send_key)]
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StatRow {
    pub outcome: &'static str,
    pub class: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

impl StatRow {
    pub fn new(s: Stat, c: &Counter) -> Self {
        let verdict = match s.verdict() {
            xdp::TX => "XDP_TX",
            xdp::REDIRECT => "XDP_REDIRECT",
            xdp::PASS => "XDP_PASS",
            _ => "XDP_DROP",
        };
        Self {
            outcome: s.name(),
            class: s.class().name(),
            verdict,
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

impl Row for StatRow {
    const HEADER: &'static [&'static str] = &["OUTCOME", "CLASS", "VERDICT", "PACKETS", "BYTES"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.outcome.into(),
            self.class.into(),
            self.verdict.into(),
            self.packets.to_string(),
            self.bytes.to_string(),
        ]
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct LinkRow {
    pub peer: u32,
    pub state: &'static str,
    pub rtt_us: f64,
    pub jitter_us: f64,
    pub loss_pct: f64,
    /// Milliseconds since the last probe reply; `None` if never answered.
    pub age_ms: Option<u64>,
    pub sent: u64,
    pub received: u64,
}

impl LinkRow {
    /// `now_ns`: CLOCK_MONOTONIC now, to age the last reply.
    pub fn new(peer: u32, v: &LinkValue, now_ns: u64) -> Self {
        let round = |x: f64| (x * 10.0).round() / 10.0;
        Self {
            peer,
            state: if v.up != 0 { "up" } else { "down" },
            rtt_us: round(v.rtt_ns as f64 / 1000.0),
            jitter_us: round(v.jitter_ns as f64 / 1000.0),
            loss_pct: round(f64::from(v.loss_ppm) / 10_000.0),
            age_ms: (v.last_reply_ns != 0)
                .then(|| now_ns.saturating_sub(v.last_reply_ns) / 1_000_000),
            sent: v.sent,
            received: v.received,
        }
    }
}

impl Row for LinkRow {
    const HEADER: &'static [&'static str] =
        &["PEER", "STATE", "RTT-US", "JITTER-US", "LOSS-%", "AGE-MS", "SENT", "RECEIVED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.peer.to_string(),
            self.state.into(),
            format!("{:.1}", self.rtt_us),
            format!("{:.1}", self.jitter_us),
            format!("{:.1}", self.loss_pct),
            opt(&self.age_ms),
            self.sent.to_string(),
            self.received.to_string(),
        ]
    }
}

/// One direction of one protected link, for `wecan protection`.
pub struct ProtectionRow {
    peer: u32,
    dir: &'static str,
    mode: String,
    packets: u64,
    groups: Option<u64>,
    parity: Option<usize>,
    fec_repaired: Option<u64>,
    arq_repaired: Option<u64>,
    nacks: u64,
    retransmissions: Option<u64>,
    lost: Option<u64>,
    /// Sending side: reliable packets refused (backlog or budget full, no free stream).
    /// Receiving side: reliable packets not held (budget full; asked for again).
    refused: u64,
    /// Sending side: deadline packets evicted unexpired (buffer full).
    evicted: Option<u64>,
    /// Sending side: extra bytes per payload byte. Receiving side: residual loss.
    pct: f64,
}

impl ProtectionRow {
    pub fn from_report(r: &ProtectionReport) -> Vec<Self> {
        let pct = |a: u64, b: u64| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        let tx = r.tx.iter().map(|t| {
            let s = &t.stats;
            Self {
                peer: t.peer,
                dir: "tx",
                mode: t.mode.clone(),
                packets: s.packets,
                groups: Some(s.fec_groups),
                parity: Some(s.parity),
                fec_repaired: None,
                arq_repaired: None,
                nacks: s.nacks_received,
                retransmissions: Some(s.retransmissions),
                lost: None,
                refused: s.refused_full + s.refused_streams,
                evicted: Some(s.dropped_full),
                pct: pct(s.wire_bytes.saturating_sub(s.payload_bytes), s.payload_bytes),
            }
        });
        let rx = r.rx.iter().map(|x| {
            let s = &x.stats;
            Self {
                peer: x.peer,
                dir: "rx",
                mode: "-".into(),
                packets: s.delivered,
                groups: None,
                parity: None,
                fec_repaired: Some(s.fec_repaired),
                arq_repaired: Some(s.arq_repaired),
                nacks: s.nacks_sent,
                retransmissions: None,
                lost: Some(s.lost),
                refused: s.over_budget,
                evicted: None,
                pct: pct(s.lost, s.delivered + s.lost),
            }
        });
        tx.chain(rx).collect()
    }
}

impl Row for ProtectionRow {
    const HEADER: &'static [&'static str] = &[
        "PEER",
        "DIR",
        "MODE",
        "PACKETS",
        "GROUPS",
        "PARITY",
        "FEC-REP",
        "ARQ-REP",
        "NACKS",
        "RETX",
        "LOST",
        "REFUSED",
        "EVICTED",
        "OVERHEAD/RESIDUAL-%",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.peer.to_string(),
            self.dir.into(),
            self.mode.clone(),
            self.packets.to_string(),
            opt(&self.groups),
            opt(&self.parity),
            opt(&self.fec_repaired),
            opt(&self.arq_repaired),
            self.nacks.to_string(),
            opt(&self.retransmissions),
            opt(&self.lost),
            self.refused.to_string(),
            opt(&self.evicted),
            format!("{:.3}", self.pct),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_right_aligns_numbers() {
        let t = table(
            &["NAME", "N"],
            vec![vec!["a".into(), "5".into()], vec!["long".into(), "100".into()]].into_iter(),
        );
        assert_eq!(t, "NAME    N\na       5\nlong  100\n");
    }

    /// Refusals and evictions have their own columns: tx refused = full + no stream, rx
    /// refused = over budget.
    #[test]
    fn protection_rows_show_refusals() {
        use crate::protection::{RxRow, TxRow};
        use wecan_transport::hop::{RxStats, TxStats};
        let tx =
            TxStats { refused_full: 3, refused_streams: 4, dropped_full: 5, ..TxStats::default() };
        let rx = RxStats { over_budget: 6, ..RxStats::default() };
        let report = ProtectionReport {
            tx: vec![TxRow { peer: 2, mode: "arq".into(), stats: tx }],
            rx: vec![RxRow { peer: 2, stats: rx }],
            ..ProtectionReport::default()
        };
        let at = |name| ProtectionRow::HEADER.iter().position(|h| *h == name).unwrap();
        let rows: Vec<Vec<String>> =
            ProtectionRow::from_report(&report).iter().map(Row::cells).collect();
        assert_eq!((rows[0][at("REFUSED")].as_str(), rows[0][at("EVICTED")].as_str()), ("7", "5"));
        assert_eq!((rows[1][at("REFUSED")].as_str(), rows[1][at("EVICTED")].as_str()), ("6", "-"));
    }

    #[test]
    fn route_row_shows_next_hop() {
        let (family, next_addr) = wecan_datapath::maps::addr_bytes("10.0.0.2".parse().unwrap());
        let (_, src_addr) = wecan_datapath::maps::addr_bytes("10.0.0.1".parse().unwrap());
        let v = RouteValue {
            action: RouteAction::Forward as u8,
            family,
            origin: RouteOrigin::Cli as u8,
            _pad: 0,
            next_port: 7300,
            _pad2: 0,
            next_node: 2,
            generation: 0,
            backup_node: 3,
            flags: 0,
            next_addr,
            src_addr,
        };
        let r = RouteRow::new(RouteSel::Flow { dst: 9, flow: 4 }, &v);
        assert_eq!(r.next_hop.as_deref(), Some("10.0.0.2:7300"));
        assert_eq!(r.src.as_deref(), Some("10.0.0.1"));
        assert_eq!(r.cells()[0..3], ["9", "4", "forward"]);
        let local = RouteRow::new(RouteSel::Dst(1), &RouteValue::local(RouteOrigin::Static));
        assert_eq!(local.next_hop, None);
        assert_eq!(local.cells()[2], "local");
    }
}
