//! How many receive queues an interface has: the entries `rx-0`, `rx-1`…
//! under `/sys/class/net/IFACE/queues/`, which the kernel keeps equal to
//! the queues in use (`ethtool -L` changes them; netlink's
//! `IFLA_NUM_RX_QUEUES` is the allocated maximum, which may be larger and
//! would make the director bind sockets to queues that do not exist).
//!
//! sysfs shows the network namespace of whoever mounted it, not of the
//! reader: `ip netns exec` mounts the namespace's own, `nsenter --net` does
//! not. The interface's `ifindex` file is compared with the kernel's
//! (netlink's) index, so that a namespace's interface is never counted from
//! another one's namesake.

use std::path::Path;

use super::KernelError;

/// The number of receive queues of the interface `name` whose kernel index
/// is `ifindex`, read from `/sys/class/net`.
///
/// # Errors
/// The interface's sysfs entry is missing, unreadable, belongs to another
/// network namespace, or lists no receive queue.
pub fn rx_queue_count(name: &str, ifindex: u32) -> Result<u32, KernelError> {
    rx_queue_count_in(Path::new("/sys/class/net"), name, ifindex)
}

/// [`rx_queue_count`] under another sysfs root (for the tests).
fn rx_queue_count_in(root: &Path, name: &str, ifindex: u32) -> Result<u32, KernelError> {
    let dir = root.join(name);
    let failed = |reason: String| KernelError::RxQueues {
        name: name.to_owned(),
        reason,
    };
    let index_file = dir.join("ifindex");
    let text = std::fs::read_to_string(&index_file)
        .map_err(|e| failed(format!("reading {}: {e}", index_file.display())))?;
    let seen: u32 = text
        .trim()
        .parse()
        .map_err(|_| failed(format!("{} holds {text:?}", index_file.display())))?;
    if seen != ifindex {
        return Err(failed(format!(
            "{} belongs to another network namespace (index {seen}, the kernel's is {ifindex}); \
             run the director under `ip netns exec NAMESPACE`, which mounts the namespace's own sysfs",
            dir.display()
        )));
    }
    let queues = dir.join("queues");
    let entries = std::fs::read_dir(&queues)
        .map_err(|e| failed(format!("listing {}: {e}", queues.display())))?;
    let names = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned());
    match count_rx_queues(names) {
        0 => Err(failed(format!("{} lists no rx-N entry", queues.display()))),
        n => Ok(n),
    }
}

/// Counts the `rx-N` names among the entries of a `queues/` directory
/// (the others are `tx-N`).
fn count_rx_queues(names: impl IntoIterator<Item = String>) -> u32 {
    let count = names
        .into_iter()
        .filter(|n| {
            n.strip_prefix("rx-")
                .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake sysfs: `root/NAME/ifindex` and `root/NAME/queues/{rx,tx}-N`.
    fn fake_sysfs(name: &str, ifindex: u32, rx: u32, tx: u32) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = Scratch(std::env::temp_dir().join(format!(
            "xvs-queues-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        let dir = root.path().join(name);
        std::fs::create_dir_all(dir.join("queues")).unwrap();
        std::fs::write(dir.join("ifindex"), format!("{ifindex}\n")).unwrap();
        for i in 0..rx {
            std::fs::create_dir(dir.join(format!("queues/rx-{i}"))).unwrap();
        }
        for i in 0..tx {
            std::fs::create_dir(dir.join(format!("queues/tx-{i}"))).unwrap();
        }
        root
    }

    #[test]
    fn only_rx_entries_count() {
        let names = [
            "rx-0", "tx-0", "rx-1", "tx-1", "rx-2", "rx-", "rx-x", "rxq-3",
        ];
        assert_eq!(count_rx_queues(names.map(String::from)), 3);
        assert_eq!(count_rx_queues(Vec::new()), 0);
    }

    #[test]
    fn a_four_queue_interface_counts_four() {
        let root = fake_sysfs("d-cli", 7, 4, 4);
        assert_eq!(rx_queue_count_in(root.path(), "d-cli", 7).unwrap(), 4);
        let root = fake_sysfs("eth0", 2, 1, 8);
        assert_eq!(rx_queue_count_in(root.path(), "eth0", 2).unwrap(), 1);
    }

    #[test]
    fn another_namespaces_interface_is_refused() {
        let root = fake_sysfs("d-cli", 7, 4, 4);
        let e = rx_queue_count_in(root.path(), "d-cli", 9)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("d-cli") && e.contains("another network namespace"),
            "{e}"
        );
        assert!(e.contains("ip netns exec"), "{e}");
        let e = rx_queue_count_in(root.path(), "eth9", 9)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eth9"), "{e}");
        let root = fake_sysfs("d-cli", 7, 0, 4);
        let e = rx_queue_count_in(root.path(), "d-cli", 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no rx-N"), "{e}");
    }
}
