//! The Learn view's guide to the survey's last question, "how do I use a rented GPU from my
//! own machine?": the steps in the window's terms, each with what the workbench does there.

use eframe::egui;

use super::super::i18n::{lang, tr};
use super::Text;

/// The page's key in `learn_page` (beside the methods' kinds).
pub const RENTED_GPU: &str = "rented-gpu";

/// The steps, in order.
const STEPS: &[(Text, Text)] = &[
    (
        Text {
            en: "1. Make the program the GPU machine runs",
            zh: "1. 准备 GPU 机器上运行的程序",
        },
        Text {
            en: "A GPU machine needs the CUDA build: `bash scripts/build-cuda.sh` (or `scripts/device-bundle.sh` on a machine without the CUDA toolkit) writes target/cuda/release/peft-workbench. A CPU machine of the same system and architecture can run this very program.",
            zh: "GPU 机器需要 CUDA 版本：`bash scripts/build-cuda.sh`（没有 CUDA 工具包的机器用 `scripts/device-bundle.sh`）生成 target/cuda/release/peft-workbench。同系统、同架构的 CPU 机器可以直接运行当前这个程序。",
        },
    ),
    (
        Text {
            en: "2. Add the machine from the provider's SSH line",
            zh: "2. 用服务商给的 SSH 命令添加机器",
        },
        Text {
            en: "Train view, Device, Remote machines: paste the line exactly as the console shows it (`ssh -p 23456 root@region-9.example.com`, or a host name from ~/.ssh/config) and add. Only SSH is used: no port is opened on either side; your keys, ssh-agent, ~/.ssh/config and ProxyJump work as for `ssh`. Passwords are not asked for: put your public key there once (ssh-copy-id, or the provider's console).",
            zh: "在训练视图“设备”下的“远程机器”中，把控制台显示的那行命令原样粘贴进去（`ssh -p 23456 root@region-9.example.com`，或 ~/.ssh/config 里的主机名）再添加。只用 SSH：两边都不开端口；你的密钥、ssh-agent、~/.ssh/config 和 ProxyJump 与平时用 `ssh` 一样有效。这里不询问密码：先把你的公钥放到那边（ssh-copy-id，或服务商控制台）。",
        },
    ),
    (
        Text {
            en: "3. Check its host key, then test it",
            zh: "3. 核对主机密钥，再测试连接",
        },
        Text {
            en: "\"Host key…\" shows the fingerprints the machine offers: compare them with the provider's before trusting them. A key that changes later is refused (an attack, or a reinstalled machine). \"Test connection\" shows its system, GPUs (nvidia-smi), free disk and memory, and whether a compatible peft-workbench answers there.",
            zh: "“主机密钥……”显示机器提供的指纹：与服务商给的核对一致后再信任。之后若密钥变化会被拒绝（可能是攻击，也可能是机器重装）。“测试连接”显示它的系统、GPU（nvidia-smi）、剩余磁盘和内存，以及那边是否有兼容的 peft-workbench。",
        },
    ),
    (
        Text {
            en: "4. Install the program there",
            zh: "4. 把程序装到那边",
        },
        Text {
            en: "\"Install\" (beside Test connection) sends the program named under \"Program to install\" (this one by default; a GPU machine takes target/cuda/release/peft-workbench) with the built-in model and datasets into ~/.peft-workbench/bin/VERSION/ there, each file checked by SHA-256; a cut-off transfer continues where it stopped. From a terminal: `peft-workbench remote install NAME --binary PATH`.",
            zh: "“安装”（在“测试连接”旁边）把“要安装的程序”中填写的程序（默认是当前程序；GPU 机器用 target/cuda/release/peft-workbench）连同内置模型和数据集发送到那边的 ~/.peft-workbench/bin/版本号/，每个文件都经 SHA-256 校验；传输中断后从断点继续。命令行：`peft-workbench remote install 名称 --binary 路径`。",
        },
    ),
    (
        Text {
            en: "5. Pick its GPU and start",
            zh: "5. 选它的 GPU，开始训练",
        },
        Text {
            en: "The Device picker lists the machine's devices (`cuda:0 @ gpu`). Start and Compare all methods work as for a local run: the curves are live here. Your dataset file (or a model folder on this computer) is sent first, once, under its checksum; a path that exists only there is used there (a rented machine downloads a model faster than a laptop uploads it).",
            zh: "设备选择里会列出这台机器的设备（`cuda:0 @ gpu`）。开始训练、比较全部方法都和本机一样，曲线在本机实时显示。你的数据集文件（或本机上的模型文件夹）会先按校验和发送一次；只存在于那边的路径就直接在那边使用（租来的机器下载模型比笔记本上传快）。",
        },
    ),
    (
        Text {
            en: "6. Close the laptop if you like",
            zh: "6. 可以合上笔记本",
        },
        Text {
            en: "There the runs belong to a daemon (`peft-workbench serve`), not to the SSH session. When the connection drops the window connects again (after 2, 4, 8 … 60 s) and the daemon sends what happened meanwhile: each step shows once, with no gap.",
            zh: "在那边，运行属于一个守护进程（`peft-workbench serve`），而不是 SSH 会话。连接断开后窗口会重新连接（间隔 2、4、8 … 60 秒），守护进程补发这期间发生的一切：每一步只显示一次，曲线没有缺口。",
        },
    ),
    (
        Text {
            en: "7. The finished run comes home",
            zh: "7. 训练完的运行回到本机",
        },
        Text {
            en: "Its curves, summary and adapter are copied into your runs folder (checked by SHA-256, never half-copied) and marked with the machine it trained on; the table, plots, playground, export and merge treat it as any run.",
            zh: "它的曲线、摘要和适配器被复制到本机的运行文件夹（经 SHA-256 校验，不会只复制一半），并标明在哪台机器上训练；表格、曲线、试用、导出和合并都把它当作普通运行。",
        },
    ),
];

pub fn ui(ui: &mut egui::Ui) {
    let l = lang(ui.ctx());
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading(tr(ui, "Training on a rented GPU"));
        ui.label(tr(
            ui,
            "The window stays on your computer; the run trains on the rented machine, reached over SSH.",
        ));
        for (title, body) in STEPS {
            ui.add_space(8.0);
            ui.strong(title.get(l));
            ui.label(body.get(l));
        }
        ui.add_space(8.0);
        ui.small(tr(
            ui,
            "The same from the command line: README.md, \"Training on a rented GPU over SSH\".",
        ));
    });
}
