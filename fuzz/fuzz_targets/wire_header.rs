//! Relay header and probe body decoding on arbitrary bytes: bad input is an error, never a
//! panic, and whatever is accepted encodes back to the bytes it came from. Only the public
//! `decode`/`validate`/`to_bytes` are used, so the target follows header extensions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wecan_common::wire::{ProbeBody, RelayHeader};

fuzz_target!(|data: &[u8]| {
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
