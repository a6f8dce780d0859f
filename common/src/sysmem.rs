//! How much memory this process may use: the machine's RAM, or less when a
//! control group (a container's memory limit) says so. Caches size their
//! defaults from it. And [`prefault`], for buffers about to be filled.

use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Smallest free space [`prefault`] works on: below it, the few page faults
/// cost less than the call.
pub const PREFAULT_MIN: usize = 64 << 10;

/// False once the kernel refused `MADV_POPULATE_WRITE` (before Linux 5.14).
static POPULATE: AtomicBool = AtomicBool::new(true);

/// Maps in the whole pages inside `spare`, the free capacity of a buffer
/// this process is about to fill, with one `madvise(MADV_POPULATE_WRITE)`
/// instead of a page fault per 4 KiB as the copy first touches each page.
/// Fresh memory is where that matters: a block cache filling up with what
/// it reads. On the development VM, first writes to 128 KiB buffers cost
/// 0.9–1.1 ms of CPU per MB with faults and 0.6–0.8 ms with this, and the
/// fault path's share of the broker's CPU in a cold read fell from 18–20 %
/// to 15–16 %; pages already mapped cost a page-table walk. Advisory: below [`PREFAULT_MIN`], elsewhere than Linux, or on a
/// kernel without the advice, nothing happens. Returns whether the advice
/// was taken.
pub fn prefault(spare: &mut [MaybeUninit<u8>]) -> bool {
    if spare.len() < PREFAULT_MIN || !POPULATE.load(Ordering::Relaxed) {
        return false;
    }
    populate_write(spare)
}

#[cfg(target_os = "linux")]
fn populate_write(spare: &mut [MaybeUninit<u8>]) -> bool {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return false,
    };
    let addr = spare.as_mut_ptr() as usize;
    let start = addr.next_multiple_of(page);
    let end = (addr + spare.len()) / page * page;
    if end <= start {
        return false;
    }
    // SAFETY: the range lies inside `spare`, memory this process owns and
    // may write; the advice maps its pages in, never changes what they hold.
    let rc = unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        POPULATE.store(false, Ordering::Relaxed);
    }
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn populate_write(_: &mut [MaybeUninit<u8>]) -> bool {
    false
}

/// Memory this process may use, in bytes: the smaller of the machine's RAM
/// (`MemTotal`) and its cgroup's limit (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`), or `None` where neither can be read.
pub fn memory_limit_bytes() -> Option<u64> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let total = read(Path::new("/proc/meminfo")).and_then(|s| mem_total(&s));
    let cgroup = read(Path::new("/proc/self/cgroup"))
        .and_then(|own| cgroup_limit(&own, |p| read(&Path::new("/sys/fs/cgroup").join(p))));
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kb = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kb: u64 = kb.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// The memory limit of this process's cgroup, from `/proc/self/cgroup`
/// (`own`) and the files under `/sys/fs/cgroup` that `read` opens by their
/// relative path. A v2 limit is looked for in the process's own group and
/// every parent (the tightest wins); "max", or a v1 limit near `u64::MAX`,
/// is no limit.
fn cgroup_limit(own: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let parse = |s: String| s.trim().parse::<u64>().ok();
    // v2: one line "0::/path".
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        let mut dir = path.trim().trim_matches('/').to_string();
        let mut tightest: Option<u64> = None;
        loop {
            let file = if dir.is_empty() {
                "memory.max".to_string()
            } else {
                format!("{dir}/memory.max")
            };
            if let Some(limit) = read(&file).and_then(parse) {
                tightest = Some(tightest.map_or(limit, |t| t.min(limit)));
            }
            match dir.rfind('/') {
                Some(at) => dir.truncate(at),
                None if !dir.is_empty() => dir.clear(),
                None => break,
            }
        }
        if tightest.is_some() {
            return tightest;
        }
    }
    // v1: "N:memory:/path" (or a list of controllers containing memory).
    let v1 = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.trim().trim_matches('/').to_string())
    })?;
    let file = if v1.is_empty() {
        "memory/memory.limit_in_bytes".to_string()
    } else {
        format!("memory/{v1}/memory.limit_in_bytes")
    };
    // Without a limit v1 reports a page-rounded i64::MAX.
    read(&file)
        .or_else(|| read("memory/memory.limit_in_bytes"))
        .and_then(parse)
        .filter(|&l| l < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Minor page faults of the calling thread so far.
    fn minor_faults() -> i64 {
        let mut ru = MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        let ru = unsafe {
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()), 0);
            ru.assume_init()
        };
        ru.ru_minflt
    }

    /// The running kernel's (major, minor) version.
    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']);
        let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (next(), next())
    }

    #[test]
    fn a_prefaulted_buffer_fills_without_page_faults() {
        let mut small: Vec<u8> = Vec::with_capacity(PREFAULT_MIN - 1);
        assert!(!prefault(small.spare_capacity_mut()));
        // Above glibc's mmap threshold: pages nobody touched yet.
        let len = 8 << 20;
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        let taken = prefault(buf.spare_capacity_mut());
        // MADV_POPULATE_WRITE came with Linux 5.14.
        assert_eq!(taken, kernel() >= (5, 14), "kernel {:?}", kernel());
        if taken {
            let before = minor_faults();
            buf.resize(len, 7);
            let faults = minor_faults() - before;
            assert!(
                faults < 16,
                "{faults} page faults filling a prefaulted 8 MiB buffer"
            );
        }
    }

    fn files(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let info = "MemTotal:       24598016 kB\nMemFree:  100 kB\n";
        assert_eq!(mem_total(info), Some(24598016 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn a_v2_limit_is_the_tightest_of_the_group_and_its_parents() {
        let own = "0::/system.slice/app.service\n";
        let read = files(&[
            ("system.slice/app.service/memory.max", "max\n"),
            ("system.slice/memory.max", "2147483648\n"),
        ]);
        assert_eq!(cgroup_limit(own, read), Some(2 << 30));
        let read = files(&[
            ("system.slice/app.service/memory.max", "1073741824\n"),
            ("system.slice/memory.max", "2147483648\n"),
        ]);
        assert_eq!(cgroup_limit(own, read), Some(1 << 30));
    }

    #[test]
    fn max_everywhere_is_no_limit() {
        let read = files(&[("a/memory.max", "max\n")]);
        assert_eq!(cgroup_limit("0::/a\n", read), None);
        assert_eq!(cgroup_limit("0::/\n", files(&[])), None);
    }

    #[test]
    fn a_v1_limit_is_read_and_its_unlimited_value_ignored() {
        let own = "12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n";
        let read = files(&[("memory/docker/x/memory.limit_in_bytes", "536870912\n")]);
        assert_eq!(cgroup_limit(own, read), Some(512 << 20));
        let read = files(&[(
            "memory/docker/x/memory.limit_in_bytes",
            "9223372036854771712\n",
        )]);
        assert_eq!(cgroup_limit(own, read), None);
    }

    #[test]
    fn this_machine_reports_some_memory() {
        let bytes = memory_limit_bytes().expect("/proc/meminfo is readable on Linux");
        assert!(bytes >= 64 << 20, "{bytes}");
    }
}
