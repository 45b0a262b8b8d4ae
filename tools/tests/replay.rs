//! Capture replay tests: each scenario in `tests/replay/` (written by
//! `testbed/captures/make-replay.py`) goes through the built `xvs-replay`;
//! its output must equal the committed `NAME.expected.pcapng` byte for byte
//! and its verdicts `NAME.expected.verdicts`. Independently of both, every
//! output frame is re-checked with etherparse (another implementation):
//! every checksum verifies — outer and inner headers of a tunnel, the quote
//! of an ICMP error where it is whole — and the rewrite is the one its
//! forwarding method calls for, frame by frame against the input.
//!
//! `XVS_BLESS=1 cargo test -p xvs-tools --test replay` writes the expected
//! files from the current output instead of comparing; review every change
//! (see `tests/replay/README.md`) before committing it.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failure should panic"
)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse::{
    Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv4HeaderSlice, Ipv4Slice,
    Ipv6Slice, TcpSlice, UdpSlice,
};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

const CLIENT0_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const SERVER0_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay")
}

/// Which forwarding method a config uses for every service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Nat,
    Dr,
    Tun,
}

/// One frame of a capture.
#[derive(Debug, Clone)]
struct Frame {
    iface: Option<u32>,
    data: Vec<u8>,
}

/// One line of a verdicts file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    number: usize,
    verdict: String,
    reason: String,
    real_server: String,
}

fn read_capture(path: &Path) -> (Vec<String>, Vec<Frame>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let (mut names, mut frames) = (Vec::new(), Vec::new());
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, pcap_file::DataLink::ETHERNET);
                    names.push(
                        idb.options
                            .iter()
                            .find_map(|o| match o {
                                pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                                _ => None,
                            })
                            .unwrap_or_default(),
                    );
                }
                Block::EnhancedPacket(p) => frames.push(Frame {
                    iface: Some(p.interface_id),
                    data: p.data.into_owned(),
                }),
                _ => {}
            }
        }
        (names, frames)
    } else {
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        let mut frames = Vec::new();
        while let Some(p) = reader.next_packet() {
            frames.push(Frame {
                iface: None,
                data: p.unwrap().data.into_owned(),
            });
        }
        (Vec::new(), frames)
    }
}

fn parse_verdicts(text: &str) -> Vec<Line> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "verdict line {l:?}");
            Line {
                number: f[0].parse().unwrap(),
                verdict: f[1].to_owned(),
                reason: f[2].to_owned(),
                real_server: f[3].to_owned(),
            }
        })
        .collect()
}

/// The result of one replay.
#[derive(Debug)]
struct Replayed {
    input: Vec<Frame>,
    out_names: Vec<String>,
    output: Vec<Frame>,
    verdicts: Vec<Line>,
    stdout: String,
}

fn bless() -> bool {
    std::env::var_os("XVS_BLESS").is_some_and(|v| v != "0")
}

/// Replays scenario `name` with `config`, compares with (or blesses) the
/// expected files, and checks every output frame's checksums.
fn replay(name: &str, config: &str) -> Replayed {
    let dir = dir();
    let input = ["pcapng", "pcap"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no capture for {name}: run testbed/captures/make-replay.py"));
    let tmp = std::env::temp_dir().join(format!("xvs-replay-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (out, verdicts) = (tmp.join("out.pcapng"), tmp.join("verdicts"));
    let result = Command::new(env!("CARGO_BIN_EXE_xvs-replay"))
        .arg("--config")
        .arg(dir.join(config))
        .arg("--in")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--verdicts")
        .arg(&verdicts)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let out_bytes = std::fs::read(&out).unwrap();
    let verdict_text = std::fs::read_to_string(&verdicts).unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();

    let expected_out = dir.join(format!("{name}.expected.pcapng"));
    let expected_verdicts = dir.join(format!("{name}.expected.verdicts"));
    if bless() {
        std::fs::write(&expected_out, &out_bytes).unwrap();
        std::fs::write(&expected_verdicts, &verdict_text).unwrap();
    } else {
        let want = std::fs::read_to_string(&expected_verdicts).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (bless with XVS_BLESS=1)",
                expected_verdicts.display()
            )
        });
        assert_eq!(
            verdict_text,
            want,
            "{name}: verdicts differ from {}",
            expected_verdicts.display()
        );
        let want = std::fs::read(&expected_out).unwrap();
        assert!(
            out_bytes == want,
            "{name}: output differs from {} ({} vs {} bytes)",
            expected_out.display(),
            out_bytes.len(),
            want.len()
        );
    }

    let (_, input_frames) = read_capture(&input);
    let tmp_out = std::env::temp_dir().join(format!(
        "xvs-replay-test-{}-{name}.pcapng",
        std::process::id()
    ));
    std::fs::write(&tmp_out, &out_bytes).unwrap();
    let (out_names, output) = read_capture(&tmp_out);
    std::fs::remove_file(&tmp_out).unwrap();
    let verdicts = parse_verdicts(&verdict_text);
    assert_eq!(
        verdicts.len(),
        input_frames.len(),
        "{name}: one verdict per input frame"
    );
    for (i, line) in verdicts.iter().enumerate() {
        assert_eq!(line.number, i + 1);
    }
    assert_eq!(
        out_names,
        ["client0", "server0"],
        "{name}: output interfaces"
    );
    for (i, frame) in output.iter().enumerate() {
        verify_frame(&frame.data).unwrap_or_else(|e| panic!("{name}: output frame {}: {e}", i + 1));
    }
    Replayed {
        input: input_frames,
        out_names,
        output,
        verdicts,
        stdout: String::from_utf8(result.stdout).unwrap(),
    }
}

// ---- independent checks ----------------------------------------------------------

/// What a verified IP packet says.
#[derive(Debug, Clone)]
struct Ip {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    proto: IpNumber,
    /// Source and destination ports of TCP/UDP.
    ports: Option<(u16, u16)>,
    /// ICMP: type, code, the 4 bytes after the checksum, and the quote.
    icmp: Option<(u8, u8, [u8; 4], Vec<u8>)>,
    /// The whole IP packet.
    bytes: Vec<u8>,
    /// The packet inside a tunnel.
    inner: Option<Box<Ip>>,
}

fn verify_frame(frame: &[u8]) -> Result<Ip, String> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[14..];
    match ethertype {
        0x0800 | 0x86dd => verify_ip(ip, true),
        other => Err(format!("ethertype {other:#06x}")),
    }
}

/// Verifies an IP packet's checksums (IPv4 header, TCP/UDP/ICMP, and the
/// packet inside a tunnel or quoted by an ICMP error); `whole` says the
/// packet must be complete (quotes may be cut short).
fn verify_ip(bytes: &[u8], whole: bool) -> Result<Ip, String> {
    let (src, dst, ttl, proto, payload): (IpAddr, IpAddr, u8, IpNumber, &[u8]) =
        if bytes[0] >> 4 == 4 {
            let h = Ipv4HeaderSlice::from_slice(bytes).map_err(|e| format!("IPv4 header: {e}"))?;
            if h.header_checksum() != h.to_header().calc_header_checksum() {
                return Err(format!(
                    "IPv4 header checksum {:#06x} is wrong",
                    h.header_checksum()
                ));
            }
            let total = usize::from(h.total_len());
            if !whole && total > bytes.len() {
                // A cut quote: only its header can be checked.
                return Ok(Ip {
                    src: h.source_addr().into(),
                    dst: h.destination_addr().into(),
                    ttl: h.ttl(),
                    proto: h.protocol(),
                    ports: None,
                    icmp: None,
                    bytes: bytes.to_vec(),
                    inner: None,
                });
            }
            let s = Ipv4Slice::from_slice(&bytes[..total]).map_err(|e| format!("IPv4: {e}"))?;
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.ttl(),
                h.protocol(),
                s.payload().payload,
            )
        } else {
            let plen = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
            if !whole && 40 + plen > bytes.len() {
                let s = etherparse::Ipv6HeaderSlice::from_slice(bytes)
                    .map_err(|e| format!("IPv6: {e}"))?;
                return Ok(Ip {
                    src: s.source_addr().into(),
                    dst: s.destination_addr().into(),
                    ttl: s.hop_limit(),
                    proto: s.next_header(),
                    ports: None,
                    icmp: None,
                    bytes: bytes.to_vec(),
                    inner: None,
                });
            }
            let s = Ipv6Slice::from_slice(&bytes[..40 + plen]).map_err(|e| format!("IPv6: {e}"))?;
            let h = s.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.hop_limit(),
                s.payload().ip_number,
                s.payload().payload,
            )
        };
    let mut ip = Ip {
        src,
        dst,
        ttl,
        proto,
        ports: None,
        icmp: None,
        bytes: bytes.to_vec(),
        inner: None,
    };
    match (proto, src, dst) {
        (IpNumber::TCP, IpAddr::V4(s), IpAddr::V4(d)) => {
            let t = TcpSlice::from_slice(payload).map_err(|e| format!("TCP: {e}"))?;
            if t.checksum() != t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap() {
                return Err("TCP checksum is wrong".into());
            }
            ip.ports = Some((t.source_port(), t.destination_port()));
        }
        (IpNumber::TCP, IpAddr::V6(s), IpAddr::V6(d)) => {
            let t = TcpSlice::from_slice(payload).map_err(|e| format!("TCP: {e}"))?;
            if t.checksum() != t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap() {
                return Err("TCP checksum is wrong".into());
            }
            ip.ports = Some((t.source_port(), t.destination_port()));
        }
        (IpNumber::UDP, src, dst) => {
            let u = UdpSlice::from_slice(payload).map_err(|e| format!("UDP: {e}"))?;
            let want = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => u
                    .to_header()
                    .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
                    .unwrap(),
                (IpAddr::V6(s), IpAddr::V6(d)) => u
                    .to_header()
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload())
                    .unwrap(),
                _ => unreachable!(),
            };
            if u.checksum() != want {
                return Err(format!(
                    "UDP checksum {:#06x}, want {want:#06x}",
                    u.checksum()
                ));
            }
            ip.ports = Some((u.source_port(), u.destination_port()));
        }
        (IpNumber::ICMP, _, _) => {
            let i = Icmpv4Slice::from_slice(payload).map_err(|e| format!("ICMP: {e}"))?;
            if i.checksum() != i.icmp_type().calc_checksum(i.payload()) {
                return Err("ICMP checksum is wrong".into());
            }
            let quote = payload[8..].to_vec();
            if matches!(
                i.icmp_type(),
                Icmpv4Type::DestinationUnreachable(_) | Icmpv4Type::TimeExceeded(_)
            ) {
                verify_ip(&quote, false).map_err(|e| format!("quoted packet: {e}"))?;
            }
            ip.icmp = Some((
                payload[0],
                payload[1],
                payload[4..8].try_into().unwrap(),
                quote,
            ));
        }
        (IpNumber::IPV6_ICMP, IpAddr::V6(s), IpAddr::V6(d)) => {
            let i = Icmpv6Slice::from_slice(payload).map_err(|e| format!("ICMPv6: {e}"))?;
            let want = i
                .icmp_type()
                .calc_checksum(s.octets(), d.octets(), i.payload())
                .unwrap();
            if i.checksum() != want {
                return Err("ICMPv6 checksum is wrong".into());
            }
            let quote = payload[8..].to_vec();
            if matches!(
                i.icmp_type(),
                Icmpv6Type::PacketTooBig { .. } | Icmpv6Type::DestinationUnreachable(_)
            ) {
                verify_ip(&quote, false).map_err(|e| format!("quoted packet: {e}"))?;
            }
            ip.icmp = Some((
                payload[0],
                payload[1],
                payload[4..8].try_into().unwrap(),
                quote,
            ));
        }
        (IpNumber::IPV4 | IpNumber::IPV6, _, _) => {
            ip.inner = Some(Box::new(
                verify_ip(payload, true).map_err(|e| format!("inner packet: {e}"))?,
            ));
        }
        (other, _, _) => return Err(format!("unexpected protocol {other:?}")),
    }
    Ok(ip)
}

/// `ip` with its TTL / hop limit one lower and, for IPv4, the header
/// checksum recomputed: what every forwarded packet must look like.
fn ttl_decremented(ip: &[u8]) -> Vec<u8> {
    let mut out = ip.to_vec();
    if out[0] >> 4 == 4 {
        out[8] -= 1;
        let ihl = usize::from(out[0] & 0xf) * 4;
        out[10..12].copy_from_slice(&[0, 0]);
        let sum = etherparse::Ipv4HeaderSlice::from_slice(&out[..ihl])
            .unwrap()
            .to_header()
            .calc_header_checksum();
        out[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        out[7] -= 1;
    }
    out
}

fn mac(frame: &[u8], at: usize) -> [u8; 6] {
    frame[at..at + 6].try_into().unwrap()
}

/// The MAC the scenarios give a host (`02:00:00:00:00:07` for clients .7,
/// `02:00:00:00:02:11` for real server .11 or ::11).
fn host_mac(addr: IpAddr) -> [u8; 6] {
    let text = addr.to_string();
    match text.as_str() {
        "198.51.100.7" | "2001:db8:5100::7" => [2, 0, 0, 0, 0, 7],
        "198.51.100.8" => [2, 0, 0, 0, 0, 8],
        _ => {
            let last = text.rsplit(['.', ':']).next().unwrap();
            [2, 0, 0, 0, 2, u8::from_str_radix(last, 16).unwrap()]
        }
    }
}

fn vip(family_of: IpAddr) -> IpAddr {
    if family_of.is_ipv4() {
        "203.0.113.10".parse().unwrap()
    } else {
        "2001:db8:113::10".parse().unwrap()
    }
}

/// What happened to each transmitted frame, for the assertions of each test.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    /// Client → real server (NAT, DR or TUN).
    Inbound,
    /// Real server → client (NAT).
    Reply,
    /// A fragmentation-needed / packet-too-big the director generated.
    TooBig,
}

/// Checks every transmitted frame against the input frame it came from, by
/// the rules of `method`; returns what each was.
fn check_rewrites(name: &str, r: &Replayed, method: Method) -> Vec<Kind> {
    let mut kinds = Vec::new();
    let mut out = r.output.iter();
    for line in &r.verdicts {
        let Some(iface) = line.verdict.strip_prefix("transmit:") else {
            continue;
        };
        let frame = out
            .next()
            .unwrap_or_else(|| panic!("{name}: fewer output frames than transmits"));
        let at = format!("{name}: frame {}", line.number);
        let want_iface = if iface == "client0" { 0 } else { 1 };
        assert_eq!(frame.iface, Some(want_iface), "{at}: output interface");
        let input = &r.input[line.number - 1].data;
        let in_ip = verify_frame(input).unwrap();
        let out_ip = verify_frame(&frame.data).unwrap();
        let our_mac = if iface == "client0" {
            CLIENT0_MAC
        } else {
            SERVER0_MAC
        };
        assert_eq!(
            mac(&frame.data, 6),
            our_mac,
            "{at}: source MAC is the egress interface's"
        );
        let rs: Option<SocketAddr> = match line.real_server.as_str() {
            "-" => None,
            s => Some(s.parse().unwrap()),
        };
        let in_is_error = in_ip
            .icmp
            .as_ref()
            .is_some_and(|(t, ..)| matches!(t, 3 | 11 | 1 | 2));
        let kind = match (iface, rs) {
            ("client0", None) => {
                // A too-big reply to the sender, from the VIP, quoting the packet.
                let (t, code, rest, quote) = out_ip
                    .icmp
                    .clone()
                    .unwrap_or_else(|| panic!("{at}: not ICMP"));
                if in_ip.src.is_ipv4() {
                    assert_eq!((t, code), (3, 4), "{at}: fragmentation needed");
                } else {
                    assert_eq!((t, code), (2, 0), "{at}: packet too big");
                }
                let mtu = u32::from_be_bytes(rest);
                assert!(
                    mtu > 0 && (mtu as usize) < in_ip.bytes.len(),
                    "{at}: MTU {mtu}"
                );
                assert_eq!(out_ip.src, vip(in_ip.src), "{at}: from the VIP");
                assert_eq!(out_ip.dst, in_ip.src, "{at}: to the sender");
                assert_eq!(
                    mac(&frame.data, 0),
                    mac(input, 6),
                    "{at}: back to the sender's MAC"
                );
                assert!(
                    quote.len() >= 28 && in_ip.bytes.starts_with(&quote),
                    "{at}: quotes the packet as received"
                );
                Kind::TooBig
            }
            ("client0", Some(rs)) => {
                // A NAT reply: from the VIP, to the client.
                assert_eq!(method, Method::Nat, "{at}");
                assert_eq!(in_ip.src, rs.ip(), "{at}: came from the real server");
                assert_eq!(out_ip.src, vip(rs.ip()), "{at}: source is the VIP");
                assert_eq!(out_ip.dst, in_ip.dst, "{at}: destination kept");
                assert_eq!(out_ip.ttl, in_ip.ttl - 1, "{at}: TTL");
                assert_eq!(
                    mac(&frame.data, 0),
                    host_mac(out_ip.dst),
                    "{at}: client's MAC"
                );
                if in_is_error {
                    let quote = verify_ip(&out_ip.icmp.as_ref().unwrap().3, false).unwrap();
                    assert_eq!(quote.dst, out_ip.src, "{at}: the quote names the VIP");
                    assert_eq!(quote.src, out_ip.dst, "{at}: the quote names the client");
                    let (qs, _) = quote.ports.unwrap();
                    let (_, qd) = quote.ports.map(|p| (p.0, p.1)).unwrap();
                    assert_eq!(qs, in_ip_quote_ports(&in_ip).0, "{at}: client port kept");
                    assert_ne!(qd, rs.port(), "{at}: the quote's port is the virtual one");
                } else {
                    let (sp, dp) = out_ip.ports.unwrap();
                    assert_ne!(sp, 0);
                    assert_eq!(dp, in_ip.ports.unwrap().1, "{at}: client port kept");
                    assert_eq!(
                        payload_of(&out_ip),
                        payload_of(&in_ip),
                        "{at}: payload kept"
                    );
                }
                Kind::Reply
            }
            (_, Some(rs)) => {
                match method {
                    Method::Nat => {
                        assert_eq!(out_ip.dst, rs.ip(), "{at}: destination is the real server");
                        assert_eq!(out_ip.src, in_ip.src, "{at}: source kept");
                        assert_eq!(out_ip.ttl, in_ip.ttl - 1, "{at}: TTL");
                        if in_is_error {
                            let quote = verify_ip(&out_ip.icmp.as_ref().unwrap().3, false).unwrap();
                            assert_eq!(quote.src, rs.ip(), "{at}: the quote names the real server");
                            assert_eq!(quote.ports.unwrap().0, rs.port(), "{at}: and its port");
                        } else {
                            assert_eq!(out_ip.ports.unwrap().1, rs.port(), "{at}: real port");
                            assert_eq!(
                                out_ip.ports.unwrap().0,
                                in_ip.ports.unwrap().0,
                                "{at}: client port"
                            );
                            assert_eq!(
                                payload_of(&out_ip),
                                payload_of(&in_ip),
                                "{at}: payload kept"
                            );
                        }
                    }
                    Method::Dr => {
                        assert_eq!(
                            out_ip.bytes,
                            ttl_decremented(&in_ip.bytes),
                            "{at}: IP packet unchanged but for the TTL"
                        );
                    }
                    Method::Tun => {
                        let inner = out_ip
                            .inner
                            .as_ref()
                            .unwrap_or_else(|| panic!("{at}: not a tunnel"));
                        assert_eq!(
                            out_ip.dst,
                            rs.ip(),
                            "{at}: outer destination is the real server"
                        );
                        let server0: IpAddr = if rs.is_ipv4() {
                            "192.0.2.1"
                        } else {
                            "2001:db8:200::1"
                        }
                        .parse()
                        .unwrap();
                        assert_eq!(
                            out_ip.src, server0,
                            "{at}: outer source is server0's address"
                        );
                        let want = if in_ip.src.is_ipv4() {
                            IpNumber::IPV4
                        } else {
                            IpNumber::IPV6
                        };
                        assert_eq!(out_ip.proto, want, "{at}: IPIP / ip6ip6");
                        assert_eq!(
                            inner.bytes,
                            ttl_decremented(&in_ip.bytes),
                            "{at}: the client's packet inside, TTL -1"
                        );
                        assert_eq!(out_ip.ttl, inner.ttl, "{at}: outer TTL = inner TTL");
                    }
                }
                assert_eq!(
                    mac(&frame.data, 0),
                    host_mac(rs.ip()),
                    "{at}: real server's MAC"
                );
                Kind::Inbound
            }
            (_, None) => panic!("{at}: transmitted to the server side with no real server"),
        };
        kinds.push(kind);
    }
    assert!(
        out.next().is_none(),
        "{name}: more output frames than transmits"
    );
    kinds
}

fn payload_of(ip: &Ip) -> Vec<u8> {
    // The transport payload: after the IP header and the 20-byte TCP (with
    // no options, as the scenarios write it) or 8-byte UDP header.
    let l3 = if ip.src.is_ipv4() {
        usize::from(ip.bytes[0] & 0xf) * 4
    } else {
        40
    };
    let l4 = match ip.proto {
        IpNumber::TCP => usize::from(ip.bytes[l3 + 12] >> 4) * 4,
        IpNumber::UDP => 8,
        _ => 0,
    };
    ip.bytes[l3 + l4..].to_vec()
}

fn in_ip_quote_ports(ip: &Ip) -> (u16, u16) {
    verify_ip(&ip.icmp.as_ref().unwrap().3, false)
        .unwrap()
        .ports
        .unwrap()
}

fn verdict_words(r: &Replayed) -> Vec<String> {
    r.verdicts
        .iter()
        .map(|l| format!("{} {} {}", l.verdict, l.reason, l.real_server))
        .collect()
}

fn summary_has(r: &Replayed, label: &str, n: u64) {
    let found = r.stdout.lines().any(|l| {
        l.trim_start().starts_with(label) && l.split_whitespace().last() == Some(&n.to_string())
    });
    assert!(found, "summary lacks {label:?} = {n}:\n{}", r.stdout);
}

// ---- scenarios -------------------------------------------------------------------

#[test]
fn nat_tcp_connection_with_replies_and_teardown() {
    let r = replay("nat-tcp", "nat.toml");
    let kinds = check_rewrites("nat-tcp", &r, Method::Nat);
    assert_eq!(kinds.len(), 14, "every frame is forwarded");
    assert_eq!(kinds.iter().filter(|k| **k == Kind::Reply).count(), 6);
    let rs: Vec<&str> = r.verdicts.iter().map(|l| l.real_server.as_str()).collect();
    // rr: the first connection to .12, the second to .11; replies follow.
    assert_eq!(rs.iter().filter(|s| **s == "192.0.2.11:80").count(), 3);
    assert_eq!(r.out_names.len(), 2);
}

#[test]
fn nat_udp_both_ways_and_expiry() {
    let r = replay("nat-udp", "nat.toml");
    let kinds = check_rewrites("nat-udp", &r, Method::Nat);
    assert_eq!(
        kinds,
        [
            Kind::Inbound,
            Kind::Reply,
            Kind::Inbound,
            Kind::Reply,
            Kind::Inbound,
            Kind::Reply
        ]
    );
    // 301 s of silence expired the first entry: the last query opened a
    // second connection.
    assert!(
        r.stdout.contains("udp 203.0.113.10:53 -> 192.0.2.13:5353"),
        "{}",
        r.stdout
    );
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("192.0.2.13:5353"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().rev().nth(2),
        Some("2"),
        "connections: {line}"
    );
}

#[test]
fn nat_icmp_errors_cross_the_nat_both_ways() {
    let r = replay("nat-icmp", "nat.toml");
    let kinds = check_rewrites("nat-icmp", &r, Method::Nat);
    assert_eq!(
        kinds,
        [Kind::Inbound, Kind::Inbound, Kind::Reply, Kind::Inbound]
    );
    assert_eq!(verdict_words(&r)[4], "drop icmp_error_no_connection -");
    // The port unreachable from .13 reaches the client from the VIP,
    // quoting client -> VIP:53 (checked in check_rewrites); port 53 exactly:
    let out = verify_frame(&r.output[2].data).unwrap();
    let quote = verify_ip(&out.icmp.unwrap().3, false).unwrap();
    assert_eq!(quote.ports, Some((53001, 53)));
    assert_eq!(quote.dst, "203.0.113.10".parse::<IpAddr>().unwrap());
}

#[test]
fn nat_ipv6() {
    let r = replay("nat-v6", "nat.toml");
    let kinds = check_rewrites("nat-v6", &r, Method::Nat);
    assert_eq!(kinds.len(), 6);
    assert_eq!(
        verdict_words(&r)[6],
        "pass - -",
        "echo to the VIP goes to the kernel"
    );
}

#[test]
fn nat_too_big_answers_frag_needed_out_of_the_client_side() {
    let r = replay("nat-too-big", "nat.toml");
    let kinds = check_rewrites("nat-too-big", &r, Method::Nat);
    assert_eq!(
        kinds,
        [
            Kind::Inbound,
            Kind::TooBig,
            Kind::Inbound,
            Kind::Inbound,
            Kind::TooBig
        ]
    );
    assert_eq!(verdict_words(&r)[2], "drop too_big_without_df -");
    for i in [1, 4] {
        let ip = verify_frame(&r.output[i].data).unwrap();
        assert_eq!(ip.icmp.unwrap().2, 1400u32.to_be_bytes(), "MTU of server0");
    }
    summary_has(&r, "of which ICMP too-big", 2);
}

#[test]
fn nat_fallback_server_when_no_real_server_can_be_scheduled() {
    let r = replay("nat-fallback", "nat.toml");
    let kinds = check_rewrites("nat-fallback", &r, Method::Nat);
    assert_eq!(kinds, [Kind::Inbound, Kind::Reply, Kind::Inbound]);
    assert_eq!(r.verdicts[0].real_server, "192.0.2.14:8080");
    assert_eq!(verdict_words(&r)[3], "drop no_real_server -");
    assert!(
        r.stdout.contains("192.0.2.14:8080 Masq (fallback)"),
        "{}",
        r.stdout
    );
}

#[test]
fn misc_passes_non_vip_traffic_and_drops_malformed_frames_with_their_reason() {
    let r = replay("misc", "nat.toml");
    assert!(r.output.is_empty());
    assert_eq!(
        verdict_words(&r),
        [
            "pass - -",
            "pass - -",
            "pass - -",
            "pass - -",
            "drop ipv4_bad_checksum -",
            "drop tcp_truncated -",
            "drop ipv4_bad_header_len -",
            "drop tcp_bad_header_len -",
            "drop no_connection -",
            "drop ethernet_truncated -",
            "unknown-interface - -",
        ]
    );
    summary_has(&r, "unknown interface", 1);
    summary_has(&r, "ipv4_bad_checksum", 1);
}

#[test]
fn dr_changes_only_the_macs() {
    let r = replay("dr-tcp", "dr.toml");
    let kinds = check_rewrites("dr-tcp", &r, Method::Dr);
    assert_eq!(kinds, [Kind::Inbound; 7]);
    assert_eq!(
        r.verdicts[4].real_server, "192.0.2.11:80",
        "rr: second connection"
    );
}

#[test]
fn tun_encapsulates_ipip_and_ip6ip6() {
    let r = replay("tun-tcp", "tun.toml");
    let kinds = check_rewrites("tun-tcp", &r, Method::Tun);
    assert_eq!(kinds, [Kind::Inbound; 6]);
    let v6 = verify_frame(&r.output[4].data).unwrap();
    assert_eq!(v6.proto, IpNumber::IPV6, "ip6ip6");
}

#[test]
fn tun_too_big_counts_the_outer_header() {
    let r = replay("tun-too-big", "tun.toml");
    let kinds = check_rewrites("tun-too-big", &r, Method::Tun);
    assert_eq!(
        kinds,
        [
            Kind::Inbound,
            Kind::TooBig,
            Kind::Inbound,
            Kind::Inbound,
            Kind::TooBig
        ]
    );
    let v4 = verify_frame(&r.output[1].data).unwrap();
    assert_eq!(v4.icmp.unwrap().2, 1480u32.to_be_bytes(), "1500 - 20");
    let v6 = verify_frame(&r.output[4].data).unwrap();
    assert_eq!(v6.icmp.unwrap().2, 1460u32.to_be_bytes(), "1500 - 40");
}

#[test]
fn too_big_packets_do_not_count_as_reaching_the_real_server() {
    let r = replay("nat-too-big", "nat.toml");
    // Only the SYN and the 1400-byte packet reached .12; the IPv6 SYN ::11.
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("-> 192.0.2.12:80 "))
        .unwrap();
    assert_eq!(
        line.split_whitespace().rev().nth(1),
        Some("2"),
        "packets in: {line}"
    );
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("[2001:db8:200::11]:8080"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().rev().nth(1),
        Some("1"),
        "packets in: {line}"
    );
}

#[test]
fn the_checker_catches_bad_checksums_outer_inner_and_quoted() {
    // The checks above are only worth something if they can fail.
    let (_, misc) = read_capture(&dir().join("misc.pcap"));
    assert!(
        verify_frame(&misc[4].data).is_err(),
        "bad IPv4 header checksum"
    );
    let (_, tcp) = read_capture(&dir().join("nat-tcp.pcapng"));
    let mut frame = tcp[0].data.clone();
    verify_frame(&frame).unwrap();
    frame[14 + 20 + 16] ^= 1;
    assert!(verify_frame(&frame).is_err(), "bad TCP checksum");
    let (_, tun) = read_capture(&dir().join("tun-tcp.expected.pcapng"));
    let mut frame = tun[0].data.clone();
    verify_frame(&frame).unwrap();
    frame[14 + 20 + 20 + 16] ^= 1;
    assert!(verify_frame(&frame).is_err(), "bad inner TCP checksum");
    let (_, icmp) = read_capture(&dir().join("nat-icmp.expected.pcapng"));
    let mut frame = icmp[2].data.clone();
    verify_frame(&frame).unwrap();
    // The quoted UDP checksum, with the ICMP checksum fixed up so that
    // only the quote is wrong.
    let at = 14 + 20 + 8 + 20 + 6;
    frame[at] ^= 1;
    frame[14 + 20 + 2] ^= 1;
    assert!(verify_frame(&frame).is_err(), "bad quoted UDP checksum");
}

// ---- the command line ------------------------------------------------------------

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xvs-replay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xvs-replay-cli-{}-{name}", std::process::id()))
}

#[test]
fn unreadable_capture_is_a_clear_error() {
    let config = dir().join("nat.toml");
    let out = scratch("o1.pcapng");
    let (code, _, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--in",
        "/nonexistent/in.pcap",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("/nonexistent/in.pcap: cannot read the capture"),
        "{stderr}"
    );
}

#[test]
fn not_a_capture_and_damaged_captures_are_clear_errors() {
    let config = dir().join("nat.toml");
    let out = scratch("o2.pcapng");
    let garbage = scratch("garbage.pcap");
    std::fs::write(&garbage, b"hello, world\n").unwrap();
    let (code, _, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--in",
        garbage.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not a pcap or pcapng capture"), "{stderr}");
    // Every prefix of a real capture: an error or a clean stop, never a panic.
    for name in ["nat-tcp.pcapng", "misc.pcap"] {
        let whole = std::fs::read(dir().join(name)).unwrap();
        for cut in (0..whole.len()).step_by(7) {
            std::fs::write(&garbage, &whole[..cut]).unwrap();
            let (code, _, stderr) = run(&[
                "--config",
                config.to_str().unwrap(),
                "--in",
                garbage.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(
                matches!(code, Some(0 | 2)),
                "{name} cut at {cut}: {code:?} {stderr}"
            );
            assert!(
                !stderr.contains("panicked"),
                "{name} cut at {cut}: {stderr}"
            );
        }
    }
    let _ = std::fs::remove_file(&garbage);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn a_link_type_other_than_ethernet_is_refused() {
    let config = dir().join("nat.toml");
    let out = scratch("o3.pcapng");
    let raw = scratch("raw.pcap");
    // pcap header with link type 101 (raw IP).
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 101] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&raw, &bytes).unwrap();
    let (code, _, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--in",
        raw.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not Ethernet"), "{stderr}");
    let _ = std::fs::remove_file(&raw);
}

#[test]
fn an_invalid_config_is_printed_as_the_loader_words_it() {
    let bad = scratch("bad.toml");
    std::fs::write(&bad, "[[interfaces]]\nname = \"a\"\nrole = \"client\"\nmac = \"02:00:00:00:00:01\"\nwieght = 3\n").unwrap();
    let input = dir().join("misc.pcap");
    let out = scratch("o4.pcapng");
    let (code, _, stderr) = run(&[
        "--config",
        bad.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("bad.toml:5:"), "line and column: {stderr}");
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn a_config_without_an_interface_mac_is_refused_by_name() {
    let live = scratch("live.toml");
    std::fs::write(
        &live,
        "[[interfaces]]\nname = \"c0\"\nrole = \"client\"\nmac = \"02:00:00:00:00:01\"\n\n[[interfaces]]\nname = \"s0\"\nrole = \"server\"\n",
    )
    .unwrap();
    let input = dir().join("misc.pcap");
    let out = scratch("o5.pcapng");
    let (code, _, stderr) = run(&[
        "--config",
        live.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("interface \"s0\" has no \"mac\""),
        "names the interface: {stderr}"
    );
    let _ = std::fs::remove_file(&live);
    let _ = std::fs::remove_file(&out);
}

/// Writes a pcapng with the given interfaces' link types and frames.
fn write_pcapng(path: &Path, links: &[pcap_file::DataLink], frames: &[(u32, Vec<u8>)]) {
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    let mut w = PcapNgWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for link in links {
        w.write_pcapng_block(InterfaceDescriptionBlock::new(*link, 0))
            .unwrap();
    }
    for (iface, data) in frames {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: *iface,
            timestamp: std::time::Duration::ZERO,
            original_len: data.len() as u32,
            data: data.as_slice().into(),
            options: vec![],
        })
        .unwrap();
    }
}

#[test]
fn pcapng_interfaces_past_the_configured_ones_are_unknown() {
    let (_, misc) = read_capture(&dir().join("misc.pcap"));
    let arp = misc[0].data.clone();
    let input = scratch("three.pcapng");
    let e = pcap_file::DataLink::ETHERNET;
    write_pcapng(
        &input,
        &[e, e, e],
        &[(2, arp.clone()), (0, arp.clone()), (1, arp)],
    );
    let (out, verdicts) = (scratch("o5.pcapng"), scratch("v5"));
    let config = dir().join("nat.toml");
    let (code, stdout, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--verdicts",
        verdicts.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&verdicts).unwrap(),
        "1\tunknown-interface\t-\t-\n2\tpass\t-\t-\n3\tpass\t-\t-\n"
    );
    assert!(stdout.contains("unknown interface"), "{stdout}");

    write_pcapng(
        &input,
        &[e, pcap_file::DataLink::RAW],
        &[(1, vec![0x45; 20])],
    );
    let (code, _, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("interface 1 has link type"), "{stderr}");
    for f in [input, out, verdicts] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn help_documents_the_verdicts_format() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for word in [
        "transmit:IFACE",
        "unknown-interface",
        "ipv4_bad_checksum",
        "REAL-SERVER",
    ] {
        assert!(stdout.contains(word), "--help lacks {word}:\n{stdout}");
    }
}
