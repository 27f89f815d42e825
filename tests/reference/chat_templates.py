"""Writes tests/fixtures/chat_templates.json: conversations rendered and tokenised by
transformers' apply_chat_template with SmolLM2's tokenizer (read from its GGUF file), once
with SmolLM2's own template and once with the Llama-2 style template in
tests/fixtures/chat_templates/llama2.jinja (trim/lstrip-sensitive, bos/eos tokens,
raise_exception, .strip()). tests/real_models.rs renders them with the workbench's
ChatTemplate and checks the token ids are equal.

Run: HF_HUB_OFFLINE=1 ~/.cache/peft-workbench/venv/bin/python tests/reference/chat_templates.py
"""
import json
import os

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "把“你好”翻译成英文。"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "  再翻译成法文 \n"},
        {"role": "assistant", "content": " Bonjour. "},
    ],
    [
        {"role": "user", "content": "这家酒店怎么样？\n房间干净，服务热情。"},
        {"role": "assistant", "content": "好评：房间干净，服务也热情。\n\n总体推荐。"},
    ],
]


def main():
    tok = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
    # transformers' GGUF converter gives SmolLM2 GPT-2's byte-level pre-tokenizer alone;
    # SmolLM2's own tokenizer.json (and llama.cpp's `smollm` pre-tokenizer) split digits
    # one by one first, which changes a run of spaces before a digit ("\n    4"). Use
    # the model's own, as the workbench does (src/models/gguf.rs).
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
    )
    with open(os.path.join(ROOT, "tests", "fixtures", "chat_templates", "llama2.jinja")) as f:
        llama2 = f.read()
    out = {"transformers": __import__("transformers").__version__, "cases": []}
    for name, template in [("smollm2", None), ("llama2", llama2)]:
        for messages in CONVERSATIONS:
            for generation in [False, True]:
                convo = messages[:-1] if generation else messages
                kwargs = {"chat_template": template} if template else {}
                text = tok.apply_chat_template(
                    convo, tokenize=False, add_generation_prompt=generation, **kwargs
                )
                ids = tok.apply_chat_template(
                    convo, tokenize=True, add_generation_prompt=generation, return_dict=False, **kwargs
                )
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
                out["cases"].append(
                    {
                        "template": name,
                        "messages": convo,
                        "add_generation_prompt": generation,
                        "text": text,
                        "ids": list(map(int, ids)),
                    }
                )
    path = os.path.join(ROOT, "tests", "fixtures", "chat_templates.json")
    with open(path, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(out['cases'])} cases to {path}")


if __name__ == "__main__":
    main()
