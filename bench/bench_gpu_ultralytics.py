"""Ultralytics' own training step on the same GPU, for bench_gpu_train's ratio (tests/gpu/run.sh).

What Ultralytics' trainer does per step once a batch is in hand (engine/trainer.py 8.4.190):
uint8 images to the GPU, / 255, forward and loss under autocast (AMP: fp16 with a GradScaler, its
CUDA default), backward, unscale, clip the gradient norm at 10, optimizer step (SGD momentum 0.937
Nesterov, as `optimizer=SGD`), zero_grad, ModelEMA update. Deterministic algorithms as its default
`deterministic=True` sets them. The data loader is not timed (nor is ours: bench_gpu_train feeds
synthetic batches too). Prints one RESULT line per model:
    RESULT <model> amp <images/s> <ms/step> <peak GPU memory MiB>

Usage: python3 bench/bench_gpu_ultralytics.py [models=yolov8n.yaml,yolo26n.yaml] [imgsz=640]
       [batch=64] [steps=20] [warmup=5] [amp=1] [device=cuda:0]
device=cpu (with amp=0) runs the same code without a GPU: the rehearsal's check of this script.
"""

import os
import sys
import time


def args():
    a = {"models": "yolov8n.yaml,yolo26n.yaml", "imgsz": "640", "batch": "64", "steps": "20",
         "warmup": "5", "amp": "1", "nc": "80", "device": "cuda:0"}
    for kv in sys.argv[1:]:
        k, _, v = kv.partition("=")
        if k not in a:
            sys.exit(f"bench_gpu_ultralytics: unknown key {k} (keys: {', '.join(a)})")
        a[k] = v
    return a


def synthetic_batch(torch, n, imgsz, nc, seed):
    """Random uint8 images and 4..12 random boxes per image (normalised xywh), as the loader's."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (n, 3, imgsz, imgsz), dtype=torch.uint8, generator=g)
    counts = torch.randint(4, 13, (n,), generator=g)
    bi = torch.repeat_interleave(torch.arange(n), counts).float()
    m = int(counts.sum())
    wh = 0.05 + 0.4 * torch.rand(m, 2, generator=g)
    xy = wh / 2 + (1 - wh) * torch.rand(m, 2, generator=g)
    cls = torch.randint(0, nc, (m, 1), generator=g).float()
    return {"img": img, "batch_idx": bi, "cls": cls, "bboxes": torch.cat([xy, wh], 1)}


def bench_model(torch, cfg, a):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import ModelEMA, init_seeds

    dev = torch.device(a["device"])
    cuda = dev.type == "cuda"
    init_seeds(0, deterministic=True)
    imgsz, n, nc = int(a["imgsz"]), int(a["batch"]), int(a["nc"])
    model = DetectionModel(cfg, nc=nc, verbose=False).to(dev)
    model.args = get_cfg()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    amp = a["amp"] == "1"
    scaler = torch.amp.GradScaler(dev.type, enabled=amp)
    ema = ModelEMA(model)
    batches = [synthetic_batch(torch, n, imgsz, nc, s) for s in range(2)]

    def step(b):
        b = {k: v.to(dev, non_blocking=True) for k, v in b.items()}
        with torch.autocast(dev.type, enabled=amp):
            b["img"] = b["img"].float() / 255
            loss, _ = model(b)
            loss = loss.sum()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        ema.update(model)

    for i in range(int(a["warmup"])):
        step(batches[i % 2])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    steps = int(a["steps"])
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % 2])
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0
    name = os.path.splitext(os.path.basename(cfg))[0]
    print(f"RESULT {name} {'amp' if amp else 'fp32'} {n / dt:.1f} {dt * 1e3:.1f} {mem:.0f}", flush=True)


def main():
    a = args()
    try:
        import torch
        import ultralytics
    except ImportError as e:
        print(f"bench_gpu_ultralytics: skipped: {e}")
        return 0
    cuda = a["device"].startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("bench_gpu_ultralytics: skipped: no CUDA device for PyTorch")
        return 0
    where = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"bench_gpu_ultralytics: ultralytics {ultralytics.__version__}, torch {torch.__version__}, "
          f"{where}", flush=True)
    for cfg in a["models"].split(","):
        bench_model(torch, cfg, a)
        if cuda:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
