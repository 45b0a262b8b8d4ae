//! IPVS's per-connection protocol state: the TCP state machine, the
//! per-state timeouts and the active/inactive classification that feeds the
//! schedulers.
//!
//! # Contract
//! * [`tcp_next_state`] is the kernel's `tcp_states` table (ip_vs_proto_tcp.c,
//!   `secure_tcp` off), transcribed cell by cell: three directions
//!   ([`TcpDirection::Input`], [`TcpDirection::Output`],
//!   [`TcpDirection::InputOnly`]) × four events ([`TcpEvent`]) × eleven
//!   states. A segment with none of RST/SYN/FIN/ACK moves to CLOSE, as in
//!   the kernel.
//! * [`tcp_transition`] is the kernel's `set_tcp_state`: it picks the
//!   direction (a DR/TUN connection — NO_OUTPUT — reads INPUT as INPUT_ONLY
//!   until the first server→client segment clears the flag), applies the
//!   table, and re-evaluates the connection's active/inactive flag. It is a
//!   pure function of `(state, flags, segment)`, so the connection table can
//!   apply it inside a compare-and-swap and every activity change is
//!   reported exactly once even when two workers see the two directions.
//! * [`Timeouts`] holds the per-state timeouts with the kernel's defaults;
//!   [`Timeouts::set`] is `ipvsadm --set tcp tcpfin udp` (0 leaves a value
//!   unchanged). Every packet re-arms the timer with the timeout of the state
//!   it leaves the connection in, as the kernel does.
//! * Activity: TCP connections in SYN_SENT, SYN_RECV, SYNACK and ESTABLISHED
//!   count as active (`tcp_state_active_table`, kernels since 2016); every
//!   other TCP state, and UDP/ICMP for their whole life, count as inactive.
//!   A new connection starts inactive (state NONE), exactly like the kernel's
//!   INACTIVE conn flag, so its first SYN moves it inactive → active.

use xvs_packet::IpProtocol;
use xvs_packet::tcp::TcpFlags;

// One definition of the states and of time for the scheduler and the
// connection table: the scheduler's counts depend on them.
pub use xvs_sched::{Millis, TcpState, counts_as_active};

/// Which table of the state machine a segment is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpDirection {
    /// Client → server (towards the VIP).
    Input,
    /// Server → client: a reply seen by the director (NAT, or any method
    /// once the real server's replies come back through the director).
    Output,
    /// Client → server on a connection that has never shown the director a
    /// reply (DR/TUN: the NO_OUTPUT flag is still set).
    InputOnly,
}

/// Which way a packet travels relative to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketDirection {
    /// From the client (to the VIP).
    FromClient,
    /// From the real server (a reply).
    FromServer,
}

/// The event a TCP segment stands for, by the kernel's priority
/// RST > SYN > FIN > ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpEvent {
    /// SYN set (and no RST).
    Syn,
    /// FIN set (no RST, no SYN).
    Fin,
    /// ACK only.
    Ack,
    /// RST set, whatever else is.
    Rst,
    /// None of RST/SYN/FIN/ACK: the kernel moves the connection to CLOSE.
    NoFlags,
}

impl TcpEvent {
    /// Classifies a segment's flags.
    #[must_use]
    pub const fn from_flags(flags: TcpFlags) -> Self {
        let bits = flags.0;
        if bits & TcpFlags::RST != 0 {
            Self::Rst
        } else if bits & TcpFlags::SYN != 0 {
            Self::Syn
        } else if bits & TcpFlags::FIN != 0 {
            Self::Fin
        } else if bits & TcpFlags::ACK != 0 {
            Self::Ack
        } else {
            Self::NoFlags
        }
    }
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `[direction][event][state]`, directions INPUT, OUTPUT, INPUT_ONLY; events
/// syn, fin, ack, rst; states in [`TcpState::ALL`] order.
const TCP_STATES: [[[TcpState; 11]; 4]; 3] = [
    // INPUT
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT_ONLY
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// The next state for one segment: one cell of the kernel's table.
#[must_use]
pub const fn tcp_next_state(state: TcpState, direction: TcpDirection, event: TcpEvent) -> TcpState {
    let dir = match direction {
        TcpDirection::Input => 0,
        TcpDirection::Output => 1,
        TcpDirection::InputOnly => 2,
    };
    let ev = match event {
        TcpEvent::Syn => 0,
        TcpEvent::Fin => 1,
        TcpEvent::Ack => 2,
        TcpEvent::Rst => 3,
        TcpEvent::NoFlags => return TcpState::Close,
    };
    TCP_STATES[dir][ev][state as usize]
}

/// How a transition moved the connection between the scheduler counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityChange {
    /// Still counted where it was.
    Unchanged,
    /// Move one from `inactconns` to `activeconns`.
    BecameActive,
    /// Move one from `activeconns` to `inactconns`.
    BecameInactive,
    /// The first packet here of a connection the state sync copied from
    /// the peer director (bound to no real server so far), which leaves it
    /// active: bind it now, in `activeconns`. Reported by the connection
    /// table in place of the two above, which it covers; the state machine
    /// never makes it. (Two unit variants rather than one with a field:
    /// the enum stays one byte and the ACK path's match stays a compare.)
    AdoptedActive,
    /// As [`ActivityChange::AdoptedActive`], for a connection this packet
    /// leaves inactive: bind it in `inactconns`.
    AdoptedInactive,
}

impl ActivityChange {
    /// The change a synced connection's first packet here makes: bound,
    /// active or not.
    #[must_use]
    pub const fn adopted(active: bool) -> Self {
        if active {
            Self::AdoptedActive
        } else {
            Self::AdoptedInactive
        }
    }
}

/// What one packet did to a connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// State before the packet.
    pub from: TcpState,
    /// State after the packet.
    pub to: TcpState,
    /// Whether the connection moves between `activeconns` and `inactconns`.
    pub activity: ActivityChange,
    /// Whether this packet cleared NO_OUTPUT (first reply seen on a DR/TUN
    /// connection).
    pub first_reply: bool,
}

/// The part of a connection the state machine reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtoState {
    /// Current TCP state (NONE for UDP/ICMP, which have a single state).
    pub tcp: TcpState,
    /// Counted in `activeconns` (the kernel's INACTIVE flag, inverted).
    pub active: bool,
    /// No reply seen yet on a connection whose replies bypass the director
    /// (DR/TUN); INPUT segments are read with the INPUT_ONLY table.
    pub no_output: bool,
}

/// The kernel's `set_tcp_state` for one segment (pure; the caller stores
/// the result and arms the timer with [`Timeouts::tcp`] of `to`).
///
/// The activity re-evaluation happens only on a real state change, like the
/// kernel's; it compares against the connection's *flag*, not the old
/// state, because a new connection is inactive in NONE.
#[must_use]
pub fn tcp_transition(
    current: ProtoState,
    packet: PacketDirection,
    event: TcpEvent,
) -> (ProtoState, Transition) {
    let mut next = current;
    let mut first_reply = false;
    let direction = match (packet, current.no_output) {
        (PacketDirection::FromServer, no_output) => {
            first_reply = no_output;
            next.no_output = false;
            TcpDirection::Output
        }
        (PacketDirection::FromClient, true) => TcpDirection::InputOnly,
        (PacketDirection::FromClient, false) => TcpDirection::Input,
    };
    let to = tcp_next_state(current.tcp, direction, event);
    let mut activity = ActivityChange::Unchanged;
    if to != current.tcp {
        if current.active && !to.is_active() {
            activity = ActivityChange::BecameInactive;
            next.active = false;
        } else if !current.active && to.is_active() {
            activity = ActivityChange::BecameActive;
            next.active = true;
        }
    }
    next.tcp = to;
    (
        next,
        Transition {
            from: current.tcp,
            to,
            activity,
            first_reply,
        },
    )
}

/// Per-state timeouts, in seconds as ipvsadm shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// One per [`TcpState`], indexed by its code.
    pub tcp: [u32; 11],
    /// UDP's single state.
    pub udp: u32,
    /// ICMP/ICMPv6 echo "connections".
    pub icmp: u32,
}

impl Timeouts {
    /// The kernel's `tcp_timeouts` (ip_vs_proto_tcp.c), in [`TcpState::ALL`] order.
    pub const DEFAULT_TCP: [u32; 11] = [
        2,       // NONE
        15 * 60, // ESTABLISHED
        2 * 60,  // SYN_SENT
        60,      // SYN_RECV
        2 * 60,  // FIN_WAIT
        2 * 60,  // TIME_WAIT
        10,      // CLOSE
        60,      // CLOSE_WAIT
        30,      // LAST_ACK
        2 * 60,  // LISTEN
        2 * 60,  // SYNACK
    ];
    /// `udp_timeouts[IP_VS_UDP_S_NORMAL]`: 5 minutes.
    pub const DEFAULT_UDP: u32 = 5 * 60;
    /// The old `ip_vs_proto_icmp` timeout: 1 minute.
    pub const DEFAULT_ICMP: u32 = 60;

    /// The timeout of a TCP state, in milliseconds.
    #[must_use]
    pub const fn tcp_ms(&self, state: TcpState) -> Millis {
        self.tcp[state as usize] as Millis * 1000
    }

    /// The UDP timeout, in milliseconds.
    #[must_use]
    pub const fn udp_ms(&self) -> Millis {
        self.udp as Millis * 1000
    }

    /// The ICMP timeout, in milliseconds.
    #[must_use]
    pub const fn icmp_ms(&self) -> Millis {
        self.icmp as Millis * 1000
    }

    /// The timeout that applies to a connection of `proto` in `tcp_state`,
    /// in milliseconds. Protocols other than TCP/UDP/ICMP get the UDP
    /// timeout (the kernel would not create them at all).
    #[must_use]
    pub const fn for_conn_ms(&self, proto: IpProtocol, tcp_state: TcpState) -> Millis {
        match proto {
            IpProtocol::Tcp => self.tcp_ms(tcp_state),
            IpProtocol::Icmp | IpProtocol::Icmpv6 => self.icmp_ms(),
            _ => self.udp_ms(),
        }
    }

    /// `ipvsadm --set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP
    /// timeouts in seconds; 0 leaves that value unchanged.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp[TcpState::Established as usize] = tcp;
        }
        if tcpfin != 0 {
            self.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if udp != 0 {
            self.udp = udp;
        }
    }

    /// `ipvsadm -L --timeout`: (tcp, tcpfin, udp).
    #[must_use]
    pub const fn ipvsadm_triple(&self) -> (u32, u32, u32) {
        (
            self.tcp[TcpState::Established as usize],
            self.tcp[TcpState::FinWait as usize],
            self.udp,
        )
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp: Self::DEFAULT_TCP,
            udp: Self::DEFAULT_UDP,
            icmp: Self::DEFAULT_ICMP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::{None as NO, SynAck as SA};

    fn parse_row(row: &str) -> Vec<TcpState> {
        row.split_whitespace()
            .map(|s| match s {
                "NO" => NO,
                "ES" => ES,
                "SS" => SS,
                "SR" => SR,
                "FW" => FW,
                "TW" => TW,
                "CL" => CL,
                "CW" => CW,
                "LA" => LA,
                "LI" => LI,
                "SA" => SA,
                other => panic!("bad cell {other}"),
            })
            .collect()
    }

    /// The table of ipvs-behaviour.md §5.2, pasted as text and checked cell
    /// by cell against the const table through the public function, so a
    /// typo in either shows up as a named cell.
    #[test]
    fn every_cell_matches_the_reference_table() {
        let reference = [
            (
                TcpDirection::Input,
                [
                    "SR ES ES SR SR SR SR SR SR SR SR",
                    "CL CW SS TW TW TW CL CW LA LI TW",
                    "ES ES SS ES FW TW CL CW CL LI ES",
                    "CL CL CL SR CL CL CL CL LA LI SR",
                ],
            ),
            (
                TcpDirection::Output,
                [
                    "SS ES SS SR SS SS SS SS SS LI SR",
                    "TW FW SS TW FW TW CL TW LA LI TW",
                    "ES ES SS ES FW TW CL CW LA ES ES",
                    "CL CL SS CL CL TW CL CL CL CL CL",
                ],
            ),
            (
                TcpDirection::InputOnly,
                [
                    "SR ES ES SR SR SR SR SR SR SR SR",
                    "CL FW SS TW FW TW CL CW LA LI TW",
                    "ES ES SS ES FW TW CL CW CL LI ES",
                    "CL CL CL SR CL CL CL CL LA LI CL",
                ],
            ),
        ];
        let events = [TcpEvent::Syn, TcpEvent::Fin, TcpEvent::Ack, TcpEvent::Rst];
        let mut cells = 0;
        for (direction, rows) in reference {
            for (event, row) in events.iter().zip(rows) {
                let expected = parse_row(row);
                assert_eq!(expected.len(), 11);
                for (state, want) in TcpState::ALL.iter().zip(expected) {
                    assert_eq!(
                        tcp_next_state(*state, direction, *event),
                        want,
                        "{direction:?} {event:?} in {state}"
                    );
                    cells += 1;
                }
            }
        }
        assert_eq!(cells, 3 * 4 * 11);
    }

    #[test]
    fn a_segment_without_flags_closes_from_every_state() {
        for dir in [
            TcpDirection::Input,
            TcpDirection::Output,
            TcpDirection::InputOnly,
        ] {
            for state in TcpState::ALL {
                assert_eq!(tcp_next_state(state, dir, TcpEvent::NoFlags), CL);
            }
        }
    }

    #[test]
    fn flags_classify_by_kernel_priority() {
        let f = |bits| TcpEvent::from_flags(TcpFlags(bits));
        let (fin, syn, rst, ack) = (TcpFlags::FIN, TcpFlags::SYN, TcpFlags::RST, TcpFlags::ACK);
        assert_eq!(f(syn | rst | fin | ack), TcpEvent::Rst);
        assert_eq!(f(syn | ack), TcpEvent::Syn);
        assert_eq!(f(syn | fin), TcpEvent::Syn);
        assert_eq!(f(fin | ack), TcpEvent::Fin);
        assert_eq!(f(ack), TcpEvent::Ack);
        assert_eq!(f(0x08), TcpEvent::NoFlags); // PSH alone
        assert_eq!(f(0), TcpEvent::NoFlags);
    }

    #[test]
    fn state_codes_round_trip_and_names_are_ipvsadms() {
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(s.code() as usize, i);
            assert_eq!(TcpState::from_code(s.code()), Some(*s));
        }
        assert_eq!(TcpState::from_code(11), None);
        assert_eq!(TcpState::SynRecv.to_string(), "SYN_RECV");
        assert_eq!(TcpState::SynAck.to_string(), "SYNACK");
    }

    #[test]
    fn active_states_are_the_modern_kernels() {
        let active: Vec<_> = TcpState::ALL.iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [&ES, &SS, &SR, &SA]);
        assert!(counts_as_active(IpProtocol::Tcp, ES));
        assert!(!counts_as_active(IpProtocol::Udp, ES));
        assert!(!counts_as_active(IpProtocol::Icmp, SR));
    }

    const NEW: ProtoState = ProtoState {
        tcp: NO,
        active: false,
        no_output: false,
    };

    #[test]
    fn nat_connection_lifecycle_moves_counters_exactly_twice() {
        use PacketDirection::{FromClient as C, FromServer as S};
        let steps = [
            (C, TcpEvent::Syn, SR, ActivityChange::BecameActive),
            (S, TcpEvent::Syn, SR, ActivityChange::Unchanged), // SYN+ACK
            (C, TcpEvent::Ack, ES, ActivityChange::Unchanged),
            (C, TcpEvent::Fin, CW, ActivityChange::BecameInactive),
            (S, TcpEvent::Fin, TW, ActivityChange::Unchanged),
            (C, TcpEvent::Ack, TW, ActivityChange::Unchanged),
        ];
        let mut st = NEW;
        for (i, (dir, ev, want, activity)) in steps.into_iter().enumerate() {
            let (next, t) = tcp_transition(st, dir, ev);
            assert_eq!(t.to, want, "step {i}");
            assert_eq!(t.from, st.tcp, "step {i}");
            assert_eq!(t.activity, activity, "step {i}");
            assert_eq!(next.active, want.is_active(), "step {i}");
            st = next;
        }
    }

    #[test]
    fn dr_connection_reads_input_only_until_a_reply_clears_no_output() {
        let dr = ProtoState {
            no_output: true,
            ..NEW
        };
        let (st, _) = tcp_transition(dr, PacketDirection::FromClient, TcpEvent::Syn);
        let (st, _) = tcp_transition(st, PacketDirection::FromClient, TcpEvent::Ack);
        assert_eq!(st.tcp, ES);
        // INPUT_ONLY fin in ESTABLISHED → FIN_WAIT (INPUT would say CLOSE_WAIT).
        let (fin, t) = tcp_transition(st, PacketDirection::FromClient, TcpEvent::Fin);
        assert_eq!(fin.tcp, FW);
        assert!(!t.first_reply);
        assert!(fin.no_output);
        // A reply seen once switches the connection to INPUT for good.
        let (st, t) = tcp_transition(st, PacketDirection::FromServer, TcpEvent::Ack);
        assert!(t.first_reply);
        assert!(!st.no_output);
        let (st, _) = tcp_transition(st, PacketDirection::FromClient, TcpEvent::Fin);
        assert_eq!(st.tcp, CW);
    }

    #[test]
    fn activity_follows_the_flag_not_the_old_state() {
        // A connection already flagged active that stays in an active state
        // does not move; one flagged inactive entering an active state does.
        let (_, t) = tcp_transition(
            ProtoState {
                tcp: SR,
                active: true,
                no_output: false,
            },
            PacketDirection::FromClient,
            TcpEvent::Ack,
        );
        assert_eq!((t.to, t.activity), (ES, ActivityChange::Unchanged));
        let (st, t) = tcp_transition(
            ProtoState {
                tcp: TW,
                active: false,
                no_output: false,
            },
            PacketDirection::FromClient,
            TcpEvent::Syn,
        );
        assert_eq!((t.to, t.activity), (SR, ActivityChange::BecameActive));
        assert!(st.active);
        // No state change → no re-evaluation, even if flag and state disagree.
        let (st, t) = tcp_transition(
            ProtoState {
                tcp: ES,
                active: false,
                no_output: false,
            },
            PacketDirection::FromClient,
            TcpEvent::Ack,
        );
        assert_eq!(t.activity, ActivityChange::Unchanged);
        assert!(!st.active);
    }

    #[test]
    fn default_timeouts_are_the_kernels() {
        let t = Timeouts::default();
        let expect = [
            (NO, 2),
            (ES, 900),
            (SS, 120),
            (SR, 60),
            (FW, 120),
            (TW, 120),
            (CL, 10),
            (CW, 60),
            (LA, 30),
            (LI, 120),
            (SA, 120),
        ];
        for (s, secs) in expect {
            assert_eq!(t.tcp_ms(s), secs * 1000, "{s}");
        }
        assert_eq!(t.udp_ms(), 300_000);
        assert_eq!(t.icmp_ms(), 60_000);
        assert_eq!(t.ipvsadm_triple(), (900, 120, 300));
        assert_eq!(t.for_conn_ms(IpProtocol::Udp, ES), 300_000);
        assert_eq!(t.for_conn_ms(IpProtocol::Icmpv6, ES), 60_000);
        assert_eq!(t.for_conn_ms(IpProtocol::Tcp, CL), 10_000);
    }

    #[test]
    fn set_changes_only_nonzero_values() {
        let mut t = Timeouts::default();
        t.set(0, 0, 0);
        assert_eq!(t, Timeouts::default());
        t.set(3600, 0, 0);
        assert_eq!(t.ipvsadm_triple(), (3600, 120, 300));
        t.set(0, 30, 0);
        assert_eq!(t.ipvsadm_triple(), (3600, 30, 300));
        t.set(0, 0, 45);
        assert_eq!(t.ipvsadm_triple(), (3600, 30, 45));
        // Other states are untouched by --set.
        assert_eq!(t.tcp_ms(TW), 120_000);
    }
}
