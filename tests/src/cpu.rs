//! Load for measurements that must show scheduling delay.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

/// Keeps every CPU busy (one spinning thread each) for `d`, then returns.
pub fn busy_for(d: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
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
