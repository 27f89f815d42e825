//! How much memory a run will need, estimated before anything is loaded, so that a model
//! too large for the machine is refused with the figure instead of failing mid-way.

use crate::models::ModelConfig;

/// Bytes a training run needs, roughly: the f32 weights, for each trained value its gradient
/// and AdamW's two moments, the activations kept for the backward pass, the output head's
/// logits and what the process itself holds.
///
/// Per layer the step keeps about `B·T·(5·hidden + 2·intermediate)` floats for a LLaMA
/// decoder whose base is frozen (the fused CPU kernels keep only what gradients need,
/// recompute attention's probabilities, and the projections' outputs, the attention's
/// output and the residual branches are released once read), `10·hidden + 6·intermediate`
/// where the base is trained or the model is not LLaMA (between the two in proportion to the
/// share of the weights trained); attention adds one layer's scores and probabilities at a
/// time. The head's logits are computed a slice at a time (at most
/// [`super::loss::LOGITS_PER_SLICE`] floats); a trained head (full fine-tuning
/// ties it to the embedding) adds its gradient, summed as the slices go, and one slice's.
/// Calibrated on `bench` peaks at batch 8 × 128 (SmolLM2-135M: LoRA 1.37 GB measured /
/// 1.5 GB estimated, IA3 1.44 / 1.5, full fine-tuning 4.46 / 4.4; built-in model: LoRA
/// 0.12 / 0.19, full 0.25 / 0.33).
pub fn training_bytes(model: &ModelConfig, trainable: usize, batch: usize, seq: usize) -> u64 {
    let f = 4u64;
    let process = 64 << 20;
    let weights = model.param_count() as u64 * f;
    let optimizer = trainable as u64 * 3 * f;
    let (b, t) = (batch as u64, seq as u64);
    let (h, i) = (model.hidden_size() as u64, model.intermediate_size() as u64);
    let (frozen, trained) = match model {
        ModelConfig::Llama(_) => (5 * h + 2 * i, 10 * h + 6 * i),
        _ => (10 * h + 6 * i, 10 * h + 6 * i),
    };
    let share = (trainable as f64 / model.param_count().max(1) as f64).min(1.0);
    let per_layer = b * t * (frozen + ((trained - frozen) as f64 * share) as u64);
    let attention = 2 * b * model.num_heads() as u64 * t * t;
    let activations = (per_layer * model.num_layers() as u64 + attention) * f;
    // A classifier scores classes, not the vocabulary.
    let logits_size = b * t * model.vocab_size() as u64 * f;
    let slice = logits_size.min(super::loss::LOGITS_PER_SLICE as u64 * f);
    let head_trained = trainable as u64 >= (model.vocab_size() * model.hidden_size()) as u64;
    let logits = if model.is_classifier() {
        0
    } else if head_trained {
        2 * slice + 2 * (model.vocab_size() * model.hidden_size()) as u64 * f
    } else {
        2 * slice
    };
    process + weights + optimizer + activations + logits
}

/// Memory the system can still give (Linux `MemAvailable`), in bytes.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `Err` with both figures when `need` exceeds what is available.
pub fn check_fits(need: u64, available: Option<u64>) -> anyhow::Result<()> {
    if let Some(avail) = available
        && need > avail
    {
        anyhow::bail!(
            "this run needs about {:.1} GB of memory but {:.1} GB are available; lower batch_size or max_seq_len, or pick a smaller model or a method that trains less",
            need as f64 / 1e9,
            avail as f64 / 1e9
        );
    }
    Ok(())
}

/// "1.2 GB" / "340 MB" / "18 KB".
pub fn human_bytes(b: u64) -> String {
    if b >= 1_000_000_000 {
        format!("{:.1} GB", b as f64 / 1e9)
    } else if b >= 10_000_000 {
        format!("{:.0} MB", b as f64 / 1e6)
    } else if b >= 1_000_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else {
        format!("{:.0} KB", b as f64 / 1e3)
    }
}

/// Starts the process's peak resident memory afresh from what it holds now (Linux ≥ 4.0;
/// elsewhere the peak stays the process's), so that runs trained one after another in one
/// process (the window's worker) each report their own peak: before, every run after the
/// first big one read that run's 1.7 GB.
pub fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (proc(5), /proc/pid/clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process so far (Linux), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_at_their_scale() {
        assert_eq!(human_bytes(18_400), "18 KB");
        assert_eq!(human_bytes(2_350_000), "2.4 MB");
        assert_eq!(human_bytes(340_000_000), "340 MB");
        assert_eq!(human_bytes(8_800_000_000), "8.8 GB");
    }

    #[test]
    fn estimate_grows_with_the_work_and_refusal_names_both_figures() {
        let m = ModelConfig::Llama(
            serde_json::from_value(serde_json::json!({
                "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
                "num_key_value_heads": 3, "num_hidden_layers": 30, "vocab_size": 49152
            }))
            .unwrap(),
        );
        let small = training_bytes(&m, 1_000, 1, 32);
        assert!(small > m.param_count() as u64 * 4);
        assert!(training_bytes(&m, 1_000, 8, 128) > small);
        assert!(training_bytes(&m, m.param_count(), 1, 32) > small + 3 * 4 * 100_000_000);
        let e = check_fits(3_000_000_000, Some(1_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("3.0 GB") && e.contains("1.0 GB"), "{e}");
        assert!(check_fits(10, Some(100)).is_ok());
        assert!(check_fits(10, None).is_ok());
    }
}
