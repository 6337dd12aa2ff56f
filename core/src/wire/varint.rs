//! Unsigned LEB128 varints, canonical form only.
//!
//! Only the shortest encoding of a value is accepted, so every value has exactly one byte form
//! and a parser never has to decide between equivalent inputs.

use super::WireError;

/// Longest encoding of a `u64`.
pub(crate) const MAX_LEN: usize = 10;

/// Appends the LEB128 encoding of `value`.
pub(crate) fn write(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Number of bytes [`write`] produces for `value`.
pub(crate) fn len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads one varint from the front of `input`; returns it and the rest.
pub(crate) fn read<'a>(input: &'a [u8], what: &str) -> Result<(u64, &'a [u8]), WireError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(MAX_LEN) {
        let low = u64::from(byte & 0x7f);
        // The tenth byte may only carry the single remaining bit of a u64.
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(WireError::Malformed(format!(
                "{what}: varint overflows u64"
            )));
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(WireError::Malformed(format!(
                    "{what}: non-canonical varint"
                )));
            }
            return Ok((value, &input[i + 1..]));
        }
    }
    Err(WireError::Malformed(format!("{what}: truncated varint")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write(&mut out, value);
            assert_eq!(out.len(), len(value), "length of {value}");
            let (back, rest) = read(&out, "t").unwrap();
            assert_eq!(back, value);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(read(&[], "t").is_err());
        assert!(read(&[0x80], "t").is_err());
        assert!(read(&[0x80, 0x00], "t").is_err(), "non-canonical zero");
        assert!(read(&[0xff; 10], "t").is_err());
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(read(&too_big, "t").is_err());
    }
}
