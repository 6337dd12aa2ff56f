//! What the link reads from session descriptions: DTLS fingerprints and `max-message-size`.
//!
//! The engine parses SDP too, but does not expose the remote fingerprint; reading it here from
//! the exact text exchanged is also what the identity binding needs, since the binding is about
//! what the signaling path carried.

use super::error::WebRtcError;

/// Largest SDP accepted (a data-channel-only description is 1–3 KiB even with candidates).
pub const MAX_SDP_LEN: usize = 32 * 1024;

/// The `max-message-size` assumed when the remote does not announce one (RFC 8841 §6.1).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Checks size and basic shape before the text reaches the engine's parser.
pub(crate) fn check_sdp(sdp: &str) -> Result<(), WebRtcError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(WebRtcError::TooLarge {
            what: "SDP",
            size: sdp.len(),
            limit: MAX_SDP_LEN,
        });
    }
    if !sdp.starts_with("v=0") {
        return Err(WebRtcError::MalformedSdp("does not start with v=0".into()));
    }
    if !sdp.lines().any(|l| l.starts_with("m=application")) {
        return Err(WebRtcError::MalformedSdp(
            "no m=application section (a data-channel link needs one)".into(),
        ));
    }
    Ok(())
}

/// The sha-256 DTLS fingerprint of a description, normalised as `sha-256 AB:CD:…`
/// (lower-case algorithm, upper-case hex).
///
/// Every sha-256 fingerprint in the description (session or media level) must agree: a
/// description naming two certificates is rejected rather than guessed at.
pub fn sha256_fingerprint(sdp: &str, side: &'static str) -> Result<String, WebRtcError> {
    let mut found: Option<String> = None;
    for line in sdp.lines() {
        let Some(value) = line.trim_end().strip_prefix("a=fingerprint:") else {
            continue;
        };
        let Some((alg, hex)) = value.split_once(' ') else {
            return Err(WebRtcError::MalformedSdp(format!(
                "fingerprint line without a value in the {side} description"
            )));
        };
        if !alg.eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let normalised = normalise_sha256_hex(hex.trim()).ok_or_else(|| {
            WebRtcError::MalformedSdp(format!(
                "sha-256 fingerprint in the {side} description is not 32 colon-separated hex bytes"
            ))
        })?;
        match &found {
            Some(prev) if *prev != normalised => {
                return Err(WebRtcError::MalformedSdp(format!(
                    "the {side} description names two different sha-256 fingerprints"
                )));
            }
            _ => found = Some(normalised),
        }
    }
    found
        .map(|hex| format!("sha-256 {hex}"))
        .ok_or(WebRtcError::MissingFingerprint(side))
}

fn normalise_sha256_hex(hex: &str) -> Option<String> {
    let parts: Vec<&str> = hex.split(':').collect();
    if parts.len() != 32
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_uppercase())
}

/// The `a=max-message-size` of the application section, or the RFC default when absent.
///
/// `0` means "no limit" (RFC 8841 §6); it is returned as `usize::MAX` and the caller clamps it
/// to what the local engine can send.
pub fn max_message_size(sdp: &str) -> Result<usize, WebRtcError> {
    let mut in_application = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            in_application = line.starts_with("m=application");
            continue;
        }
        if !in_application {
            continue;
        }
        if let Some(value) = line.strip_prefix("a=max-message-size:") {
            let n: u64 = value.trim().parse().map_err(|_| {
                WebRtcError::MalformedSdp(format!("max-message-size {value:?} is not a number"))
            })?;
            return Ok(match n {
                0 => usize::MAX,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            });
        }
    }
    Ok(DEFAULT_MAX_MESSAGE_SIZE)
}

/// An offer as sent to the peer: `a=setup:actpass` becomes `a=setup:active`, so this side is
/// the DTLS client whatever the answerer prefers (RFC 5763 §5 lets an offerer be active; the
/// answerer must then answer `passive`).
///
/// Why: the engine sends the SCTP INIT only from the DTLS client, and some stacks (aiortc)
/// send it only from the ICE-controlling side, which is the offerer; if such a peer answers
/// `active`, both ends wait for an INIT. Offering `active` makes the offerer both, for every
/// peer. The local description keeps `actpass`: the engine takes its role from the answer, so
/// an answerer that still answers `active` also works.
pub(crate) fn offer_as_active(sdp: &str) -> String {
    sdp.replace("a=setup:actpass", "a=setup:active")
}

/// The remote description as handed to the engine: the application section's
/// `a=max-message-size` becomes `0` ("no limit").
///
/// Why: the engine sizes its *receive* reassembly buffer to the smaller of its own limit and
/// the peer's `max-message-size`, although the peer's value only limits what we may send to
/// it (RFC 8841 §6). A peer announcing less than we do (aiortc: 64 KiB) may rightly send us
/// messages up to our announced 256 KiB; the engine would then fail the read with "too short
/// buffer" and drop the message (and the rest of that read batch), stalling an ordered stream
/// for good. With `0` the engine's limit is our own announced one. What we may send is still
/// bounded by the peer's real value, which the link reads from the original text
/// ([`max_message_size`]) and `ChannelSender::send` enforces.
pub(crate) fn for_engine(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 24);
    let mut in_application = false;
    let mut seen = false;
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare.starts_with("m=") {
            if in_application && !seen {
                out.push_str("a=max-message-size:0\r\n");
            }
            in_application = bare.starts_with("m=application");
            seen = false;
        } else if in_application && bare.starts_with("a=max-message-size:") {
            out.push_str("a=max-message-size:0\r\n");
            seen = true;
            continue;
        }
        out.push_str(line);
    }
    if in_application && !seen {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str("\r\n");
        }
        out.push_str("a=max-message-size:0\r\n");
    }
    out
}

/// Whether the description carries at least one `a=candidate` line (a non-trickle peer's).
pub(crate) fn has_candidates(sdp: &str) -> bool {
    sdp.lines().any(|l| l.starts_with("a=candidate:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "ab:CD:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd";

    #[test]
    fn fingerprint_is_normalised() {
        let sdp = format!(
            "v=0\r\na=fingerprint:SHA-256 {FP}\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        );
        let fp = sha256_fingerprint(&sdp, "local").unwrap();
        assert_eq!(fp, format!("sha-256 {}", FP.to_ascii_uppercase()));
    }

    #[test]
    fn conflicting_fingerprints_are_rejected() {
        let other = FP.replace("ab:", "ac:");
        let sdp = format!(
            "v=0\r\na=fingerprint:sha-256 {FP}\r\nm=application 9 x\r\na=fingerprint:sha-256 {other}\r\n"
        );
        assert!(matches!(
            sha256_fingerprint(&sdp, "remote"),
            Err(WebRtcError::MalformedSdp(_))
        ));
    }

    #[test]
    fn missing_and_short_fingerprints_are_typed_errors() {
        assert!(matches!(
            sha256_fingerprint("v=0\r\na=fingerprint:sha-1 AB:CD\r\n", "remote"),
            Err(WebRtcError::MissingFingerprint("remote"))
        ));
        assert!(matches!(
            sha256_fingerprint("v=0\r\na=fingerprint:sha-256 AB:CD\r\n", "remote"),
            Err(WebRtcError::MalformedSdp(_))
        ));
    }

    #[test]
    fn engine_sees_no_remote_message_limit() {
        let sdp = "v=0\r\nm=application 9 x\r\na=max-message-size:65536\r\na=mid:0\r\n";
        let seen = for_engine(sdp);
        assert_eq!(
            seen,
            "v=0\r\nm=application 9 x\r\na=max-message-size:0\r\na=mid:0\r\n"
        );
        assert_eq!(max_message_size(&seen).unwrap(), usize::MAX);
        // Absent (the RFC's 64 KiB default) in a middle or last section: added.
        let absent =
            "v=0\r\nm=application 9 x\r\na=mid:0\r\nm=audio 9 y\r\na=max-message-size:7\r\n";
        let seen = for_engine(absent);
        assert_eq!(max_message_size(&seen).unwrap(), usize::MAX);
        assert!(seen.ends_with("m=audio 9 y\r\na=max-message-size:7\r\n"));
        let last = for_engine("v=0\r\nm=application 9 x\r\na=mid:0");
        assert_eq!(
            last,
            "v=0\r\nm=application 9 x\r\na=mid:0\r\na=max-message-size:0\r\n"
        );
    }

    #[test]
    fn offers_are_sent_as_dtls_client() {
        let sdp = "v=0\r\nm=application 9 x\r\na=setup:actpass\r\na=mid:0\r\n";
        assert_eq!(
            offer_as_active(sdp),
            "v=0\r\nm=application 9 x\r\na=setup:active\r\na=mid:0\r\n"
        );
        let answer = "v=0\r\na=setup:passive\r\n";
        assert_eq!(offer_as_active(answer), answer);
    }

    #[test]
    fn max_message_size_reads_the_application_section_only() {
        let sdp = "v=0\r\nm=audio 9 x\r\na=max-message-size:10\r\nm=application 9 x\r\na=max-message-size:262144\r\n";
        assert_eq!(max_message_size(sdp).unwrap(), 262_144);
        assert_eq!(
            max_message_size("v=0\r\nm=application 9 x\r\n").unwrap(),
            65_536
        );
        assert_eq!(
            max_message_size("v=0\r\nm=application 9 x\r\na=max-message-size:0\r\n").unwrap(),
            usize::MAX
        );
        assert!(max_message_size("v=0\r\nm=application 9 x\r\na=max-message-size:-1\r\n").is_err());
    }
}
