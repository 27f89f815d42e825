#!/usr/bin/env bash
# Runs train.py on this machine: one process, or one per GPU (or N on CPUs with gloo) under
# torchrun or accelerate, or this machine's share of several nodes. Results go to output/.
#
#   bash launch.sh                      every GPU here (one process without a GPU)
#   bash launch.sh --nproc 2            two processes (DDP under torchrun; gloo on CPUs, NCCL on GPUs)
#   bash launch.sh --engine fsdp        under `accelerate launch` with accelerate/fsdp.yaml; the
#                                       engines: ddp, fsdp, zero2, zero3 (DeepSpeed; GPUs only)
#   bash launch.sh --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --nproc 8
#                                       node 0 of 2 (run the same with --node-rank 1 there)
# Anything after -- goes to train.py (e.g. -- --bf16 --base-model /models/llama).
# The Python is $PYTHON (default python3), with requirements.txt installed.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
nproc="" nnodes=1 node_rank=0 master_addr=127.0.0.1 master_port=29500 engine=torchrun
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) nproc="$2"; shift 2 ;;
    --nnodes) nnodes="$2"; shift 2 ;;
    --node-rank) node_rank="$2"; shift 2 ;;
    --master-addr) master_addr="$2"; shift 2 ;;
    --master-port) master_port="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "launch.sh: unknown option $1 (see the top of this file)" >&2; exit 2 ;;
  esac
done
gpus=$("$python" -c 'import torch; print(torch.cuda.device_count())')
if [ -z "$nproc" ]; then
  nproc=$(( gpus > 0 ? gpus : 1 ))
fi
case "$nproc$nnodes$node_rank$master_port" in
  *[!0-9]*) echo "launch.sh: --nproc, --nnodes, --node-rank and --master-port take whole numbers" >&2; exit 2 ;;
esac
case "$engine" in
  torchrun) ;;
  ddp) ;;
  fsdp|zero2|zero3)
    if [ "$gpus" -eq 0 ]; then
      echo "launch.sh: accelerate runs $engine only on GPUs and this machine has none; --engine ddp or torchrun run on CPUs" >&2
      exit 2
    fi ;;
  *) echo "launch.sh: --engine is one of torchrun, ddp, fsdp, zero2, zero3 (not $engine)" >&2; exit 2 ;;
esac
if [ "$engine" != torchrun ]; then
  # accelerate counts processes over all machines.
  exec "$python" -m accelerate.commands.launch --config_file "accelerate/$engine.yaml" \
    --num_processes $(( nproc * nnodes )) --num_machines "$nnodes" --machine_rank "$node_rank" \
    --main_process_ip "$master_addr" --main_process_port "$master_port" \
    train.py "$@"
fi
if [ "$nproc" -eq 1 ] && [ "$nnodes" -eq 1 ]; then
  exec "$python" train.py "$@"
fi
exec "$python" -m torch.distributed.run --nproc_per_node "$nproc" --nnodes "$nnodes" \
  --node_rank "$node_rank" --master_addr "$master_addr" --master_port "$master_port" \
  train.py "$@"
