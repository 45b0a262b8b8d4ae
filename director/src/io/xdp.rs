//! The director's XDP program (`director/xdp/xvs_redirect.bpf.c`): loading
//! it, attaching it to interfaces, and keeping its maps in step with the
//! services.
//!
//! The program is attached through a BPF link owned by this process, not
//! pinned: when the director exits — cleanly or not — the kernel detaches
//! it and the interface is back to plain kernel networking. The same link
//! makes the attachment exclusive, so a second director on the same
//! interface is refused by the kernel itself (`EBUSY`).
//!
//! libbpf comes from `libxdp-sys`, which `xsk-rs` already builds: one BPF
//! library in the binary, not two.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use libxdp_sys::{bpf_link, bpf_object, bpf_program};
use xvs_packet::IpProtocol;

use super::IoError;

/// The compiled program, built by `build.rs`.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xvs_redirect.bpf.o"));

/// What the program redirects to the director; everything else goes to the
/// kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectFilter {
    /// (proto, VIP, port) of every virtual service; port 0: every port.
    pub services: Vec<(IpProtocol, IpAddr, u16)>,
    /// (proto, address, port) of every NAT real server: their replies.
    pub nat_real_servers: Vec<(IpProtocol, IpAddr, u16)>,
    /// The director's own addresses: traffic to them stays with the kernel.
    pub local_addresses: Vec<IpAddr>,
}

/// `struct service_key` of the program.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ServiceKey {
    family: u8,
    proto: u8,
    port_be: u16,
    addr: [u8; 16],
}

/// `struct addr_key` of the program.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddrKey {
    family: u8,
    pad: [u8; 3],
    addr: [u8; 16],
}

fn addr_bytes(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut bytes = [0; 16];
    match addr {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            (4, bytes)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

fn addr_key(addr: IpAddr) -> AddrKey {
    let (family, addr) = addr_bytes(addr);
    AddrKey {
        family,
        pad: [0; 3],
        addr,
    }
}

fn service_key(proto: u8, addr: IpAddr, port: u16) -> ServiceKey {
    let (family, addr) = addr_bytes(addr);
    ServiceKey {
        family,
        proto,
        port_be: port.to_be(),
        addr,
    }
}

fn icmp_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        IpProtocol::Icmp.into()
    } else {
        IpProtocol::Icmpv6.into()
    }
}

/// The map contents a filter stands for.
#[derive(Debug, Default, PartialEq, Eq)]
struct MapContents {
    services: HashSet<ServiceKey>,
    vips: HashSet<AddrKey>,
    real_servers: HashSet<ServiceKey>,
    local_addrs: HashSet<AddrKey>,
}

impl MapContents {
    fn of(filter: &RedirectFilter) -> Self {
        let mut m = Self::default();
        for &(proto, vip, port) in &filter.services {
            m.services.insert(service_key(proto.into(), vip, port));
            m.vips.insert(addr_key(vip));
        }
        for &(proto, addr, port) in &filter.nat_real_servers {
            m.real_servers.insert(service_key(proto.into(), addr, port));
            // ICMP errors a real server sends about a connection.
            m.real_servers.insert(service_key(icmp_of(addr), addr, 0));
        }
        for &addr in &filter.local_addresses {
            m.local_addrs.insert(addr_key(addr));
        }
        m
    }
}

/// The loaded program and its maps.
#[derive(Debug)]
pub struct XdpProgram {
    object: NonNull<bpf_object>,
    program: NonNull<bpf_program>,
    xsks: RawFd,
    if_slots: RawFd,
    /// ifindex of each slot in use.
    slots: Vec<u32>,
    services: RawFd,
    vips: RawFd,
    real_servers: RawFd,
    local_addrs: RawFd,
    counters: RawFd,
    installed: MapContents,
}

/// What the program did, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// Frames the program saw.
    pub frames: u64,
    /// Frames it sent towards the director's sockets (the others went to
    /// the kernel; so do these while no socket is bound).
    pub to_director: u64,
    /// Of `to_director`, the frames that arrived on a receive queue
    /// without a director's socket and went to the kernel after all (a
    /// queue the director does not serve, or a director not running).
    pub no_socket: u64,
}

// SAFETY: the libbpf object is only used through `&self`/`&mut self`
// methods of this owner; libbpf objects carry no thread affinity.
unsafe impl Send for XdpProgram {}

/// The program attached to one interface; detached when dropped.
#[derive(Debug)]
pub struct XdpAttachment {
    link: NonNull<bpf_link>,
    iface: String,
}

// SAFETY: a bpf_link is a plain heap object plus an fd; it is destroyed
// once, by its only owner.
unsafe impl Send for XdpAttachment {}

impl XdpAttachment {
    /// The interface it is attached to.
    #[must_use]
    pub fn iface(&self) -> &str {
        &self.iface
    }
}

impl Drop for XdpAttachment {
    fn drop(&mut self) {
        // SAFETY: `link` came from `bpf_program__attach_xdp`, is owned by
        // this value alone and is destroyed exactly once, here.
        unsafe {
            libxdp_sys::bpf_link__destroy(self.link.as_ptr());
        }
    }
}

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

const PRIVILEGE_HINT: &str = ". The director needs root (CAP_NET_ADMIN and CAP_BPF)";
const FALLBACK_HINT: &str = ". Without XDP, run with --backend packet (AF_PACKET)";

impl XdpProgram {
    /// Loads the program into the kernel (not attached yet).
    ///
    /// # Errors
    /// The kernel refused it: no privileges, or no XDP support.
    pub fn load() -> Result<Self, IoError> {
        // SAFETY: OBJECT is a valid byte slice for the duration of the call;
        // libbpf copies what it keeps. A null `opts` means defaults.
        let object = unsafe {
            libxdp_sys::bpf_object__open_mem(OBJECT.as_ptr().cast(), OBJECT.len(), std::ptr::null())
        };
        let Some(object) = NonNull::new(object) else {
            return Err(IoError::os(
                "opening the embedded XDP program",
                "-",
                last_os_error(),
                "",
            ));
        };
        // SAFETY: `object` is a valid object just opened and not loaded.
        let rc = unsafe { libxdp_sys::bpf_object__load(object.as_ptr()) };
        if rc != 0 {
            let err = io::Error::from_raw_os_error(-rc);
            let hint = if err.kind() == io::ErrorKind::PermissionDenied {
                PRIVILEGE_HINT
            } else {
                FALLBACK_HINT
            };
            // SAFETY: `object` is valid and closed once, on this error path.
            unsafe { libxdp_sys::bpf_object__close(object.as_ptr()) };
            return Err(IoError::os(
                "loading the XDP program into the kernel",
                "-",
                err,
                hint,
            ));
        }
        let mut this = Self {
            object,
            program: NonNull::dangling(),
            xsks: -1,
            if_slots: -1,
            slots: Vec::new(),
            services: -1,
            vips: -1,
            real_servers: -1,
            local_addrs: -1,
            counters: -1,
            installed: MapContents::default(),
        };
        // From here on `this` owns the object: Drop closes it on any error.
        let name = c"xvs_redirect";
        // SAFETY: the object is loaded and valid; `name` is NUL-terminated.
        let program =
            unsafe { libxdp_sys::bpf_object__find_program_by_name(object.as_ptr(), name.as_ptr()) };
        this.program = NonNull::new(program).ok_or_else(|| {
            IoError::Other("the embedded XDP object has no program xvs_redirect".to_owned())
        })?;
        this.xsks = this.map_fd(c"xsks")?;
        this.if_slots = this.map_fd(c"if_slots")?;
        this.services = this.map_fd(c"services")?;
        this.vips = this.map_fd(c"vips")?;
        this.real_servers = this.map_fd(c"real_servers")?;
        this.local_addrs = this.map_fd(c"local_addrs")?;
        this.counters = this.map_fd(c"counters")?;
        Ok(this)
    }

    fn map_fd(&self, name: &std::ffi::CStr) -> Result<RawFd, IoError> {
        // SAFETY: the object is loaded and valid; `name` is NUL-terminated.
        let fd = unsafe {
            libxdp_sys::bpf_object__find_map_fd_by_name(self.object.as_ptr(), name.as_ptr())
        };
        if fd < 0 {
            return Err(IoError::Other(format!(
                "the embedded XDP object has no map {}",
                name.to_string_lossy()
            )));
        }
        Ok(fd)
    }

    /// Attaches the program to `iface` (driver mode where the driver has
    /// it, generic otherwise).
    ///
    /// # Errors
    /// No such interface; another XDP program (another director) already
    /// attached; no privileges.
    pub fn attach(&self, iface: &str) -> Result<XdpAttachment, IoError> {
        let ifindex = ifindex_of(iface)?;
        let ifindex = i32::try_from(ifindex).map_err(|_| {
            IoError::Other(format!("interface {iface}: index {ifindex} out of range"))
        })?;
        // SAFETY: the program is loaded and owned by `self`; libbpf returns
        // a new link or NULL with errno set.
        let link = unsafe { libxdp_sys::bpf_program__attach_xdp(self.program.as_ptr(), ifindex) };
        let Some(link) = NonNull::new(link) else {
            let err = last_os_error();
            let hint = match err.raw_os_error() {
                Some(libc::EBUSY | libc::EEXIST) => {
                    ". Another XDP program is attached to it — another xvs-director? \
                     (`ip link show` names it); stop that one first"
                }
                Some(libc::EPERM | libc::EACCES) => PRIVILEGE_HINT,
                _ => FALLBACK_HINT,
            };
            return Err(IoError::os("attaching the XDP program", iface, err, hint));
        };
        Ok(XdpAttachment {
            link,
            iface: iface.to_owned(),
        })
    }

    /// Directs frames that arrive on `iface`'s queue `queue` to the AF_XDP
    /// socket `fd` (bound to that interface and queue).
    ///
    /// # Errors
    /// Too many interfaces or queues, or the kernel refused the update.
    pub fn insert_socket(&mut self, iface: &str, queue: u32, fd: RawFd) -> Result<(), IoError> {
        let ifindex = ifindex_of(iface)?;
        let slot = match self.slots.iter().position(|&i| i == ifindex) {
            Some(slot) => slot,
            None => {
                if self.slots.len() >= MAX_INTERFACES {
                    return Err(IoError::Other(format!(
                        "{iface}: the director drives at most {MAX_INTERFACES} interfaces"
                    )));
                }
                self.slots.push(ifindex);
                self.slots.len() - 1
            }
        };
        if queue >= MAX_QUEUES {
            return Err(IoError::Other(format!(
                "{iface}: queue {queue} is beyond the {MAX_QUEUES} queues the director serves"
            )));
        }
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        map_put(self.if_slots, &ifindex, &slot).map_err(|e| {
            IoError::os(
                "registering the interface with the XDP program",
                iface,
                e,
                "",
            )
        })?;
        let key = slot * MAX_QUEUES + queue;
        let value = u32::try_from(fd)
            .map_err(|_| IoError::Other(format!("socket fd {fd} for {iface} is invalid")))?;
        map_put(self.xsks, &key, &value).map_err(|e| {
            IoError::os(
                "registering the AF_XDP socket with the XDP program",
                iface,
                e,
                "",
            )
        })
    }

    /// The program's counters, summed over every CPU.
    ///
    /// # Errors
    /// The kernel refused to read the map.
    pub fn counters(&self) -> io::Result<XdpCounters> {
        let cpus = possible_cpus()?;
        let mut values = vec![0u64; cpus];
        let mut read = |key: u32| -> io::Result<u64> {
            // SAFETY: a per-CPU map's lookup writes one 8-byte slot per
            // possible CPU; `values` holds exactly that many.
            let rc = unsafe {
                libxdp_sys::bpf_map_lookup_elem(
                    self.counters,
                    std::ptr::from_ref(&key).cast(),
                    values.as_mut_ptr().cast(),
                )
            };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(-rc));
            }
            Ok(values.iter().sum())
        };
        Ok(XdpCounters {
            frames: read(0)?,
            to_director: read(1)?,
            no_socket: read(2)?,
        })
    }

    /// Runs the program once on `frame` as if it had arrived on queue 0 of
    /// the interface `ifindex` (`BPF_PROG_TEST_RUN`; nothing is sent or
    /// attached). Returns the program's verdict (`XDP_PASS` is 2); whether
    /// it aimed the frame at the director shows in [`Self::counters`].
    ///
    /// # Errors
    /// The kernel refused the run (no privileges, frame too short).
    pub fn test_run(&self, frame: &[u8], ifindex: u32) -> io::Result<u32> {
        // The kernel's `struct xdp_md` (data, data_end, data_meta,
        // ingress_ifindex, rx_queue_index, egress_ifindex), as the test
        // run reads it: data_end must be the frame's length.
        let len = u32::try_from(frame.len()).map_err(io::Error::other)?;
        let ctx: [u32; 6] = [0, len, 0, ifindex, 0, 0];
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = libxdp_sys::bpf_test_run_opts {
            sz: size_of::<libxdp_sys::bpf_test_run_opts>(),
            data_in: frame.as_ptr().cast(),
            data_out: out.as_mut_ptr().cast(),
            data_size_in: len,
            data_size_out: u32::try_from(out.len()).map_err(io::Error::other)?,
            ctx_in: ctx.as_ptr().cast(),
            ctx_out: std::ptr::null_mut(),
            ctx_size_in: u32::try_from(size_of_val(&ctx)).map_err(io::Error::other)?,
            ctx_size_out: 0,
            retval: 0,
            repeat: 1,
            duration: 0,
            flags: 0,
            cpu: 0,
            batch_size: 0,
        };
        // SAFETY: `opts` is a fully initialised bpf_test_run_opts whose
        // pointers reference live buffers of the sizes it states.
        let rc = unsafe { libxdp_sys::bpf_prog_test_run_opts(self.program_fd()?, &raw mut opts) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(opts.retval)
    }

    fn program_fd(&self) -> io::Result<RawFd> {
        // SAFETY: the program is loaded and owned by `self`.
        let fd = unsafe { libxdp_sys::bpf_program__fd(self.program.as_ptr()) };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        Ok(fd)
    }

    /// Makes the maps say exactly what `filter` says: new entries are added
    /// before stale ones are removed, so nothing the director still
    /// handles ever falls through to the kernel in between.
    ///
    /// # Errors
    /// A map is full or the kernel refused an update; the maps then hold
    /// the old entries and some of the new ones. The program remembers
    /// which, so that setting the previous filter again (the control
    /// plane's rollback) removes exactly what this call added.
    pub fn set_filter(&mut self, filter: &RedirectFilter) -> Result<(), IoError> {
        let new = MapContents::of(filter);
        let installed = &mut self.installed;
        update(
            self.services,
            &new.services,
            &mut installed.services,
            "services",
        )?;
        update(self.vips, &new.vips, &mut installed.vips, "vips")?;
        update(
            self.real_servers,
            &new.real_servers,
            &mut installed.real_servers,
            "real_servers",
        )?;
        update(
            self.local_addrs,
            &new.local_addrs,
            &mut installed.local_addrs,
            "local_addrs",
        )?;
        Ok(())
    }
}

/// How many CPUs the kernel may ever bring up (per-CPU maps hold a value
/// for each): the count in `/sys/devices/system/cpu/possible` ("0-1,4").
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut highest = 0usize;
    for range in text.trim().split(',') {
        let last = range.rsplit('-').next().unwrap_or(range);
        let n: usize = last
            .parse()
            .map_err(|_| io::Error::other(format!("unreadable CPU list {text:?}")))?;
        highest = highest.max(n);
    }
    Ok(highest + 1)
}

/// Receive queues per interface the program can address (`MAX_QUEUES` in
/// the C).
pub const MAX_QUEUES: u32 = 64;
/// Interfaces the program can address (`MAX_INTERFACES` in the C).
const MAX_INTERFACES: usize = 16;

/// The kernel's index of `iface`.
fn ifindex_of(iface: &str) -> Result<u32, IoError> {
    let name = CString::new(iface)
        .map_err(|_| IoError::Other(format!("interface name {iface:?} contains a NUL byte")))?;
    // SAFETY: `name` is NUL-terminated and lives across the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(IoError::os(
            "looking up the interface",
            iface,
            last_os_error(),
            ". Check the name with `ip link`",
        ));
    }
    Ok(ifindex)
}

/// Sets `key` to `value` in the map `fd`.
fn map_put<K, V>(fd: RawFd, key: &K, value: &V) -> io::Result<()> {
    // SAFETY: key and value point at live values; callers pass types of
    // exactly the map's key and value sizes.
    let rc = unsafe {
        libxdp_sys::bpf_map_update_elem(
            fd,
            std::ptr::from_ref(key).cast(),
            std::ptr::from_ref(value).cast(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// Adds `new - installed` to the map `fd`, then removes `installed -
/// new`; `installed` follows what the map holds, also after a failure.
fn update<K: Eq + std::hash::Hash + Copy>(
    fd: RawFd,
    new: &HashSet<K>,
    installed: &mut HashSet<K>,
    map: &str,
) -> Result<(), IoError> {
    let one: u8 = 1;
    update_with(
        new,
        installed,
        map,
        |key| map_put(fd, key, &one),
        |key| {
            // SAFETY: `key` is a live repr(C) value of the map's key size; a
            // missing key is not an error worth reporting.
            unsafe {
                libxdp_sys::bpf_map_delete_elem(fd, std::ptr::from_ref(key).cast());
            }
        },
    )
}

/// [`update`] over any `put` and `delete` (tests).
fn update_with<K: Eq + std::hash::Hash + Copy>(
    new: &HashSet<K>,
    installed: &mut HashSet<K>,
    map: &str,
    mut put: impl FnMut(&K) -> io::Result<()>,
    mut delete: impl FnMut(&K),
) -> Result<(), IoError> {
    let added: Vec<K> = new.difference(installed).copied().collect();
    for key in added {
        put(&key)
            .map_err(|e| IoError::Other(format!("updating the XDP program's {map} map: {e}")))?;
        installed.insert(key);
    }
    let stale: Vec<K> = installed.difference(new).copied().collect();
    for key in stale {
        delete(&key);
        installed.remove(&key);
    }
    Ok(())
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // SAFETY: the object is owned by this value and closed once, here;
        // attachments hold their own kernel references to the program.
        unsafe { libxdp_sys::bpf_object__close(self.object.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_update_is_undone_by_setting_the_previous_filter_again() {
        // A map that holds at most three keys, as a full BPF map refuses.
        let mut map: HashSet<u32> = [1, 2].into();
        let mut installed: HashSet<u32> = map.clone();
        let new: HashSet<u32> = [1, 2, 3, 4, 5].into();
        let put = |map: &mut HashSet<u32>, k: &u32| {
            if map.len() >= 3 {
                return Err(io::Error::from_raw_os_error(libc::E2BIG));
            }
            map.insert(*k);
            Ok(())
        };
        let e = update_with(
            &new,
            &mut installed,
            "services",
            |k| put(&mut map, k),
            |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("services map"), "{e}");
        assert_eq!(map.len(), 3);
        assert_eq!(installed, map, "what the map holds after a failure");
        // The rollback: the previous contents again.
        let previous: HashSet<u32> = [1, 2].into();
        let mut deleted = Vec::new();
        update_with(
            &previous,
            &mut installed,
            "services",
            |k| put(&mut map, k),
            |k| deleted.push(*k),
        )
        .unwrap();
        for k in &deleted {
            map.remove(k);
        }
        assert_eq!(map, previous, "the failed update left an entry behind");
        assert_eq!(installed, previous);
    }

    #[test]
    fn keys_have_the_programs_layout() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<AddrKey>(), 20);
        let k = service_key(6, "203.0.113.10".parse().unwrap(), 80);
        assert_eq!(k.family, 4);
        assert_eq!(&k.addr[..4], &[203, 0, 113, 10]);
        assert_eq!(k.addr[4..], [0; 12]);
        assert_eq!(k.port_be.to_ne_bytes(), [0, 80]);
    }

    #[test]
    fn nat_real_servers_also_match_their_icmp() {
        let filter = RedirectFilter {
            services: vec![(IpProtocol::Tcp, "2001:db8:f::10".parse().unwrap(), 80)],
            nat_real_servers: vec![(IpProtocol::Tcp, "192.0.2.11".parse().unwrap(), 80)],
            local_addresses: vec!["192.0.2.1".parse().unwrap()],
        };
        let m = MapContents::of(&filter);
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.vips.len(), 1);
        assert!(
            m.real_servers
                .contains(&service_key(1, "192.0.2.11".parse().unwrap(), 0))
        );
        assert!(
            m.real_servers
                .contains(&service_key(6, "192.0.2.11".parse().unwrap(), 80))
        );
        assert_eq!(m.local_addrs.len(), 1);
    }
}
