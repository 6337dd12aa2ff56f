//! JavaScript values ↔ MessagePack, written and read directly (no intermediate tree).
//!
//! Encoding walks the JS value with raw Node-API calls and writes MessagePack bytes:
//! `null`/`undefined` → nil, booleans, numbers (integers up to 2^53 as MessagePack integers,
//! the rest as float 64), `BigInt` (int 64 / uint 64), strings, `Buffer`/typed arrays/
//! `ArrayBuffer`/`DataView` → bin (so Buffers travel without base64), `Date` → timestamp
//! extension (−1, as msgpackr reads it), arrays, and plain objects (own enumerable string keys;
//! properties holding `undefined`, functions or symbols are skipped, as JSON does).
//!
//! Decoding reads bytes that came from the network: [`validate`] checks the whole value first
//! (bounds, depth, supported types) so that building the JS value afterwards cannot fail
//! half-way through a callback; integers beyond 2^53 become `BigInt`, bin becomes `Buffer`,
//! maps become plain objects (a `__proto__` key is defined as an own property, never set).
#![allow(unsafe_code)] // Node-API is a C API; every call below checks its status.

use std::ptr;

use napi::sys;

/// Nesting deeper than this is refused both ways (also stops cyclic objects).
pub(crate) const MAX_DEPTH: usize = 128;

/// The largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError(pub(crate) String);

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(message: impl Into<String>) -> ValueError {
    ValueError(message.into())
}

fn check(status: sys::napi_status, what: &str) -> Result<(), ValueError> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(err(format!("{what} failed (napi status {status})")))
    }
}

// ---------------------------------------------------------------------------------------------
// Writing MessagePack

fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if v <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}

fn write_len(
    out: &mut Vec<u8>,
    len: usize,
    fix: Option<(u8, usize)>,
    m8: Option<u8>,
    m16: u8,
    m32: u8,
) -> Result<(), ValueError> {
    match (fix, m8) {
        (Some((base, max)), _) if len <= max => out.push(base | len as u8),
        (_, Some(marker)) if len <= u8::MAX as usize => out.extend_from_slice(&[marker, len as u8]),
        _ if len <= u16::MAX as usize => {
            out.push(m16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ if len <= u32::MAX as usize => {
            out.push(m32);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => return Err(err("value longer than 4 GiB")),
    }
    Ok(())
}

fn write_str_header(out: &mut Vec<u8>, len: usize) -> Result<(), ValueError> {
    write_len(out, len, Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb)
}

fn write_bin(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ValueError> {
    write_len(out, bytes.len(), None, Some(0xc4), 0xc5, 0xc6)?;
    out.extend_from_slice(bytes);
    Ok(())
}

fn write_array_header(out: &mut Vec<u8>, len: usize) -> Result<(), ValueError> {
    write_len(out, len, Some((0x90, 15)), None, 0xdc, 0xdd)
}

fn write_map_header(out: &mut Vec<u8>, len: usize) -> Result<(), ValueError> {
    write_len(out, len, Some((0x80, 15)), None, 0xde, 0xdf)
}

/// MessagePack timestamp extension (type −1) for milliseconds since the epoch.
fn write_timestamp(out: &mut Vec<u8>, ms: f64) -> Result<(), ValueError> {
    if !ms.is_finite() {
        return Err(err("invalid Date"));
    }
    let secs = (ms / 1000.0).floor();
    let nanos = ((ms - secs * 1000.0) * 1_000_000.0)
        .round()
        .clamp(0.0, 999_999_999.0) as u32;
    let secs = secs as i64;
    if (0..(1 << 34)).contains(&secs) {
        let packed = ((nanos as u64) << 34) | secs as u64;
        if packed <= u32::MAX as u64 {
            out.extend_from_slice(&[0xd6, 0xff]);
            out.extend_from_slice(&(packed as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&[0xd7, 0xff]);
            out.extend_from_slice(&packed.to_be_bytes());
        }
    } else {
        out.extend_from_slice(&[0xc7, 12, 0xff]);
        out.extend_from_slice(&nanos.to_be_bytes());
        out.extend_from_slice(&secs.to_be_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JS → MessagePack

/// Encodes `value` as MessagePack.
pub(crate) fn encode(env: sys::napi_env, value: sys::napi_value) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::with_capacity(64);
    encode_into(env, value, &mut out, 0)?;
    Ok(out)
}

fn type_of(env: sys::napi_env, value: sys::napi_value) -> Result<sys::napi_valuetype, ValueError> {
    let mut t = 0;
    check(unsafe { sys::napi_typeof(env, value, &mut t) }, "typeof")?;
    Ok(t)
}

fn is(
    env: sys::napi_env,
    value: sys::napi_value,
    f: unsafe fn(sys::napi_env, sys::napi_value, *mut bool) -> sys::napi_status,
) -> bool {
    let mut result = false;
    let status = unsafe { f(env, value, &mut result) };
    status == sys::Status::napi_ok && result
}

/// The bytes of a `Buffer`, typed array, `DataView` or `ArrayBuffer`, if `value` is one.
///
/// The slice borrows JS memory: use it before returning to JavaScript.
pub(crate) fn byte_view<'a>(
    env: sys::napi_env,
    value: sys::napi_value,
) -> Result<Option<&'a [u8]>, ValueError> {
    let mut data: *mut std::ffi::c_void = ptr::null_mut();
    let mut len: usize = 0;
    if is(env, value, sys::napi_is_typedarray) {
        let mut kind = 0;
        let mut count = 0usize;
        let mut buffer = ptr::null_mut();
        let mut offset = 0usize;
        check(
            unsafe {
                sys::napi_get_typedarray_info(
                    env,
                    value,
                    &mut kind,
                    &mut count,
                    &mut data,
                    &mut buffer,
                    &mut offset,
                )
            },
            "typed array info",
        )?;
        let width = match kind {
            sys::TypedarrayType::int8_array
            | sys::TypedarrayType::uint8_array
            | sys::TypedarrayType::uint8_clamped_array => 1,
            sys::TypedarrayType::int16_array | sys::TypedarrayType::uint16_array => 2,
            sys::TypedarrayType::int32_array
            | sys::TypedarrayType::uint32_array
            | sys::TypedarrayType::float32_array => 4,
            _ => 8,
        };
        len = count
            .checked_mul(width)
            .ok_or_else(|| err("typed array too large"))?;
    } else if is(env, value, sys::napi_is_dataview) {
        let mut buffer = ptr::null_mut();
        let mut offset = 0usize;
        check(
            unsafe {
                sys::napi_get_dataview_info(
                    env,
                    value,
                    &mut len,
                    &mut data,
                    &mut buffer,
                    &mut offset,
                )
            },
            "data view info",
        )?;
    } else if is(env, value, sys::napi_is_arraybuffer) {
        check(
            unsafe { sys::napi_get_arraybuffer_info(env, value, &mut data, &mut len) },
            "array buffer info",
        )?;
    } else {
        return Ok(None);
    }
    if len == 0 || data.is_null() {
        return Ok(Some(&[]));
    }
    // The engine guarantees `len` bytes at `data` while the value is alive (this call frame).
    Ok(Some(unsafe {
        std::slice::from_raw_parts(data as *const u8, len)
    }))
}

fn string_into(
    env: sys::napi_env,
    value: sys::napi_value,
    out: &mut Vec<u8>,
) -> Result<(), ValueError> {
    let mut len = 0usize;
    check(
        unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len) },
        "string length",
    )?;
    write_str_header(out, len)?;
    let start = out.len();
    // Room for the terminating NUL Node-API always writes.
    out.resize(start + len + 1, 0);
    let mut written = 0usize;
    check(
        unsafe {
            sys::napi_get_value_string_utf8(
                env,
                value,
                out.as_mut_ptr().add(start).cast(),
                len + 1,
                &mut written,
            )
        },
        "string read",
    )?;
    out.truncate(start + written);
    if written != len {
        return Err(err("string changed while encoding"));
    }
    Ok(())
}

/// Reads a JS string into a Rust `String`.
pub(crate) fn get_string(env: sys::napi_env, value: sys::napi_value) -> Result<String, ValueError> {
    let mut len = 0usize;
    check(
        unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len) },
        "string length",
    )?;
    let mut buf = vec![0u8; len + 1];
    let mut written = 0usize;
    check(
        unsafe {
            sys::napi_get_value_string_utf8(
                env,
                value,
                buf.as_mut_ptr().cast(),
                len + 1,
                &mut written,
            )
        },
        "string read",
    )?;
    buf.truncate(written);
    String::from_utf8(buf).map_err(|_| err("string is not valid UTF-8"))
}

fn number_into(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() && v.trunc() == v && v.abs() <= MAX_SAFE {
        write_int(out, v as i64);
    } else {
        write_f64(out, v);
    }
}

fn encode_into(
    env: sys::napi_env,
    value: sys::napi_value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ValueError> {
    if depth > MAX_DEPTH {
        return Err(err(format!(
            "value nested deeper than {MAX_DEPTH} levels (or cyclic)"
        )));
    }
    encode_typed(env, value, type_of(env, value)?, out, depth)
}

fn encode_typed(
    env: sys::napi_env,
    value: sys::napi_value,
    kind: sys::napi_valuetype,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ValueError> {
    match kind {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => out.push(0xc0),
        sys::ValueType::napi_boolean => {
            let mut b = false;
            check(
                unsafe { sys::napi_get_value_bool(env, value, &mut b) },
                "boolean",
            )?;
            out.push(if b { 0xc3 } else { 0xc2 });
        }
        sys::ValueType::napi_number => {
            let mut v = 0f64;
            check(
                unsafe { sys::napi_get_value_double(env, value, &mut v) },
                "number",
            )?;
            number_into(out, v);
        }
        sys::ValueType::napi_string => string_into(env, value, out)?,
        sys::ValueType::napi_bigint => {
            let mut v = 0i64;
            let mut lossless = false;
            check(
                unsafe { sys::napi_get_value_bigint_int64(env, value, &mut v, &mut lossless) },
                "bigint",
            )?;
            if lossless {
                write_int(out, v);
            } else {
                let mut u = 0u64;
                check(
                    unsafe { sys::napi_get_value_bigint_uint64(env, value, &mut u, &mut lossless) },
                    "bigint",
                )?;
                if !lossless {
                    return Err(err("BigInt outside the 64-bit range"));
                }
                write_uint(out, u);
            }
        }
        sys::ValueType::napi_object => encode_object(env, value, out, depth)?,
        // Functions, symbols and externals have no MessagePack form: nil, as JSON does in arrays.
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_object(
    env: sys::napi_env,
    value: sys::napi_value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ValueError> {
    if is(env, value, sys::napi_is_array) {
        let mut len = 0u32;
        check(
            unsafe { sys::napi_get_array_length(env, value, &mut len) },
            "array length",
        )?;
        write_array_header(out, len as usize)?;
        for i in 0..len {
            let mut item = ptr::null_mut();
            check(
                unsafe { sys::napi_get_element(env, value, i, &mut item) },
                "array element",
            )?;
            encode_into(env, item, out, depth + 1)?;
        }
        return Ok(());
    }
    if let Some(bytes) = byte_view(env, value)? {
        return write_bin(out, bytes);
    }
    if is(env, value, sys::napi_is_date) {
        let mut ms = 0f64;
        check(
            unsafe { sys::napi_get_date_value(env, value, &mut ms) },
            "date",
        )?;
        return write_timestamp(out, ms);
    }
    let mut keys = ptr::null_mut();
    check(
        unsafe {
            sys::napi_get_all_property_names(
                env,
                value,
                sys::KeyCollectionMode::own_only,
                sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
                sys::KeyConversion::numbers_to_strings,
                &mut keys,
            )
        },
        "property names",
    )?;
    let mut len = 0u32;
    check(
        unsafe { sys::napi_get_array_length(env, keys, &mut len) },
        "property count",
    )?;
    let mut entries = Vec::with_capacity(len as usize);
    for i in 0..len {
        let mut key = ptr::null_mut();
        check(
            unsafe { sys::napi_get_element(env, keys, i, &mut key) },
            "property name",
        )?;
        let mut item = ptr::null_mut();
        check(
            unsafe { sys::napi_get_property(env, value, key, &mut item) },
            "property",
        )?;
        match type_of(env, item)? {
            sys::ValueType::napi_undefined
            | sys::ValueType::napi_function
            | sys::ValueType::napi_symbol => {}
            kind => entries.push((key, item, kind)),
        }
    }
    write_map_header(out, entries.len())?;
    for (key, item, kind) in entries {
        string_into(env, key, out)?;
        if depth + 1 > MAX_DEPTH {
            return Err(err(format!(
                "value nested deeper than {MAX_DEPTH} levels (or cyclic)"
            )));
        }
        encode_typed(env, item, kind, out, depth + 1)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading MessagePack

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| err("truncated MessagePack"))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, ValueError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], ValueError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// One decoded MessagePack item header.
enum Item<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
    /// Milliseconds since the epoch.
    Timestamp(f64),
}

fn read_item<'a>(r: &mut Reader<'a>) -> Result<Item<'a>, ValueError> {
    let b = r.u8()?;
    let len8 = |r: &mut Reader<'a>| r.u8().map(|v| v as usize);
    let len16 = |r: &mut Reader<'a>| r.be::<2>().map(|v| u16::from_be_bytes(v) as usize);
    let len32 = |r: &mut Reader<'a>| r.be::<4>().map(|v| u32::from_be_bytes(v) as usize);
    Ok(match b {
        0x00..=0x7f => Item::Uint(b as u64),
        0x80..=0x8f => Item::Map((b & 0x0f) as usize),
        0x90..=0x9f => Item::Array((b & 0x0f) as usize),
        0xa0..=0xbf => Item::Str(r.take((b & 0x1f) as usize)?),
        0xc0 => Item::Nil,
        0xc2 => Item::Bool(false),
        0xc3 => Item::Bool(true),
        0xc4 => {
            let n = len8(r)?;
            Item::Bin(r.take(n)?)
        }
        0xc5 => {
            let n = len16(r)?;
            Item::Bin(r.take(n)?)
        }
        0xc6 => {
            let n = len32(r)?;
            Item::Bin(r.take(n)?)
        }
        0xc7..=0xc9 => {
            let n = match b {
                0xc7 => len8(r)?,
                0xc8 => len16(r)?,
                _ => len32(r)?,
            };
            let kind = r.u8()? as i8;
            ext(kind, r.take(n)?)?
        }
        0xca => Item::Float(f32::from_be_bytes(r.be::<4>()?) as f64),
        0xcb => Item::Float(f64::from_be_bytes(r.be::<8>()?)),
        0xcc => Item::Uint(r.u8()? as u64),
        0xcd => Item::Uint(u16::from_be_bytes(r.be::<2>()?) as u64),
        0xce => Item::Uint(u32::from_be_bytes(r.be::<4>()?) as u64),
        0xcf => Item::Uint(u64::from_be_bytes(r.be::<8>()?)),
        0xd0 => Item::Int(r.u8()? as i8 as i64),
        0xd1 => Item::Int(i16::from_be_bytes(r.be::<2>()?) as i64),
        0xd2 => Item::Int(i32::from_be_bytes(r.be::<4>()?) as i64),
        0xd3 => Item::Int(i64::from_be_bytes(r.be::<8>()?)),
        0xd4..=0xd8 => {
            let n = 1usize << (b - 0xd4);
            let kind = r.u8()? as i8;
            ext(kind, r.take(n)?)?
        }
        0xd9 => {
            let n = len8(r)?;
            Item::Str(r.take(n)?)
        }
        0xda => {
            let n = len16(r)?;
            Item::Str(r.take(n)?)
        }
        0xdb => {
            let n = len32(r)?;
            Item::Str(r.take(n)?)
        }
        0xdc => Item::Array(len16(r)?),
        0xdd => Item::Array(len32(r)?),
        0xde => Item::Map(len16(r)?),
        0xdf => Item::Map(len32(r)?),
        0xe0..=0xff => Item::Int(b as i8 as i64),
        0xc1 => return Err(err("invalid MessagePack byte 0xc1")),
    })
}

fn ext<'a>(kind: i8, data: &[u8]) -> Result<Item<'a>, ValueError> {
    if kind != -1 {
        return Err(err(format!(
            "unsupported MessagePack extension type {kind}"
        )));
    }
    let (secs, nanos) = match data.len() {
        4 => (
            u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as i64,
            0u32,
        ),
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(data);
            let v = u64::from_be_bytes(a);
            ((v & ((1 << 34) - 1)) as i64, (v >> 34) as u32)
        }
        12 => {
            let mut n = [0u8; 4];
            n.copy_from_slice(&data[..4]);
            let mut s = [0u8; 8];
            s.copy_from_slice(&data[4..]);
            (i64::from_be_bytes(s), u32::from_be_bytes(n))
        }
        other => return Err(err(format!("timestamp extension of {other} bytes"))),
    };
    Ok(Item::Timestamp(
        secs as f64 * 1000.0 + nanos as f64 / 1_000_000.0,
    ))
}

/// Checks that `bytes` hold exactly one MessagePack value [`to_js`] can build.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), ValueError> {
    let mut r = Reader { bytes, pos: 0 };
    validate_item(&mut r, 0)?;
    if r.remaining() != 0 {
        return Err(err("trailing bytes after the MessagePack value"));
    }
    Ok(())
}

fn validate_item(r: &mut Reader<'_>, depth: usize) -> Result<(), ValueError> {
    if depth > MAX_DEPTH {
        return Err(err(format!(
            "MessagePack nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match read_item(r)? {
        Item::Array(n) => {
            // Every element takes at least one byte: a count beyond the input is a lie.
            if n > r.remaining() {
                return Err(err("array longer than its input"));
            }
            for _ in 0..n {
                validate_item(r, depth + 1)?;
            }
        }
        Item::Map(n) => {
            if n > r.remaining() / 2 {
                return Err(err("map longer than its input"));
            }
            for _ in 0..n {
                match read_item(r)? {
                    Item::Str(s) => {
                        std::str::from_utf8(s).map_err(|_| err("map key is not UTF-8"))?;
                    }
                    Item::Int(_) | Item::Uint(_) | Item::Bool(_) | Item::Nil => {}
                    _ => return Err(err("map keys must be strings or numbers")),
                }
                validate_item(r, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Builds the JS value of MessagePack `bytes` (call [`validate`] first on untrusted input).
pub(crate) fn to_js(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value, ValueError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut keys = KeyCache::default();
    build(env, &mut r, 0, &mut keys)
}

/// Property-name strings already created in this conversion: records repeat their keys, and
/// creating a JS string per key dominates decoding otherwise.
#[derive(Default)]
struct KeyCache<'a> {
    names: std::collections::HashMap<&'a [u8], sys::napi_value>,
}

/// Keys longer than this are not cached (they rarely repeat).
const CACHED_KEY_LEN: usize = 64;
/// Distinct keys cached per conversion.
const CACHED_KEYS: usize = 4096;

/// A JS `Buffer` holding a copy of `bytes`.
pub(crate) fn buffer(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value, ValueError> {
    let mut data = ptr::null_mut();
    let mut value = ptr::null_mut();
    check(
        unsafe {
            sys::napi_create_buffer_copy(
                env,
                bytes.len(),
                bytes.as_ptr().cast(),
                &mut data,
                &mut value,
            )
        },
        "buffer",
    )?;
    Ok(value)
}

/// A new empty object.
pub(crate) fn object(env: sys::napi_env) -> Result<sys::napi_value, ValueError> {
    let mut value = ptr::null_mut();
    check(
        unsafe { sys::napi_create_object(env, &mut value) },
        "object",
    )?;
    Ok(value)
}

/// A new empty array.
pub(crate) fn array(env: sys::napi_env) -> Result<sys::napi_value, ValueError> {
    let mut value = ptr::null_mut();
    check(unsafe { sys::napi_create_array(env, &mut value) }, "array")?;
    Ok(value)
}

/// Sets `array[index]`.
pub(crate) fn set_element(
    env: sys::napi_env,
    array: sys::napi_value,
    index: u32,
    item: sys::napi_value,
) -> Result<(), ValueError> {
    check(
        unsafe { sys::napi_set_element(env, array, index, item) },
        "array element",
    )
}

/// A JS boolean.
pub(crate) fn boolean(env: sys::napi_env, b: bool) -> Result<sys::napi_value, ValueError> {
    let mut value = ptr::null_mut();
    check(
        unsafe { sys::napi_get_boolean(env, b, &mut value) },
        "boolean",
    )?;
    Ok(value)
}

/// A JS string.
pub(crate) fn string(env: sys::napi_env, s: &str) -> Result<sys::napi_value, ValueError> {
    let mut value = ptr::null_mut();
    check(
        unsafe {
            sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut value)
        },
        "string",
    )?;
    Ok(value)
}

fn number(env: sys::napi_env, v: f64) -> Result<sys::napi_value, ValueError> {
    let mut value = ptr::null_mut();
    check(
        unsafe { sys::napi_create_double(env, v, &mut value) },
        "number",
    )?;
    Ok(value)
}

fn build<'a>(
    env: sys::napi_env,
    r: &mut Reader<'a>,
    depth: usize,
    keys: &mut KeyCache<'a>,
) -> Result<sys::napi_value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(err("MessagePack nested too deeply"));
    }
    let mut value = ptr::null_mut();
    match read_item(r)? {
        Item::Nil => check(unsafe { sys::napi_get_null(env, &mut value) }, "null")?,
        Item::Bool(b) => check(
            unsafe { sys::napi_get_boolean(env, b, &mut value) },
            "boolean",
        )?,
        Item::Int(v) if (v as f64).abs() <= MAX_SAFE => return number(env, v as f64),
        Item::Int(v) => check(
            unsafe { sys::napi_create_bigint_int64(env, v, &mut value) },
            "bigint",
        )?,
        Item::Uint(v) if v as f64 <= MAX_SAFE => return number(env, v as f64),
        Item::Uint(v) => check(
            unsafe { sys::napi_create_bigint_uint64(env, v, &mut value) },
            "bigint",
        )?,
        Item::Float(v) => return number(env, v),
        Item::Str(s) => check(
            unsafe {
                sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut value)
            },
            "string",
        )?,
        Item::Bin(b) => return buffer(env, b),
        Item::Timestamp(ms) => check(
            unsafe { sys::napi_create_date(env, ms, &mut value) },
            "date",
        )?,
        Item::Array(n) => {
            if n > r.remaining() {
                return Err(err("array longer than its input"));
            }
            check(
                unsafe { sys::napi_create_array_with_length(env, n, &mut value) },
                "array",
            )?;
            for i in 0..n {
                let item = build(env, r, depth + 1, keys)?;
                check(
                    unsafe { sys::napi_set_element(env, value, i as u32, item) },
                    "array element",
                )?;
            }
        }
        Item::Map(n) => {
            if n > r.remaining() / 2 {
                return Err(err("map longer than its input"));
            }
            check(
                unsafe { sys::napi_create_object(env, &mut value) },
                "object",
            )?;
            for _ in 0..n {
                let key = read_item(r)?;
                let item = build(env, r, depth + 1, keys)?;
                match key {
                    Item::Str(s) if s.len() <= CACHED_KEY_LEN && s != b"__proto__" => {
                        let name = match keys.names.get(s) {
                            Some(&name) => name,
                            None => {
                                let text = std::str::from_utf8(s)
                                    .map_err(|_| err("map key is not UTF-8"))?;
                                let name = string(env, text)?;
                                if keys.names.len() < CACHED_KEYS {
                                    keys.names.insert(s, name);
                                }
                                name
                            }
                        };
                        check(
                            unsafe { sys::napi_set_property(env, value, name, item) },
                            "set property",
                        )?;
                    }
                    other => {
                        let key = match other {
                            Item::Str(s) => std::str::from_utf8(s)
                                .map_err(|_| err("map key is not UTF-8"))?
                                .to_owned(),
                            Item::Int(v) => v.to_string(),
                            Item::Uint(v) => v.to_string(),
                            Item::Bool(b) => b.to_string(),
                            Item::Nil => "null".to_owned(),
                            _ => return Err(err("map keys must be strings or numbers")),
                        };
                        set_own(env, value, &key, item)?;
                    }
                }
            }
        }
    }
    Ok(value)
}

/// Defines `key` as an own data property, so that `__proto__` from the network never reaches
/// the prototype setter.
pub(crate) fn set_own(
    env: sys::napi_env,
    object: sys::napi_value,
    key: &str,
    item: sys::napi_value,
) -> Result<(), ValueError> {
    let name = string(env, key)?;
    if key == "__proto__" {
        let descriptor = sys::napi_property_descriptor {
            utf8name: ptr::null(),
            name,
            method: None,
            getter: None,
            setter: None,
            value: item,
            attributes: sys::PropertyAttributes::writable
                | sys::PropertyAttributes::enumerable
                | sys::PropertyAttributes::configurable,
            data: ptr::null_mut(),
        };
        check(
            unsafe { sys::napi_define_properties(env, object, 1, &descriptor) },
            "define property",
        )
    } else {
        check(
            unsafe { sys::napi_set_property(env, object, name, item) },
            "set property",
        )
    }
}

/// Reads the named property of an object, if it is a string.
pub(crate) fn get_string_property(
    env: sys::napi_env,
    object: sys::napi_value,
    key: &str,
) -> Option<String> {
    let name = string(env, key).ok()?;
    let mut item = ptr::null_mut();
    if unsafe { sys::napi_get_property(env, object, name, &mut item) } != sys::Status::napi_ok {
        return None;
    }
    if type_of(env, item).ok()? != sys::ValueType::napi_string {
        return None;
    }
    get_string(env, item).ok()
}

/// Whether `value` is an object (so that properties can be read from it).
pub(crate) fn is_object(env: sys::napi_env, value: sys::napi_value) -> bool {
    matches!(
        type_of(env, value),
        Ok(sys::ValueType::napi_object) | Ok(sys::ValueType::napi_function)
    )
}

/// Reads a JS number.
pub(crate) fn get_number(env: sys::napi_env, value: sys::napi_value) -> Option<f64> {
    if type_of(env, value).ok()? != sys::ValueType::napi_number {
        return None;
    }
    let mut v = 0f64;
    (unsafe { sys::napi_get_value_double(env, value, &mut v) } == sys::Status::napi_ok).then_some(v)
}

/// Whether `value` is `null` or `undefined`.
pub(crate) fn is_nullish(env: sys::napi_env, value: sys::napi_value) -> bool {
    matches!(
        type_of(env, value),
        Ok(sys::ValueType::napi_null) | Ok(sys::ValueType::napi_undefined)
    )
}

/// Whether `value` is a promise.
pub(crate) fn is_promise(env: sys::napi_env, value: sys::napi_value) -> bool {
    is(env, value, sys::napi_is_promise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_accepts_what_the_writer_produces() {
        let mut out = Vec::new();
        write_map_header(&mut out, 2).unwrap();
        write_str_header(&mut out, 1).unwrap();
        out.push(b'a');
        write_int(&mut out, -5_000_000_000);
        write_str_header(&mut out, 1).unwrap();
        out.push(b'b');
        write_array_header(&mut out, 3).unwrap();
        write_bin(&mut out, &[1, 2, 3]).unwrap();
        write_f64(&mut out, 1.5);
        write_timestamp(&mut out, 1_700_000_000_123.0).unwrap();
        validate(&out).unwrap();
        let mut r = Reader {
            bytes: &out,
            pos: 0,
        };
        assert!(matches!(read_item(&mut r).unwrap(), Item::Map(2)));
    }

    #[test]
    fn validate_rejects_lies_and_depth() {
        assert!(validate(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(validate(&[0xc4, 10, 1]).is_err());
        assert!(validate(&[0xc1]).is_err());
        assert!(validate(&[0x01, 0x02]).is_err());
        assert!(validate(&[0x91; MAX_DEPTH + 2]).is_err());
        assert!(validate(&[0xd4, 0x05, 0x00]).is_err());
        // A map whose key is an array.
        assert!(validate(&[0x81, 0x90, 0xc0]).is_err());
    }

    #[test]
    fn timestamps_round_trip_through_the_reader() {
        for ms in [0.0, 1_700_000_000_123.0, -1500.0, 4e13] {
            let mut out = Vec::new();
            write_timestamp(&mut out, ms).unwrap();
            let mut r = Reader {
                bytes: &out,
                pos: 0,
            };
            match read_item(&mut r).unwrap() {
                Item::Timestamp(got) => assert!((got - ms).abs() < 0.001, "{ms} -> {got}"),
                _ => panic!("not a timestamp"),
            }
        }
    }
}
