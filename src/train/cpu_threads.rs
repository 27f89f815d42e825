//! How candle's CPU threads wait, set for a machine with few cores.
//!
//! candle runs element-wise ops on a pool of its own (`candle-bp-N` threads) while the
//! matmuls run on rayon's threads: on 2 cores the two pools share the same cores. Between
//! two element-wise ops a pool worker spins 25 000 times before it sleeps, and that spinning
//! takes a core from the matmul threads: `perf record` of a full fine-tuning run (builtin,
//! batch 16) put 15.7 % of all samples in `candle-bp-0`'s spin loop. A worker that sleeps
//! almost at once wins that back. Measured (`peft-workbench bench --batch B --seq 48 --steps
//! 10`, 2 vCPUs, the two settings alternated twice in one session): full fine-tuning at
//! batch 16 2 730–2 785 → 3 210–3 220 tokens/s, LoRA at batch 8 3 945–3 955 → 4 615–4 640
//! (+15–18 %).

/// The spins a candle pool worker waits before it sleeps (candle's default: 25 000).
pub const SPINS_BEFORE_SLEEP: &str = "64";

/// Call first thing in `main`, before any other thread exists. A value the user set in
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` is kept.
#[allow(unsafe_code)]
pub fn let_idle_workers_sleep() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: called at the start of `main`, while no other thread exists to read the
        // environment (candle reads this variable when its pool first starts).
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", SPINS_BEFORE_SLEEP) };
    }
}
