//! Raw deflate (RFC 1951, no zlib or gzip wrapper — what fflate's `deflateSync` reads and
//! writes), applied only when it pays, and inflated within a hard output bound.

use std::cell::RefCell;

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

thread_local! {
    /// One idle compressor per level and one decompressor per thread. Setting up deflate
    /// state costs more than compressing a small message, so it is reset and reused; each cached
    /// state holds a few hundred KiB.
    static DEFLATERS: RefCell<[Option<Compress>; 10]> = const { RefCell::new([const { None }; 10]) };
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

fn take_compressor(level: u32) -> Compress {
    let level = level.min(9);
    let cached = DEFLATERS.with(|cell| {
        cell.try_borrow_mut()
            .ok()
            .and_then(|mut slots| slots.get_mut(level as usize)?.take())
    });
    match cached {
        Some(mut compressor) => {
            compressor.reset();
            compressor
        }
        None => Compress::new(Compression::new(level), false),
    }
}

fn give_back_compressor(level: u32, compressor: Compress) {
    DEFLATERS.with(|cell| {
        if let Ok(mut slots) = cell.try_borrow_mut() {
            if let Some(slot) = slots.get_mut(level.min(9) as usize) {
                *slot = Some(compressor);
            }
        }
    });
}

fn take_decompressor() -> Decompress {
    match INFLATER.with(|cell| cell.try_borrow_mut().ok().and_then(|mut slot| slot.take())) {
        Some(mut decompressor) => {
            decompressor.reset(false);
            decompressor
        }
        None => Decompress::new(false),
    }
}

fn give_back_decompressor(decompressor: Decompress) {
    INFLATER.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = Some(decompressor);
        }
    });
}

/// Raw-deflates the concatenation of `parts` at `level`, giving up (returning `None`) as soon
/// as the output would exceed `limit` bytes — so an incompressible input costs at most one
/// pass and never a second buffer.
pub(crate) fn deflate_parts(parts: &[&[u8]], level: u32, limit: usize) -> Option<Vec<u8>> {
    let mut compressor = take_compressor(level);
    let (result, finished) = deflate_with(&mut compressor, parts, limit);
    // Only a compressor that finished its stream goes back: one abandoned mid-stream (output
    // limit reached) is dropped. zlib-rs 0.6 can overflow its pending buffer and panic when a
    // stream abandoned that way is reset and reused.
    if finished {
        give_back_compressor(level, compressor);
    }
    result
}

/// Returns the output when it fits `limit`, and whether the stream was finished.
fn deflate_with(
    compressor: &mut Compress,
    parts: &[&[u8]],
    limit: usize,
) -> (Option<Vec<u8>>, bool) {
    let input_len: usize = parts.iter().map(|part| part.len()).sum();
    // Small inputs are always compressed to the end (room for deflate's worst-case expansion
    // of stored blocks), so the compressor finishes its stream and can be reused; large ones
    // stop as soon as the output passes the limit.
    let capacity = if input_len <= SMALL_INPUT {
        input_len + input_len / 64 + 64
    } else {
        limit
    };
    match deflate_into(compressor, parts, Vec::with_capacity(capacity)) {
        Some(out) => ((out.len() <= limit).then_some(out), true),
        None => (None, false),
    }
}

/// Inputs up to this size are compressed completely even when they will not be kept.
const SMALL_INPUT: usize = 16 * 1024;

fn deflate_into(compressor: &mut Compress, parts: &[&[u8]], mut out: Vec<u8>) -> Option<Vec<u8>> {
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
    let mut decompressor = take_decompressor();
    let result = inflate_with(&mut decompressor, input, max_size);
    give_back_decompressor(decompressor);
    result
}

fn inflate_with(
    decompressor: &mut Decompress,
    input: &[u8],
    max_size: usize,
) -> Result<Vec<u8>, WireError> {
    let hard_cap = max_size.saturating_add(1);
    let initial = input
        .len()
        .saturating_mul(4)
        .clamp(64, hard_cap.max(64))
        .min(hard_cap);
    let mut out = Vec::with_capacity(initial);
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
