//! `xvs-rewrite`: applies one forwarding method's rewrite (VS/NAT, VS/DR or
//! VS/TUN) towards one real server to every frame of a capture, prints what
//! it did to each frame, and writes the frames it would transmit.
//!
//! A debugging and teaching tool for the packet layer: it runs the same
//! parse and rewrite functions as the director, without connection table or
//! scheduler (those are `xvs-replay`'s job).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use xvs_packet::ethernet::MacAddr;
use xvs_packet::icmp_error::nat_error_inbound;
use xvs_packet::parse::{Fragment, IcmpKind, IpFrame, IpVersion};
use xvs_packet::rewrite::{decrement_hop_limit, direct_route, nat_inbound};
use xvs_packet::tunnel::{OuterSource, Tunnel, encapsulate};
use xvs_packet::{Parsed, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// VS/NAT: destination becomes the real server; TTL decremented.
    Nat,
    /// VS/DR: only the MAC addresses change.
    Dr,
    /// VS/TUN: IPIP / ip6ip6 encapsulation to the real server.
    Tun,
}

/// Apply one forwarding method to every frame of a capture and show what changed.
#[derive(Debug, Parser)]
#[command(name = "xvs-rewrite", version, about, long_about = None)]
struct Args {
    /// Capture to read (pcap, Ethernet link type).
    #[arg(long = "in", value_name = "IN.pcap")]
    input: PathBuf,
    /// Where to write the rewritten frames (pcap). Frames that would be
    /// dropped or passed to the kernel are not written.
    #[arg(long = "out", value_name = "OUT.pcap")]
    output: PathBuf,
    /// Forwarding method.
    #[arg(long, value_enum, default_value = "nat")]
    method: Method,
    /// Real server for IPv4 frames, ADDRESS:PORT (DR and TUN keep the port).
    #[arg(
        long = "real-server",
        value_name = "ADDR:PORT",
        default_value = "192.0.2.11:8080"
    )]
    real_server: SocketAddr,
    /// Real server for IPv6 frames, `[ADDRESS]:PORT`.
    #[arg(
        long = "real-server6",
        value_name = "[ADDR]:PORT",
        default_value = "[2001:db8:2::11]:8080"
    )]
    real_server6: SocketAddr,
    /// DR: the real server's MAC address.
    #[arg(long = "rs-mac", default_value = "02:00:00:00:00:11")]
    rs_mac: MacAddr,
    /// DR: the director's MAC address on the real servers' segment.
    #[arg(long = "our-mac", default_value = "02:00:00:00:00:22")]
    our_mac: MacAddr,
    /// TUN: outer source for IPv4 tunnels.
    #[arg(long = "tunnel-source", default_value = "192.0.2.1")]
    tunnel_source: IpAddr,
    /// TUN: outer source for IPv6 tunnels.
    #[arg(long = "tunnel-source6", default_value = "2001:db8:2::1")]
    tunnel_source6: IpAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xvs-rewrite: {message}");
            ExitCode::from(2)
        }
    }
}

const HEADROOM: usize = 64;

fn run(args: &Args) -> Result<(), String> {
    let file = File::open(&args.input)
        .map_err(|e| format!("cannot open {}: {e}", args.input.display()))?;
    let mut reader = PcapReader::new(BufReader::new(file)).map_err(|e| {
        format!(
            "{}: not a pcap file ({e}); pcapng is read by xvs-replay",
            args.input.display()
        )
    })?;
    if reader.header().datalink != DataLink::ETHERNET {
        return Err(format!(
            "{}: link type {:?} is not Ethernet: capture on an Ethernet interface (tcpdump -i IFACE)",
            args.input.display(),
            reader.header().datalink
        ));
    }
    let out = File::create(&args.output)
        .map_err(|e| format!("cannot create {}: {e}", args.output.display()))?;
    let mut writer = PcapWriter::new(BufWriter::new(out))
        .map_err(|e| format!("{}: {e}", args.output.display()))?;
    let mut buf = vec![0u8; HEADROOM + 65536];
    let (mut sent, mut total) = (0usize, 0usize);
    while let Some(packet) = reader.next_packet() {
        let packet =
            packet.map_err(|e| format!("{}: frame {}: {e}", args.input.display(), total + 1))?;
        total += 1;
        let len = packet.data.len();
        buf[HEADROOM..HEADROOM + len].copy_from_slice(&packet.data);
        let frame = &mut buf[HEADROOM..HEADROOM + len];
        let parsed = match parse(frame) {
            Ok(Parsed::Ip(ip)) => ip,
            Ok(Parsed::NotIp { ethertype, .. }) => {
                println!("#{total:<3} {ethertype:?}: not IP, passed to the kernel");
                continue;
            }
            Err(e) => {
                println!("#{total:<3} dropped: {e}");
                continue;
            }
        };
        println!("#{total:<3} {}", describe(&parsed));
        match rewrite(args, &mut buf, len, &parsed) {
            Ok((start, out_len, what)) => {
                println!("      {what}");
                let data = &buf[start..start + out_len];
                writer
                    .write_packet(&PcapPacket::new(packet.timestamp, out_len as u32, data))
                    .map_err(|e| format!("{}: {e}", args.output.display()))?;
                sent += 1;
            }
            Err(why) => println!("      not forwarded: {why}"),
        }
    }
    println!(
        "{total} frames read, {sent} rewritten frames written to {}",
        args.output.display()
    );
    Ok(())
}

fn describe(ip: &IpFrame) -> String {
    let mut text = ip.flow.to_string();
    let f = ip.tcp_flags;
    if ip.flow.proto == xvs_packet::IpProtocol::Tcp {
        let names: Vec<&str> = [
            (f.syn(), "SYN"),
            (f.ack(), "ACK"),
            (f.fin(), "FIN"),
            (f.rst(), "RST"),
        ]
        .iter()
        .filter_map(|(on, name)| on.then_some(*name))
        .collect();
        text.push_str(&format!(" [{}]", names.join(",")));
    }
    match ip.icmp {
        Some(IcmpKind::EchoRequest { ident }) => {
            text.push_str(&format!(" echo request id {ident}"))
        }
        Some(IcmpKind::Error { msg_type, code }) => {
            text = format!(
                "ICMP error type {msg_type} code {code} about the connection {}",
                ip.flow
            )
        }
        _ => {}
    }
    if let Some(vlan) = ip.vlan {
        text.push_str(&format!(" (VLAN {vlan})"));
    }
    if ip.fragment != Fragment::None {
        text.push_str(&format!(" ({:?} fragment)", ip.fragment));
    }
    text
}

fn checksums(frame: &[u8], ip: &IpFrame) -> String {
    let read = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut parts = Vec::new();
    if ip.version == IpVersion::V4 {
        parts.push(format!("ip {:#06x}", read(ip.l3_offset + 10).unwrap_or(0)));
    }
    // An ICMP error's flow key names the quoted protocol; its own checksum
    // is ICMP's.
    let l4 = match ip.flow.proto {
        _ if ip.icmp.is_some() => Some(("icmp", 2)),
        xvs_packet::IpProtocol::Tcp => Some(("tcp", 16)),
        xvs_packet::IpProtocol::Udp => Some(("udp", 6)),
        _ => None,
    };
    if let Some((name, off)) = l4.filter(|_| ip.fragment != Fragment::Later) {
        parts.push(format!(
            "{name} {:#06x}",
            read(ip.l4_offset + off).unwrap_or(0)
        ));
    }
    parts.join(" ")
}

fn rewrite(
    args: &Args,
    buf: &mut [u8],
    len: usize,
    ip: &IpFrame,
) -> Result<(usize, usize, String), String> {
    let rs = if ip.version == IpVersion::V4 {
        args.real_server
    } else {
        args.real_server6
    };
    if rs.is_ipv4() != (ip.version == IpVersion::V4) {
        return Err(format!("real server {rs} is of the other IP family"));
    }
    let frame = &mut buf[HEADROOM..HEADROOM + len];
    let before = checksums(frame, ip);
    match args.method {
        Method::Nat => {
            decrement_hop_limit(frame, ip).map_err(|e| e.to_string())?;
            let is_error = matches!(ip.icmp, Some(IcmpKind::Error { .. }));
            if is_error {
                nat_error_inbound(frame, ip, rs.ip(), rs.port()).map_err(|e| e.to_string())?;
            } else {
                nat_inbound(frame, ip, rs.ip(), rs.port()).map_err(|e| e.to_string())?;
            }
            let after = reparse_checksums(frame)?;
            let target = if ip.icmp.is_some() && !is_error {
                rs.ip().to_string()
            } else {
                rs.to_string()
            };
            let what = if is_error {
                "NAT: error and its quote now name"
            } else {
                "NAT: destination now"
            };
            Ok((
                HEADROOM,
                len,
                format!("{what} {target}, TTL -1; checksums {before} -> {after}"),
            ))
        }
        Method::Dr => {
            direct_route(frame, args.rs_mac, args.our_mac);
            Ok((
                HEADROOM,
                len,
                format!(
                    "DR: MAC {} -> {}, IP packet untouched",
                    args.our_mac, args.rs_mac
                ),
            ))
        }
        Method::Tun => {
            let src = if rs.is_ipv4() {
                args.tunnel_source
            } else {
                args.tunnel_source6
            };
            let tunnel = Tunnel {
                dst: rs.ip(),
                src: OuterSource::Fixed(src),
                ttl: 64,
            };
            let (start, out_len) =
                encapsulate(buf, HEADROOM, len, ip, &tunnel, 0).map_err(|e| e.to_string())?;
            Ok((
                start,
                out_len,
                format!(
                    "TUN: encapsulated {src} -> {} (+{} bytes)",
                    rs.ip(),
                    out_len - len
                ),
            ))
        }
    }
}

fn reparse_checksums(frame: &[u8]) -> Result<String, String> {
    match parse(frame) {
        Ok(Parsed::Ip(ip)) => Ok(checksums(frame, &ip)),
        Ok(_) => Err("the rewritten frame is not IP".into()),
        Err(e) => Err(format!("the rewritten frame does not parse: {e}")),
    }
}
