//! A report body as `POST /v1/nodes/{id}/report` decodes and validates it: any bytes give a
//! report or the 400 message, never a panic; an accepted report, encoded again as agents
//! encode it, is accepted again with the same content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wecan_api::Report;
use wecan_controller::server::decode_report;

fuzz_target!(|data: &[u8]| {
    // The first four bytes pick the reporting node (0 is refused before the body is read).
    let Some((id, body)) = data.split_first_chunk::<4>() else { return };
    let id = u32::from_be_bytes(*id).max(1);
    let Ok(report) = decode_report(id, body) else { return };
    let again = serde_json::to_vec(&report).expect("a report encodes");
    let back: Report = decode_report(id, &again).expect("a re-encoded report is accepted");
    assert_eq!(back.clients, report.clients);
    assert_eq!(back.links.len(), report.links.len());
    for (a, b) in back.links.iter().zip(&report.links) {
        assert_eq!(
            (a.peer, a.up, a.age_ms, a.sent, a.received),
            (b.peer, b.up, b.age_ms, b.sent, b.received)
        );
        for (x, y) in [(a.rtt_us, b.rtt_us), (a.loss, b.loss), (a.jitter_us, b.jitter_us)] {
            // serde_json's default float parsing may be one ulp off on the way back.
            assert!((x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()), "{x} became {y}");
        }
    }
});
