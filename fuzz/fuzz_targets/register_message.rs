//! What an edge's access gateway and a client read from the network or from files, on
//! arbitrary bytes: registration messages (decoded, and verified as a registration for an
//! edge), their nonces, tokens and credentials files. Bad input is an error, never a panic,
//! and whatever message decodes encodes back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wecan_access::{
    Creds, PublicKey, Token,
    register::{Msg, register_nonce},
    verify_register,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Msg::decode(data) {
        assert_eq!(m.encode(), data, "a decoded message re-encodes to its bytes");
    }
    let _ = register_nonce(data);
    let _ = verify_register(data, &[PublicKey([3; 32])], 7, 1_700_000_000_000);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Token::parse(text);
        let _ = Creds::parse(text);
    }
});
