//! The NAT lab's packet delayer: takes packets from an NFQUEUE and gives each a verdict after a
//! delay with jitter, or drops it with a given probability, from a seeded RNG so a run is
//! repeatable. Used where the kernel has no `tc netem` (see `tests/natlab/lab.sh impair`).
//!
//! ```text
//! natlab_delay --queue N [--delay-ms D] [--jitter-ms J] [--loss-percent L] [--seed S]
//!              [--seconds T]
//! ```
//!
//! Every packet gets exactly one verdict: accepted when due, dropped when the loss draw says
//! so, and on exit (after `--seconds`, on SIGTERM or SIGINT) every held packet is accepted at
//! once before the queue is unbound. Packets keep their order (each leaves no earlier than the
//! one before it), so jitter varies the delay without reordering. Prints `bound <queue>` once
//! ready and a summary line on exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};

#[derive(Debug)]
struct Args {
    queue: u16,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    seed: u64,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        queue: 0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        seed: 1,
        seconds: 600,
    };
    let mut queue = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--queue" => queue = Some(value.parse().map_err(|e| bad(&e))?),
            "--delay-ms" => args.delay = Duration::from_millis(value.parse().map_err(|e| bad(&e))?),
            "--jitter-ms" => {
                args.jitter = Duration::from_millis(value.parse().map_err(|e| bad(&e))?);
            }
            "--loss-percent" => args.loss = value.parse().map_err(|e| bad(&e))?,
            "--seed" => args.seed = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => args.seconds = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    args.queue = queue.ok_or("--queue is required")?;
    if !(0.0..=100.0).contains(&args.loss) {
        return Err("--loss-percent must be within 0..=100".into());
    }
    Ok(args)
}

/// Sets `stop` on SIGTERM or SIGINT.
fn watch_signals(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut term, mut int) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        stop.store(true, Ordering::SeqCst);
    });
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("natlab_delay: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("natlab_delay: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(Arc::clone(&stop))?;
    let mut queue = nfq::Queue::open()?;
    queue.bind(args.queue)?;
    queue.set_queue_max_len(args.queue, 16_384)?;
    // Only the verdict matters, not the payload: copying just the headers keeps each queued
    // packet's netlink message small. With whole packets (the default) the netlink socket's
    // default receive buffer held about 90 of them, and a burst of a few hundred (one TCP or
    // SCTP window) overflowed it: the kernel dropped the excess (`user_dropped` in
    // /proc/net/netfilter/nfnetlink_queue), loss that nobody asked for.
    queue.set_copy_range(args.queue, 128)?;
    queue.set_nonblocking(true);
    println!("bound {}", args.queue);

    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    let (mut seen, mut dropped) = (0u64, 0u64);
    let mut last_release = Instant::now();
    // Bounded by the deadline and the stop flag.
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let mut idle = true;
        // Take what the kernel has queued (bounded per turn so releases stay timely).
        for _ in 0..256 {
            match queue.recv() {
                Ok(mut msg) => {
                    idle = false;
                    seen += 1;
                    if args.loss > 0.0 && rng.gen_range(0.0..100.0) < args.loss {
                        dropped += 1;
                        msg.set_verdict(nfq::Verdict::Drop);
                        queue.verdict(msg)?;
                        continue;
                    }
                    let jitter = if args.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        args.jitter.mul_f64(rng.gen_range(0.0..1.0))
                    };
                    let due = (Instant::now() + args.delay + jitter).max(last_release);
                    last_release = due;
                    msg.set_verdict(nfq::Verdict::Accept);
                    held.push_back((due, msg));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => break,
                Err(e) => {
                    release_all(&mut queue, &mut held);
                    return Err(e);
                }
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, msg) = held.pop_front().expect("front exists");
            queue.verdict(msg)?;
            idle = false;
        }
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let released = held.len();
    release_all(&mut queue, &mut held);
    let _ = queue.unbind(args.queue);
    println!("done seen {seen} dropped {dropped} released_on_exit {released}");
    Ok(())
}

fn release_all(queue: &mut nfq::Queue, held: &mut VecDeque<(Instant, nfq::Message)>) {
    for (_, msg) in held.drain(..) {
        let _ = queue.verdict(msg);
    }
}
