"""Runs augment_train (mosaic, letterbox + perspective, HSV, flips) and an independent Python
re-implementation of Ultralytics' default detection pipeline (cv2 for pixels, the same keyed RNG
ported to Python) on coco8 images, and compares pixels and labels. Run through run.sh."""
import numpy as np, cv2, subprocess, math, struct, sys, os
BIN = sys.argv[2]
SHARED = os.environ.get("SHARED", "/work/shared")
M64 = (1 << 64) - 1
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)
class RNG:
    def __init__(s, seed, a, b):
        k = mix64((seed + 0x9e3779b97f4a7c15) & M64); k = mix64(k ^ ((a + 0x632be59bd9b4e019) & M64)); k = mix64(k ^ ((b + 0x85157af5) & M64))
        s.key, s.ctr = k, 0
    def u64(s):
        s.ctr += 1; return mix64((s.key + 0x9e3779b97f4a7c15 * s.ctr) & M64)
    def uniform(s): return (s.u64() >> 11) * 2.0 ** -53
    def range(s, lo, hi): return lo + (hi - lo) * s.uniform()
    def int(s, n): return int(s.uniform() * n)

def xywhn2xyxy(l, w, h):
    b = l[:, 1:5].astype(np.float32)
    out = np.empty_like(b)
    out[:, 0] = b[:, 0] - b[:, 2] / 2; out[:, 1] = b[:, 1] - b[:, 3] / 2
    out[:, 2] = b[:, 0] + b[:, 2] / 2; out[:, 3] = b[:, 1] + b[:, 3] / 2
    out[:, [0, 2]] *= w; out[:, [1, 3]] *= h
    return out

def letterbox(img, boxes_n, S):
    h, w = img.shape[:2]
    r = min(S / h, S / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (S - nw) / 2, (S - nh) / 2
    if (h, w) != (nh, nw): img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1)); left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    b = xywhn2xyxy(boxes_n, w, h) * np.float32(r); b[:, [0, 2]] += left; b[:, [1, 3]] += top
    return img, b

def ultra(imgs, labs, S, seed, ep, idx, mosaic_p, deg=0.0, shear=0.0, persp=0.0):
    r = RNG(seed, ep, idx)
    use_mosaic = r.uniform() < mosaic_p
    if use_mosaic:
        ims = [idx % 4] + [r.int(4) for _ in range(3)]
        border = -(S // 2)  # python -S//2 for even S
        yc = int(r.range(-border, 2 * S + border)); xc = int(r.range(-border, 2 * S + border))
        s2 = 2 * S
        img4 = np.full((s2, s2, 3), 114, np.uint8); allb = []; allc = []
        for i, k in enumerate(ims):
            img = imgs[k]; h, w = img.shape[:2]
            if i == 0: x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc; x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
            elif i == 1: x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s2), yc; x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
            elif i == 2: x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s2, yc + h); x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
            else: x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s2), min(s2, yc + h); x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
            img4[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
            b = xywhn2xyxy(labs[k], w, h); b[:, [0, 2]] += x1a - x1b; b[:, [1, 3]] += y1a - y1b
            allb.append(b); allc.append(labs[k][:, 0])
        b = np.concatenate(allb); c = np.concatenate(allc)
        b = np.clip(b, 0, s2)
        good = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) > 0
        b, c = b[good], c[good]; img = img4
    else:
        img, b = letterbox(imgs[idx % 4], labs[idx % 4], S); c = labs[idx % 4][:, 0]; border = 0
    H, W = img.shape[:2]; size = (W + 2 * border, H + 2 * border)
    C = np.eye(3); C[0, 2] = -W / 2; C[1, 2] = -H / 2
    P = np.eye(3); P[2, 0] = r.range(-persp, persp); P[2, 1] = r.range(-persp, persp)
    R = np.eye(3); a = r.range(-deg, deg); s = r.range(0.5, 1.5)
    R[:2] = cv2.getRotationMatrix2D(angle=a, center=(0, 0), scale=s)
    Sh = np.eye(3); Sh[0, 1] = math.tan(r.range(-shear, shear) * math.pi / 180); Sh[1, 0] = math.tan(r.range(-shear, shear) * math.pi / 180)
    T = np.eye(3); T[0, 2] = r.range(0.4, 0.6) * size[0]; T[1, 2] = r.range(0.4, 0.6) * size[1]
    M = T @ Sh @ R @ P @ C
    if border != 0 or (M != np.eye(3)).any():
        img = cv2.warpPerspective(img, M, dsize=size, borderValue=(114, 114, 114)) if persp else cv2.warpAffine(img, M[:2], dsize=size, borderValue=(114, 114, 114))
    n = len(b)
    if n:
        xy = np.ones((n * 4, 3)); xy[:, :2] = b[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)
        xy = xy @ M.T
        xy = (xy[:, :2] / xy[:, 2:3] if persp else xy[:, :2]).reshape(n, 8)
        x = xy[:, [0, 2, 4, 6]]; y = xy[:, [1, 3, 5, 7]]
        nb = np.concatenate((x.min(1), y.min(1), x.max(1), y.max(1))).reshape(4, n).T.astype(np.float32)
        nb[:, [0, 2]] = nb[:, [0, 2]].clip(0, size[0]); nb[:, [1, 3]] = nb[:, [1, 3]].clip(0, size[1])
        b1 = b * np.float32(s)
        w1, h1 = b1[:, 2] - b1[:, 0], b1[:, 3] - b1[:, 1]; w2, h2 = nb[:, 2] - nb[:, 0], nb[:, 3] - nb[:, 1]
        eps = 1e-16; ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
        keep = (w2 > 2) & (h2 > 2) & (w2 * h2 / (w1 * h1 + eps) > 0.1) & (ar < 100)
        nb, c = nb[keep], c[keep]
    else:
        nb = np.zeros((0, 4), np.float32)
    g = np.array([r.range(-1, 1) * 0.015, r.range(-1, 1) * 0.7, r.range(-1, 1) * 0.4])
    x = np.arange(0, 256, dtype=np.float64)
    lut_hue = ((x + g[0] * 180) % 180).astype(np.uint8); lut_sat = np.clip(x * (g[1] + 1), 0, 255).astype(np.uint8); lut_sat[0] = 0
    lut_val = np.clip(x * (g[2] + 1), 0, 255).astype(np.uint8)
    bgr = np.ascontiguousarray(img[..., ::-1])
    hue, sat, val = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
    bgr = cv2.cvtColor(cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val))), cv2.COLOR_HSV2BGR)
    img = np.ascontiguousarray(bgr[..., ::-1])
    ud = r.uniform() < 0.0; lr = r.uniform() < 0.5
    out = np.zeros((len(nb), 5), np.float32); out[:, 0] = c
    out[:, 1] = (nb[:, 0] + nb[:, 2]) / 2 / S; out[:, 2] = (nb[:, 1] + nb[:, 3]) / 2 / S
    out[:, 3] = (nb[:, 2] - nb[:, 0]) / S; out[:, 4] = (nb[:, 3] - nb[:, 1]) / S
    if lr: img = np.ascontiguousarray(img[:, ::-1]); out[:, 1] = 1 - out[:, 1]
    return img, out

# inputs: coco8 train+val images, load-resized with cv2 (as Ultralytics), labels from txt
import glob, os
S = int(sys.argv[1]) if len(sys.argv) > 1 else 320
files = sorted(glob.glob(SHARED + "/data/coco8/images/train/*.jpg"))[:4]
imgs, labs = [], []
for f in files:
    im = cv2.imread(f)[..., ::-1]; h0, w0 = im.shape[:2]; rr = S / max(h0, w0)
    w, h = min(math.ceil(w0 * rr), S), min(math.ceil(h0 * rr), S)
    imgs.append(np.ascontiguousarray(cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)))
    lf = f.replace("/images/", "/labels/").replace(".jpg", ".txt")
    labs.append(np.loadtxt(lf, ndmin=2).astype(np.float32))
blob = b"".join(struct.pack("3i", *im.shape[:2], len(l)) + im.tobytes() + l.tobytes() for im, l in zip(imgs, labs))
worst = 0; pxd = []; bad = 0
for idx in range(12):
    for mos, extra in [(1.0, ()), (0.0, ()), (1.0, (10.0, 2.0, 0.0005))]:
        args = [BIN + "/pipeline_harness", str(S), "3", "1", str(idx), str(mos)] + [str(e) for e in extra]
        o = subprocess.run(args, input=blob, capture_output=True, check=True).stdout
        got = np.frombuffer(o[:S * S * 3], np.uint8).reshape(S, S, 3)
        n = struct.unpack("i", o[S * S * 3:S * S * 3 + 4])[0]
        gl = np.frombuffer(o[S * S * 3 + 4:], np.float32).reshape(n, 5)
        want, wl = ultra(imgs, labs, S, 3, 1, idx, mos, *extra)
        d = np.abs(got.astype(int) - want.astype(int)).max(-1)
        ok_l = (len(wl) == n) and (n == 0 or np.abs(gl - wl).max() * S < 1e-2)
        pxd.append((d > 0).mean())
        if not ok_l:
            print("LABEL MISMATCH idx", idx, "mosaic", mos, extra, "labels", n, len(wl))
            bad += 1
        worst = max(worst, d.max())
print(f"pipeline S={S}: 36 samples (mosaic, no mosaic, mosaic+rotate/shear/perspective): "
      f"labels differ in {bad}; pixels: worst diff {worst}, {np.mean(pxd)*100:.3f}% differ on average")
sys.exit(1 if bad else 0)
