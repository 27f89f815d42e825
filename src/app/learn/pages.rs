//! The pages' texts in both languages, the parts each method trains, and its preset.

use super::super::i18n::Lang;
use crate::peft::MethodConfig;

/// A text in both languages of the UI.
pub struct Text {
    pub en: &'static str,
    pub zh: &'static str,
}

impl Text {
    pub fn get(&self, l: Lang) -> &'static str {
        match l {
            Lang::En => self.en,
            Lang::Zh => self.zh,
        }
    }
}

/// Where a method's trained parameters sit in the block diagram.
#[derive(Default, Clone, Copy)]
pub(super) struct Trained {
    pub(super) embedding: bool,
    /// Virtual tokens before the input (Prompt Tuning, P-Tuning), and the encoder that
    /// makes them, if any.
    pub(super) prompt: Option<&'static str>,
    /// Key/value prefixes in every layer, and the reparameterisation that makes them.
    pub(super) kv_prefix: Option<&'static str>,
    /// The projections' own weights (full fine-tuning, Freeze's last blocks).
    pub(super) weights: bool,
    /// A low-rank side branch on q and v, with its label.
    pub(super) low_rank: Option<&'static str>,
    /// AdaLoRA's rank budget: some singular values of the branch are masked.
    pub(super) budget: bool,
    /// IA3's rescaling vectors on k, v and the feed-forward input.
    pub(super) rescale: bool,
    /// Bias terms and norm gains.
    pub(super) biases: bool,
    pub(super) norms: bool,
    /// Bottleneck adapters after attention and after the MLP.
    pub(super) adapters: bool,
    pub(super) head: bool,
}

pub struct Page {
    pub mechanism: Text,
    /// The count of trained parameters, in symbols (L layers, d hidden, r rank…).
    pub formula: &'static str,
    /// The forward pass in the model's own terms (x a token's hidden state, W a frozen
    /// projection, ⊙ element-wise).
    pub forward: Text,
    /// The original paper: authors, title, venue and year, arXiv id.
    pub paper: &'static str,
    /// How the method relates to its neighbours in the survey.
    pub relations: Text,
    /// Typical hyperparameters and what each changes.
    pub hyperparameters: Text,
    pub pros: Text,
    pub cons: Text,
    pub choose: Text,
    pub(super) trained: Trained,
}

/// A method's page: an exhaustive match, so a new method is a compiler error here until it
/// has one.
pub fn page(method: &MethodConfig) -> Page {
    match method {
        MethodConfig::Full(_) => Page {
            mechanism: Text {
                en: "Every weight of the model is trained: embeddings, attention, MLP, norms and the output head. It is the baseline every PEFT method is compared with.",
                zh: "训练模型的全部权重：词嵌入、注意力、MLP、归一化层和输出头。它是所有 PEFT 方法比较的基线。",
            },
            formula: "all parameters",
            forward: Text {
                en: "h = x + Attn(RMSNorm(x)),  y = h + MLP(RMSNorm(h)), unchanged; every W (embedding, q k v o, gate up down, norms, head) gets ∂L/∂W and an AdamW update",
                zh: "h = x + Attn(RMSNorm(x)),  y = h + MLP(RMSNorm(h))，结构不变；每个 W（嵌入、q k v o、gate up down、归一化、输出头）都得到 ∂L/∂W 并由 AdamW 更新",
            },
            paper: "Howard & Ruder, ULMFiT, ACL 2018, arXiv:1801.06146; Devlin et al., BERT, NAACL 2019, arXiv:1810.04805",
            relations: Text {
                en: "The reference point: every other method trains a subset or an addition and is judged by how close it comes. Freeze is full fine-tuning of the last blocks only.",
                zh: "参照基准：其他方法都只训练一部分参数或新增的少量参数，以接近它的程度来评价。Freeze 就是只对最后几个块做全参数微调。",
            },
            hyperparameters: Text {
                en: "Learning rate: 1e-5 to 1e-4 on large models (too high a rate overwrites what pretraining learned); the 7.8 M built-in model takes 1e-3. Weight decay about 0.01; a short warm-up; few epochs.",
                zh: "学习率：大模型常用 1e-5 到 1e-4（过高会覆盖预训练学到的知识）；7.8 M 的内置模型用 1e-3。权重衰减约 0.01；短暂预热；轮数不多。",
            },
            pros: Text {
                en: "Highest capacity; no extra inference cost; nothing to attach.",
                zh: "容量最大；推理无额外开销；无需挂载任何模块。",
            },
            cons: Text {
                en: "Needs gradients and two AdamW moments for every weight (about 4× the model in memory); one full copy of the model per task; can forget what the model knew.",
                zh: "每个权重都需要梯度和 AdamW 的两个动量（显存约为模型的 4 倍）；每个任务保存一整份模型；可能遗忘原有知识。",
            },
            choose: Text {
                en: "Small models, plenty of memory, and a task far from what the model was trained on.",
                zh: "模型较小、内存充足，且任务与预训练差异很大时。",
            },
            trained: Trained {
                embedding: true,
                weights: true,
                biases: true,
                norms: true,
                head: true,
                ..Trained::default()
            },
        },
        MethodConfig::Freeze(_) => Page {
            mechanism: Text {
                en: "The first blocks stay frozen and only the last N transformer blocks are trained. The early layers hold general features; the last ones adapt to the task.",
                zh: "冻结前面的层，只训练最后 N 个 Transformer 块。浅层保留通用特征，深层适应任务。",
            },
            formula: "N × (params of one block)",
            forward: Text {
                en: "blocks 1 … L−N: frozen;  blocks L−N+1 … L (and the final norm): every W trained; the backward pass stops at block L−N+1",
                zh: "第 1 … L−N 块：冻结；第 L−N+1 … L 块（及最后的归一化）：所有 W 都训练；反向传播到第 L−N+1 块为止",
            },
            paper: "Lee, Tang & Lin, What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning, arXiv:1911.03090 (2019)",
            relations: Text {
                en: "Like BitFit it trains a subset of the existing weights and adds nothing (BitFit picks the biases, Freeze the last blocks); with N = L it is full fine-tuning.",
                zh: "与 BitFit 一样只训练已有权重的一部分、不新增参数（BitFit 选偏置，Freeze 选最后几个块）；N = L 时就是全参数微调。",
            },
            hyperparameters: Text {
                en: "N, the number of trained blocks: each block adds capacity, memory and backward time; one or two blocks are often enough for classification. Rate as full fine-tuning or a little higher.",
                zh: "N（训练的块数）：每多一个块，容量、内存和反向时间都增加；分类任务常常一两个块就够。学习率与全参数微调相同或略高。",
            },
            pros: Text {
                en: "Simple; no new modules; backward stops at the first trained block, so it is cheap.",
                zh: "简单；不引入新模块；反向传播只到第一个可训练块，计算量小。",
            },
            cons: Text {
                en: "Still many parameters per block; a full copy of the trained blocks per task; the early layers cannot change.",
                zh: "每个块参数仍较多；每个任务要保存被训练的块；浅层无法改变。",
            },
            choose: Text {
                en: "A quick, strong baseline when the task needs only the top of the network to change.",
                zh: "任务只需改变网络顶层时，一个快速而有力的基线。",
            },
            trained: Trained {
                weights: true,
                norms: true,
                ..Trained::default()
            },
        },
        MethodConfig::Lora(_) => Page {
            mechanism: Text {
                en: "Each adapted projection W gets a low-rank update: y = W x + (α/r) · B A x, with A (r × in) random and B (out × r) zero, so training starts from the unchanged model. Only A and B train; after training B A can be merged into W.",
                zh: "给被适配的投影 W 加一个低秩更新：y = W x + (α/r) · B A x，A（r × in）随机初始化，B（out × r）为零，所以训练从原模型出发。只训练 A 和 B；训练后可把 B A 合并进 W。",
            },
            formula: "Σ over adapted projections r × (in + out)",
            forward: Text {
                en: "q = W_q x + (α/r)·B_q A_q x,  v = W_v x + (α/r)·B_v A_v x  (each targeted projection);  A: r × d_in, B: d_out × r,  B₀ = 0",
                zh: "q = W_q x + (α/r)·B_q A_q x,  v = W_v x + (α/r)·B_v A_v x（每个目标投影）；A: r × d_in, B: d_out × r,  B₀ = 0",
            },
            paper: "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022, arXiv:2106.09685",
            relations: Text {
                en: "An adapter that is linear and sits beside one projection instead of after a sub-layer: that is why LoRA merges into W and bottleneck adapters do not. DoRA adds a trained magnitude, AdaLoRA an SVD form with a rank budget; IA3 replaces the low-rank addition by a diagonal rescaling.",
                zh: "可以看作一种线性的、并联在单个投影旁（而不是接在子层之后）的适配器：这正是 LoRA 能合并进 W 而瓶颈适配器不能的原因。DoRA 增加可训练的幅度，AdaLoRA 改为带秩预算的 SVD 形式；IA3 用对角缩放代替低秩加法。",
            },
            hyperparameters: Text {
                en: "Rank r (4–64, 8 is usual): capacity and file size grow with r. α (often 2r): the update is scaled by α/r, so changing r changes the effective step; rsLoRA scales by α/√r so high ranks keep learning. Targets: q and v in the paper, all linear layers usually better. Rate above full fine-tuning's (1e-4–1e-3 on large models; 1e-2 here). Dropout 0–0.1.",
                zh: "秩 r（4–64，常用 8）：容量和文件大小随 r 增长。α（常取 2r）：更新按 α/r 缩放，改变 r 也会改变有效步长；rsLoRA 按 α/√r 缩放，使高秩仍能学习。目标模块：论文用 q 和 v，适配全部线性层通常更好。学习率高于全参数微调（大模型 1e-4–1e-3；此处 1e-2）。Dropout 0–0.1。",
            },
            pros: Text {
                en: "Few parameters; no inference cost once merged; adapters are small files; the default choice of the field.",
                zh: "参数少；合并后推理无额外开销；适配器文件小；业界默认选择。",
            },
            cons: Text {
                en: "The same rank everywhere; rank and α need tuning; the update is limited to rank r.",
                zh: "所有矩阵使用相同的秩；需要调节秩和 α；更新受限于秩 r。",
            },
            choose: Text {
                en: "Almost always a good first try.",
                zh: "几乎总是值得首先尝试的方法。",
            },
            trained: Trained {
                low_rank: Some("B·A"),
                ..Trained::default()
            },
        },
        MethodConfig::Dora(_) => Page {
            mechanism: Text {
                en: "DoRA splits each weight into a magnitude m (one number per output row) and a direction: y = m · (W + s·B A) x / norm(W + s·B A). LoRA updates the direction; the magnitude trains separately.",
                zh: "DoRA 把权重分解为幅度 m（每个输出行一个数）和方向：y = m · (W + s·B A) x / norm(W + s·B A)。LoRA 更新方向，幅度单独训练。",
            },
            formula: "Σ over adapted projections r × (in + out) + out",
            forward: Text {
                en: "W' = m ⊙ (W + (α/r)·B A) / ‖W + (α/r)·B A‖ (norm of each output row),  q = W'_q x;  m₀ = ‖W‖, B₀ = 0",
                zh: "W' = m ⊙ (W + (α/r)·B A) / ‖W + (α/r)·B A‖（按输出行求范数），q = W'_q x；m₀ = ‖W‖, B₀ = 0",
            },
            paper: "Liu et al., DoRA: Weight-Decomposed Low-Rank Adaptation, ICML 2024, arXiv:2402.09353",
            relations: Text {
                en: "LoRA on the direction of W plus a trained magnitude per output row; with m frozen at its start it behaves like LoRA with a normalised update. Mergeable like LoRA.",
                zh: "在 W 的方向上做 LoRA，再加每个输出行一个可训练的幅度；若 m 固定在初值，它就像更新被归一化的 LoRA。与 LoRA 一样可合并。",
            },
            hyperparameters: Text {
                en: "As LoRA (rank, α, targets); the paper reports DoRA at half LoRA's rank matching or beating LoRA. A rate somewhat below LoRA's often suits it.",
                zh: "与 LoRA 相同（秩、α、目标模块）；论文报告 DoRA 用一半的秩即可达到或超过 LoRA。学习率常比 LoRA 略低。",
            },
            pros: Text {
                en: "Often closer to full fine-tuning than LoRA at the same rank; mergeable.",
                zh: "同等秩下通常比 LoRA 更接近全参数微调；可合并。",
            },
            cons: Text {
                en: "The weight norm per step costs time and memory.",
                zh: "每步计算权重范数，耗费时间和内存。",
            },
            choose: Text {
                en: "When LoRA at a small rank falls short of full fine-tuning.",
                zh: "当小秩 LoRA 达不到全参数微调的效果时。",
            },
            trained: Trained {
                low_rank: Some("m, B·A"),
                ..Trained::default()
            },
        },
        MethodConfig::Adalora(_) => Page {
            mechanism: Text {
                en: "AdaLoRA writes each update in SVD form P Λ Q and scores every singular triplet by the sensitivity of the loss to it. A schedule lowers the total rank budget; the least important triplets are masked, so rank moves to the matrices that matter (watch the heat map).",
                zh: "AdaLoRA 把更新写成 SVD 形式 P Λ Q，并按损失对每个奇异三元组的敏感度打分。预算按计划逐步减少，最不重要的三元组被屏蔽，秩流向更重要的矩阵（见热力图）。",
            },
            formula: "Σ over adapted projections r₀ × (in + out + 1)",
            forward: Text {
                en: "q = W_q x + (α/r₀)·P (Λ ⊙ mask) Q x,  Λ = diag(λ₁ … λ_r₀);  loss + γ (‖P^T P − I‖ + ‖Q Q^T − I‖);  every Δt steps the triplets (P_i, λ_i, Q_i) with the lowest importance are masked until b(t) remain",
                zh: "q = W_q x + (α/r₀)·P (Λ ⊙ mask) Q x,  Λ = diag(λ₁ … λ_r₀)；损失 + γ (‖P^T P − I‖ + ‖Q Q^T − I‖)；每 Δt 步屏蔽重要性最低的三元组 (P_i, λ_i, Q_i)，直到只剩预算 b(t) 个",
            },
            paper: "Zhang et al., Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning (AdaLoRA), ICLR 2023, arXiv:2303.10512",
            relations: Text {
                en: "LoRA written as P Λ Q (an SVD form kept near-orthogonal by a regulariser) so that single ranks can be switched off: with no pruning it is LoRA with an extra diagonal. The budget moves rank to the matrices where it matters — the heat map shows where.",
                zh: "把 LoRA 写成 P Λ Q（用正则项保持近似正交的 SVD 形式），从而能关闭单个秩：不剪枝时就是多了一个对角矩阵的 LoRA。预算把秩分配给更重要的矩阵——热力图显示在哪里。",
            },
            hyperparameters: Text {
                en: "Initial rank r₀ (12) and target average rank r_target (8): the budget falls from r₀ to r_target per matrix on a cubic schedule. tinit / tfinal: steps before pruning starts and after it ends (here 10 % and 20 % of the run). Δt between budget updates; β₁, β₂ smooth the importance scores; orthogonality weight γ 0.1–0.5.",
                zh: "初始秩 r₀（12）与目标平均秩 r_target（8）：预算按三次曲线从 r₀ 降到 r_target。tinit / tfinal：开始剪枝前和结束剪枝后的步数（此处为训练步数的 10% 和 20%）。Δt：预算更新间隔；β₁、β₂ 平滑重要性分数；正交正则权重 γ 取 0.1–0.5。",
            },
            pros: Text {
                en: "Spends a fixed rank budget where it helps most; shows which layers matter.",
                zh: "把固定的秩预算用在最需要的地方；显示哪些层重要。",
            },
            cons: Text {
                en: "More hyper-parameters (initial and target rank, schedule); importance bookkeeping each step.",
                zh: "超参数更多（初始秩、目标秩、调度）；每步都要更新重要性。",
            },
            choose: Text {
                en: "A tight parameter budget, or to learn where adaptation is needed.",
                zh: "参数预算紧张，或想了解哪些位置需要适配时。",
            },
            trained: Trained {
                low_rank: Some("P·Λ·Q"),
                budget: true,
                ..Trained::default()
            },
        },
        MethodConfig::Ia3(_) => Page {
            mechanism: Text {
                en: "IA3 learns one scaling vector per adapted module: it multiplies the keys, the values and the input of the feed-forward down projection element-wise. The vectors start at 1, so training starts from the model itself.",
                zh: "IA3 为每个被适配模块学习一个缩放向量：逐元素缩放键、值和前馈下投影的输入。向量初始为 1，因此从原模型开始训练。",
            },
            formula: "L × (d_k + d_v + d_ff)",
            forward: Text {
                en: "k = l_k ⊙ (W_k x),  v = l_v ⊙ (W_v x),  MLP(x) = W_down (l_ff ⊙ (SiLU(W_gate x) ⊙ W_up x));  l₀ = 1",
                zh: "k = l_k ⊙ (W_k x),  v = l_v ⊙ (W_v x),  MLP(x) = W_down (l_ff ⊙ (SiLU(W_gate x) ⊙ W_up x));  l₀ = 1",
            },
            paper: "Liu et al., Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning ((IA)³, T-Few), NeurIPS 2022, arXiv:2205.05638",
            relations: Text {
                en: "The multiplicative sibling of BitFit's additive shift: both move activations without adding directions. LoRA with a diagonal in place of B A would be close to it.",
                zh: "与 BitFit 的加性平移相对应的乘性缩放：两者都只调整激活，不引入新方向。若把 LoRA 的 B A 换成对角矩阵，就接近 IA3。",
            },
            hyperparameters: Text {
                en: "Targets: keys, values and the feed-forward input (k, v, down). Needs a high rate (3e-3–3e-2): vectors that start at 1 move slowly.",
                zh: "目标：键、值和前馈层输入（k、v、down）。需要较高学习率（3e-3–3e-2）：从 1 开始的向量变化很慢。",
            },
            pros: Text {
                en: "The fewest parameters of all; mergeable; tiny files.",
                zh: "参数最少；可合并；文件极小。",
            },
            cons: Text {
                en: "Low capacity: it can only rescale, never add new directions.",
                zh: "容量低：只能缩放，不能引入新的方向。",
            },
            choose: Text {
                en: "Many tasks on one model, few examples, or the smallest adapters.",
                zh: "一个模型服务多个任务、样本很少，或需要最小的适配器时。",
            },
            trained: Trained {
                rescale: true,
                ..Trained::default()
            },
        },
        MethodConfig::Bitfit(_) => Page {
            mechanism: Text {
                en: "BitFit trains only the bias terms (and here, optionally, the norm gains); every weight matrix stays frozen. On models without biases (LLaMA) zero biases are added first.",
                zh: "BitFit 只训练偏置项（此处还可选训练归一化增益），所有权重矩阵保持冻结。对没有偏置的模型（LLaMA），先添加初值为零的偏置。",
            },
            formula: "Σ biases (+ norm gains)",
            forward: Text {
                en: "every projection y = W x + b:  only b trained (and, optionally, the norm gains g in RMSNorm(x) = g ⊙ x / rms(x))",
                zh: "每个投影 y = W x + b：只训练 b（可选再训练 RMSNorm(x) = g ⊙ x / rms(x) 中的增益 g）",
            },
            paper: "Ben Zaken, Ravfogel & Goldberg, BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked Language-models, ACL 2022, arXiv:2106.10199",
            relations: Text {
                en: "Trains a subset of the existing parameters, like Freeze; the additive counterpart of IA3's rescaling. On LLaMA, which has no biases, it first adds zero ones, so it becomes a small addition like the others.",
                zh: "与 Freeze 一样只训练已有参数的一部分；是 IA3 缩放的加性对应。LLaMA 没有偏置，所以先添加零偏置，这时它也成了一种很小的新增参数。",
            },
            hyperparameters: Text {
                en: "Rate well above full fine-tuning's (1e-4–1e-2; 3e-2 here), since so few parameters move; whether the norm gains train too.",
                zh: "学习率远高于全参数微调（1e-4–1e-2；此处 3e-2），因为可动的参数很少；是否同时训练归一化增益。",
            },
            pros: Text {
                en: "Very few parameters; no new structure.",
                zh: "参数很少；不改变结构。",
            },
            cons: Text {
                en: "Shifts activations only; weaker than LoRA on harder tasks.",
                zh: "只能平移激活；在较难任务上弱于 LoRA。",
            },
            choose: Text {
                en: "A minimal baseline, or classification on encoder models.",
                zh: "作为最小基线，或编码器模型上的分类任务。",
            },
            trained: Trained {
                biases: true,
                norms: true,
                ..Trained::default()
            },
        },
        MethodConfig::Adapter(_) => Page {
            mechanism: Text {
                en: "A small bottleneck network (down to m, nonlinearity, up) is inserted after the attention and after the MLP of every block, with a skip connection: h + up(f(down(h))). Up starts at zero, so the model starts unchanged (Houlsby; Pfeiffer puts one after the MLP only).",
                zh: "在每个块的注意力和 MLP 之后插入一个小的瓶颈网络（降到 m 维、非线性、再升维），带残差连接：h + up(f(down(h)))。升维矩阵初始为零，模型从原样开始（Houlsby；Pfeiffer 只在 MLP 后插入）。",
            },
            formula: "L × k × (2 d m + m + d), k = 2 (Houlsby) or 1",
            forward: Text {
                en: "h = x + Adapter(Attn(RMSNorm(x))),  y = h + Adapter(MLP(RMSNorm(h))),  Adapter(z) = z + W_up f(W_down z);  W_down: m × d, W_up: d × m, W_up,0 = 0",
                zh: "h = x + Adapter(Attn(RMSNorm(x))),  y = h + Adapter(MLP(RMSNorm(h))),  Adapter(z) = z + W_up f(W_down z)；W_down: m × d, W_up: d × m，W_up 初始为 0",
            },
            paper: "Houlsby et al., Parameter-Efficient Transfer Learning for NLP, ICML 2019, arXiv:1902.00751; Pfeiffer et al., AdapterFusion, EACL 2021, arXiv:2005.00247",
            relations: Text {
                en: "The first PEFT method for transformers. LoRA is, in effect, a linear adapter beside one projection; the nonlinearity f here is what adds capacity and what stops an adapter from merging. Pfeiffer keeps only the adapter after the MLP.",
                zh: "最早的 Transformer PEFT 方法。LoRA 实际上是并联在单个投影旁的线性适配器；这里的非线性 f 带来额外容量，也使适配器无法合并。Pfeiffer 只保留 MLP 之后的适配器。",
            },
            hyperparameters: Text {
                en: "Bottleneck size m (8–64): capacity and parameters grow with m. Placement: Houlsby (two per block) or Pfeiffer (one). Rate about 1e-4 on large models; 1e-2 here.",
                zh: "瓶颈维度 m（8–64）：容量和参数随 m 增长。位置：Houlsby（每块两个）或 Pfeiffer（一个）。学习率：大模型约 1e-4；此处 1e-2。",
            },
            pros: Text {
                en: "Sizeable capacity at few parameters; one adapter per task.",
                zh: "以较少参数获得可观容量；每个任务一个适配器。",
            },
            cons: Text {
                en: "Extra layers at inference (cannot be merged); adds latency.",
                zh: "推理时多出网络层（不能合并），增加延迟。",
            },
            choose: Text {
                en: "Multi-task setups where adapters are swapped, and latency is not critical.",
                zh: "需要切换适配器的多任务场景，且对延迟要求不高时。",
            },
            trained: Trained {
                adapters: true,
                ..Trained::default()
            },
        },
        MethodConfig::PromptTuning(_) => Page {
            mechanism: Text {
                en: "n trainable vectors (a soft prompt) are put before the input embeddings; the whole model is frozen. They can start from the embeddings of a text such as the task's instruction.",
                zh: "在输入嵌入前放置 n 个可训练向量（软提示），整个模型冻结。可以用一段文本（如任务说明）的嵌入来初始化。",
            },
            formula: "n × d",
            forward: Text {
                en: "input = [P; E(x)]: (n+T) × d,  P: n × d trained;  the model itself is unchanged and frozen",
                zh: "输入 = [P; E(x)]: (n+T) × d，训练 P: n × d；模型本身不变且冻结",
            },
            paper: "Lester, Al-Rfou & Constant, The Power of Scale for Parameter-Efficient Prompt Tuning, EMNLP 2021, arXiv:2104.08691",
            relations: Text {
                en: "The simplest prompt method: P-Tuning adds an encoder that produces the prompt; Prefix Tuning and P-Tuning v2 put trained vectors into every layer's keys and values instead of the input only. Its paper shows the gap to fine-tuning closing only for models of billions of parameters — expect it near the bottom on a small model.",
                zh: "最简单的提示方法：P-Tuning 增加一个生成提示的编码器；Prefix Tuning 和 P-Tuning v2 把可训练向量放进每一层的键和值，而不仅是输入层。论文表明只有在数十亿参数的模型上它才接近微调——在小模型上预期排在末尾。",
            },
            hyperparameters: Text {
                en: "n virtual tokens (10–100; small models want more). Initialisation: the text of the task or sampled vocabulary beats random. A high rate: 0.3 in the paper (Adafactor); 1e-2–1e-1 here.",
                zh: "虚拟 token 数 n（10–100；小模型需要更多）。初始化：用任务文本或词表采样优于随机。较高的学习率：论文用 0.3（Adafactor）；此处 1e-2–1e-1。",
            },
            pros: Text {
                en: "Tiny; one frozen model serves every task; nothing in the model changes.",
                zh: "极小；一个冻结模型服务所有任务；模型本身不变。",
            },
            cons: Text {
                en: "Weak on small models; slow to converge; uses context positions.",
                zh: "在小模型上效果弱；收敛慢；占用上下文位置。",
            },
            choose: Text {
                en: "Large models and many tasks; text initialisation helps a lot.",
                zh: "大模型、多任务；用文本初始化帮助很大。",
            },
            trained: Trained {
                prompt: Some(""),
                ..Trained::default()
            },
        },
        MethodConfig::PTuning(_) => Page {
            mechanism: Text {
                en: "Like prompt tuning, but the virtual tokens come out of a prompt encoder (a bidirectional LSTM and an MLP, or an MLP only) that runs over trainable embeddings; the encoder couples the tokens, which makes optimisation steadier. Only the encoder's output is kept for inference.",
                zh: "与提示微调相似，但虚拟 token 由提示编码器（双向 LSTM 加 MLP，或仅 MLP）从可训练嵌入生成；编码器让各 token 相互关联，优化更稳定。推理时只保留编码器的输出。",
            },
            formula: "n × d + encoder (LSTM/MLP)",
            forward: Text {
                en: "P = MLP(BiLSTM(P₀)) (or MLP(P₀)),  input = [P; E(x)];  P₀ and the encoder trained, only P saved",
                zh: "P = MLP(BiLSTM(P₀))（或 MLP(P₀)），输入 = [P; E(x)]；训练 P₀ 和编码器，只保存 P",
            },
            paper: "Liu et al., GPT Understands, Too (P-Tuning), arXiv:2103.10385 (2021; AI Open 2023)",
            relations: Text {
                en: "Prompt tuning with a prompt encoder: the LSTM and MLP couple the virtual tokens. Prefix Tuning also reparameterises with an MLP, but its output feeds every layer's keys and values, not the input.",
                zh: "带提示编码器的提示微调：LSTM 和 MLP 让各虚拟 token 相互关联。Prefix Tuning 也用 MLP 重参数化，但输出送入每一层的键和值，而不是输入层。",
            },
            hyperparameters: Text {
                en: "n virtual tokens; encoder type (LSTM or MLP) and its hidden size; rate 1e-3–3e-2.",
                zh: "虚拟 token 数 n；编码器类型（LSTM 或 MLP）及隐藏维度；学习率 1e-3–3e-2。",
            },
            pros: Text {
                en: "Steadier than plain prompt tuning; still a frozen model.",
                zh: "比普通提示微调更稳定；模型仍冻结。",
            },
            cons: Text {
                en: "The encoder adds parameters during training; prompts only at the input.",
                zh: "训练时编码器带来额外参数；提示只在输入层。",
            },
            choose: Text {
                en: "Prompt-based adaptation where plain prompt tuning is unstable.",
                zh: "普通提示微调不稳定时的基于提示的适配。",
            },
            trained: Trained {
                prompt: Some("LSTM + MLP"),
                ..Trained::default()
            },
        },
        MethodConfig::PrefixTuning(_) => Page {
            mechanism: Text {
                en: "Every layer's attention gets n extra key/value pairs (a prefix) that every token attends to. During training they are produced by an MLP from a small embedding (reparameterisation), which keeps optimisation stable; the MLP's output is what is saved.",
                zh: "每一层注意力都多出 n 对键/值（前缀），所有 token 都会关注它们。训练时由一个 MLP 从小嵌入生成（重参数化），使优化稳定；保存的是 MLP 的输出。",
            },
            formula: "n × d + MLP(d → h → 2 L d_kv)",
            forward: Text {
                en: "in every layer ℓ:  K = [P_K^ℓ; W_k x],  V = [P_V^ℓ; W_v x],  [P_K; P_V] = W₂ tanh(W₁ P₀)  (reparameterisation);  queries come from the real tokens only",
                zh: "每一层 ℓ：K = [P_K^ℓ; W_k x],  V = [P_V^ℓ; W_v x],  [P_K; P_V] = W₂ tanh(W₁ P₀)（重参数化）；查询只来自真实 token",
            },
            paper: "Li & Liang, Prefix-Tuning: Optimizing Continuous Prompts for Generation, ACL 2021, arXiv:2101.00190",
            relations: Text {
                en: "Deep prompts with an MLP reparameterisation: without the MLP it is P-Tuning v2; with vectors at the input only it becomes Prompt Tuning. The prefix enters both the keys and the values of every layer, never the queries.",
                zh: "带 MLP 重参数化的深度提示：去掉 MLP 就是 P-Tuning v2；只在输入层放向量就成为提示微调。前缀进入每一层的键和值，从不进入查询。",
            },
            hyperparameters: Text {
                en: "Prefix length n (10–200; generation tasks like longer); the MLP's hidden size; rate 1e-4–1e-2. After training the MLP is dropped and its output saved.",
                zh: "前缀长度 n（10–200；生成任务偏好更长）；MLP 隐藏维度；学习率 1e-4–1e-2。训练后丢弃 MLP，只保存其输出。",
            },
            pros: Text {
                en: "Steers every layer, not only the input; frozen model.",
                zh: "影响每一层，而不仅是输入；模型冻结。",
            },
            cons: Text {
                en: "Attention over extra positions costs time; the MLP is large during training.",
                zh: "额外位置的注意力耗时；训练时 MLP 较大。",
            },
            choose: Text {
                en: "Generation tasks on a shared frozen model.",
                zh: "在共享冻结模型上的生成任务。",
            },
            trained: Trained {
                kv_prefix: Some("MLP"),
                ..Trained::default()
            },
        },
        MethodConfig::PTuningV2(_) => Page {
            mechanism: Text {
                en: "Deep prompts: trainable key/value prefixes in every layer, trained directly without a reparameterisation MLP. Here they can start from the model's own keys and values of a text.",
                zh: "深度提示：每一层都有可训练的键/值前缀，直接训练，不用重参数化 MLP。此处可以用模型对一段文本计算出的键和值来初始化。",
            },
            formula: "n × 2 L d_kv",
            forward: Text {
                en: "in every layer ℓ:  K = [P_K^ℓ; W_k x],  V = [P_V^ℓ; W_v x],  P_K^ℓ, P_V^ℓ: n × d_kv trained directly",
                zh: "每一层 ℓ：K = [P_K^ℓ; W_k x],  V = [P_V^ℓ; W_v x]，P_K^ℓ, P_V^ℓ: n × d_kv 直接训练",
            },
            paper: "Liu et al., P-Tuning v2: Prompt Tuning Can Be Comparable to Fine-tuning Universally Across Scales and Tasks, ACL 2022, arXiv:2110.07602",
            relations: Text {
                en: "Prefix Tuning without the reparameterisation MLP (PEFT writes it as PREFIX_TUNING with prefix_projection = false), aimed at small models and understanding tasks, where input-only prompts fall short.",
                zh: "去掉重参数化 MLP 的 Prefix Tuning（PEFT 中即 prefix_projection = false 的 PREFIX_TUNING），面向小模型和理解类任务——在这些场景中只在输入层加提示效果不足。",
            },
            hyperparameters: Text {
                en: "Prompt length: under 20 for simple classification, about 100 for hard sequence labelling (the paper's finding); rate 5e-3–1e-1; initialisation from the model's own keys and values of a text helps.",
                zh: "提示长度：简单分类少于 20，困难的序列标注约 100（论文结论）；学习率 5e-3–1e-1；用模型对一段文本计算的键和值初始化有帮助。",
            },
            pros: Text {
                en: "Matches fine-tuning on many tasks with 0.1–3 % of the parameters; simple.",
                zh: "在许多任务上以 0.1–3% 的参数达到微调水平；简单。",
            },
            cons: Text {
                en: "Sensitive to learning rate and initialisation; extra attention positions.",
                zh: "对学习率和初始化敏感；额外的注意力位置。",
            },
            choose: Text {
                en: "Understanding tasks and small models where input-only prompts are too weak.",
                zh: "理解类任务，以及只在输入加提示太弱的小模型。",
            },
            trained: Trained {
                kv_prefix: Some(""),
                ..Trained::default()
            },
        },
    }
}

/// Every method's page, in the methods' order.
pub fn pages() -> Vec<(&'static str, Page)> {
    MethodConfig::all_defaults()
        .iter()
        .map(|m| (m.kind(), page(m)))
        .collect()
}

/// The preset file that demonstrates a method, embedded so the page works from anywhere.
pub fn preset_text(method: &MethodConfig) -> &'static str {
    match method {
        MethodConfig::Full(_) => include_str!("../../../presets/full.toml"),
        MethodConfig::Freeze(_) => include_str!("../../../presets/freeze.toml"),
        MethodConfig::Lora(_) => include_str!("../../../presets/lora.toml"),
        MethodConfig::Dora(_) => include_str!("../../../presets/dora.toml"),
        MethodConfig::Adalora(_) => include_str!("../../../presets/adalora.toml"),
        MethodConfig::Ia3(_) => include_str!("../../../presets/ia3.toml"),
        MethodConfig::Bitfit(_) => include_str!("../../../presets/bitfit.toml"),
        MethodConfig::Adapter(_) => include_str!("../../../presets/adapter.toml"),
        MethodConfig::PromptTuning(_) => include_str!("../../../presets/prompt-tuning.toml"),
        MethodConfig::PTuning(_) => include_str!("../../../presets/p-tuning.toml"),
        MethodConfig::PrefixTuning(_) => include_str!("../../../presets/prefix-tuning.toml"),
        MethodConfig::PTuningV2(_) => include_str!("../../../presets/p-tuning-v2.toml"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui;

    /// Every character a Learn page draws has a glyph in the window's fonts: a formula's ℝ or
    /// ⊙ missing from them would show as an empty box.
    #[test]
    fn the_window_fonts_draw_every_learn_page() {
        let ctx = egui::Context::default();
        super::super::super::i18n::install_fonts(&ctx);
        let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
        let mut missing = std::collections::BTreeSet::new();
        // Prose is drawn in the proportional font, formulas in the monospace one.
        let prose = egui::FontId::proportional(13.0);
        let code = egui::FontId::monospace(13.0);
        for (kind, p) in pages() {
            let texts = [
                (p.mechanism.en, &prose),
                (p.mechanism.zh, &prose),
                (p.paper, &prose),
                (p.relations.en, &prose),
                (p.relations.zh, &prose),
                (p.hyperparameters.en, &prose),
                (p.hyperparameters.zh, &prose),
                (p.forward.en, &code),
                (p.forward.zh, &code),
                (p.formula, &code),
            ];
            ctx.fonts_mut(|f| {
                for (text, font) in texts {
                    for c in text.chars() {
                        if !c.is_whitespace() && !f.has_glyph(font, c) {
                            missing.insert((kind, c, font.family.to_string()));
                        }
                    }
                }
            });
        }
        assert!(missing.is_empty(), "no glyph for {missing:?}");
    }
}
