//! `xvs-replay`'s engine: every frame of a capture through the director's
//! per-frame pipeline ([`Director::process`], the function live workers
//! call), the transmitted frames into a pcapng file, one verdict line per
//! input frame.
//!
//! # Contract
//! - **Config**: every interface needs its `mac` (a config without one is
//!   refused, naming the interface: there is no kernel to read it from); an
//!   absent `mtu` is 1500. Next hops' MACs come from the static
//!   `[[neighbours]]`; a next hop without one is dropped as
//!   `neighbour_unresolved` (the request the pipeline queues is ignored).
//! - **Input**: pcap (micro- or nanosecond, either byte order) or pcapng,
//!   told apart by the file's magic number; Ethernet link type only.
//! - **Receiving interface**: for pcapng, the frame's interface number *is*
//!   the configured interface of that position (interface 0 = the first
//!   `[[interfaces]]`); a number past the configured ones is
//!   `unknown-interface`. For plain pcap, which has no interfaces, it is the
//!   configured interface whose MAC is the frame's destination MAC; a
//!   broadcast or multicast destination (ARP who-has, neighbour
//!   solicitation) and a frame too short to hold a destination MAC go to the
//!   first configured interface (the pipeline then passes or drops them as
//!   it would on the wire); any other destination is `unknown-interface`.
//!   `unknown-interface` frames are reported and skipped: the pipeline
//!   never sees them.
//! - **Clock**: the capture's timestamps, in milliseconds since the first
//!   frame (the director starts at 0). A timestamp earlier than the one
//!   before it counts as the one before it: the director's clock never goes
//!   back. Housekeeping (connection expiry, template expiry, scheduler
//!   timers) runs whenever the clock has advanced by
//!   [`HOUSEKEEPING_INTERVAL_MS`] since it last ran, before the frame is
//!   processed, and once after the last frame.
//! - **Output**: pcapng, little-endian, one Interface Description Block per
//!   configured interface in config order (Ethernet, `if_name` = the
//!   interface's name, `if_MACaddr`, nanosecond timestamps), each
//!   transmitted frame on the interface it leaves by with its input frame's
//!   timestamp. The same input and config always give the same bytes: the
//!   connection table's hash and the scheduler's random source use fixed
//!   seeds.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError};
use xvs_director::config::{ClusterConfig, ConfigError};
use xvs_director::control::snapshot::BuildError;
use xvs_director::pipeline::{
    DestIndex, Director, DropReason, HEADROOM, IfaceId, Snapshot, Verdict, WorkerCounters,
};

/// How far the capture clock advances between two housekeeping runs.
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 100;

/// How many expired connections one housekeeping run may reclaim.
pub const HOUSEKEEPING_BUDGET: usize = 65_536;

/// Seed of the connection table's hash: fixed, so that replays repeat.
const TABLE_SEED: u64 = 0x7876_735f_7265_706c;

/// Seed of the worker's random source (the `twos` scheduler).
const WORKER_SEED: u64 = 0x7876_735f_776f_726b;

/// Room after the frame: an ICMP too-big reply is built in place and may be
/// longer than a short frame.
const TAILROOM: usize = 2048;

/// What to replay, and where to.
#[derive(Debug, Clone)]
pub struct ReplayFiles {
    /// The cluster configuration (TOML).
    pub config: PathBuf,
    /// The capture to read (pcap or pcapng).
    pub input: PathBuf,
    /// Where to write the transmitted frames (pcapng).
    pub output: PathBuf,
    /// Where to write one verdict line per input frame, if anywhere.
    pub verdicts: Option<PathBuf>,
}

/// Why a replay could not be done. Each message names the file and says
/// what to do.
#[derive(Debug)]
pub enum ReplayError {
    /// The configuration could not be read or is invalid (printed as the
    /// config loader words it: file:line:col: field: problem).
    Config(ConfigError),
    /// An interface without `mac`: replay has no kernel to ask.
    NoMac {
        /// The config file.
        path: PathBuf,
        /// The interface.
        interface: String,
    },
    /// The configuration is valid TOML but cannot be run.
    Build {
        /// The config file.
        path: PathBuf,
        /// What the director said.
        source: BuildError,
    },
    /// The capture could not be opened or read.
    ReadCapture {
        /// The capture.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is neither pcap nor pcapng.
    NotACapture {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        magic: Vec<u8>,
    },
    /// The capture is damaged.
    DamagedCapture {
        /// The capture.
        path: PathBuf,
        /// Frames read before the damage.
        after: u64,
        /// What the capture reader said.
        source: PcapError,
    },
    /// A frame or interface of a link type other than Ethernet.
    LinkType {
        /// The capture.
        path: PathBuf,
        /// The pcapng interface, if the capture is pcapng.
        interface: Option<u32>,
        /// The link type.
        link: DataLink,
    },
    /// A pcapng frame names an interface the file never described.
    UndescribedInterface {
        /// The capture.
        path: PathBuf,
        /// The frame's number (from 1).
        frame: u64,
        /// The interface number it names.
        interface: u32,
    },
    /// A timestamp resolution that cannot be represented.
    TimestampResolution {
        /// The capture.
        path: PathBuf,
        /// The pcapng interface.
        interface: u32,
        /// The `if_tsresol` byte.
        tsresol: u8,
    },
    /// An output file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The pipeline returned a frame outside the buffer: a bug in the
    /// pipeline, reported rather than panicked on.
    Pipeline {
        /// The frame's number (from 1).
        frame: u64,
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::NoMac { path, interface } => write!(
                f,
                "{}: interface \"{interface}\" has no \"mac\": xvs-replay has no kernel to read it from; write the MAC it has in the capture (mac = \"02:00:00:00:01:01\") under that [[interfaces]]",
                path.display()
            ),
            Self::Build { path, source } => write!(
                f,
                "{}: the configuration cannot be run: {source}: fix that service in the file",
                path.display()
            ),
            Self::ReadCapture { path, source } => write!(
                f,
                "{}: cannot read the capture: {source}: check the path and its permissions",
                path.display()
            ),
            Self::NotACapture { path, magic } => {
                let shown: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
                write!(
                    f,
                    "{}: not a pcap or pcapng capture (it starts with [{}]): give a file written by tcpdump -w, dumpcap or Wireshark",
                    path.display(),
                    shown.join(" ")
                )
            }
            Self::DamagedCapture {
                path,
                after,
                source,
            } => write!(
                f,
                "{}: the capture is damaged after frame {after}: {source}: re-capture it, or cut it to the frames before (editcap -r)",
                path.display()
            ),
            Self::LinkType {
                path,
                interface,
                link,
            } => {
                let which = match interface {
                    Some(i) => format!("interface {i} has link type"),
                    None => "the link type is".to_owned(),
                };
                write!(
                    f,
                    "{}: {which} {link:?}, not Ethernet: only Ethernet frames can be replayed; capture on the Ethernet interfaces themselves (tcpdump -i eth0, not -i any)",
                    path.display()
                )
            }
            Self::UndescribedInterface {
                path,
                frame,
                interface,
            } => write!(
                f,
                "{}: frame {frame} is on interface {interface}, which no Interface Description Block describes: the capture is damaged; re-capture it",
                path.display()
            ),
            Self::TimestampResolution {
                path,
                interface,
                tsresol,
            } => write!(
                f,
                "{}: interface {interface} has timestamp resolution {tsresol:#04x}, which xvs-replay cannot represent: convert the capture (editcap -F pcap)",
                path.display()
            ),
            Self::Write { path, source } => write!(
                f,
                "{}: cannot write: {source}: check the directory exists and is writable",
                path.display()
            ),
            Self::Pipeline { frame, message } => write!(
                f,
                "frame {frame}: the pipeline returned {message}: this is a bug in xvs, please report it with the capture"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Where a frame was received, as far as the capture says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReceivedOn {
    /// A pcapng interface number.
    Interface(u32),
    /// Plain pcap: decided by the destination MAC.
    Unknown,
}

/// One frame read from the capture (its bytes are in the reader's buffer).
#[derive(Debug, Clone, Copy)]
struct InputFrame {
    timestamp: Duration,
    on: ReceivedOn,
}

/// A pcap or pcapng reader.
enum Capture {
    Pcap(Box<PcapReader<BufReader<File>>>),
    PcapNg {
        reader: Box<PcapNgReader<BufReader<File>>>,
        /// The last timestamp seen (for Simple Packet Blocks, which have none).
        last: Duration,
    },
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pcap(_) => "Capture::Pcap",
            Self::PcapNg { .. } => "Capture::PcapNg",
        })
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl Capture {
    fn open(path: &Path) -> Result<Self, ReplayError> {
        let read_err = |source| ReplayError::ReadCapture {
            path: path.to_owned(),
            source,
        };
        let damaged = |source| ReplayError::DamagedCapture {
            path: path.to_owned(),
            after: 0,
            source,
        };
        let mut file = File::open(path).map_err(read_err)?;
        let mut magic = Vec::with_capacity(4);
        (&mut file)
            .take(4)
            .read_to_end(&mut magic)
            .map_err(read_err)?;
        file.seek(SeekFrom::Start(0)).map_err(read_err)?;
        if PCAP_MAGICS.iter().any(|m| m[..] == magic[..]) {
            let reader = PcapReader::new(BufReader::new(file)).map_err(damaged)?;
            let link = reader.header().datalink;
            if link != DataLink::ETHERNET {
                return Err(ReplayError::LinkType {
                    path: path.to_owned(),
                    interface: None,
                    link,
                });
            }
            Ok(Self::Pcap(Box::new(reader)))
        } else if magic[..] == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(BufReader::new(file)).map_err(damaged)?;
            Ok(Self::PcapNg {
                reader: Box::new(reader),
                last: Duration::ZERO,
            })
        } else {
            Err(ReplayError::NotACapture {
                path: path.to_owned(),
                magic,
            })
        }
    }

    /// Reads the next frame into `data`. `number` is the frame's number
    /// from 1 (for messages).
    fn next_frame(
        &mut self,
        path: &Path,
        number: u64,
        data: &mut Vec<u8>,
    ) -> Result<Option<InputFrame>, ReplayError> {
        let damaged = |source| ReplayError::DamagedCapture {
            path: path.to_owned(),
            after: number - 1,
            source,
        };
        match self {
            Self::Pcap(reader) => match reader.next_packet() {
                None => Ok(None),
                Some(Err(e)) => Err(damaged(e)),
                Some(Ok(packet)) => {
                    data.clear();
                    data.extend_from_slice(&packet.data);
                    Ok(Some(InputFrame {
                        timestamp: packet.timestamp,
                        on: ReceivedOn::Unknown,
                    }))
                }
            },
            Self::PcapNg { reader, last } => loop {
                let block = match reader.next_block() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(damaged(e)),
                    Some(Ok(block)) => block,
                };
                // pcap-file 2 hands out a packet's raw timestamp ticks as
                // if they were nanoseconds; the interface says what they are.
                let (interface, ticks, bytes) = match &block {
                    Block::EnhancedPacket(p) => (p.interface_id, Some(p.timestamp), &p.data),
                    Block::Packet(p) => (
                        u32::from(p.interface_id),
                        Some(Duration::from_nanos(p.timestamp)),
                        &p.data,
                    ),
                    Block::SimplePacket(p) => (0, None, &p.data),
                    _ => continue,
                };
                data.clear();
                data.extend_from_slice(bytes);
                drop(block);
                let Some(idb) = reader.interfaces().get(interface as usize) else {
                    return Err(ReplayError::UndescribedInterface {
                        path: path.to_owned(),
                        frame: number,
                        interface,
                    });
                };
                if idb.linktype != DataLink::ETHERNET {
                    return Err(ReplayError::LinkType {
                        path: path.to_owned(),
                        interface: Some(interface),
                        link: idb.linktype,
                    });
                }
                let timestamp = match ticks {
                    Some(ticks) => timestamp_of(idb, ticks).ok_or_else(|| {
                        ReplayError::TimestampResolution {
                            path: path.to_owned(),
                            interface,
                            tsresol: tsresol(idb),
                        }
                    })?,
                    None => *last,
                };
                *last = timestamp;
                return Ok(Some(InputFrame {
                    timestamp,
                    on: ReceivedOn::Interface(interface),
                }));
            },
        }
    }
}

/// The interface's `if_tsresol` (6, microseconds, when absent).
fn tsresol(idb: &InterfaceDescriptionBlock<'_>) -> u8 {
    idb.options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        })
        .unwrap_or(6)
}

/// A pcapng timestamp: `ticks` (raw units, as pcap-file reports them) in
/// the interface's resolution, plus its `if_tsoffset`.
fn timestamp_of(idb: &InterfaceDescriptionBlock<'_>, ticks: Duration) -> Option<Duration> {
    let resol = tsresol(idb);
    let per_second: u128 = if resol & 0x80 == 0 {
        10u128.checked_pow(u32::from(resol))?
    } else {
        1u128.checked_shl(u32::from(resol & 0x7f))?
    };
    let offset = idb
        .options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsOffset(s) => Some(*s),
            _ => None,
        })
        .unwrap_or(0);
    let raw = ticks.as_nanos();
    let nanos = raw.checked_mul(1_000_000_000)? / per_second;
    let nanos = u64::try_from(nanos).ok()?;
    Duration::from_nanos(nanos).checked_add(Duration::from_secs(offset))
}

/// Counts the replay itself adds to the worker's.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    /// Frames read from the capture.
    pub frames: u64,
    /// Frames skipped because no configured interface received them.
    pub unknown_interface: u64,
    /// Transmitted frames per interface (config order).
    pub transmitted: Vec<u64>,
    /// The worker's counters at the end.
    pub counters: WorkerCounters,
}

/// A finished replay.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The counts.
    pub summary: ReplaySummary,
    /// The summary as `xvs-replay` prints it.
    pub report: String,
}

/// Replays `files.input` through a director built from `files.config`.
///
/// # Errors
/// See [`ReplayError`]: an unreadable or invalid config or capture, a link
/// type other than Ethernet, an output that cannot be written.
pub fn replay(files: &ReplayFiles) -> Result<Replayed, ReplayError> {
    let config = ClusterConfig::load(&files.config).map_err(ReplayError::Config)?;
    if let Some(iface) = config.interfaces.iter().find(|i| i.mac.is_none()) {
        return Err(ReplayError::NoMac {
            path: files.config.clone(),
            interface: iface.name.clone(),
        });
    }
    let director = Director::new(&config, 0, TABLE_SEED).map_err(|source| ReplayError::Build {
        path: files.config.clone(),
        source,
    })?;
    let mut capture = Capture::open(&files.input)?;
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplayError::Write { path, source }
    };
    let state = director.state();
    let out_file = File::create(&files.output).map_err(write_err(&files.output))?;
    let mut out = PcapNgWriter::with_endianness(BufWriter::new(out_file), Endianness::Little)
        .map_err(|e| pcap_write_error(&files.output, e))?;
    for iface in &state.interfaces {
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfName(iface.name.clone().into()),
                InterfaceDescriptionOption::IfMacAddr(iface.mac.0.to_vec().into()),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        out.write_pcapng_block(idb)
            .map_err(|e| pcap_write_error(&files.output, e))?;
    }
    let mut verdicts = match &files.verdicts {
        Some(path) => Some(BufWriter::new(File::create(path).map_err(write_err(path))?)),
        None => None,
    };

    let mut worker = director.worker(WORKER_SEED);
    let mut summary = ReplaySummary {
        transmitted: vec![0; state.interfaces.len()],
        ..ReplaySummary::default()
    };
    let mut data = Vec::new();
    let mut buf = Vec::new();
    let mut first: Option<Duration> = None;
    let (mut now, mut last_housekeeping) = (0u64, 0u64);
    loop {
        let number = summary.frames + 1;
        let Some(frame) = capture.next_frame(&files.input, number, &mut data)? else {
            break;
        };
        summary.frames = number;
        let since_first = frame
            .timestamp
            .saturating_sub(*first.get_or_insert(frame.timestamp));
        now = now.max(u64::try_from(since_first.as_millis()).unwrap_or(u64::MAX));
        if now - last_housekeeping >= HOUSEKEEPING_INTERVAL_MS {
            director.housekeeping(now, HOUSEKEEPING_BUDGET);
            last_housekeeping = now;
        }
        let line = match receiving_interface(&state, frame.on, &data) {
            None => {
                summary.unknown_interface += 1;
                VerdictLine {
                    verdict: "unknown-interface".to_owned(),
                    reason: None,
                    dest: None,
                }
            }
            Some(rx) => {
                buf.clear();
                buf.resize(HEADROOM + data.len() + TAILROOM, 0);
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let outcome =
                    director.process(&mut worker, &mut buf, HEADROOM, data.len(), rx, now);
                let verdict = match outcome.verdict {
                    Verdict::Transmit { iface, start, len } => {
                        let (Some(bytes), Some(ifc)) = (
                            buf.get(start..start.saturating_add(len)),
                            state.interfaces.get(usize::from(iface.0)),
                        ) else {
                            return Err(ReplayError::Pipeline {
                                frame: number,
                                message: format!(
                                    "transmit of {start}..+{len} on interface {} outside a buffer of {} bytes and {} interfaces",
                                    iface.0,
                                    buf.len(),
                                    state.interfaces.len()
                                ),
                            });
                        };
                        let epb = EnhancedPacketBlock {
                            interface_id: u32::from(iface.0),
                            timestamp: frame.timestamp,
                            original_len: len as u32,
                            data: bytes.into(),
                            options: vec![],
                        };
                        out.write_pcapng_block(epb)
                            .map_err(|e| pcap_write_error(&files.output, e))?;
                        summary.transmitted[usize::from(iface.0)] += 1;
                        format!("transmit:{}", ifc.name)
                    }
                    Verdict::PassToKernel => "pass".to_owned(),
                    Verdict::Drop(_) => "drop".to_owned(),
                };
                VerdictLine {
                    verdict,
                    reason: match outcome.verdict {
                        Verdict::Drop(r) => Some(r),
                        _ => None,
                    },
                    dest: outcome.dest,
                }
            }
        };
        if let (Some(w), Some(path)) = (verdicts.as_mut(), &files.verdicts) {
            writeln!(w, "{number}\t{}", line.render(&state)).map_err(write_err(path))?;
        }
    }
    director.housekeeping(now, HOUSEKEEPING_BUDGET);

    let mut inner = out.into_inner();
    inner.flush().map_err(write_err(&files.output))?;
    if let (Some(mut w), Some(path)) = (verdicts, &files.verdicts) {
        w.flush().map_err(write_err(path))?;
    }
    summary.counters = worker.counters;
    let report = summary.render(&state);
    Ok(Replayed { summary, report })
}

fn pcap_write_error(path: &Path, e: PcapError) -> ReplayError {
    let source = match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    };
    ReplayError::Write {
        path: path.to_owned(),
        source,
    }
}

/// The configured interface that received a frame, or `None`.
fn receiving_interface(state: &Snapshot, on: ReceivedOn, frame: &[u8]) -> Option<IfaceId> {
    match on {
        ReceivedOn::Interface(i) => {
            let i = u16::try_from(i).ok()?;
            (usize::from(i) < state.interfaces.len()).then_some(IfaceId(i))
        }
        ReceivedOn::Unknown => {
            let first = state.interfaces.first()?;
            let Some(dst) = frame.get(..6) else {
                // Too short to name anyone: let the pipeline drop it.
                return Some(first.id);
            };
            if dst[0] & 1 == 1 {
                // Broadcast or multicast: every interface hears it.
                return Some(first.id);
            }
            state
                .interfaces
                .iter()
                .find(|i| i.mac.0[..] == dst[..])
                .map(|i| i.id)
        }
    }
}

/// One line of the `--verdicts` file, after the frame number.
#[derive(Debug)]
struct VerdictLine {
    verdict: String,
    reason: Option<DropReason>,
    dest: Option<DestIndex>,
}

impl VerdictLine {
    fn render(&self, state: &Snapshot) -> String {
        let reason = self.reason.map_or("-", DropReason::name);
        let dest = self
            .dest
            .and_then(|d| state.dests.get(d))
            .map_or_else(|| "-".to_owned(), |d| real_server_name(d.addr, d.port));
        format!("{}\t{reason}\t{dest}", self.verdict)
    }
}

/// `192.0.2.11:80`, `[2001:db8::11]:80`; the bare address for port 0 (the
/// packet's own port is kept).
fn real_server_name(addr: std::net::IpAddr, port: u16) -> String {
    if port == 0 {
        addr.to_string()
    } else {
        SocketAddr::new(addr, port).to_string()
    }
}

impl ReplaySummary {
    /// The summary `xvs-replay` prints.
    #[must_use]
    pub fn render(&self, state: &Snapshot) -> String {
        let mut s = String::new();
        let c = &self.counters;
        let mut line = |label: &str, n: u64| s.push_str(&format!("{label:<28} {n:>8}\n"));
        line("frames read", self.frames);
        let transmitted: u64 = self.transmitted.iter().sum();
        line("transmitted", transmitted);
        for (iface, n) in state.interfaces.iter().zip(&self.transmitted) {
            line(&format!("  on {}", iface.name), *n);
        }
        if c.too_big_sent > 0 {
            line("  of which ICMP too-big", c.too_big_sent);
        }
        if c.stateless > 0 {
            line("  of which without an entry", c.stateless);
        }
        if c.partial_checksums_completed() > 0 {
            line(
                "  partial checksum completed",
                c.partial_checksums_completed(),
            );
        }
        line("passed to the kernel", c.passed);
        let dropped: u64 = c.drops.iter().sum();
        line("dropped", dropped);
        for reason in DropReason::ALL {
            let n = c.dropped(*reason);
            if n > 0 {
                line(&format!("  {}", reason.name()), n);
            }
        }
        if self.unknown_interface > 0 {
            line("unknown interface (skipped)", self.unknown_interface);
        }
        let rows: Vec<(String, xvs_director::pipeline::TrafficCounters)> = state
            .dests
            .iter()
            .enumerate()
            .filter_map(|(i, dest)| {
                let svc = state.services.get(dest.service as usize)?;
                let proto = match svc.proto {
                    xvs_packet::IpProtocol::Tcp => "tcp",
                    xvs_packet::IpProtocol::Udp => "udp",
                    _ => "ip",
                };
                let name = format!(
                    "{proto} {} -> {} {}{}",
                    real_server_name(svc.vip, svc.port),
                    real_server_name(dest.addr, dest.port),
                    dest.method,
                    if dest.server.is_none() {
                        " (fallback)"
                    } else {
                        ""
                    }
                );
                Some((
                    name,
                    c.dests.get(i as DestIndex).copied().unwrap_or_default(),
                ))
            })
            .collect();
        if !rows.is_empty() {
            let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(11);
            s.push_str(&format!(
                "{:<w$} {:>6} {:>10} {:>11}\n",
                "real server",
                "conns",
                "packets in",
                "packets out",
                w = width + 2
            ));
            for (name, t) in rows {
                s.push_str(&format!(
                    "  {name:<width$} {:>6} {:>10} {:>11}\n",
                    t.conns, t.packets_in, t.packets_out
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idb(
        options: Vec<InterfaceDescriptionOption<'static>>,
    ) -> InterfaceDescriptionBlock<'static> {
        InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options,
        }
    }

    #[test]
    fn pcapng_timestamps_follow_the_interface_resolution() {
        // pcap-file reports raw ticks as if they were nanoseconds.
        let ticks = Duration::from_nanos(1_500_000);
        assert_eq!(
            timestamp_of(&idb(vec![]), ticks),
            Some(Duration::from_millis(1500))
        );
        let ns = idb(vec![InterfaceDescriptionOption::IfTsResol(9)]);
        assert_eq!(timestamp_of(&ns, ticks), Some(Duration::from_micros(1500)));
        let binary = idb(vec![InterfaceDescriptionOption::IfTsResol(0x80 | 10)]);
        assert_eq!(
            timestamp_of(&binary, Duration::from_nanos(2048)),
            Some(Duration::from_secs(2))
        );
        let offset = idb(vec![InterfaceDescriptionOption::IfTsOffset(10)]);
        assert_eq!(
            timestamp_of(&offset, ticks),
            Some(Duration::from_millis(11_500))
        );
        let absurd = idb(vec![InterfaceDescriptionOption::IfTsResol(60)]);
        assert_eq!(timestamp_of(&absurd, ticks), None);
    }
}
