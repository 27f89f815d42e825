//! Tokenised examples and padded batches.

use anyhow::{Result, anyhow};
use candle_core::{Device, Tensor};

use super::Example;

/// Token ids and, per id, whether predicting it counts towards the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub loss_mask: Vec<bool>,
    /// The class id, for a classifier's example (its `loss_mask` is unused).
    pub label: Option<u32>,
}

/// Tokenises examples: the prompt with the tokenizer's special tokens, the completion
/// without, then end-of-sequence. Examples longer than `max_len` keep their end (where the
/// completion is) for prompt/completion and their start for plain text; the count of cut
/// examples is returned.
pub fn encode_all(
    tok: &tokenizers::Tokenizer,
    examples: &[Example],
    eos: u32,
    max_len: usize,
) -> Result<(Vec<Encoded>, usize)> {
    let enc = |s: &str, special: bool| -> Result<Vec<u32>> {
        Ok(tok
            .encode(s, special)
            .map_err(|e| anyhow!("tokenizer failed: {e}"))?
            .get_ids()
            .to_vec())
    };
    let mut out = Vec::with_capacity(examples.len());
    let mut truncated = 0;
    for ex in examples {
        let ex = &*ex.for_decoder();
        let mut e = match ex {
            Example::Completion { prompt, completion } => {
                let p = enc(prompt, true)?;
                let mut c = enc(completion, false)?;
                c.push(eos);
                let mut loss_mask = vec![false; p.len()];
                loss_mask.extend(std::iter::repeat_n(true, c.len()));
                let mut ids = p;
                ids.extend(c);
                Encoded {
                    ids,
                    loss_mask,
                    label: None,
                }
            }
            Example::Text { text } => {
                let mut ids = enc(text, true)?;
                ids.push(eos);
                let loss_mask = vec![true; ids.len()];
                Encoded {
                    ids,
                    loss_mask,
                    label: None,
                }
            }
            Example::Labeled { .. } => unreachable!("for_decoder turns labels into completions"),
        };
        if e.ids.len() > max_len {
            truncated += 1;
            match ex {
                Example::Completion { .. } => {
                    let cut = e.ids.len() - max_len;
                    e.ids.drain(..cut);
                    e.loss_mask.drain(..cut);
                }
                _ => {
                    e.ids.truncate(max_len);
                    e.loss_mask.truncate(max_len);
                }
            }
        }
        if e.ids.len() >= 2 && e.loss_mask[1..].iter().any(|m| *m) {
            out.push(e);
        }
    }
    Ok((out, truncated))
}

/// Tokenises labelled examples for a classifier: the text with the tokenizer's special
/// tokens (`[CLS] … [SEP]`) and the label's index in `labels`. A text longer than
/// `max_len` keeps its start and its closing special token; the count of cut ones is
/// returned.
pub fn encode_labeled(
    tok: &tokenizers::Tokenizer,
    examples: &[Example],
    labels: &[String],
    max_len: usize,
) -> Result<(Vec<Encoded>, usize)> {
    let mut out = Vec::with_capacity(examples.len());
    let mut truncated = 0;
    for ex in examples {
        let Example::Labeled { text, label } = ex else {
            return Err(anyhow!(
                "a classifier needs {{\"text\", \"label\"}} examples; this dataset has prompt/completion or plain text ones"
            ));
        };
        let class = labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| anyhow!("label `{label}` is not one of {}", labels.join(", ")))?;
        let mut ids = tok
            .encode(text.as_str(), true)
            .map_err(|e| anyhow!("tokenizer failed: {e}"))?
            .get_ids()
            .to_vec();
        if ids.len() > max_len.max(2) {
            truncated += 1;
            let last = *ids.last().expect("non-empty");
            ids.truncate(max_len.max(2) - 1);
            ids.push(last);
        }
        if ids.is_empty() {
            continue;
        }
        out.push(Encoded {
            loss_mask: vec![false; ids.len()],
            ids,
            label: Some(class as u32),
        });
    }
    Ok((out, truncated))
}

/// A right-padded batch of classifier examples.
pub struct ClassBatch {
    /// `[B, L]`
    pub ids: Tensor,
    /// Real tokens of each row (the rest is padding, hidden from attention).
    pub lengths: Vec<usize>,
    /// `[B]` class ids.
    pub labels: Tensor,
    pub real_tokens: usize,
}

impl ClassBatch {
    pub fn new(examples: &[&Encoded], pad: u32, device: &Device) -> Result<Self> {
        let l = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let b = examples.len();
        let mut ids = Vec::with_capacity(b * l);
        let mut labels = Vec::with_capacity(b);
        for e in examples {
            ids.extend(e.ids.iter().copied());
            ids.extend(std::iter::repeat_n(pad, l - e.ids.len()));
            labels.push(
                e.label
                    .ok_or_else(|| anyhow!("a classifier batch needs labelled examples"))?,
            );
        }
        let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
        Ok(Self {
            ids: Tensor::from_vec(ids, (b, l), device)?,
            real_tokens: lengths.iter().sum(),
            lengths,
            labels: Tensor::from_vec(labels, b, device)?,
        })
    }
}

/// A right-padded batch: inputs are ids `0..L-1`, targets ids `1..L`.
pub struct Batch {
    /// `[B, L-1]`
    pub inputs: Tensor,
    /// Flat indices into `[B * (L-1)]` of the positions whose next token is scored.
    pub positions: Tensor,
    /// The target id at each scored position.
    pub targets: Tensor,
    /// For each scored position, which example it belongs to (for exact match).
    pub owner: Vec<usize>,
    pub batch_size: usize,
    /// Real (unpadded) input tokens in the batch.
    pub real_tokens: usize,
}

impl Batch {
    pub fn new(examples: &[&Encoded], pad: u32, device: &Device) -> Result<Self> {
        let l = examples
            .iter()
            .map(|e| e.ids.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let b = examples.len();
        let mut inputs = Vec::with_capacity(b * (l - 1));
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut owner = Vec::new();
        let mut real_tokens = 0;
        for (bi, e) in examples.iter().enumerate() {
            let n = e.ids.len();
            real_tokens += n - 1;
            for t in 0..l - 1 {
                inputs.push(if t + 1 < n { e.ids[t] } else { pad });
                if t + 1 < n && e.loss_mask[t + 1] {
                    positions.push((bi * (l - 1) + t) as u32);
                    targets.push(e.ids[t + 1]);
                    owner.push(bi);
                }
            }
        }
        let scored = positions.len();
        Ok(Self {
            inputs: Tensor::from_vec(inputs, (b, l - 1), device)?,
            positions: Tensor::from_vec(positions, scored, device)?,
            targets: Tensor::from_vec(targets, scored, device)?,
            owner,
            batch_size: b,
            real_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_scores_only_masked_next_tokens() {
        let a = Encoded {
            ids: vec![5, 6, 7, 8],
            loss_mask: vec![false, false, true, true],
            label: None,
        };
        let b = Encoded {
            ids: vec![1, 2],
            loss_mask: vec![true, true],
            label: None,
        };
        let batch = Batch::new(&[&a, &b], 0, &Device::Cpu).unwrap();
        assert_eq!(
            batch.inputs.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7], vec![1, 0, 0]]
        );
        // a: predict 7 at t=1, 8 at t=2; b: predict 2 at t=0 (row 1 starts at 3).
        assert_eq!(batch.positions.to_vec1::<u32>().unwrap(), vec![1, 2, 3]);
        assert_eq!(batch.targets.to_vec1::<u32>().unwrap(), vec![7, 8, 2]);
        assert_eq!(batch.owner, vec![0, 0, 1]);
        assert_eq!(batch.real_tokens, 4);
    }
}
