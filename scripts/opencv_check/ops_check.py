"""Compares dataio/augment.c's resize, affine warp and HSV with OpenCV's (cv2) on a coco8 image.
Run through run.sh."""
import numpy as np, cv2, subprocess, math, os, sys
BIN = sys.argv[1]
SHARED = os.environ.get("SHARED", "/work/shared")
rng = np.random.default_rng(0)
def run(args, img, outshape):
    p = subprocess.run([BIN + "/ops_harness"] + [str(a) for a in args], input=img.tobytes(), capture_output=True, check=True)
    return np.frombuffer(p.stdout, np.uint8).reshape(outshape)
def report(name, a, b):
    d = np.abs(a.astype(int) - b.astype(int))
    print(f"{name}: max diff {d.max()}, pixels differing {np.mean(d.max(-1) > 0)*100:.3f}%")
# natural-ish image: coco jpeg
img = cv2.imread(SHARED + "/data/coco8/images/train/000000000009.jpg")  # BGR
rgb = img[..., ::-1].copy()
h, w = rgb.shape[:2]
# HSV, Ultralytics' way on BGR
for r in [(0.01, 0.5, -0.3), (-0.015, -0.7, 0.4), (0.3, 0.2, 0.1)]:
    x = np.arange(0, 256, dtype=np.float64)
    lut_hue = ((x + r[0] * 180) % 180).astype(np.uint8)
    lut_sat = np.clip(x * (r[1] + 1), 0, 255).astype(np.uint8); lut_sat[0] = 0
    lut_val = np.clip(x * (r[2] + 1), 0, 255).astype(np.uint8)
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    im_hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    want = cv2.cvtColor(im_hsv, cv2.COLOR_HSV2BGR)[..., ::-1]
    got = run(["hsv", h, w, *r], rgb, rgb.shape)
    report(f"hsv {r}", got, want)
# random colours too
rnd = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
r = (0.01, 0.5, -0.3)
x = np.arange(0, 256, dtype=np.float64)
lut_hue = ((x + r[0] * 180) % 180).astype(np.uint8); lut_sat = np.clip(x * (r[1] + 1), 0, 255).astype(np.uint8); lut_sat[0] = 0
lut_val = np.clip(x * (r[2] + 1), 0, 255).astype(np.uint8)
bgr = rnd[..., ::-1].copy()
hue, sat, val = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
want = cv2.cvtColor(cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val))), cv2.COLOR_HSV2BGR)[..., ::-1]
report("hsv random colours", run(["hsv", 64, 64, *r], rnd, rnd.shape), want)
# warpAffine like RandomPerspective (affine)
import random
random.seed(1)
for it in range(4):
    s = 640; H, W = rgb.shape[:2]
    C = np.eye(3); C[0, 2] = -W / 2; C[1, 2] = -H / 2
    R = np.eye(3); a = random.uniform(-10, 10) if it else 0; sc = random.uniform(0.5, 1.5)
    R[:2] = cv2.getRotationMatrix2D(angle=a, center=(0, 0), scale=sc)
    S = np.eye(3); S[0, 1] = math.tan(random.uniform(-2, 2) * math.pi / 180) if it else 0
    T = np.eye(3); T[0, 2] = random.uniform(0.4, 0.6) * s; T[1, 2] = random.uniform(0.4, 0.6) * s
    M = T @ S @ R @ C
    want = cv2.warpAffine(img, M[:2], dsize=(s, s), borderValue=(114, 114, 114))[..., ::-1]
    got = run(["warp", H, W, s, s, *[repr(float(v)) for v in M[:2].ravel()]], rgb, (s, s, 3))
    report(f"warpAffine angle {a:.2f} scale {sc:.3f}", got, want)
for (oh, ow) in [(240, 320), (427, 640), (800, 1000), (301, 451)]:
    want = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    got = run(["resize", h, w, oh, ow], rgb, (oh, ow, 3))
    report(f"resize {h}x{w}->{oh}x{ow}", got, want)
