//! Reading a description into a code and writing a code back out as a description.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::{
    CandidateAddress, CandidateTransport, CandidateType, CodeKind, CompactCandidate, CompactError,
    CompactSignal, DEFAULT_CODE_MAX_MESSAGE_SIZE, DtlsSetup, MAX_CANDIDATES, SCTP_PORT,
};

/// Longest description read (data-channel descriptions are 1–3 KiB).
const MAX_SDP_LEN: usize = 32 * 1024;

pub(super) fn parse(sdp: &str, kind: CodeKind) -> Result<CompactSignal, CompactError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(CompactError::MalformedSdp(format!(
            "{} bytes, over the {MAX_SDP_LEN}-byte limit",
            sdp.len()
        )));
    }
    if !sdp.starts_with("v=0") {
        return Err(CompactError::MalformedSdp("does not start with v=0".into()));
    }
    let mut fingerprint = None;
    let mut ufrag = None;
    let mut pwd = None;
    let mut setup = None;
    let mut max_message_size = None;
    let mut candidates = Vec::new();
    let mut sections = 0;
    let mut in_application = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            sections += 1;
            in_application = m.starts_with("application ");
            if !in_application || !m.contains("webrtc-datachannel") {
                return Err(CompactError::UnsupportedSdp(format!(
                    "media section {m:?} (only one data-channel section fits a code)"
                )));
            }
            if sections > 1 {
                return Err(CompactError::UnsupportedSdp(
                    "more than one media section".into(),
                ));
            }
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        match name {
            "fingerprint" => {
                let Some((alg, hex)) = value.split_once(' ') else {
                    return Err(CompactError::MalformedSdp(
                        "fingerprint without a value".into(),
                    ));
                };
                if !alg.eq_ignore_ascii_case("sha-256") {
                    continue;
                }
                let fp = parse_fingerprint(hex.trim())?;
                if fingerprint.is_some_and(|prev| prev != fp) {
                    return Err(CompactError::MalformedSdp(
                        "two different sha-256 fingerprints".into(),
                    ));
                }
                fingerprint = Some(fp);
            }
            "ice-ufrag" => set_once(&mut ufrag, value.trim(), "ice-ufrag")?,
            "ice-pwd" => set_once(&mut pwd, value.trim(), "ice-pwd")?,
            "setup" => {
                setup = Some(match value.trim() {
                    "actpass" => DtlsSetup::ActPass,
                    "active" => DtlsSetup::Active,
                    "passive" => DtlsSetup::Passive,
                    other => {
                        return Err(CompactError::UnsupportedSdp(format!("a=setup:{other}")));
                    }
                });
            }
            "mid" if in_application && value.trim() != "0" => {
                return Err(CompactError::UnsupportedSdp(format!(
                    "a=mid:{} (codes always use mid 0)",
                    value.trim()
                )));
            }
            "max-message-size" if in_application => {
                let n: u32 = value.trim().parse().map_err(|_| {
                    CompactError::MalformedSdp(format!("max-message-size {value:?}"))
                })?;
                max_message_size = (n != DEFAULT_CODE_MAX_MESSAGE_SIZE).then_some(n);
            }
            "sctp-port" if in_application && value.trim() != SCTP_PORT.to_string() => {
                return Err(CompactError::UnsupportedSdp(format!(
                    "a=sctp-port:{} (codes always use {SCTP_PORT})",
                    value.trim()
                )));
            }
            "candidate" => {
                if let Some(c) = parse_candidate(value)? {
                    if candidates.len() == MAX_CANDIDATES {
                        return Err(CompactError::TooManyCandidates(MAX_CANDIDATES));
                    }
                    candidates.push(c);
                }
            }
            _ => {}
        }
    }
    if sections == 0 {
        return Err(CompactError::MissingSdpField("m=application section"));
    }
    let signal = CompactSignal {
        kind,
        setup: setup.ok_or(CompactError::MissingSdpField("a=setup"))?,
        fingerprint: fingerprint.ok_or(CompactError::MissingSdpField("sha-256 fingerprint"))?,
        ice_ufrag: ufrag.ok_or(CompactError::MissingSdpField("a=ice-ufrag"))?,
        ice_pwd: pwd.ok_or(CompactError::MissingSdpField("a=ice-pwd"))?,
        candidates,
        session_id: None,
        max_message_size,
    };
    signal.validate()?;
    Ok(signal)
}

fn set_once(
    slot: &mut Option<String>,
    value: &str,
    what: &'static str,
) -> Result<(), CompactError> {
    match slot {
        Some(prev) if prev != value => Err(CompactError::UnsupportedSdp(format!(
            "two different {what} values"
        ))),
        _ => {
            *slot = Some(value.to_owned());
            Ok(())
        }
    }
}

fn parse_fingerprint(hex: &str) -> Result<[u8; 32], CompactError> {
    let mut out = [0u8; 32];
    let mut parts = hex.split(':');
    for byte in &mut out {
        let part = parts.next().unwrap_or_default();
        if part.len() != 2 {
            return Err(CompactError::MalformedSdp(
                "sha-256 fingerprint is not 32 hex bytes".into(),
            ));
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| {
            CompactError::MalformedSdp("sha-256 fingerprint is not 32 hex bytes".into())
        })?;
    }
    if parts.next().is_some() {
        return Err(CompactError::MalformedSdp(
            "sha-256 fingerprint is longer than 32 bytes".into(),
        ));
    }
    Ok(out)
}

/// Reads `foundation component transport priority address port typ type [k v]…`. Returns
/// `None` for candidates of other components (RTCP is multiplexed on data channels).
fn parse_candidate(value: &str) -> Result<Option<CompactCandidate>, CompactError> {
    let bad = |why: &str| CompactError::MalformedSdp(format!("candidate {value:?}: {why}"));
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [
        _foundation,
        component,
        transport,
        _priority,
        address,
        port,
        typ,
        kind,
        rest @ ..,
    ] = fields.as_slice()
    else {
        return Err(bad("fewer than 8 fields"));
    };
    if *typ != "typ" {
        return Err(bad("no typ"));
    }
    if *component != "1" {
        return Ok(None);
    }
    let kind = match *kind {
        "host" => CandidateType::Host,
        "srflx" => CandidateType::ServerReflexive,
        "prflx" => CandidateType::PeerReflexive,
        "relay" => CandidateType::Relay,
        _ => return Err(bad("unknown type")),
    };
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    if address.contains('%') {
        // A zone-scoped link-local address means nothing to the peer.
        return Ok(None);
    }
    let address = parse_address(address).ok_or_else(|| bad("bad address"))?;
    let mut raddr = None;
    let mut rport = None;
    let mut tcptype = None;
    for pair in rest.chunks(2) {
        match pair {
            ["raddr", v] => raddr = Some(v.parse::<IpAddr>().map_err(|_| bad("bad raddr"))?),
            ["rport", v] => rport = Some(v.parse::<u16>().map_err(|_| bad("bad rport"))?),
            ["tcptype", v] => tcptype = Some(*v),
            _ => {}
        }
    }
    let transport = if transport.eq_ignore_ascii_case("udp") {
        CandidateTransport::Udp
    } else if transport.eq_ignore_ascii_case("tcp") {
        match tcptype {
            Some("active") => CandidateTransport::TcpActive,
            Some("passive") => CandidateTransport::TcpPassive,
            Some("so") => CandidateTransport::TcpSimultaneousOpen,
            _ => return Err(bad("TCP without a tcptype")),
        }
    } else {
        return Err(bad("transport is neither UDP nor TCP"));
    };
    // The `0.0.0.0 0` placeholder (browsers hiding the base address) carries nothing.
    let related = match (raddr, rport) {
        (Some(ip), Some(port)) if !(ip.is_unspecified() && port == 0) => {
            Some(SocketAddr::new(ip, port))
        }
        _ => None,
    };
    Ok(Some(CompactCandidate {
        kind,
        transport,
        address,
        port,
        related,
    }))
}

fn parse_address(text: &str) -> Option<CandidateAddress> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(CandidateAddress::Ip(ip));
    }
    if let Some(uuid) = text.strip_suffix(".local").and_then(parse_uuid) {
        return Some(CandidateAddress::Mdns(uuid));
    }
    Some(CandidateAddress::Hostname(text.to_owned()))
}

/// A lower-case UUID `8-4-4-4-12`; upper case is not canonical here, so it stays a host name.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(super) fn write(code: &CompactSignal) -> String {
    // The origin's session id only needs to be stable for this description; derive it from
    // the fingerprint so expanding a code twice gives the same text.
    let mut sess = [0u8; 8];
    sess.copy_from_slice(&code.fingerprint[..8]);
    let sess = u64::from_be_bytes(sess) & 0x7fff_ffff_ffff_ffff;
    let mut s = String::with_capacity(640);
    let _ = write!(
        s,
        "v=0\r\no=- {sess} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    );
    for (i, c) in code.candidates.iter().enumerate() {
        let _ = write!(s, "a=candidate:{}\r\n", candidate_line(i, c));
    }
    if !code.candidates.is_empty() {
        s.push_str("a=end-of-candidates\r\n");
    }
    let _ = write!(
        s,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:{}\r\n\
         a=mid:0\r\na=sctp-port:{SCTP_PORT}\r\na=max-message-size:{}\r\n",
        code.ice_ufrag,
        code.ice_pwd,
        code.fingerprint_hex(),
        code.setup.as_str(),
        code.max_message_size
            .unwrap_or(DEFAULT_CODE_MAX_MESSAGE_SIZE),
    );
    s
}

/// The `candidate:` attribute value (without the `candidate:` prefix) of the `index`-th
/// candidate. The foundation and priority are not carried: the foundation is the index, and
/// the priority follows RFC 8445 §5.1.2 from the type and the sender's order.
pub(super) fn candidate_line(index: usize, c: &CompactCandidate) -> String {
    let local_pref = 65_535u32.saturating_sub(u32::try_from(index).unwrap_or(u32::MAX));
    let priority = (c.kind.type_preference() << 24) | (local_pref << 8) | (256 - 1);
    let transport = match c.transport {
        CandidateTransport::Udp => "udp",
        _ => "tcp",
    };
    let mut line = format!(
        "{} 1 {transport} {priority} {} {} typ {}",
        index + 1,
        c.address,
        c.port,
        c.kind.as_str()
    );
    match c.related {
        Some(r) => {
            let _ = write!(line, " raddr {} rport {}", r.ip(), r.port());
        }
        None if c.kind != CandidateType::Host => line.push_str(" raddr 0.0.0.0 rport 0"),
        None => {}
    }
    match c.transport {
        CandidateTransport::Udp => {}
        CandidateTransport::TcpActive => line.push_str(" tcptype active"),
        CandidateTransport::TcpPassive => line.push_str(" tcptype passive"),
        CandidateTransport::TcpSimultaneousOpen => line.push_str(" tcptype so"),
    }
    line.push_str(" generation 0");
    line
}
