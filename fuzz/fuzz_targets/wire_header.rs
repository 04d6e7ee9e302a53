//! Relay header and probe body decoding on arbitrary bytes: bad input is an error, never a
//! panic, and whatever is accepted encodes back to the bytes it came from. Only the public
//! `decode`/`validate`/`to_bytes` are used, so the target follows header extensions. The same
//! bytes are then a packet from a keyed peer (verification never panics; whether it passes
//! says nothing here: libFuzzer watches the tag comparison and copies the expected tag into
//! its inputs) and a stream of sequence numbers into a replay window (none is accepted
//! twice).
#![no_main]

use std::{collections::HashSet, sync::atomic::AtomicU64};

use libfuzzer_sys::fuzz_target;
use wecan_common::{
    auth::{WINDOW_WORDS, replay_accept},
    maps::{PeerKind, PeerValue},
    wire::{ProbeBody, RelayHeader},
};
use wecan_transport::auth::{Secret, Windows, link_keys, verify};

fuzz_target!(|data: &[u8]| {
    let mut peer = PeerValue::new(2, PeerKind::Relay);
    peer.keys[0] = link_keys(&Secret::new([7; 32]), 1, 1, 2);
    let _ = verify(data, &peer, &Windows::default());

    let window: [AtomicU64; WINDOW_WORDS] = std::array::from_fn(|_| AtomicU64::new(0));
    let mut accepted = HashSet::new();
    for chunk in data.chunks_exact(8) {
        let seq = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if replay_accept(&window, seq) {
            assert!(accepted.insert(seq), "sequence number {seq} accepted twice");
        }
    }

    let Ok((hdr, payload)) = RelayHeader::decode(data) else { return };
    let kind = hdr.validate().expect("a decoded header validates");
    let bytes = hdr.to_bytes();
    // One encoding per header: decode consumed exactly what to_bytes writes.
    assert_eq!(&bytes[..], &data[..data.len() - payload.len()]);
    let (again, rest) = RelayHeader::decode(&bytes).expect("re-encoded header decodes");
    assert_eq!(again, hdr);
    assert!(rest.is_empty());
    assert_eq!(again.validate(), Ok(kind));

    if let Some(body) = ProbeBody::decode(payload) {
        assert_eq!(&body.to_bytes()[..], &payload[..ProbeBody::LEN]);
        assert_eq!(ProbeBody::decode(&body.to_bytes()), Some(body));
    }
});
