//! Raw deflate (RFC 1951, no zlib or gzip wrapper — what fflate's `deflateSync` reads and
//! writes), applied only when it pays, and inflated within a hard output bound.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{CompressionConfig, WireError};

/// Size of the compressibility probe sample.
pub(crate) const PROBE_SIZE: usize = 4096;
/// The probe must shrink its sample to at most this many per mille for compression to go on.
pub(crate) const PROBE_RATIO_PER_MILLE: usize = 900;

/// Whether a message of `total` bytes whose body is `body` is worth compressing at all:
/// the size threshold plus a level-1 probe on a sample from the middle of the body.
pub(crate) fn should_try(config: &CompressionConfig, total: usize, body: &[u8]) -> bool {
    if !config.enabled || total < config.threshold || total == 0 {
        return false;
    }
    // Small messages are cheaper to compress outright than to probe first.
    if total <= PROBE_SIZE || body.len() < PROBE_SIZE {
        return true;
    }
    let start = (body.len() - PROBE_SIZE) / 2;
    let sample = &body[start..start + PROBE_SIZE];
    let limit = PROBE_SIZE * PROBE_RATIO_PER_MILLE / 1000;
    deflate_parts(&[sample], 1, limit).is_some()
}

/// Raw-deflates the concatenation of `parts` at `level`, giving up (returning `None`) as soon
/// as the output would exceed `limit` bytes — so an incompressible input costs at most one
/// pass and never a second buffer.
pub(crate) fn deflate_parts(parts: &[&[u8]], level: u32, limit: usize) -> Option<Vec<u8>> {
    let mut compressor = Compress::new(Compression::new(level.min(9)), false);
    let mut out = Vec::with_capacity(limit);
    let last = parts.len().checked_sub(1)?;
    for (index, part) in parts.iter().enumerate() {
        let flush = if index == last {
            FlushCompress::Finish
        } else {
            FlushCompress::None
        };
        let mut consumed = 0usize;
        loop {
            let before_in = compressor.total_in();
            let before_out = compressor.total_out();
            let input = part.get(consumed..)?;
            let status = compressor.compress_vec(input, &mut out, flush).ok()?;
            consumed += usize::try_from(compressor.total_in() - before_in).ok()?;
            let progressed =
                compressor.total_in() != before_in || compressor.total_out() != before_out;
            match status {
                Status::StreamEnd => return Some(out),
                _ if consumed == part.len() && flush == FlushCompress::None => break,
                _ if out.len() == out.capacity() => return None,
                _ if !progressed => return None,
                _ => {}
            }
        }
    }
    None
}

/// Inflates raw deflate `input`, failing with `TooLarge` as soon as the output passes
/// `max_size`. Memory grows with the data actually produced, never with a declared size.
pub(crate) fn inflate_bounded(input: &[u8], max_size: usize) -> Result<Vec<u8>, WireError> {
    let hard_cap = max_size.saturating_add(1);
    let initial = input
        .len()
        .saturating_mul(4)
        .clamp(64, hard_cap.max(64))
        .min(hard_cap);
    let mut out = Vec::with_capacity(initial);
    let mut decompressor = Decompress::new(false);
    let too_large = |size: usize| WireError::TooLarge {
        size: size as u64,
        limit: max_size as u64,
    };
    loop {
        if out.len() == out.capacity() {
            if out.len() >= hard_cap {
                return Err(too_large(out.len()));
            }
            // Double, but jump straight to the cap when the next doubling would pass it, so the
            // last growth step never copies a full-size buffer for one extra byte.
            let doubled = out.capacity().max(64).saturating_mul(2);
            let target = if doubled.saturating_mul(2) > hard_cap {
                hard_cap
            } else {
                doubled
            };
            out.reserve_exact(target.min(hard_cap) - out.len());
        }
        let consumed = usize::try_from(decompressor.total_in())
            .map_err(|_| WireError::Decompress("input position overflow".into()))?;
        let rest = input.get(consumed..).unwrap_or_default();
        let before_in = decompressor.total_in();
        let before_out = decompressor.total_out();
        let status = decompressor
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|e| WireError::Decompress(e.to_string()))?;
        if out.len() > max_size {
            return Err(too_large(out.len()));
        }
        if status == Status::StreamEnd {
            let used = usize::try_from(decompressor.total_in()).unwrap_or(usize::MAX);
            if used != input.len() {
                return Err(WireError::Decompress(format!(
                    "{} trailing bytes after the deflate stream",
                    input.len().saturating_sub(used)
                )));
            }
            return Ok(out);
        }
        let progressed =
            decompressor.total_in() != before_in || decompressor.total_out() != before_out;
        if !progressed && out.len() < out.capacity() {
            return Err(WireError::Decompress("truncated deflate stream".into()));
        }
    }
}
