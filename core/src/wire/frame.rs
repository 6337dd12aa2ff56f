//! Frames: the plaintext inside a record.
//!
//! `[u8 kind = 0x01 chunk][u8 flags][varint message id][varint total length, FIRST only]
//! [chunk bytes]`. One record carries exactly one frame.

use super::{WireError, varint};

/// The only frame kind so far: a chunk of a message.
pub(crate) const KIND_CHUNK: u8 = 0x01;
/// This chunk starts a message and declares its total length.
pub(crate) const FLAG_FIRST: u8 = 0x01;
/// This chunk ends its message.
pub(crate) const FLAG_LAST: u8 = 0x02;
/// The message (all chunks) is raw-deflate compressed; only valid with FIRST.
pub(crate) const FLAG_COMPRESSED: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_FIRST | FLAG_LAST | FLAG_COMPRESSED;

/// Longest frame header: kind, flags, two varints.
pub(crate) const MAX_HEADER_LEN: usize = 2 + 2 * varint::MAX_LEN;

/// A parsed chunk frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) flags: u8,
    pub(crate) id: u64,
    /// Declared total encoded length; present exactly when FIRST is set.
    pub(crate) total: Option<u64>,
}

impl ChunkHeader {
    pub(crate) fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// Encoded length of this header.
    pub(crate) fn len(&self) -> usize {
        2 + varint::len(self.id) + self.total.map_or(0, varint::len)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(KIND_CHUNK);
        out.push(self.flags);
        varint::write(out, self.id);
        if let Some(total) = self.total {
            varint::write(out, total);
        }
    }
}

/// Splits a frame into its header and chunk bytes, checking the header's own consistency.
pub(crate) fn parse(frame: &[u8]) -> Result<(ChunkHeader, &[u8]), WireError> {
    let [kind, flags, rest @ ..] = frame else {
        return Err(WireError::Malformed(
            "frame shorter than its 2-byte header".into(),
        ));
    };
    if *kind != KIND_CHUNK {
        return Err(WireError::Malformed(format!(
            "unknown frame kind {kind:#04x}"
        )));
    }
    let flags = *flags;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(WireError::Malformed(format!(
            "unknown frame flags {flags:#04x}"
        )));
    }
    if flags & FLAG_COMPRESSED != 0 && flags & FLAG_FIRST == 0 {
        return Err(WireError::Malformed(
            "COMPRESSED flag on a continuation chunk".into(),
        ));
    }
    let (id, rest) = varint::read(rest, "message id")?;
    let (total, chunk) = if flags & FLAG_FIRST != 0 {
        let (total, rest) = varint::read(rest, "total length")?;
        (Some(total), rest)
    } else {
        (None, rest)
    };
    // Only an empty message travels as an empty chunk; anything else would be a no-op frame
    // that costs the receiver work for nothing.
    if chunk.is_empty() && total != Some(0) {
        return Err(WireError::Malformed("empty chunk".into()));
    }
    Ok((ChunkHeader { flags, id, total }, chunk))
}
