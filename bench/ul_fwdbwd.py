"""Ultralytics' side of bench/vs_ultralytics.sh's forward+backward rows: one training step of an
Ultralytics model built from its yaml (forward in train mode, the model's own loss on synthetic
targets, backward; no optimizer), as its trainer runs it on the CPU.
Usage: python ul_fwdbwd.py <model> <imgsz> <threads> <steps> <fp32|bf16> [wall|cpu]
  bf16: torch.autocast("cpu", bfloat16) around forward and loss, as Ultralytics' amp=bf16.
Prints `RESULT ul <model> <imgsz> <batch> <threads> <best img/s> <mean img/s> <cpu share>`.
The targets are the ones bin/bench_train_step gives our trainer (synthetic_targets there)."""
import os
import sys
import time

import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel

BATCH = 16


def targets(batch):
    """Image i holds 2 + i % 4 boxes (cx, cy, w, h normalised) from one linear congruential
    sequence, class j % 3."""
    s = 12345
    bi, cls, box = [], [], []

    def nxt():
        nonlocal s
        s = (s * 1103515245 + 12345) % 2147483648
        return s / 2147483648.0

    for i in range(batch):
        for j in range(2 + i % 4):
            w, h = 0.1 + 0.3 * nxt(), 0.1 + 0.3 * nxt()
            cx, cy = w / 2 + (1 - w) * nxt(), h / 2 + (1 - h) * nxt()
            bi.append(i)
            cls.append([j % 3])
            box.append([cx, cy, w, h])
    return torch.tensor(bi, dtype=torch.float32), torch.tensor(cls, dtype=torch.float32), torch.tensor(box)


def main():
    name, imgsz, threads, steps, prec = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    clock = sys.argv[6] if len(sys.argv) > 6 else "wall"
    torch.set_num_threads(threads)
    m = DetectionModel(f"{name}.yaml", nc=3, verbose=False)
    m.args = get_cfg()  # the trainer's hyperparameters (box, cls, dfl gains, epochs for E2E)
    m.train()
    img = torch.rand(BATCH, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    bi, cls, box = targets(BATCH)
    batch = {"img": img, "batch_idx": bi, "cls": cls, "bboxes": box}

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            loss, _ = m(batch)
        loss.sum().backward()
        m.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up
        step()
    best, total, wall, cpu = 1e30, 0.0, 0.0, 0.0
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        dw, dc = time.perf_counter() - w0, time.process_time() - c0
        wall += dw
        cpu += dc
        t = dc / threads if clock == "cpu" else dw
        total += t
        best = min(best, t)
    print(f"RESULT ul {name} {imgsz} {BATCH} {threads} {BATCH / best:.3f} {BATCH * steps / total:.3f} {cpu / (wall * threads):.3f}")


if __name__ == "__main__":
    main()
