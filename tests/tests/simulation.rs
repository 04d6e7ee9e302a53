//! The hop pipeline (`wecan_transport::hop`) over simulated lossy links in virtual time
//! (`wecan_tests::sim`): delivery targets of each protection mode, no privileges needed.

use wecan_tests::sim::{self, SimConfig};
use wecan_transport::hop::{FecSettings, ProtectMode};

/// 3 hops at 5 % loss each (both directions): unprotected loses about 14 %; FEC+ARQ delivers
/// at least 99.9 %; reliable mode delivers everything, in order.
#[test]
fn three_lossy_hops_simulated() {
    let none = sim::run(&SimConfig::new(3, 0.05, ProtectMode::None, 20_000));
    assert!((0.83..0.89).contains(&none.delivery), "{none:?}");
    let both = sim::run(&SimConfig::new(3, 0.05, ProtectMode::FecArq, 20_000));
    assert!(both.delivery >= 0.999, "{both:?}");
    assert_eq!(both.duplicates, 0);
    assert!(both.overhead < 0.6, "{both:?}");
    let reliable = sim::run(&SimConfig {
        reliable: true,
        ..SimConfig::new(3, 0.05, ProtectMode::FecArq, 20_000)
    });
    assert_eq!(reliable.delivered, reliable.sent, "{reliable:?}");
    assert!(reliable.in_order, "{reliable:?}");
    let arq_only =
        sim::run(&SimConfig { reliable: true, ..SimConfig::new(3, 0.20, ProtectMode::Arq, 5_000) });
    eprintln!("none {none:?}\nfec+arq {both:?}\nreliable {reliable:?}\narq 20% {arq_only:?}");
    assert_eq!(arq_only.delivered, arq_only.sent, "{arq_only:?}");
    assert!(arq_only.in_order);
}

/// The benchmark's comparison as a check: at 10 % loss per hop, adaptive FEC+ARQ leaves no
/// more residual loss than UDPspeeder-style fixed FEC 20:10, at lower overhead.
#[test]
fn fec_arq_beats_fixed_20_10_at_ten_percent() {
    let ours = sim::run(&SimConfig {
        fec: FecSettings { max_parity: 6, ..FecSettings::default() },
        ..SimConfig::new(3, 0.10, ProtectMode::FecArq, 200_000)
    });
    let fixed = sim::run(&SimConfig {
        fec: FecSettings { group: 20, min_parity: 10, max_parity: 10, ..FecSettings::default() },
        ..SimConfig::new(3, 0.10, ProtectMode::Fec, 200_000)
    });
    eprintln!("fec+arq {ours:?}\n20:10 {fixed:?}");
    assert!(ours.delivered >= fixed.delivered, "{ours:?} vs {fixed:?}");
    assert!(ours.overhead < fixed.overhead, "{ours:?} vs {fixed:?}");
}
