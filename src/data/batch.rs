//! Tokenised examples and padded batches.

use anyhow::{Context, Result, anyhow};
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
    chat: &super::template::ChatRendering,
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
            Example::Chat { turns } => {
                let (ids, loss_mask) = match &chat.template {
                    // Examples are shuffled and split before they are encoded, so the row
                    // number is gone: the conversation is named by its opening words.
                    Some(template) => template
                        .encode(tok, turns, chat.last_turn_only)
                        .with_context(|| {
                            let opening: String = turns
                                .first()
                                .map(|t| t.content.chars().take(40).collect())
                                .unwrap_or_default();
                            format!("the conversation starting \"{opening}\"")
                        })?,
                    None => plain_chat(turns, chat.last_turn_only, &enc, eos)?,
                };
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

/// A conversation in the plain template, piece by piece: the assistant's words and the end
/// of sequence after each (or after the last only) carry the loss.
fn plain_chat(
    turns: &[super::chat::Turn],
    last_turn_only: bool,
    enc: &dyn Fn(&str, bool) -> Result<Vec<u32>>,
    eos: u32,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let pieces = super::chat::plain_pieces(turns);
    let last_learned = pieces.iter().rposition(|(_, t)| *t);
    let (mut ids, mut loss_mask) = (Vec::new(), Vec::new());
    for (i, (piece, assistant)) in pieces.iter().enumerate() {
        let mut piece_ids = enc(piece, i == 0)?;
        if *assistant {
            piece_ids.push(eos);
        }
        let learned = *assistant && (!last_turn_only || Some(i) == last_learned);
        loss_mask.extend(std::iter::repeat_n(learned, piece_ids.len()));
        ids.extend(piece_ids);
    }
    Ok((ids, loss_mask))
}

/// Evaluation examples as a run scores them.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalSet {
    /// Each example scored token by token (exact match, perplexity), or by a classifier's
    /// head (its `label`).
    Examples(Vec<Encoded>),
    /// Labelled examples for a decoder, each answered with every label in turn:
    /// `candidates[i * labels + j]` is example `i` answered with label `j`, and `answers[i]`
    /// is its true label. The model's choice is the answer it finds likeliest.
    Choices {
        candidates: Vec<Encoded>,
        labels: usize,
        answers: Vec<u32>,
    },
}

impl EvalSet {
    /// Examples evaluated (not sequences: a choice has one per label).
    pub fn len(&self) -> usize {
        match self {
            EvalSet::Examples(e) => e.len(),
            EvalSet::Choices { answers, .. } => answers.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every sequence the evaluation runs through the model.
    pub fn sequences(&self) -> &[Encoded] {
        match self {
            EvalSet::Examples(e) => e,
            EvalSet::Choices { candidates, .. } => candidates,
        }
    }

    /// The accuracy of always giving the most frequent true label (the chance level of a
    /// label metric); `None` when the examples have no labels (free-text answers, where
    /// guessing scores nothing).
    pub fn chance_level(&self) -> Option<f64> {
        let labels: Vec<u32> = match self {
            EvalSet::Examples(e) => e.iter().map(|e| e.label).collect::<Option<_>>()?,
            EvalSet::Choices { answers, .. } => answers.clone(),
        };
        if labels.is_empty() {
            return None;
        }
        let mut counts = std::collections::BTreeMap::<u32, usize>::new();
        for l in &labels {
            *counts.entry(*l).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        Some(most as f64 / labels.len() as f64)
    }
}

/// Labelled examples for a decoder's choice among `labels`: each example answered with
/// every label (as [`encode_all`] encodes `text\nLabel:` → ` label` + end of sequence),
/// and the count of examples cut to `max_len`. A label that is not one of `labels` is
/// refused.
pub fn encode_choices(
    tok: &tokenizers::Tokenizer,
    examples: &[Example],
    labels: &[String],
    eos: u32,
    max_len: usize,
) -> Result<(EvalSet, usize)> {
    let mut candidates = Vec::with_capacity(examples.len() * labels.len());
    let mut answers = Vec::with_capacity(examples.len());
    let mut truncated = 0;
    for ex in examples {
        let Example::Labeled { text, label } = ex else {
            return Err(anyhow!(
                "a choice among labels needs {{\"text\", \"label\"}} examples"
            ));
        };
        let answer = labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| anyhow!("label `{label}` is not one of {}", labels.join(", ")))?;
        let answered: Vec<Example> = labels
            .iter()
            .map(|l| Example::Labeled {
                text: text.clone(),
                label: l.clone(),
            })
            .collect();
        let (encoded, cut) = encode_all(
            tok,
            &answered,
            eos,
            max_len,
            &super::template::ChatRendering::default(),
        )?;
        // Every answer ends in end of sequence, so none is dropped as having nothing to
        // predict; the check keeps the layout `i * labels + j` honest all the same.
        if encoded.len() != labels.len() {
            return Err(anyhow!("an answer of `{text}` has no token to predict"));
        }
        truncated += usize::from(cut > 0);
        candidates.extend(encoded);
        answers.push(answer as u32);
    }
    Ok((
        EvalSet::Choices {
            candidates,
            labels: labels.len(),
            answers,
        },
        truncated,
    ))
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

    /// A template that refuses a conversation (as Llama-2's refuses a system turn) stops
    /// the encoding with Jinja's message and the conversation's opening words.
    #[test]
    fn a_template_that_fails_names_the_conversation() {
        use super::super::chat::{Role, Turn};
        use super::super::template::{ChatRendering, ChatTemplate};
        let tok = crate::models::ModelFiles::open("builtin")
            .unwrap()
            .tokenizer()
            .unwrap();
        let template = ChatTemplate::new(crate::models::ChatTemplateText {
            source: "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}".into(),
            bos_token: String::new(),
            eos_token: String::new(),
        })
        .unwrap();
        let chat = ChatRendering {
            template: Some(template),
            last_turn_only: false,
        };
        let turn = |role, content: &str| Turn {
            role,
            content: content.into(),
        };
        let fine = Example::Chat {
            turns: vec![turn(Role::User, "q"), turn(Role::Assistant, "a")],
        };
        assert_eq!(
            encode_all(&tok, std::slice::from_ref(&fine), 0, 64, &chat)
                .unwrap()
                .0
                .len(),
            1
        );
        let refused = Example::Chat {
            turns: vec![
                turn(Role::System, "你是助手"),
                turn(Role::User, "q"),
                turn(Role::Assistant, "a"),
            ],
        };
        let e = encode_all(&tok, &[fine, refused], 0, 64, &chat).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("System role not supported"), "{e}");
        assert!(e.contains("the conversation starting \"你是助手\""), "{e}");
    }

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

    #[test]
    fn chance_is_the_majority_share_of_labels_and_none_without_them() {
        let e = |label: Option<u32>| Encoded {
            ids: vec![1, 2],
            loss_mask: vec![false, true],
            label,
        };
        let choices = EvalSet::Choices {
            candidates: vec![],
            labels: 2,
            answers: vec![0, 1, 1, 1],
        };
        assert_eq!(choices.chance_level(), Some(0.75));
        assert_eq!(choices.len(), 4);
        let heads = EvalSet::Examples(vec![e(Some(2)), e(Some(0)), e(Some(2))]);
        assert!((heads.chance_level().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(EvalSet::Examples(vec![e(None)]).chance_level(), None);
    }
}
