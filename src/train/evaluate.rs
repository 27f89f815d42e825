//! Evaluation: a model's loss and metric on a run's evaluation examples, during a run and
//! for an exported adapter afterwards.

use super::*;

/// Evaluation loss and the share of examples got right: for a decoder, mean loss over
/// scored tokens and exact match (every scored token is the argmax), or for a choice among
/// labels, mean loss over the true answers' tokens and the share whose likeliest answer is
/// the true one; for a classifier, mean loss over examples and accuracy.
pub fn evaluate(
    model: &Model,
    hooks: &Hooks,
    eval: &EvalSet,
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Result<(f64, f64)> {
    evaluate_until(model, hooks, eval, batch_size, pad, device, &|| false)
}

/// The same, ending with [`crate::Stopped`] between batches once `stop` says so.
pub fn evaluate_until(
    model: &Model,
    hooks: &Hooks,
    eval: &EvalSet,
    batch_size: usize,
    pad: u32,
    device: &Device,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(f64, f64)> {
    // On candle's pool, as a training step (see the step loop in `train`).
    device.with_context(|| {
        let sequences = eval.sequences();
        // Per sequence: summed negative log-likelihood of its scored tokens, their count,
        // and whether every one of them is the argmax.
        let mut nll = vec![0.0f64; sequences.len()];
        let mut tokens = vec![0usize; sequences.len()];
        let mut exact = vec![true; sequences.len()];
        // Batches of similar lengths: a batch is padded to its longest sequence, and review
        // lengths range from 10 to 128 tokens, so batches in the file's order were mostly
        // padding. Each sequence's scores do not depend on its batch (padding comes after
        // it, under causal attention).
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|i| sequences[*i].ids.len());
        for chunk in order.chunks(batch_size.max(1)) {
            if stop() {
                return Err(crate::Stopped.into());
            }
            let refs: Vec<&Encoded> = chunk.iter().map(|i| &sequences[*i]).collect();
            // Per batch: each scored target's logits, the targets, and which example each is of.
            let (logits, targets, owner) = match model {
                Model::Bert(m) => {
                    let batch = ClassBatch::new(&refs, pad, device)?;
                    let logits = m.classify(&batch.ids, &batch.lengths, hooks, false)?;
                    (logits, batch.labels, (0..refs.len()).collect())
                }
                decoder => {
                    let batch = Batch::new(&refs, pad, device)?;
                    let decoder = decoder.decoder()?;
                    let logits = decoder.logits(&scored_hidden(decoder, hooks, &batch, false)?)?;
                    (logits, batch.targets, batch.owner)
                }
            };
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let target_nll = logp
                .gather(&targets.unsqueeze(1)?, 1)?
                .neg()?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let tgt = targets.to_vec1::<u32>()?;
            for (((p, t), o), l) in pred.iter().zip(&tgt).zip(&owner).zip(&target_nll) {
                let i = chunk[*o];
                nll[i] += *l as f64;
                tokens[i] += 1;
                exact[i] &= p == t;
            }
        }
        Ok(match eval {
            EvalSet::Examples(_) => (
                nll.iter().sum::<f64>() / tokens.iter().sum::<usize>().max(1) as f64,
                exact.iter().filter(|x| **x).count() as f64 / sequences.len().max(1) as f64,
            ),
            EvalSet::Choices {
                labels, answers, ..
            } => {
                let (mut loss_sum, mut scored, mut right) = (0.0, 0usize, 0usize);
                for (i, answer) in answers.iter().enumerate() {
                    let group = i * labels..(i + 1) * labels;
                    let truth = group.start + *answer as usize;
                    loss_sum += nll[truth];
                    scored += tokens[truth];
                    // The likeliest answer; a tie goes to the first label, so a model
                    // that cannot tell them apart scores the share of that label.
                    let chosen = group
                        .clone()
                        .min_by(|a, b| nll[*a].total_cmp(&nll[*b]))
                        .expect("at least two labels");
                    right += usize::from(chosen == truth);
                }
                (
                    loss_sum / scored.max(1) as f64,
                    right as f64 / answers.len().max(1) as f64,
                )
            }
        })
    })
}

pub(super) fn metric_value(metric: Metric, loss: f64, exact: f64) -> f64 {
    match metric {
        Metric::ExactMatch | Metric::Accuracy => exact,
        Metric::Perplexity => loss.exp(),
    }
}

/// Evaluation loss and metric of `cfg`'s model with an exported adapter attached, on the
/// evaluation examples a run of `cfg` uses: what the run measured at its end, recomputed
/// from the files alone.
pub fn evaluate_adapter(cfg: &RunConfig, adapter: &Path) -> Result<(f64, f64)> {
    evaluate_adapter_until(cfg, adapter, &|| false)
}

/// The same, ending with [`crate::Stopped`] between batches once `stop` says so.
pub fn evaluate_adapter_until(
    cfg: &RunConfig,
    adapter: &Path,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(f64, f64)> {
    let e = measure_adapter(cfg, adapter, stop)?;
    Ok((e.loss, e.metric))
}

/// What [`measure_adapter`] found.
#[derive(Debug, Clone)]
pub struct AdapterEvaluation {
    pub loss: f64,
    /// The task's metric and its name, as a run of `cfg` reports them.
    pub metric: f64,
    pub metric_name: &'static str,
    /// The metric's chance level on these examples, where it has one.
    pub chance: Option<Chance>,
}

/// [`evaluate_adapter_until`] with what a run's summary says beside the numbers: the
/// metric's name and its chance level.
pub fn measure_adapter(
    cfg: &RunConfig,
    adapter: &Path,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<AdapterEvaluation> {
    let device = device_for(&cfg.device)?;
    let dataset = super::load_dataset(cfg)?;
    let (files, metric) = open_for_task(cfg, &dataset)?;
    let model_cfg = files.config.clone();
    let mut imported = ImportedAdapter::load(adapter, &model_cfg, &device)?;
    let loaded = LoadedModel::load(&files, &mut imported, &device)?;
    imported.check_attached()?;
    let eos = pad_id(&model_cfg, &loaded.tokenizer)?;
    let chat = super::chat_rendering(cfg, &files, &dataset)?;
    let (eval, _) = encode_eval(cfg, &model_cfg, &dataset, &loaded.tokenizer, eos, &chat)?;
    let bs = cfg.batch_size.max(16);
    let (loss, exact) = evaluate_until(
        &loaded.model,
        imported.hooks(),
        &eval,
        bs,
        eos,
        &device,
        stop,
    )?;
    Ok(AdapterEvaluation {
        loss,
        metric: metric_value(metric, loss, exact),
        metric_name: metric.name(),
        chance: eval.chance_level().map(|level| Chance {
            level,
            examples: eval.len(),
        }),
    })
}
