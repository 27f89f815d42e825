//! What a run of a dataset on a model will see, before it trains: the examples' kinds, how
//! many train and evaluate, how long they are in the model's tokens and how many the
//! sequence limit cuts or drops, and the first examples exactly as tokenised, the tokens
//! that carry the loss marked. `peft-workbench data` prints it; the encoding is the
//! trainer's own (`encode_for`), so what is shown is what trains.

use anyhow::Result;

use crate::config::RunConfig;
use crate::data::{self, Example};
use crate::models::ModelConfig;

/// A piece of an example as the model sees it: the text of consecutive tokens, and whether
/// they carry the loss.
pub type Piece = (String, bool);

/// Plain data, so the window can ask any backend for it (a `Command::SummarizeData` job).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataSummary {
    pub dataset: String,
    /// The kinds of example in the file, with their counts (`Alpaca/ShareGPT/messages
    /// conversation`, `prompt/completion`, `text with label`, `plain text`).
    pub kinds: Vec<(String, usize)>,
    pub metric: data::Metric,
    /// How conversations are rendered (the model's chat template or the plain one), when
    /// there are conversations.
    pub template: Option<String>,
    /// True when that is the plain template: the model brought none.
    pub plain_template: bool,
    pub train: usize,
    pub eval: usize,
    /// Token lengths of the training examples, before any cut.
    pub lengths: Vec<usize>,
    pub max_seq_len: usize,
    /// Training examples longer than `max_seq_len` (cut to it), and those left with no
    /// token to learn once cut (dropped).
    pub cut: usize,
    pub dropped: usize,
    /// The first training examples as tokenised.
    pub first: Vec<Vec<Piece>>,
}

fn kind_of_chat() -> &'static str {
    kind(&Example::Chat { turns: Vec::new() })
}

fn kind(e: &Example) -> &'static str {
    match e {
        Example::Chat { .. } => "conversation (Alpaca, ShareGPT or messages)",
        Example::Completion { .. } => "prompt/completion",
        Example::Labeled { .. } => "text with label",
        Example::Text { .. } => "plain text",
    }
}

/// Reads `cfg.dataset` (and `cfg.eval_dataset`) and encodes it for `cfg.model` as a run
/// would; `show` first examples are kept as pieces.
pub fn summarize(cfg: &RunConfig, show: usize) -> Result<DataSummary> {
    let dataset = super::load_dataset(cfg)?;
    let (files, metric) = super::open_for_task(cfg, &dataset)?;
    let tokenizer = files.tokenizer()?;
    let eos = super::pad_id(&files.config, &tokenizer)?;
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for e in dataset.train.iter().chain(&dataset.eval) {
        match kinds.iter_mut().find(|(k, _)| k == kind(e)) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind(e).to_string(), 1)),
        }
    }
    let chat = super::chat_rendering(cfg, &files, &dataset)?;
    let (whole, _) = super::encode_for(
        &files.config,
        &tokenizer,
        &dataset.train,
        eos,
        usize::MAX,
        &chat,
    )?;
    let (kept, cut) = super::encode_for(
        &files.config,
        &tokenizer,
        &dataset.train,
        eos,
        cfg.max_seq_len,
        &chat,
    )?;
    let lengths: Vec<usize> = whole.iter().map(|e| e.ids.len()).collect();
    let classifier = matches!(files.config, ModelConfig::Bert(_));
    let first = kept
        .iter()
        .take(show)
        .map(|e| {
            // A classifier's examples have no loss mask: its head learns the label.
            let mask: Vec<bool> = if classifier {
                vec![false; e.ids.len()]
            } else {
                e.loss_mask.clone()
            };
            pieces(&tokenizer, &e.ids, &mask)
        })
        .collect::<Result<_>>()?;
    let template = kinds
        .iter()
        .any(|(k, _)| k == kind_of_chat())
        .then(|| chat.describe().to_string());
    Ok(DataSummary {
        dataset: cfg.dataset.clone(),
        kinds,
        metric,
        plain_template: template.is_some() && chat.template.is_none(),
        template,
        train: dataset.train.len(),
        eval: dataset.eval.len(),
        dropped: whole.len().saturating_sub(kept.len()),
        lengths,
        max_seq_len: cfg.max_seq_len,
        cut,
        first,
    })
}

/// Runs of tokens with the same loss flag, decoded with their special tokens visible.
fn pieces(tok: &tokenizers::Tokenizer, ids: &[u32], mask: &[bool]) -> Result<Vec<Piece>> {
    let mut out: Vec<Piece> = Vec::new();
    let mut start = 0;
    for i in 1..=ids.len() {
        if i == ids.len() || mask[i] != mask[start] {
            let text = tok
                .decode(&ids[start..i], false)
                .map_err(|e| anyhow::anyhow!("cannot decode tokens: {e}"))?;
            out.push((text, mask[start]));
            start = i;
        }
    }
    Ok(out)
}

impl DataSummary {
    /// The summary for a terminal: counts, a histogram of lengths with the cut marked, and
    /// the first examples with the learned tokens between `⟦` and `⟧`.
    pub fn describe(&self) -> String {
        let mut s = format!("{}\n", self.dataset);
        for (k, n) in &self.kinds {
            s.push_str(&format!("  {n} × {k}\n"));
        }
        s.push_str(&format!(
            "  {} train, {} eval; metric: {}\n",
            self.train,
            self.eval,
            self.metric.name()
        ));
        if let Some(t) = &self.template {
            s.push_str(&format!("  conversations rendered with {t}\n"));
        }
        let [median, p90, longest] = self.length_quantiles();
        s.push_str(&format!(
            "  tokens per example: median {median}, 90 % ≤ {p90}, longest {longest}; {} cut to max_seq_len {}, {} dropped (nothing left to learn once cut)\n",
            self.cut,
            self.max_seq_len,
            self.dropped
        ));
        s.push_str(&self.histogram());
        for (i, ex) in self.first.iter().enumerate() {
            s.push_str(&format!("\nexample {} (learned: ⟦…⟧)\n", i + 1));
            for (text, learned) in ex {
                if *learned {
                    s.push_str(&format!("⟦{text}⟧"));
                } else {
                    s.push_str(text);
                }
            }
            s.push('\n');
        }
        s
    }

    /// The median, 90th percentile and longest token length of the training examples.
    pub fn length_quantiles(&self) -> [usize; 3] {
        let n = self.lengths.len().max(1);
        let mut sorted = self.lengths.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            sorted
                .get(((n - 1) as f64 * q) as usize)
                .copied()
                .unwrap_or(0)
        };
        [at(0.5), at(0.9), sorted.last().copied().unwrap_or(0)]
    }

    /// The lengths in `n` bins of equal width up to the longest example: the width and each
    /// bin's count (bin `i` holds lengths `i·width + 1 ..= (i + 1)·width`).
    pub fn length_bins(&self, n: usize) -> (usize, Vec<usize>) {
        let longest = self.lengths.iter().copied().max().unwrap_or(0).max(1);
        let width = longest.div_ceil(n).max(1);
        let mut bins = vec![0usize; n];
        for &l in &self.lengths {
            bins[((l.saturating_sub(1)) / width).min(n - 1)] += 1;
        }
        (width, bins)
    }

    /// Lengths in ten bins up to the longest example, each a bar, the bin holding the cut
    /// marked.
    fn histogram(&self) -> String {
        let (width, bins) = self.length_bins(10);
        let most = bins.iter().copied().max().unwrap_or(1).max(1);
        let mut s = String::new();
        for (i, &count) in bins.iter().enumerate() {
            let (lo, hi) = (i * width + 1, (i + 1) * width);
            let bar = "█".repeat((count * 40).div_ceil(most));
            let cut = if (lo..=hi).contains(&self.max_seq_len) {
                "  ← max_seq_len"
            } else {
                ""
            };
            s.push_str(&format!("  {lo:>5}–{hi:<5} {count:>6} {bar}{cut}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_shows_what_is_learned_and_long_ones_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.jsonl");
        let long = "很长的回答".repeat(60);
        let rows: String = (0..10)
            .map(|i| {
                let answer = if i == 0 {
                    "四".to_string()
                } else {
                    long.clone()
                };
                serde_json::json!({"messages": [
                    {"role": "user", "content": format!("问题 {i}")},
                    {"role": "assistant", "content": answer},
                ]})
                .to_string()
                    + "\n"
            })
            .collect();
        std::fs::write(&path, rows).unwrap();
        let cfg = RunConfig {
            dataset: path.display().to_string(),
            max_seq_len: 64,
            ..RunConfig::default()
        };
        let s = summarize(&cfg, 9).unwrap();
        assert_eq!(
            s.kinds,
            [(
                "conversation (Alpaca, ShareGPT or messages)".to_string(),
                10
            )]
        );
        assert!(s.plain_template, "the built-in model has no chat template");
        assert_eq!(s.train + s.eval, 10);
        assert_eq!(s.cut, s.lengths.iter().filter(|&&l| l > 64).count());
        assert!(s.cut >= 1);
        // The short one, if it trains: its answer and end of sequence are the learned part.
        if let Some(short) = s
            .first
            .iter()
            .find(|p| p.iter().any(|(t, l)| *l && t.contains('四')))
        {
            assert!(short.iter().any(|(t, l)| !*l && t.contains("User: 问题 0")));
        }
        let text = s.describe();
        assert!(text.contains("← max_seq_len"), "{text}");
        assert!(text.contains("⟦"), "{text}");
    }
}
