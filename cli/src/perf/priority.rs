//! Real-time scheduling for a paced benchmark's load generator.
//!
//! Paced latencies are measured from each send's scheduled time, so a send
//! that leaves late is charged to the system under test. On a machine where
//! the load generator shares a few cores with that system, the generator's
//! threads wait behind the system's threads in the OS scheduler, leave late,
//! and then leave in bursts: a delay a client on its own machine would not
//! have. Measured on the 2-core VM, 1 KiB appends at 100 k/s, paced by a
//! pacer thread that woke the sending thread: p99 4.8–5.5 ms with both
//! threads at normal priority, 2.0–2.2 ms with both at `SCHED_FIFO` 1 (send
//! lateness p99 1.5–1.8 ms → 0.3 ms); either thread alone gave ~4 ms, and
//! `nice -20` instead of `SCHED_FIFO` changed nothing. `perf bookie` now
//! paces on its sending thread itself (`pacer::InlinePacer`), at real-time
//! priority with `--sender-priority realtime`. That is no longer the
//! default: on the VM of stop 30 it made the hypervisor take ~13 % of the
//! machine's CPU (with a 200 µs tick), in pauses of the whole VM.
//!
//! The thread sleeps between sends, so it takes only the CPU it used
//! before; it just gets it on time. The kernel's real-time throttling
//! (`sched_rt_runtime_us`) bounds it regardless.

/// The calling thread at real-time priority until this is dropped.
pub struct Realtime(());

impl Realtime {
    /// [`realtime`] for the calling thread, undone on drop. The guard must
    /// be dropped on the thread that made it.
    pub fn enter() -> Result<Realtime, String> {
        realtime().map(|()| Realtime(()))
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        normal();
    }
}

/// Puts the calling thread in `SCHED_FIFO` at priority 1, the lowest
/// real-time priority (needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` ≥ 1).
pub fn realtime() -> Result<(), String> {
    set(libc::SCHED_FIFO, 1)
}

/// Puts the calling thread back in the normal (`SCHED_OTHER`) class.
pub fn normal() {
    // Leaving the real-time class is always permitted.
    let _ = set(libc::SCHED_OTHER, 0);
}

fn set(policy: libc::c_int, priority: libc::c_int) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether or not this process may use real-time scheduling, a thread
    /// that asked for it ends up in the normal class after `normal`.
    #[test]
    fn a_thread_returns_to_the_normal_class() {
        std::thread::spawn(|| {
            let got = realtime();
            // SAFETY: pid 0 is the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            match got {
                Ok(()) => assert_eq!(policy, libc::SCHED_FIFO),
                Err(_) => assert_eq!(policy, libc::SCHED_OTHER),
            }
            normal();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
