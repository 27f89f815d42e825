//! The Learn view: one page per method — how it works, a diagram of a transformer block
//! with the method's parameters highlighted, its trainable-parameter formula evaluated for
//! the loaded model, pros and cons, when to choose it, its preset and the runs measured here.

use eframe::egui::{self, Color32, Pos2, Rect, Stroke, Vec2, pos2, vec2};

use super::i18n::{Lang, lang, tr};
use super::{Action, WorkbenchApp};
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
struct Trained {
    embedding: bool,
    /// Virtual tokens before the input (Prompt Tuning, P-Tuning), and the encoder that
    /// makes them, if any.
    prompt: Option<&'static str>,
    /// Key/value prefixes in every layer, and the reparameterisation that makes them.
    kv_prefix: Option<&'static str>,
    /// The projections' own weights (full fine-tuning, Freeze's last blocks).
    weights: bool,
    /// A low-rank side branch on q and v, with its label.
    low_rank: Option<&'static str>,
    /// AdaLoRA's rank budget: some singular values of the branch are masked.
    budget: bool,
    /// IA3's rescaling vectors on k, v and the feed-forward input.
    rescale: bool,
    /// Bias terms and norm gains.
    biases: bool,
    norms: bool,
    /// Bottleneck adapters after attention and after the MLP.
    adapters: bool,
    head: bool,
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
    trained: Trained,
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
        MethodConfig::Full(_) => include_str!("../../presets/full.toml"),
        MethodConfig::Freeze(_) => include_str!("../../presets/freeze.toml"),
        MethodConfig::Lora(_) => include_str!("../../presets/lora.toml"),
        MethodConfig::Dora(_) => include_str!("../../presets/dora.toml"),
        MethodConfig::Adalora(_) => include_str!("../../presets/adalora.toml"),
        MethodConfig::Ia3(_) => include_str!("../../presets/ia3.toml"),
        MethodConfig::Bitfit(_) => include_str!("../../presets/bitfit.toml"),
        MethodConfig::Adapter(_) => include_str!("../../presets/adapter.toml"),
        MethodConfig::PromptTuning(_) => include_str!("../../presets/prompt-tuning.toml"),
        MethodConfig::PTuning(_) => include_str!("../../presets/p-tuning.toml"),
        MethodConfig::PrefixTuning(_) => include_str!("../../presets/prefix-tuning.toml"),
        MethodConfig::PTuningV2(_) => include_str!("../../presets/p-tuning-v2.toml"),
    }
}

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let l = lang(ui.ctx());

    egui::Panel::left("learn_methods")
        .resizable(false)
        .default_size(170.0)
        .show(ui, |ui| {
            ui.heading(tr(ui, "Methods"));
            for m in MethodConfig::all_defaults() {
                let selected = app.learn_page == m.kind();
                if ui
                    .selectable_label(selected, tr(ui, m.display_name()))
                    .clicked()
                {
                    app.learn_page = m.kind().to_string();
                }
            }
        });
    let Some(method) = MethodConfig::all_defaults()
        .into_iter()
        .find(|m| m.kind() == app.learn_page)
    else {
        return;
    };
    let page = page(&method);
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading(tr(ui, method.display_name()));
        ui.label(page.mechanism.get(l));
        ui.add_space(6.0);
        ui.horizontal_top(|ui| {
            diagram(ui, &page.trained);
            ui.vertical(|ui| {
                ui.set_max_width(420.0);
                ui.strong(tr(ui, "Forward pass"));
                ui.label(egui::RichText::new(page.forward.get(l)).monospace());
                ui.add_space(4.0);
                ui.strong(tr(ui, "Trainable parameters"));
                ui.monospace(tr(ui, page.formula));
                match app.model_shape() {
                    Ok(shape) => {
                        let shape = shape.clone();
                        let n = method.trainable_params(&shape);
                        let total = shape.param_count();
                        ui.label(format!(
                            "{}: {} ({:.3} %)",
                            tr(ui, "On the loaded model, default settings"),
                            super::central::human(n),
                            100.0 * n as f64 / total.max(1) as f64
                        ));
                        // The diagram draws a LLaMA block; say where its parts are elsewhere.
                        if let Some(note) = match shape {
                            crate::models::ModelConfig::Llama(_) => None,
                            crate::models::ModelConfig::Bert(_) => Some(
                                "The diagram draws a LLaMA block. In this BERT encoder q/k/v are query/key/value, o is attention.output.dense, up/down are intermediate.dense/output.dense (no gate), norms are LayerNorms after each residual add, and a pooler and classifier replace the LM head.",
                            ),
                            crate::models::ModelConfig::Gpt2(_) => Some(
                                "The diagram draws a LLaMA block. In this GPT-2 q/k/v are one fused c_attn projection, o is attn.c_proj, up/down are mlp.c_fc/mlp.c_proj (no gate), norms are LayerNorms, and positions are learned embeddings instead of rotations.",
                            ),
                        } {
                            ui.small(tr(ui, note));
                        }
                    }
                    Err(e) => {
                        ui.colored_label(ui.visuals().error_fg_color, e.clone());
                    }
                }
                ui.add_space(6.0);
                ui.strong(tr(ui, "Pros"));
                ui.label(page.pros.get(l));
                ui.strong(tr(ui, "Cons"));
                ui.label(page.cons.get(l));
                ui.strong(tr(ui, "When to choose it"));
                ui.label(page.choose.get(l));
                ui.strong(tr(ui, "Typical hyperparameters"));
                ui.label(page.hyperparameters.get(l));
                ui.strong(tr(ui, "Related methods"));
                ui.label(page.relations.get(l));
                ui.strong(tr(ui, "Original paper"));
                ui.label(page.paper);
                ui.add_space(6.0);
                if ui
                    .button(tr(ui, "Use its preset"))
                    .on_hover_text(format!("presets/{}.toml", method.kind()))
                    .clicked()
                {
                    actions.push(Action::UsePreset(method.clone()));
                }
            });
        });
        published_results(ui, &method);
        measured_runs(app, ui, method.kind());
    });
}

/// PEFT's published numbers for the method, with their source, so a student can set the
/// runs measured here beside them.
fn published_results(ui: &mut egui::Ui, method: &MethodConfig) {
    use crate::peft::published::Benchmark;
    ui.add_space(8.0);
    ui.strong(tr(ui, "Published results"));
    let rows = method.published();
    if rows.is_empty() {
        ui.label(tr(
            ui,
            "Hugging Face PEFT publishes no numbers for this method (it is not one of PEFT's methods, or PEFT's comparisons leave it out).",
        ));
        return;
    }
    for bench in [Benchmark::MetaMathQa, Benchmark::Mrpc] {
        let of: Vec<_> = rows.iter().filter(|p| p.benchmark == bench).collect();
        if of.is_empty() {
            continue;
        }
        ui.label(egui::RichText::new(tr(ui, bench.source())).small().weak());
        egui::Grid::new(("published", bench as u8))
            .striped(true)
            .show(ui, |ui| {
                for h in [
                    "Variant",
                    "Accuracy",
                    "Trainable",
                    "Peak memory",
                    "Train time",
                ] {
                    ui.strong(tr(ui, h));
                }
                ui.end_row();
                for p in of {
                    ui.label(tr(ui, p.variant));
                    ui.label(format!("{:.3}", p.accuracy));
                    let dash = || "–".to_string();
                    ui.label(
                        p.trainable
                            .map_or_else(dash, |t| super::central::human(t as usize)),
                    );
                    ui.label(p.peak_gib.map_or_else(dash, |g| format!("{g:.1} GiB")));
                    ui.label(p.train_seconds.map_or_else(dash, |t| format!("{t:.0} s")));
                    ui.end_row();
                }
            });
    }
    ui.label(
        egui::RichText::new(tr(
            ui,
            "Other models and tasks than yours: compare the ordering of methods, not the numbers.",
        ))
        .small()
        .italics(),
    );
}

/// The runs of this method measured in this session or read from disk.
fn measured_runs(app: &WorkbenchApp, ui: &mut egui::Ui, kind: &str) {
    ui.add_space(8.0);
    ui.strong(tr(ui, "Measured here"));
    let runs: Vec<_> = app
        .store
        .runs
        .iter()
        .filter(|r| r.config.method.kind() == kind && r.summary.is_some())
        .collect();
    if runs.is_empty() {
        ui.label(tr(
            ui,
            "No finished run of this method yet: use its preset or Compare all methods.",
        ));
        return;
    }
    egui::Grid::new("learn_runs").striped(true).show(ui, |ui| {
        for h in ["Run", "Trainable", "Eval loss", "Metric", "Tokens/s"] {
            ui.strong(tr(ui, h));
        }
        ui.end_row();
        for r in runs {
            let s = r.summary.as_ref().expect("filtered above");
            ui.label(&r.label);
            ui.label(format!(
                "{} ({:.2} %)",
                super::central::human(s.trainable_params),
                100.0 * s.trainable_params as f64 / s.total_params.max(1) as f64
            ));
            ui.label(format!(
                "{:.3} -> {:.3}",
                s.initial_eval_loss, s.final_eval_loss
            ));
            ui.label(format!("{} {:.3}", s.metric_name, s.metric_value));
            ui.label(format!("{:.0}", s.tokens_per_second));
            ui.end_row();
        }
    });
}

const TRAINED: Color32 = Color32::from_rgb(230, 126, 34);

/// A decoder block drawn top to bottom, trained parts filled in orange.
fn diagram(ui: &mut egui::Ui, t: &Trained) {
    let (response, painter) = ui.allocate_painter(vec2(360.0, 470.0), egui::Sense::hover());
    let r = response.rect;
    let dark = ui.visuals().dark_mode;
    let frozen_fill = if dark {
        Color32::from_gray(60)
    } else {
        Color32::from_gray(215)
    };
    let text_color = ui.visuals().text_color();
    let font = egui::FontId::proportional(12.0);
    let small = egui::FontId::proportional(10.5);
    let frozen_label = tr(ui, "frozen");
    let trained_label = tr(ui, "trained");
    let boxed = |rect: Rect, label: &str, trained: bool| {
        let fill = if trained { TRAINED } else { frozen_fill };
        painter.rect_filled(rect, 4.0, fill);
        let color = if trained { Color32::BLACK } else { text_color };
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            label,
            font.clone(),
            color,
        );
    };
    let arrow = |from: Pos2, to: Pos2| {
        painter.arrow(from, to - from, Stroke::new(1.2, text_color));
    };
    // A sublayer's outline with its name in the corner.
    let group = |rect: Rect, label: &str| {
        painter.rect_stroke(
            rect,
            4.0,
            Stroke::new(1.0, text_color),
            egui::StrokeKind::Inside,
        );
        painter.text(
            pos2(rect.left() + 4.0, rect.top() + 2.0),
            egui::Align2::LEFT_TOP,
            label,
            small.clone(),
            text_color,
        );
    };
    // IA3's learned vector "l" beside the projection it rescales.
    let scaling_vector = |at: Pos2| {
        let s = Rect::from_min_size(at, vec2(20.0, 12.0));
        painter.rect_filled(s, 2.0, TRAINED);
        painter.text(
            s.center(),
            egui::Align2::CENTER_CENTER,
            "l",
            small.clone(),
            Color32::BLACK,
        );
    };
    let cx = r.left() + 190.0;
    let w = 180.0;
    let row = |y: f32, h: f32| Rect::from_center_size(pos2(cx, r.top() + y), vec2(w, h));

    // Input: tokens, embedding, and the soft prompt beside it.
    let tokens = row(14.0, 20.0);
    painter.text(
        tokens.center(),
        egui::Align2::CENTER_CENTER,
        tr(ui, "input tokens"),
        font.clone(),
        text_color,
    );
    let embed = row(44.0, 24.0);
    boxed(embed, tr(ui, "embedding"), t.embedding);
    if let Some(encoder) = t.prompt {
        let p = Rect::from_min_size(pos2(r.left() + 4.0, embed.top()), vec2(92.0, 24.0));
        boxed(p, tr(ui, "soft prompt"), true);
        if !encoder.is_empty() {
            let e = Rect::from_min_size(pos2(r.left() + 4.0, embed.top() - 30.0), vec2(92.0, 22.0));
            boxed(e, encoder, true);
            arrow(pos2(e.center().x, e.bottom()), pos2(p.center().x, p.top()));
        }
    }
    arrow(pos2(cx, tokens.bottom()), pos2(cx, embed.top()));

    // The block, repeated L times; its frame is drawn once its contents are placed.
    let block_top = r.top() + 72.0;
    arrow(pos2(cx, embed.bottom()), pos2(cx, r.top() + 88.0));
    let norm1 = row(100.0, 20.0);
    boxed(norm1, "RMSNorm", t.norms);
    // Attention: q k v o, each a small box; side branches beside q and v.
    let attn = row(150.0, 64.0);
    group(attn, tr(ui, "attention"));
    let proj_w = 36.0;
    let proj = |i: usize, y: f32| {
        Rect::from_min_size(
            pos2(attn.left() + 8.0 + i as f32 * (proj_w + 6.0), y),
            vec2(proj_w, 20.0),
        )
    };
    for (i, name) in ["q", "k", "v", "o"].iter().enumerate() {
        let b = proj(i, attn.top() + 18.0);
        boxed(b, name, t.weights || (t.biases && i < 3));
        if t.rescale && (*name == "k" || *name == "v") {
            scaling_vector(pos2(b.left() + 8.0, b.bottom() + 2.0));
        }
    }
    if let Some(label) = t.low_rank {
        // Beside the block, one branch each for q (straight in) and v (along a lane under
        // q and k, then up into v).
        let branch = Stroke::new(1.4, TRAINED);
        let q = proj(0, attn.top() + 18.0);
        let bq = Rect::from_min_size(pos2(r.left() + 2.0, q.center().y - 12.0), vec2(54.0, 24.0));
        boxed(bq, label, true);
        painter.line_segment(
            [pos2(bq.right(), q.center().y), pos2(q.left(), q.center().y)],
            branch,
        );
        let v = proj(2, attn.top() + 18.0);
        let bv = Rect::from_min_size(pos2(r.left() + 2.0, v.bottom() + 2.0), vec2(54.0, 24.0));
        boxed(bv, label, true);
        let from = pos2(bv.right(), bv.center().y);
        painter.line_segment([from, pos2(v.center().x, from.y)], branch);
        painter.line_segment(
            [pos2(v.center().x, from.y), pos2(v.center().x, v.bottom())],
            branch,
        );
    }
    if t.budget {
        // Λ's diagonal: the singular values kept (trained) and those the budget masked.
        for i in 0..6 {
            let cell = Rect::from_min_size(
                pos2(r.left() + 4.0 + i as f32 * 9.0, attn.top() - 2.0),
                Vec2::splat(7.0),
            );
            painter.rect_filled(cell, 1.0, if i < 4 { TRAINED } else { frozen_fill });
        }
    }
    if let Some(reparam) = t.kv_prefix {
        // The prefix joins the keys and the values (after their projections), never the
        // queries: one lane under q, k and v, rising into the outputs of k and v.
        let b = Rect::from_min_size(pos2(r.left() + 2.0, attn.top() + 4.0), vec2(54.0, 30.0));
        boxed(b, &tr(ui, "K/V prefix").replacen(' ', "\n", 1), true);
        let lane = attn.bottom() - 10.0;
        let stroke = Stroke::new(1.4, TRAINED);
        painter.line_segment(
            [pos2(b.center().x, b.bottom()), pos2(b.center().x, lane)],
            stroke,
        );
        let v = proj(2, attn.top() + 18.0);
        painter.line_segment([pos2(b.center().x, lane), pos2(v.center().x, lane)], stroke);
        for target in [proj(1, attn.top() + 18.0), v] {
            painter.arrow(
                pos2(target.center().x, lane),
                vec2(0.0, target.bottom() - lane),
                stroke,
            );
        }
        if !reparam.is_empty() {
            // Named as the reparameterisation, so it does not read as the block's MLP.
            let m = Rect::from_min_size(pos2(r.left() + 2.0, b.top() - 36.0), vec2(54.0, 30.0));
            boxed(m, tr(ui, "reparam.\nMLP"), true);
            arrow(pos2(m.center().x, m.bottom()), pos2(b.center().x, b.top()));
        }
    }
    arrow(pos2(cx, norm1.bottom()), pos2(cx, attn.top()));
    // After a sublayer: its adapter (if the method has one) and the residual sum.
    let adapter_label = tr(ui, "adapter: down, f, up (+ skip)");
    let adapter_and_add = |below: f32| -> Rect {
        let mut y = below + 8.0;
        if t.adapters {
            let a = Rect::from_min_size(pos2(cx - w / 2.0, y), vec2(w, 20.0));
            boxed(a, adapter_label, true);
            y = a.bottom() + 6.0;
        }
        let add = Rect::from_center_size(pos2(cx, y + 9.0), vec2(18.0, 18.0));
        painter.circle_stroke(add.center(), 9.0, Stroke::new(1.0, text_color));
        painter.text(
            add.center(),
            egui::Align2::CENTER_CENTER,
            "+",
            font.clone(),
            text_color,
        );
        add
    };
    let add1 = adapter_and_add(attn.bottom());
    // The residual stream: what enters a sub-layer's norm is added back after it.
    let lane_x = cx + w / 2.0 + 14.0;
    let residual = |from_y: f32, add: Rect| {
        let s = Stroke::new(1.0, text_color);
        painter.line_segment([pos2(cx, from_y), pos2(lane_x, from_y)], s);
        painter.line_segment([pos2(lane_x, from_y), pos2(lane_x, add.center().y)], s);
        painter.arrow(
            pos2(lane_x, add.center().y),
            vec2(add.right() - lane_x, 0.0),
            s,
        );
    };
    residual(norm1.top() - 6.0, add1);
    let norm2 = Rect::from_min_size(pos2(cx - w / 2.0, add1.bottom() + 10.0), vec2(w, 20.0));
    boxed(norm2, "RMSNorm", t.norms);
    arrow(pos2(cx, add1.bottom()), pos2(cx, norm2.top()));
    let mlp = Rect::from_min_size(pos2(cx - w / 2.0, norm2.bottom() + 12.0), vec2(w, 50.0));
    group(mlp, "MLP");
    for (i, name) in ["gate", "up", "down"].iter().enumerate() {
        let b = Rect::from_min_size(
            pos2(mlp.left() + 8.0 + i as f32 * 56.0, mlp.top() + 18.0),
            vec2(50.0, 20.0),
        );
        boxed(b, name, t.weights);
        if t.rescale && *name == "down" {
            scaling_vector(pos2(b.left() - 4.0, b.top() - 14.0));
        }
    }
    arrow(pos2(cx, norm2.bottom()), pos2(cx, mlp.top()));
    let add2 = adapter_and_add(mlp.bottom());
    residual(add1.bottom() + 4.0, add2);
    let block = Rect::from_min_max(
        pos2(r.left() + 60.0, block_top),
        pos2(r.right() - 4.0, add2.bottom() + 10.0),
    );
    painter.rect_stroke(
        block,
        6.0,
        Stroke::new(1.0, text_color),
        egui::StrokeKind::Inside,
    );
    painter.text(
        pos2(block.right() - 6.0, block.bottom() - 4.0),
        egui::Align2::RIGHT_BOTTOM,
        tr(ui, "× L blocks"),
        small.clone(),
        text_color,
    );

    // Output.
    let final_norm = Rect::from_min_size(pos2(cx - w / 2.0, block.bottom() + 14.0), vec2(w, 20.0));
    boxed(final_norm, "RMSNorm", t.norms);
    arrow(pos2(cx, block.bottom()), pos2(cx, final_norm.top()));
    let head = Rect::from_min_size(
        pos2(cx - w / 2.0, final_norm.bottom() + 12.0),
        vec2(w, 22.0),
    );
    boxed(head, tr(ui, "LM head"), t.head);
    arrow(pos2(cx, final_norm.bottom()), pos2(cx, head.top()));

    // Legend.
    let legend = |i: usize, fill: Color32, label: &str| {
        let b = Rect::from_min_size(
            pos2(r.left() + 4.0, r.bottom() - 52.0 + i as f32 * 17.0),
            Vec2::splat(12.0),
        );
        painter.rect_filled(b, 2.0, fill);
        painter.text(
            pos2(b.right() + 4.0, b.center().y),
            egui::Align2::LEFT_CENTER,
            label,
            small.clone(),
            text_color,
        );
    };
    legend(0, TRAINED, trained_label);
    legend(1, frozen_fill, frozen_label);
    if t.budget {
        legend(
            2,
            frozen_fill,
            tr(
                ui,
                "Λ (top left): singular values masked by the rank budget",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character a Learn page draws has a glyph in the window's fonts: a formula's ℝ or
    /// ⊙ missing from them would show as an empty box.
    #[test]
    fn the_window_fonts_draw_every_learn_page() {
        let ctx = egui::Context::default();
        super::super::i18n::install_fonts(&ctx);
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
