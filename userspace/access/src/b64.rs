//! base64url without padding, the one text encoding of binary values in tokens, keys and
//! seeds: safe in TOML strings, shell arguments and URLs without quoting. Decoding is strict
//! (no padding, no stray trailing bits), so every value has exactly one text form and a
//! changed character is never silently the same value.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// `text` decoded into exactly `N` bytes; `Err(Some(n))` when it decodes to `n` bytes,
/// `Err(None)` when it is not base64url.
pub(crate) fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], Option<usize>> {
    let bytes = decode(text).ok_or(None)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_strictness() {
        let b = [0xfbu8, 0xff, 0x01];
        assert_eq!(encode(&b), "-_8B");
        assert_eq!(decode("-_8B").as_deref(), Some(&b[..]));
        assert_eq!(decode("-_8B="), None, "padding");
        assert_eq!(decode("+/8B"), None, "standard alphabet");
        // "AB" is one byte with 4 trailing bits; "AA" is the only canonical form of 0x00.
        assert_eq!(decode("AB"), None, "non-canonical trailing bits");
        assert_eq!(decode_array::<3>("-_8B"), Ok(b));
        assert_eq!(decode_array::<4>("-_8B"), Err(Some(3)));
        assert_eq!(decode_array::<4>("!!"), Err(None));
    }
}
