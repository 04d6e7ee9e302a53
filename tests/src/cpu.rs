//! Load for measurements that must show scheduling delay.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

/// Keeps every CPU busy for `d`, then returns: one spinning thread per CPU at nice -19, so
/// ordinary (nice 0) processes wait for the CPU, as on a loaded host, while softirq work
/// (and so XDP) is unaffected.
pub fn busy_for(d: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                // SAFETY: plain syscalls on the calling thread; failure only weakens the load.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, -19);
                }
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    thread::sleep(d);
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
}
