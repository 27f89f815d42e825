//! Published reference results of each method, shown beside the user's own runs: Hugging
//! Face PEFT's method comparison on MetaMathQA and its MRPC examples (figures as recorded
//! in the project's shared notes, `PEFT-FACTS.md`). They are orderings to compare with in
//! spirit, on other models and tasks, not targets for this workbench's numbers.

use super::MethodConfig;

/// Where a set of reference numbers comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Benchmark {
    /// PEFT's `method_comparison/MetaMathQA` results: Llama-3.2-3B, bf16, 5,000 steps,
    /// batch 4, max length 768, trained on MetaMathQA, scored on GSM8K; one NVIDIA L40S.
    MetaMathQa,
    /// PEFT's sequence-classification examples: roberta-large on GLUE MRPC.
    Mrpc,
}

impl Benchmark {
    pub fn source(self) -> &'static str {
        match self {
            Benchmark::MetaMathQa => {
                "Hugging Face PEFT, method_comparison/MetaMathQA: Llama-3.2-3B, 5,000 steps, GSM8K test accuracy, one L40S"
            }
            Benchmark::Mrpc => {
                "Hugging Face PEFT, sequence-classification examples: roberta-large on MRPC, accuracy"
            }
        }
    }
}

/// One published result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub benchmark: Benchmark,
    /// The variant as the source names it.
    pub variant: &'static str,
    pub accuracy: f64,
    /// Peak accelerator memory, GiB (MetaMathQA only).
    pub peak_gib: Option<f64>,
    /// Training time, seconds (MetaMathQA only).
    pub train_seconds: Option<f64>,
    /// Trainable parameters (MetaMathQA only).
    pub trainable: Option<f64>,
}

const fn mmqa(variant: &'static str, acc: f64, gib: f64, secs: f64, trainable: f64) -> Published {
    Published {
        benchmark: Benchmark::MetaMathQa,
        variant,
        accuracy: acc,
        peak_gib: Some(gib),
        train_seconds: Some(secs),
        trainable: Some(trainable),
    }
}

const fn mrpc(variant: &'static str, acc: f64) -> Published {
    Published {
        benchmark: Benchmark::Mrpc,
        variant,
        accuracy: acc,
        peak_gib: None,
        train_seconds: None,
        trainable: None,
    }
}

const LORA: &[Published] = &[
    mmqa("LoRA r64, rsLoRA", 0.513, 21.0, 966.0, 18.4e6),
    mmqa("LoRA r32", 0.478, 20.8, 942.0, 9.2e6),
    mrpc("LoRA", 0.895),
];
const FULL: &[Published] = &[mmqa("full fine-tuning", 0.472, 36.2, 2147.0, 3.2e9)];
const DORA: &[Published] = &[mmqa("DoRA r32", 0.469, 22.8, 1191.0, 9.3e6)];
const IA3: &[Published] = &[
    mmqa("IA3, tuned learning rate", 0.455, 24.3, 1060.0, 0.63e6),
    mmqa("IA3, default", 0.311, 21.6, 987.0, 0.29e6),
    mrpc("IA3", 0.878),
];
const PREFIX: &[Published] = &[
    mmqa("prefix tuning (best)", 0.416, 19.2, 878.0, 2.9e6),
    mrpc("prefix tuning", 0.878),
];
const ADALORA: &[Published] = &[mmqa("AdaLoRA r32", 0.373, 21.2, 1169.0, 18.4e6)];
const P_TUNING: &[Published] = &[
    mmqa("P-tuning", 0.350, 19.5, 914.0, 28.4e6),
    mrpc("P-tuning", 0.711),
];
const PROMPT: &[Published] = &[
    mmqa("prompt tuning (best init)", 0.343, 22.7, 1450.0, 0.61e6),
    mrpc("prompt tuning", 0.730),
];

impl MethodConfig {
    /// PEFT's published numbers for this method; empty where PEFT has no such method
    /// (Freeze, BitFit, bottleneck adapters) or published none (P-Tuning v2).
    pub fn published(&self) -> &'static [Published] {
        match self {
            MethodConfig::Full(_) => FULL,
            MethodConfig::Lora(_) => LORA,
            MethodConfig::Dora(_) => DORA,
            MethodConfig::Adalora(_) => ADALORA,
            MethodConfig::Ia3(_) => IA3,
            MethodConfig::PromptTuning(_) => PROMPT,
            MethodConfig::PTuning(_) => P_TUNING,
            MethodConfig::PrefixTuning(_) => PREFIX,
            MethodConfig::Freeze(_)
            | MethodConfig::Bitfit(_)
            | MethodConfig::Adapter(_)
            | MethodConfig::PTuningV2(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_orderings_are_the_sources() {
        let best = |kind: &str, b: Benchmark| {
            MethodConfig::all_defaults()
                .into_iter()
                .find(|m| m.kind() == kind)
                .unwrap()
                .published()
                .iter()
                .filter(|p| p.benchmark == b)
                .map(|p| p.accuracy)
                .fold(f64::NAN, f64::max)
        };
        // MRPC: LoRA > prefix = IA3 > prompt tuning > P-tuning.
        let m = Benchmark::Mrpc;
        assert!(best("lora", m) > best("prefix-tuning", m));
        assert_eq!(best("prefix-tuning", m), best("ia3", m));
        assert!(best("ia3", m) > best("prompt-tuning", m));
        assert!(best("prompt-tuning", m) > best("p-tuning", m));
        // MetaMathQA: the LoRA family and full fine-tuning above prefix, prompt and P-tuning.
        let q = Benchmark::MetaMathQa;
        for top in ["lora", "full", "dora"] {
            for low in ["prefix-tuning", "p-tuning", "prompt-tuning"] {
                assert!(best(top, q) > best(low, q), "{top} vs {low}");
            }
        }
        assert!(
            MethodConfig::all_defaults()
                .iter()
                .filter(|m| m.published().is_empty())
                .all(|m| matches!(m.kind(), "freeze" | "bitfit" | "adapter" | "p-tuning-v2"))
        );
    }
}
