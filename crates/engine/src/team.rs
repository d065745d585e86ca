//! A team of spinning threads for the layers of one small batch.
//!
//! A batch of at most [`crate::model::CHUNK`] samples runs as one chunk, so its threads can only
//! share the work within each layer: one parallel loop per convolution, some forty per
//! forward pass and as many per backward pass of ResNet-20, each a few tens of microseconds at
//! batch 1. Under rayon, the other threads fell asleep between those loops and were woken by
//! a futex for the next one (`perf stat` on `faultline bench` of ResNet-20 at batch 1, 2
//! threads: about 220 context switches and 2 ms of system time per iteration of a forward
//! pass and a forward + backward pass, 27–30 % of the process's CPU time, and the whole
//! slower than one thread; with a team, 18 and 0.1 ms). A team instead keeps its helpers
//! busy-waiting for the whole model
//! call, as ONNX Runtime's and OpenMP's thread pools do, and hands out the tasks of each loop
//! through one atomic counter.
//!
//! [`lead`] makes the calling thread the leader of a team of all the pool's threads for the
//! duration of a closure; inside it, [`for_each`] runs a loop's tasks on the team (the leader
//! takes part and finishes any task no helper claimed, so a helper that has not started yet,
//! or is descheduled on a loaded machine, never holds a loop up except by the task it holds).
//! Outside a team, [`for_each`] is rayon's parallel loop. Which thread runs which task never
//! changes a result: every task writes its own outputs.
//!
//! Helpers are rayon jobs, and a thread's team outlives one call of [`lead`], so that model
//! calls in a row (an attack's steps) find their helpers still waiting. A helper that finds no
//! task for [`IDLE`] leaves (a long serial stretch of the leader's costs no CPU beyond that,
//! and a helper picked up by a thread that was waiting inside another rayon job gives that
//! thread back); the leader starts another on its next loop. While idle, a helper also runs
//! pending rayon jobs (a GEMM's parallel halves).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long a helper busy-waits for a task before it leaves. Longer than the serial stretches
/// between the convolutions of a small-batch pass (element-wise operators, the loss), short
/// enough that a team whose leader went on to serial work stops taking CPU.
const IDLE: Duration = Duration::from_micros(500);

/// How long the leader busy-waits for the tasks its helpers hold before it also yields its
/// CPU (to a helper descheduled on a loaded machine, perhaps).
const PATIENCE: Duration = Duration::from_micros(50);

/// Bits of the job word for the task count and for the next task (the rest: the job's epoch).
const BITS: u32 = 24;
const MASK: u64 = (1 << BITS) - 1;

/// A loop's body as one participant runs it: called with the first task it claimed and a
/// source of further claims (`None` once none are left), so that its state (see
/// [`for_each_init`]) is made once per participant and loop, not once per task.
type Task<'a> = &'a (dyn Fn(usize, &mut dyn FnMut() -> Option<usize>) + Sync);

/// What the leader and its helpers share.
struct Shared {
    /// `epoch << 48 | tasks << 24 | next`: the current loop's task count and its next unclaimed
    /// task. A task is claimed by a compare-exchange from `next` to `next + 1`, so a claim only
    /// succeeds on the loop that is current (whose [`Task`] is then in `job`).
    word: AtomicU64,
    /// The current loop's [`Task`] (a pointer to the leader's reference to it); valid while
    /// the loop has unfinished tasks.
    job: AtomicPtr<()>,
    /// Tasks of the current loop that have run.
    finished: AtomicUsize,
    /// The first panic of a task of the current loop, re-raised by the leader.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Helpers started and not yet left.
    helpers: AtomicUsize,
    /// How many helpers the team wants (the pool's threads but the leader's).
    want: usize,
}

thread_local! {
    /// The team this thread leads while in [`lead`] (kept between calls).
    static TEAM: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// Whether this thread is in [`lead`].
    static LEADING: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is running a team's task or is a helper: a loop inside runs
    /// serially (the team is already busy) and no new team starts.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Sets [`BUSY`] for its lifetime (restoring the previous value, also on unwinding).
struct Busy(bool);

impl Busy {
    fn enter() -> Busy {
        Busy(BUSY.with(|b| b.replace(true)))
    }

    /// Clears [`BUSY`] for its lifetime: a rayon job that an idle helper runs meanwhile is not
    /// the team's work, and runs as it would on any pool thread.
    fn leave() -> Busy {
        Busy(BUSY.with(|b| b.replace(false)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(self.0));
    }
}

impl Shared {
    /// Claims the next tasks of the current loop, if any are left: `(first, count)`, a share
    /// of what is left that shrinks as the loop goes (guided scheduling: about half of the
    /// remaining tasks per participant's round, down to one at the end). One claim per task
    /// cost a contended compare-exchange each (`perf record` of ResNet-20's forward at batch
    /// 1, 2 threads: 13 % of all samples on that instruction, with tasks of about a
    /// microsecond); which participant runs which task still never changes a result.
    fn claim(&self) -> Option<(usize, usize)> {
        let mut w = self.word.load(Ordering::Acquire);
        let share = 2 * (self.want as u64 + 1);
        loop {
            let (next, tasks) = (w & MASK, (w >> BITS) & MASK);
            if next >= tasks {
                return None;
            }
            let count = ((tasks - next) / share).max(1);
            match self
                .word
                .compare_exchange_weak(w, w + count, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some((next as usize, count as usize)),
                Err(now) => w = now,
            }
        }
    }

    /// Claims tasks of the current loop and runs the loop's body from the first (which takes
    /// the others, and claims more, as it goes); false when none was left. A task that panics
    /// ends its run of the body, and the body starts again at the next task claimed, so that
    /// every claimed task runs.
    fn run_one(&self) -> bool {
        let Some((first, count)) = self.claim() else {
            return false;
        };
        let job = self.job.load(Ordering::Acquire) as *const Task;
        let busy = Busy::enter();
        let (at, end, claimed) = (
            Cell::new(first + 1),
            Cell::new(first + count),
            Cell::new(count),
        );
        let take = || {
            let t = at.get();
            (t < end.get()).then(|| {
                at.set(t + 1);
                t
            })
        };
        let mut more = || {
            take().or_else(|| {
                let (f, c) = self.claim()?;
                claimed.set(claimed.get() + c);
                at.set(f + 1);
                end.set(f + c);
                Some(f)
            })
        };
        let mut next = Some(first);
        while let Some(t) = next {
            // SAFETY: the claims succeeded on the loop whose word was published after `job`
            // was stored (each while the tasks claimed before it were unfinished, so on the
            // same loop); the leader does not return from that loop (so its body stays alive)
            // until `finished` counts these tasks, below.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(t, &mut more) }));
            next = None;
            if let Err(e) = r {
                let mut first = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(e);
                next = take();
            }
        }
        drop(busy);
        self.finished.fetch_add(claimed.get(), Ordering::Release);
        true
    }

    /// A helper's life: run tasks as they come, until nothing came for [`IDLE`].
    fn help(&self) {
        if !LEADING.with(Cell::get) && !BUSY.with(Cell::get) {
            let _busy = Busy::enter();
            let mut since = Instant::now();
            let mut spins = 0u32;
            loop {
                if self.run_one() {
                    spins = 0;
                    since = Instant::now();
                    continue;
                }
                spins += 1;
                if spins.is_multiple_of(64) {
                    if since.elapsed() > IDLE {
                        break;
                    }
                    // Work of the leader's that went through rayon (a GEMM's halves), or any
                    // other job of the pool (which may lead a team of its own: before, one
                    // ran here as if inside a task, every loop of it serial).
                    let free = Busy::leave();
                    let ran = rayon::yield_now();
                    drop(free);
                    if let Some(rayon::Yield::Executed) = ran {
                        since = Instant::now();
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        // Leaving (or never joining: this thread leads a team or works for one).
        self.helpers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Starts helpers until `want` are running or on their way.
    fn recruit(self: &Arc<Self>) {
        while self.helpers.load(Ordering::Acquire) < self.want {
            self.helpers.fetch_add(1, Ordering::AcqRel);
            let s = Arc::clone(self);
            rayon::spawn(move || s.help());
        }
    }

    /// Runs tasks `0..n` (`1 < n < 2^24`) on the team, the leader included; returns when all
    /// have run.
    fn run(self: &Arc<Self>, n: usize, f: Task) {
        let epoch = (self.word.load(Ordering::Relaxed) >> (2 * BITS)).wrapping_add(1) & 0xffff;
        self.job
            .store(&f as *const Task as *mut (), Ordering::Relaxed);
        self.finished.store(0, Ordering::Relaxed);
        self.word
            .store(epoch << (2 * BITS) | (n as u64) << BITS, Ordering::Release);
        self.recruit();
        while self.run_one() {}
        let since = Instant::now();
        let mut spins = 0u32;
        while self.finished.load(Ordering::Acquire) < n {
            spins += 1;
            if spins.is_multiple_of(64) && since.elapsed() > PATIENCE {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let panic = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}

/// Runs `f` with this thread leading a team of the current rayon pool's threads (see the
/// module comment), unless the pool has one thread or this thread already leads a team or
/// works for one; [`for_each`] inside `f` then runs on the team.
pub(crate) fn lead<R>(f: impl FnOnce() -> R) -> R {
    let threads = rayon::current_num_threads();
    if threads < 2 || BUSY.with(Cell::get) || LEADING.with(Cell::get) {
        return f();
    }
    TEAM.with(|t| {
        let mut t = t.borrow_mut();
        if t.as_ref().is_none_or(|s| s.want != threads - 1) {
            *t = Some(Arc::new(Shared {
                word: AtomicU64::new(0),
                job: AtomicPtr::new(std::ptr::null_mut()),
                finished: AtomicUsize::new(0),
                panic: Mutex::new(None),
                helpers: AtomicUsize::new(0),
                want: threads - 1,
            }));
        }
    });
    /// Ends the leading when `f` returns or unwinds.
    struct Leading;
    impl Drop for Leading {
        fn drop(&mut self) {
            LEADING.with(|l| l.set(false));
        }
    }
    LEADING.with(|l| l.set(true));
    let _leading = Leading;
    f()
}

/// Whether [`for_each`] called here runs on a team: this thread leads one and is not inside
/// one of its tasks. Work that would otherwise go to rayon's pool (a GEMM's own split) should
/// then go through [`for_each`]: a team's leader that calls into rayon waits for the pool on a
/// condition variable, asleep, while its helper is the thread that has to run the work.
pub(crate) fn leading() -> bool {
    LEADING.with(Cell::get) && !BUSY.with(Cell::get)
}

/// Runs `f(0)`, …, `f(tasks − 1)` in parallel: on the team this thread leads, if any;
/// serially inside a team's task (the team is busy already); otherwise on rayon's pool.
pub(crate) fn for_each(tasks: usize, f: impl Fn(usize) + Sync) {
    for_each_init(tasks, || (), |_, t| f(t));
}

/// [`for_each`] with a state made by `init` for each thread's run of tasks (working buffers):
/// once per participant and loop on a team, per rayon job otherwise (rayon's
/// `for_each_init`).
pub(crate) fn for_each_init<S>(
    tasks: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) + Sync,
) {
    if tasks == 0 {
        return;
    }
    if tasks == 1 || BUSY.with(Cell::get) {
        let mut s = init();
        (0..tasks).for_each(|t| f(&mut s, t));
        return;
    }
    let team = LEADING
        .with(Cell::get)
        .then(|| TEAM.with(|t| t.borrow().clone()))
        .flatten();
    match team {
        Some(team) if (tasks as u64) < MASK => team.run(tasks, &|first, more| {
            let mut s = init();
            let mut t = Some(first);
            while let Some(i) = t {
                f(&mut s, i);
                t = more();
            }
        }),
        _ => (0..tasks).into_par_iter().for_each_init(&init, &f),
    }
}

/// A buffer's base pointer, shared by the tasks of [`for_each_chunk`] (each takes its own
/// chunk's elements).
struct Chunks<T>(*mut T);
// SAFETY: the tasks that share it reach disjoint elements only.
unsafe impl<T: Send> Sync for Chunks<T> {}

/// Runs `f(state, i, chunk i)` over the `len`-element chunks of `out` (a last, shorter chunk
/// included) as [`for_each_init`] runs its tasks: on the team this thread leads, if any, so
/// that the per-plane loops of pooling and reductions inside a small-batch pass do not go to
/// rayon, where the leader would sleep until the pool is done.
pub(crate) fn for_each_chunk_init<T: Send, S>(
    out: &mut [T],
    len: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync,
) {
    if len == 0 {
        return;
    }
    let n = out.len();
    let base = Chunks(out.as_mut_ptr());
    let base = &base;
    for_each_init(n.div_ceil(len), init, |s, i| {
        let end = ((i + 1) * len).min(n);
        // SAFETY: chunk `i`'s elements lie inside `out` (`i · len < n`), and no other task
        // takes them while `out` stays borrowed for this call.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(i * len), end - i * len) };
        f(s, i, chunk)
    });
}

/// [`for_each_chunk_init`] without a state.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    for_each_chunk_init(out, len, || (), |_, i, c| f(i, c));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Every task of every loop runs exactly once, on a team and off it, with nested loops
    /// (serial inside a task) and loops of 0 and 1 tasks; a panicking task's panic reaches
    /// the leader after the loop's other tasks have run, and the team still works after it.
    #[test]
    fn every_task_runs_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let check = |sizes: &[usize]| {
            for &n in sizes {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                for_each(n, |i| {
                    for_each(3, |_| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    });
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 3),
                    "{n} tasks"
                );
            }
        };
        let sizes = [0, 1, 2, 7, 64, 1000];
        // Each participant's state sees its own tasks only, and they add up to all of them.
        let init_check = || {
            let total = AtomicU32::new(0);
            for_each_init(500, Vec::new, |seen: &mut Vec<usize>, t| {
                assert!(seen.last().is_none_or(|&l| l < t));
                seen.push(t);
                total.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(total.load(Ordering::Relaxed), 500);
        };
        pool.install(init_check);
        pool.install(|| lead(init_check));
        // Outside a team (rayon), then inside one, led by a pool's worker and by this thread
        // (the global pool's helpers).
        pool.install(|| check(&sizes));
        pool.install(|| lead(|| check(&sizes)));
        lead(|| (0..50).for_each(|_| check(&sizes)));
        pool.install(|| {
            lead(|| {
                let ran = AtomicU32::new(0);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    for_each(100, |i| {
                        ran.fetch_add(1, Ordering::Relaxed);
                        assert!(i != 37, "task 37 fails");
                    })
                }));
                assert!(r.is_err());
                assert_eq!(ran.load(Ordering::Relaxed), 100);
                check(&sizes);
            })
        });
    }
}
