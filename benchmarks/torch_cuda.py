"""The PyTorch eager baseline on a GPU: fp32 and fp16 (and the CPU for comparison), accuracy and latency.

    python benchmarks/torch_cuda.py runs/demo/model.pt [--limit 10000] [--batch 1] [--throughput-batch 256]
                                    [--cpu] [--json-out FILE]

These are the rows `edgeres bench --checkpoint` adds on a TensorRT target with a GPU (`TorchSession`, the same
`measure_latency`), for a GPU without TensorRT: the float figures a TensorRT engine has to beat. Accuracy is bench's
(`edgeres.bench.accuracy`): every test image's top-1, and each row's agreement and max |Δlogit| against CUDA fp32
(same model, same images). Latency: `measure_latency` with the default `LatencyConfig` (trtexec's 200 ms warm-up and
3 s), one window per row, per call at `--batch` and at `--throughput-batch`, with the host↔device copies timed (as
bench times them on CUDA). Needs a CUDA build of torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from edgeres.backends.base import infer_all
from edgeres.backends.latency import LatencyConfig, measure_latency
from edgeres.backends.torch import TorchSession
from edgeres.bench.accuracy import accuracy
from edgeres.data.datasets import load_dataset
from edgeres.models import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--throughput-batch", type=int, default=256)
    ap.add_argument("--cpu", action="store_true", help="also the CPU fp32 row")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("Error: needs a CUDA build of torch and a GPU (torch.cuda.is_available() is False)")
    ck = load_checkpoint(args.checkpoint)
    data = (ck.extra.get("train_config") or {}).get("data", "fashion-mnist")
    test = load_dataset(data, "test")
    x = test.tensors(ck.preprocessing, "test images")[:args.limit]
    y = np.asarray(test.labels[:args.limit])
    variants = [("torch-cuda-fp32", "cuda", False), ("torch-cuda-fp16", "cuda", True)]  # the first is the reference
    if args.cpu:
        variants.append(("torch-cpu-fp32", "cpu", False))
    rows, ref = [], None
    for label, device, half in variants:
        sess = TorchSession(ck.model(), device, half)
        logits = infer_all(sess, x, 256)
        acc = accuracy(logits, y, ref)
        ref = logits if ref is None else ref
        row = {"label": label, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
               "top1": round(acc.top1, 2), "images": acc.images}
        if acc.agreement is not None:
            row["agreement_with_cuda_fp32"] = round(acc.agreement, 2)
            row["max_abs_dlogit"] = acc.max_abs_diff
        for key, batch in (("latency", args.batch), ("throughput", args.throughput_batch)):
            st = measure_latency(sess, x[:64], batch, LatencyConfig())
            row[key] = {"batch": batch, "p50_ms": round(st.p50_ms, 4), "p99_ms": round(st.p99_ms, 4),
                        "images_per_s": round(st.throughput_ips, 1), "noise_pct": st.noise_pct,
                        "copies_timed": st.copies_timed}
        sess.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {"checkpoint": str(args.checkpoint), "torch": torch.__version__, "cuda": torch.version.cuda, "rows": rows}
    if args.json_out:
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\n{len(y)} test images; latency at batch {args.batch}, throughput at batch {args.throughput_batch}; "
          f"host↔device copies timed; torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"| row | top-1 % | agreement with fp32 % | p50 ms (batch {args.batch}) | "
          f"img/s (batch {args.throughput_batch}) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['top1']:.2f} | {r.get('agreement_with_cuda_fp32', '')} | "
              f"{r['latency']['p50_ms']:.3f} | {r['throughput']['images_per_s']:.0f} |")


if __name__ == "__main__":
    main()
