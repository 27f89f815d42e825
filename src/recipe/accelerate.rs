//! `accelerate/*.yaml` in a recipe: the configurations `accelerate launch` reads to run
//! `train.py` under DDP, FSDP or DeepSpeed ZeRO-2/3 (`bash launch.sh --engine NAME`).
//!
//! The process count, machines and rank are not in the files: `launch.sh` passes them, so
//! one file serves one GPU, eight, or several nodes. Mixed precision stays `no` here
//! because `train.py --bf16` loads the base in bfloat16 itself; DeepSpeed wants its own
//! bf16 switch instead (the README says so). accelerate turns FSDP and DeepSpeed on only
//! on GPUs (its `AcceleratorState` keeps CPU processes on plain DDP), so on this project's
//! machines these two are read by accelerate's own loader in `scripts/verify-recipe.sh`,
//! not run.

use crate::config::RunConfig;

/// One configuration: its engine name (`launch.sh --engine NAME`) and the YAML text.
pub struct AccelerateConfig {
    pub engine: &'static str,
    pub yaml: String,
}

const HEAD: &str = "compute_environment: LOCAL_MACHINE\nmixed_precision: 'no'\n";

/// DDP, FSDP (version 2, one shard per decoder layer) and ZeRO-2/3 for the run `cfg`:
/// DeepSpeed clips gradients itself, so the run's clipping norm goes into its files.
pub fn configs(cfg: &RunConfig) -> Vec<AccelerateConfig> {
    let clip = cfg.optimizer.max_grad_norm;
    let deepspeed = |stage: u8| {
        format!(
            "# DeepSpeed ZeRO-{stage}: {what}. gradient_clipping is the run's max_grad_norm (0: none).
# bf16 on GPUs: set mixed_precision: bf16 here and do not pass --bf16 to train.py.
{HEAD}distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: {stage}
  gradient_accumulation_steps: 1
  gradient_clipping: {clip}
  offload_optimizer_device: none
  offload_param_device: none
  zero3_init_flag: false
  zero3_save_16bit_model: true
",
            what = if stage == 2 {
                "optimizer state and gradients sharded over the processes"
            } else {
                "weights too (each process still loads the whole model once before sharding)"
            },
        )
    };
    vec![
        AccelerateConfig {
            engine: "ddp",
            yaml: format!(
                "# DDP: every process holds the whole model and averages gradients.\n{HEAD}distributed_type: MULTI_GPU\n"
            ),
        },
        AccelerateConfig {
            engine: "fsdp",
            yaml: format!(
                "# FSDP 2: weights, gradients and optimizer state sharded, one unit per decoder layer
# (the model's own _no_split_modules).
{HEAD}distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_cpu_ram_efficient_loading: false
  fsdp_offload_params: false
"
            ),
        },
        AccelerateConfig {
            engine: "zero2",
            yaml: deepspeed(2),
        },
        AccelerateConfig {
            engine: "zero3",
            yaml: deepspeed(3),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DeepSpeed clips by its own config: the run's norm must be there, and "no clipping"
    /// must read as 0 (DeepSpeed's off), not be dropped.
    #[test]
    fn deepspeed_configs_clip_at_the_runs_norm() {
        let mut cfg = RunConfig::default();
        for (norm, line) in [
            (0.25, "gradient_clipping: 0.25"),
            (0.0, "gradient_clipping: 0\n"),
        ] {
            cfg.optimizer.max_grad_norm = norm;
            let all = configs(&cfg);
            let engines: Vec<_> = all.iter().map(|c| c.engine).collect();
            assert_eq!(engines, ["ddp", "fsdp", "zero2", "zero3"]);
            for c in &all {
                assert_eq!(
                    c.yaml.contains(line),
                    c.engine.starts_with("zero"),
                    "{}: {}",
                    c.engine,
                    c.yaml
                );
            }
        }
    }
}
