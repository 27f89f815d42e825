"""Writes tests/fixtures/parquet/: small datasets as pyarrow writes Parquet files (the
writer behind Hugging Face `datasets`' exports), each beside a JSONL file of the same rows.
The data tests read both and expect the same examples; the broken files check the errors.

- alpaca.parquet: instruction/input/output/system/history, a null `input`, two row groups,
  Snappy (pyarrow's default);
- sharegpt.parquet: `conversations` as a list of {from, value} structs, Zstandard;
- messages.parquet: `messages` as a list of {role, content} structs and an extra `id`
  column the reader ignores;
- text_label.parquet: `text` with an integer `label`;
- no_known_columns.parquet: `question`/`answer` only (refused, listing its columns);
- bad_role.parquet: the second row group's first row has a turn from "robot".

Run: ~/.cache/peft-workbench/venv/bin/python tests/reference/parquet_datasets.py
"""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "parquet")


def write(name, rows, schema, row_group_size=None, compression="snappy", jsonl=True):
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(
        table,
        os.path.join(OUT, name + ".parquet"),
        row_group_size=row_group_size,
        compression=compression,
    )
    if jsonl:
        with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    alpaca = [
        {"instruction": "把这句话翻译成英文。", "input": "今天天气很好。", "output": "The weather is nice today.",
         "system": None, "history": None},
        {"instruction": "这家酒店怎么样？", "input": None, "output": "房间干净，服务热情，值得推荐。",
         "system": "你是一个酒店评论助手。", "history": [["你好", "你好！有什么可以帮你？"]]},
        {"instruction": "Give one word for 'happy'.", "input": "", "output": "Glad.",
         "system": None, "history": None},
    ]
    write("alpaca", alpaca, pa.schema([
        ("instruction", pa.string()), ("input", pa.string()), ("output", pa.string()),
        ("system", pa.string()), ("history", pa.list_(pa.list_(pa.string()))),
    ]), row_group_size=2)

    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    sharegpt = [
        {"conversations": [{"from": "human", "value": "电影好看吗？"}, {"from": "gpt", "value": "很好看，剧情紧凑。"}],
         "system": None},
        {"conversations": [
            {"from": "human", "value": "推荐一本书。"}, {"from": "gpt", "value": "《活着》。"},
            {"from": "human", "value": "为什么？"}, {"from": "gpt", "value": "它写人的坚韧。"}],
         "system": "你是读书助手。"},
    ]
    write("sharegpt", sharegpt, pa.schema([("conversations", pa.list_(turn)), ("system", pa.string())]),
          compression="zstd")

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    messages = [
        {"id": 7, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                               {"role": "assistant", "content": "4"}]},
        {"id": 8, "messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]},
    ]
    write("messages", messages, pa.schema([("id", pa.int64()), ("messages", pa.list_(message))]))

    write("text_label", [{"text": "服务很好", "label": 1}, {"text": "太吵了", "label": 0}],
          pa.schema([("text", pa.string()), ("label", pa.int64())]))

    write("no_known_columns", [{"question": "q", "answer": "a"}],
          pa.schema([("question", pa.string()), ("answer", pa.string())]), jsonl=False)

    bad = sharegpt + [{"conversations": [{"from": "robot", "value": "beep"}, {"from": "gpt", "value": "boop"}],
                       "system": None}]
    write("bad_role", bad, pa.schema([("conversations", pa.list_(turn)), ("system", pa.string())]),
          row_group_size=2, jsonl=False)
    print("wrote", sorted(os.listdir(OUT)), "with pyarrow", pa.__version__)


if __name__ == "__main__":
    main()
