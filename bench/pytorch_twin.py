#!/usr/bin/python3
"""The mdps U-Net written again in PyTorch, for side-by-side timing.

Same architecture and parameter names as engine/model/unet.cpp (spec section 2 of
mdps-method.md), loading the same safetensors files with its own minimal
reader, and timing exactly what `mdps bench unet` times:

  forward     eps_theta(x, t=500), no autograd
  guidance    forward with autograd + the gradient wrt the input of the
              authors' non-squared norm ||x0_hat - y|| over the whole batch
  train step  sum((eps_theta(x, t) - y)^2) / B, full backward, Adam with
              coupled weight decay 0.05 (torch.optim.Adam's weight_decay)

each as the median of --runs after one warm-up, and the peak RSS of the train
step measured in a child process that does nothing else. `--sampler` times the
whole two-round sampler (authors' bottle settings) instead. `--check GOLDEN`
compares eps and the guidance gradient with a golden file. `--protocol DUMP`
runs the authors' whole evaluation protocol on the inputs and noise of
`mdps eval --dump-intermediates DUMP` and compares every stage with the
engine's.

Optional: nothing else in mdps needs Python. Run it with Debian's interpreter
(/usr/bin/python3, python3-torch). See bench/README.md.
"""
import argparse
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the engine's --vs-pytorch relays this line
    sys.stderr.write(f"pytorch_twin: cannot import {e.name} with {sys.executable} "
                     "(apt-get install python3-torch)\n")
    sys.exit(3)


# ---- safetensors: an 8-byte little-endian header length, JSON, raw data ----------

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """Returns ({name: torch tensor}, metadata) for F32/F64/I64 tensors."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SystemExit(f"pytorch_twin: {path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float32 if dt == np.float64 else dt, copy=True))
    return out, meta


# ---- the U-Net (module tree = the authors' state-dict names) ----------------------

def default_mults(image_size):
    if image_size >= 256:
        return [1, 1, 2, 2, 4, 4]
    if image_size >= 128:
        return [1, 1, 2, 3, 4]
    return [1, 2, 3, 4]


class Config:
    def __init__(self, image_size=64, base_channels=32, heads=4, in_channels=3, res_blocks=2,
                 attention_resolutions=(32, 16, 8), channel_mults=None):
        self.image_size, self.base_channels, self.heads = image_size, base_channels, heads
        self.in_channels, self.res_blocks = in_channels, res_blocks
        self.attention_resolutions = list(attention_resolutions)
        self.channel_mults = list(channel_mults) if channel_mults else default_mults(image_size)

    @staticmethod
    def from_json(text):
        # The keys of UNetConfig::to_json (engine/model/unet_config.cpp).
        j = json.loads(text)
        ints = lambda s: [int(v) for v in str(s).split(",") if v != ""]
        return Config(int(j["img_size"]), int(j.get("base_channels", 64)), int(j.get("n_heads", 4)),
                      int(j.get("in_channels", 3)), int(j.get("num_res_blocks", 2)),
                      ints(j.get("attention_resolutions", "32,16,8")),
                      ints(j["channel_mults"]) if "channel_mults" in j else None)


class Sinusoidal(nn.Module):
    """[sin(t f_i), cos(t f_i)], f_i = exp(-ln(10000) i / half), of the float timestep."""

    def __init__(self, dim):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half),
                             persistent=False)

    def forward(self, t):
        a = t.float()[:, None] * self.freqs[None]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, resample=None):
        super().__init__()
        self.resample = resample  # None, "down" or "up": inside the block, after GN+SiLU
        self.in_layers = nn.Sequential(nn.GroupNorm(32, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.embed_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, cout), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def _resample(self, v):
        if self.resample == "down":
            return F.avg_pool2d(v, 2)
        if self.resample == "up":
            return F.interpolate(v, scale_factor=2, mode="nearest")
        return v

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.in_layers[2](self._resample(h))
        x = self._resample(x)
        h = h + self.embed_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class AttnBlock(nn.Module):
    """ADM's AttentionBlock with QKVAttentionLegacy (the authors' code)."""

    def __init__(self, ch, heads):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(32, ch)
        self.to_qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv1d(ch, ch, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        qkv = self.to_qkv(self.norm(x).reshape(B, C, H * W))
        bs, width, length = qkv.shape
        ch = width // (3 * self.heads)
        q, k, v = qkv.reshape(bs * self.heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        w = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        w = torch.softmax(w, dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v)
        return x + self.proj_out(a.reshape(B, -1, length)).reshape(B, C, H, W)


class Stage(nn.Sequential):
    """One entry of down/middle/up: a ResBlock, optionally attention and an up block."""

    def forward(self, h, emb):
        for m in self:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        return h


class UNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        base, emb = c.base_channels, 4 * c.base_channels
        self.time_embedding = nn.Sequential(Sinusoidal(base), nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        attn = lambda r: r in c.attention_resolutions
        self.down = nn.ModuleList([nn.Sequential(nn.Conv2d(c.in_channels, base, 3, padding=1))])
        skips, ch, res = [base], base, c.image_size
        for level, mult in enumerate(c.channel_mults):
            for _ in range(c.res_blocks):
                mods = [ResBlock(ch, base * mult, emb)]
                ch = base * mult
                if attn(res):
                    mods.append(AttnBlock(ch, c.heads))
                self.down.append(Stage(*mods))
                skips.append(ch)
            if level + 1 < len(c.channel_mults):
                self.down.append(Stage(ResBlock(ch, ch, emb, "down")))
                skips.append(ch)
                res //= 2
        self.middle = Stage(ResBlock(ch, ch, emb), AttnBlock(ch, c.heads), ResBlock(ch, ch, emb))
        self.up = nn.ModuleList()
        for level in reversed(range(len(c.channel_mults))):
            mult = c.channel_mults[level]
            for r in range(c.res_blocks + 1):
                mods = [ResBlock(ch + skips.pop(), base * mult, emb)]
                ch = base * mult
                if attn(res):
                    mods.append(AttnBlock(ch, c.heads))
                if level > 0 and r == c.res_blocks:
                    mods.append(ResBlock(ch, ch, emb, "up"))
                    res *= 2
                self.up.append(Stage(*mods))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(ch, c.in_channels, 3, padding=1))

    def forward(self, x, t):
        emb = self.time_embedding(t)
        h = self.down[0](x)
        hs = [h]
        for m in self.down[1:]:
            h = m(h, emb)
            hs.append(h)
        h = self.middle(h, emb)
        for m in self.up:
            h = m(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def load_unet(path):
    """A model file, checkpoint or golden file: config from metadata, weights by name."""
    tensors, meta = read_safetensors(path)
    if "unet_config" not in meta:
        raise SystemExit(f"pytorch_twin: {path}: no 'unet_config' in the metadata")
    net = UNet(Config.from_json(meta["unet_config"]))
    names = set(net.state_dict().keys())
    prefix = ""
    if "time_embedding.1.weight" not in tensors and "unet.time_embedding.1.weight" in tensors:
        prefix = "unet."
    sd = {}
    for k, v in tensors.items():
        n = k[len(prefix):] if k.startswith(prefix) else None
        if n is not None and n.startswith("module."):
            n = n[7:]
        if n in names:
            sd[n] = v
    missing = sorted(names - sd.keys())
    if missing:
        raise SystemExit(f"pytorch_twin: {path}: missing {len(missing)} parameters, e.g. {missing[:3]}")
    net.load_state_dict(sd, strict=True)
    return net, tensors


# ---- what `mdps bench` times ---------------------------------------------------------

def alpha_bar(t):
    """abar[t] of the linear schedule (1e-4..0.02 over 1000 steps), abar[-1] = 1 (float64)."""
    if t < 0:
        return 1.0
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return float(np.prod(1.0 - betas[: t + 1]))


def set_requires_grad(net, on):
    for p in net.parameters():
        p.requires_grad_(on)


def guidance(net, x, y, t, a):
    """eps and d||x0_hat - y||/dx (one norm over the batch), as Sampler::eps_and_guidance."""
    sa, s1a = math.sqrt(a), math.sqrt(1.0 - a)
    with torch.enable_grad():
        xv = x.detach().requires_grad_(True)
        eps = net(xv, t)
        x0 = (xv - s1a * eps) / sa
        norm = torch.linalg.vector_norm(x0 - y)
        (g,) = torch.autograd.grad(norm, xv)
    return eps.detach(), g


def median_seconds(warmup, runs, f):
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def bench_inputs(args, net_tensors, cfg):
    """x, y from the model file when the engine stored its own (bench.x, bench.y), else random."""
    if net_tensors is not None and "bench.x" in net_tensors:
        return net_tensors["bench.x"], net_tensors["bench.y"]
    g = torch.Generator().manual_seed(2)
    shape = (args.batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def make_train_step(net, x, y, t):
    set_requires_grad(net, True)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((net(x, t) - y) ** 2).sum() / x.shape[0]
        loss.backward()
        opt.step()

    return step


def build(args):
    if args.model:
        net, tensors = load_unet(args.model)
        cfg = Config.from_json(read_safetensors(args.model)[1]["unet_config"])
    else:
        cfg = Config(args.image_size, args.base_channels, args.heads, 3, args.res_blocks)
        torch.manual_seed(1)
        net, tensors = UNet(cfg), None
    net.eval()
    x, y = bench_inputs(args, tensors, cfg)
    return net, cfg, x, y, tensors


def run_unet(args):
    net, cfg, x, y, tensors = build(args)
    B = x.shape[0]
    t = torch.full((B,), 500.0)
    set_requires_grad(net, False)
    out = {}
    with torch.no_grad():
        eps = net(x, t)
        if tensors is not None and "bench.eps" in tensors:
            ref = tensors["bench.eps"]
            out["eps_rel_l2_vs_engine"] = float(torch.linalg.vector_norm(eps - ref) / torch.linalg.vector_norm(ref))
        out["forward_s"] = median_seconds(1, args.runs, lambda: net(x, t))
    a = alpha_bar(500)
    out["guidance_s"] = median_seconds(1, args.runs, lambda: guidance(net, x, y, t, a))
    out["train_step_s"] = median_seconds(1, args.runs, make_train_step(net, x, y, t))
    out["peak_rss_mb"] = train_rss_in_child(args)
    out["threads"] = torch.get_num_threads()
    out["parameters"] = sum(p.numel() for p in net.parameters())
    return out


def run_train_rss(args):
    """Only the train step (warm-up + runs): this process's peak RSS is the figure."""
    net, cfg, x, y, _ = build(args)
    step = make_train_step(net, x, y, torch.full((x.shape[0],), 500.0))
    for _ in range(1 + args.runs):
        step()
    return {"peak_rss_mb": peak_rss_mb()}


def train_rss_in_child(args):
    cmd = [sys.executable, os.path.abspath(__file__), "--train-rss-only", "--json"] + forwarded_args(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"pytorch_twin: the train-step RSS child failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def forwarded_args(args):
    a = ["--threads", str(args.threads), "--runs", str(args.runs), "--batch", str(args.batch),
         "--image-size", str(args.image_size), "--base-channels", str(args.base_channels),
         "--heads", str(args.heads), "--res-blocks", str(args.res_blocks)]
    return a + (["--model", args.model] if args.model else [])


# ---- the training loop with its data loading, as `mdps bench train` ------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def training_files(folder):
    """The images `mdps train` reads: train/good of a category root, else the folder itself."""
    for sub in ("train/good", "train/ok"):
        if os.path.isdir(os.path.join(folder, sub)):
            folder = os.path.join(folder, sub)
            break
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def run_train_loop(args):
    """The same work as `mdps train`: decode every image once (8-bit, resized by Pillow to the model
    size, bilinear), then per step a batch from a per-epoch permutation, a timestep and noise per
    sample, the noise-prediction loss, its backward and an Adam step (coupled weight decay 0.05).
    Timed from the first file read to the last step: images per second with the loading included."""
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("pytorch_twin: --train-loop needs Pillow to decode the images (pip install pillow)")
    if args.steps < 1:
        raise SystemExit("pytorch_twin: --steps must be >= 1")
    t0 = time.perf_counter()
    files = training_files(args.train_loop)
    if not files:
        raise SystemExit(f"pytorch_twin: no images in '{args.train_loop}'")
    S = args.image_size
    images = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if im.size != (S, S):
                im = im.resize((S, S), Image.BILINEAR)
            images.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
    data = torch.stack(images).float() / 127.5 - 1.0
    load_s = time.perf_counter() - t0
    cfg = Config(S, args.base_channels, args.heads, 3, args.res_blocks)
    torch.manual_seed(1)
    net = UNet(cfg)
    set_requires_grad(net, True)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1.0 - betas, 0)
    g = torch.Generator().manual_seed(0)
    n, B = data.shape[0], args.batch
    perm, epoch = None, -1
    first_step_end = None
    for step in range(args.steps):
        idx = []
        for i in range(B):
            k = step * B + i
            if k // n != epoch:
                epoch = k // n
                perm = torch.randperm(n, generator=g)
            idx.append(int(perm[k % n]))
        x0 = data[idx]
        t = torch.randint(1, 1000, (B,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = abar[t].float().view(B, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        opt.zero_grad(set_to_none=True)
        loss = ((net(xt, t.float()) - noise) ** 2).sum() / B
        loss.backward()
        opt.step()
        if first_step_end is None:
            first_step_end = time.perf_counter()
    total = time.perf_counter() - t0
    out = {"images_per_s": args.steps * B / total, "seconds": total, "load_s": load_s, "images": n,
           "steps": args.steps, "threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb()}
    if args.steps > 1:
        out["steady_images_per_s"] = (args.steps - 1) * B / (time.perf_counter() - first_step_end)
    return out


# ---- the sampler (authors' bottle settings), as `mdps bench sampler` ---------------

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def pixel_map(a, b):
    na = ((a + 1) / 2 - _MEAN) / _STD
    nb = ((b + 1) / 2 - _MEAN) / _STD
    return (na - nb).abs().mean(dim=1, keepdim=True)


def sample_round(net, y, t_start, rho, skip=20, mask=None, draw=None):
    """Sampler::sample, authors' variant: the taped forward's eps is reused for the step.

    draw() gives the Gaussian draws (the start noise z, then one per step);
    default torch.randn_like(y)."""
    draw = draw or (lambda: torch.randn_like(y))
    z = draw()
    aT = alpha_bar(t_start)
    x = math.sqrt(aT) * y + math.sqrt(1 - aT) * z
    ts = list(range(0, t_start, skip))[::-1]
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        a, an = alpha_bar(t), alpha_bar(s)
        sigma = math.sqrt((1 - an) / (1 - a)) * math.sqrt(1 - a / an)
        if mask is not None:
            x = torch.where(mask != 0, x, math.sqrt(a) * y + math.sqrt(1 - a) * z)
        tt = torch.full((y.shape[0],), float(t))
        if rho != 0:
            eps, g = guidance(net, x, y, tt, a)
            eps = eps + rho * math.sqrt(1 - a) * g
        else:
            with torch.no_grad():
                eps = net(x, tt)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        x = math.sqrt(an) * x0 + math.sqrt(max(0.0, 1 - an - sigma * sigma)) * eps + sigma * draw()
    return x


def run_sampler(args):
    net, cfg, _, _, _ = build(args)
    set_requires_grad(net, False)
    torch.manual_seed(5)
    y = torch.randn(args.batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    t = torch.full((args.batch,), 500.0)
    with torch.no_grad():
        fwd = median_seconds(1, 3, lambda: net(y, t))
    t0 = time.perf_counter()
    r1 = sample_round(net, y, 200, 50.0)
    maps = pixel_map(y, r1)
    lo = maps.amin(dim=(1, 2, 3), keepdim=True)
    hi = maps.amax(dim=(1, 2, 3), keepdim=True)
    mask = (maps > lo + 0.12 * (hi - lo)).float()
    sample_round(net, y, 200, 100.0, mask=mask)
    total = time.perf_counter() - t0
    return {"sampler_s_per_image": total / args.batch, "forward_s": fwd, "forward_equivalents": total / fwd,
            "threads": torch.get_num_threads()}


# ---- --protocol: the authors' two-round evaluation protocol against the engine's dump -----
#
# Written from the spec (mdps-method.md sections 3-6), not from the authors' code:
# round 1 unmasked on every batch, anomaly maps, the mask threshold
# min + lambda (max - min) over the maps of the whole set (mask-scope dataset)
# or of each image, round 2 with the normal region replaced, final maps. The
# guidance norm and the eta maxima are taken over each evaluation batch; Ns
# repeats run one after another on the same batch, as the authors' loop does.
# The Gaussian draws are the engine's own, read from the dump that
# `mdps eval --dump-intermediates` writes (engine/protocol_dump.h).

def load_resnet(path):
    """A torchvision-layout ResNet (BasicBlock or Bottleneck, BatchNorm in eval
    mode) from safetensors weights; returns f(x) -> [layer1, layer2, layer3]."""
    sd, _ = read_safetensors(path)
    for prefix in ("", "resnet.", "module.", "model.", "backbone."):
        if prefix + "conv1.weight" in sd and prefix + "layer1.0.conv1.weight" in sd:
            break
    else:
        raise SystemExit(f"pytorch_twin: {path}: not a ResNet (no conv1.weight / layer1.0.conv1.weight)")
    w = lambda n: sd[prefix + n]

    def conv_bn(x, conv, bn, stride):
        k = w(conv + ".weight")
        x = F.conv2d(x, k, stride=stride, padding=k.shape[-1] // 2)
        return F.batch_norm(x, w(bn + ".running_mean"), w(bn + ".running_var"), w(bn + ".weight"),
                            w(bn + ".bias"), training=False, eps=1e-5)

    def block(x, p, stride):
        if prefix + p + "conv3.weight" in sd:  # Bottleneck: the stride on the 3x3 (torchvision)
            h = F.relu(conv_bn(x, p + "conv1", p + "bn1", 1))
            h = F.relu(conv_bn(h, p + "conv2", p + "bn2", stride))
            h = conv_bn(h, p + "conv3", p + "bn3", 1)
        else:  # BasicBlock (ResNet-18/34)
            h = F.relu(conv_bn(x, p + "conv1", p + "bn1", stride))
            h = conv_bn(h, p + "conv2", p + "bn2", 1)
        has_down = prefix + p + "downsample.0.weight" in sd
        idn = conv_bn(x, p + "downsample.0", p + "downsample.1", stride) if has_down else x
        return F.relu(h + idn)

    def features(x):
        x = F.max_pool2d(F.relu(conv_bn(x, "conv1", "bn1", 2)), 3, 2, 1)
        out = []
        for layer in (1, 2, 3):
            b = 0
            while prefix + f"layer{layer}.{b}.conv1.weight" in sd:
                x = block(x, f"layer{layer}.{b}.", 2 if layer > 1 and b == 0 else 1)
                b += 1
            out.append(x)
        return out

    return features


def imagenet_normalise(t):
    return ((t + 1) / 2 - _MEAN) / _STD


def gaussian_blur_reflect(x, kernel, sigma):
    """Separable Gaussian (taps exp(-d^2 / 2 sigma^2), normalised), reflect border."""
    d = torch.arange(kernel, dtype=torch.float64) - kernel // 2
    g = torch.exp(-d * d / (2.0 * sigma * sigma))
    g = (g / g.sum()).float()
    r = kernel // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, kernel))
    return F.conv2d(x, g.view(1, 1, kernel, 1))


def anomaly_map(features, image, recon, eta, layers, blur_sigma, blur_kernel):
    """Eq. 18 as the authors compute it: [N,1,H,W]; the maxima over the batch."""
    pixel = pixel_map(recon, image)
    if features is None:
        mix = pixel
    else:
        H, W = image.shape[-2:]
        fi, fr = features(imagenet_normalise(image)), features(imagenet_normalise(recon))
        feat = torch.zeros_like(pixel)
        # 3x3 mean pooling with zero padding (the padding counted), 1 - cosine over
        # channels, bilinear resize with align_corners=True, summed over the stages
        pool = lambda f: F.avg_pool2d(f, 3, 1, 1, count_include_pad=True)
        for layer in layers:
            d = 1 - F.cosine_similarity(pool(fi[layer - 1]), pool(fr[layer - 1]), dim=1, eps=1e-8)
            feat = feat + F.interpolate(d[:, None], size=(H, W), mode="bilinear", align_corners=True)
        mix = feat + eta * feat.max() / pixel.max() * pixel
    return gaussian_blur_reflect(mix, blur_kernel, blur_sigma) / 2


def run_protocol_check(path, model, features_path):
    """Every stage of the twin's protocol on the dump's inputs and noise, against the
    engine's intermediates. Plain stage names: that stage fed the engine's own
    inputs to it (the stage alone); '(chained)': the twin's protocol end to end
    (its own reconstructions, maps and mask)."""
    T, meta = read_safetensors(path)
    st = json.loads(meta["settings"])
    nb = int(meta["batches"])
    if st.get("variant") != "authors" or st.get("guidance_norm") != "l2":
        raise SystemExit("pytorch_twin --protocol: the twin runs the authors' variant with the l2 norm only")
    net, _ = load_unet(model)
    net.eval()
    set_requires_grad(net, False)
    feats = load_resnet(features_path) if features_path else None
    ns, skip, lam = int(st["samples"]), int(st["skip"]), float(st["lambda"])
    two = int(st["round1_t"]) > 0
    dataset_scope = st["mask_scope"] == "dataset"
    amap = lambda y, r: anomaly_map(feats, y, r, float(st["eta"]), [int(v) for v in st["layers"]],
                                    float(st["blur_sigma"]), int(st["blur_kernel"]))

    def draws(prefix, n, rep):
        k = 0

        def draw():
            nonlocal k
            t = T[f"{prefix}noise{k}"]
            k += 1
            return t[rep * n:(rep + 1) * n]
        return draw

    def sample(y, mask, prefix, t_start, rho):
        # Ns repeats one after another, each its own guidance group (the authors' loop)
        return torch.cat([sample_round(net, y, t_start, rho, skip, mask, draws(prefix, y.shape[0], r))
                          for r in range(ns)])

    def mean_map(y, rec):
        n = y.shape[0]
        return sum(amap(y, rec[r * n:(r + 1) * n]) for r in range(ns)) / ns

    def threshold(maps, lo, hi):
        # float32 arithmetic, as the engine and the authors' torch code
        lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
        return (maps > lo + torch.tensor(lam, dtype=torch.float32) * (hi - lo)).float()

    stats = {}

    def acc(stage, a, b):
        a, b = a.double(), b.double()
        s = stats.setdefault(stage, [0.0, 0.0, 0.0])
        s[0] += float(((a - b) ** 2).sum())
        s[1] += float((b ** 2).sum())
        s[2] = max(s[2], float((a - b).abs().max()))

    mism = {"isolated": 0, "chained": 0}
    mask_pixels = 0
    batches = [T[f"b{b}.y"] for b in range(nb)]
    r1, ranges = {}, {}
    if two:
        for b, y in enumerate(batches):
            rec = sample(y, None, f"b{b}.round1.", int(st["round1_t"]), float(st["round1_rho"]))
            acc("round1.recon", rec, T[f"b{b}.round1.recon"])
            acc("round1.map", mean_map(y, T[f"b{b}.round1.recon"]), T[f"b{b}.round1.map"])
            r1[b] = mean_map(y, rec)
            acc("round1.map (chained)", r1[b], T[f"b{b}.round1.map"])
        if dataset_scope:
            eng = torch.cat([T[f"b{b}.round1.map"] for b in range(nb)])
            twin = torch.cat([r1[b] for b in range(nb)])
            if float(eng.min()) != float(T["round1_min"][0]) or float(eng.max()) != float(T["round1_max"][0]):
                raise SystemExit("pytorch_twin --protocol: round1_min/max are not the range of the round-1 maps")
            ranges = {"isolated": (float(eng.min()), float(eng.max())),
                      "chained": (float(twin.min()), float(twin.max()))}
    for b, y in enumerate(batches):
        mask = None
        if two:
            em = T[f"b{b}.mask"]
            mask_pixels += em.numel()
            for kind, maps in (("isolated", T[f"b{b}.round1.map"]), ("chained", r1[b])):
                if dataset_scope:
                    lo, hi = ranges[kind]
                else:
                    lo = maps.amin(dim=(1, 2, 3), keepdim=True)
                    hi = maps.amax(dim=(1, 2, 3), keepdim=True)
                m = threshold(maps, lo, hi)
                mism[kind] += int((m != em).sum())
                if kind == "chained":
                    mask = m
        rec = sample(y, T[f"b{b}.mask"] if two else None, f"b{b}.round2.", int(st["t_start"]), float(st["rho"]))
        acc("round2.recon", rec, T[f"b{b}.round2.recon"])
        acc("map", mean_map(y, T[f"b{b}.round2.recon"]), T[f"b{b}.map"])
        if two:  # chained: the twin's own mask
            rec = sample(y, mask, f"b{b}.round2.", int(st["t_start"]), float(st["rho"]))
        acc("map (chained)", mean_map(y, rec), T[f"b{b}.map"])
    out = {k: {"rel_l2": math.sqrt(v[0] / max(v[1], 1e-300)), "max_abs": v[2]} for k, v in stats.items()}
    if two:
        out["mask_mismatch"] = {"isolated": mism["isolated"], "chained": mism["chained"], "pixels": mask_pixels}
    out["batches"] = nb
    return out


# ---- --check: eps and the guidance gradient against a golden file --------------------

def rel_l2(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def run_check(path):
    net, tensors = load_unet(path)
    net.eval()
    set_requires_grad(net, False)
    x, y, t = tensors["x_t"], tensors["y"], tensors["t"]
    with torch.no_grad():
        eps = net(x, t)
    out = {"eps_rel_l2": rel_l2(eps, tensors["eps"])}
    if "guidance_grad" in tensors and "alpha_bar" in tensors:
        # Per-sample abar: x0_hat = (x - sqrt(1-a) eps) / sqrt(a) with a broadcast per image.
        a = tensors["alpha_bar"].view(-1, 1, 1, 1).double()
        with torch.enable_grad():
            xv = x.clone().requires_grad_(True)
            e = net(xv, t)
            x0 = (xv - (1 - a).sqrt().float() * e) / a.sqrt().float()
            (g,) = torch.autograd.grad(torch.linalg.vector_norm(x0 - y), xv)
        out["guidance_rel_l2"] = rel_l2(g, tensors["guidance_grad"])
    return out


def main():
    p = argparse.ArgumentParser(description="PyTorch twin of the mdps U-Net (see bench/README.md)")
    p.add_argument("--check", metavar="GOLDEN", help="compare eps (and the guidance gradient) with a golden file; "
                   "exit 1 above 1e-4 relative L2")
    p.add_argument("--model", help="safetensors model (unet_config metadata); default: random weights")
    p.add_argument("--protocol", metavar="DUMP", help="run the authors' two-round protocol on the inputs and noise "
                   "of `mdps eval --dump-intermediates DUMP` and compare every stage (needs --model, "
                   "and --features unless the map is the pixel term only)")
    p.add_argument("--features", help="ResNet weights (.safetensors) for --protocol")
    p.add_argument("--sampler", action="store_true", help="time the two-round sampler instead of the U-Net")
    p.add_argument("--train-rss-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train-loop", metavar="DATA", help="time the training loop on the images of DATA (a folder, "
                   "or a category root with train/good), decoding and resizing included, as `mdps bench train`")
    p.add_argument("--steps", type=int, default=20, help="training steps of --train-loop")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--res-blocks", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="intra- and inter-op threads (0: torch's default)")
    p.add_argument("--runs", type=int, default=5, help="timed runs (median) after one warm-up")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)
    if args.runs < 1 or args.batch < 1:
        raise SystemExit("pytorch_twin: --runs and --batch must be >= 1")

    if args.protocol:
        if not args.model:
            raise SystemExit("pytorch_twin: --protocol needs --model (the U-Net the dump was made with)")
        out = run_protocol_check(args.protocol, args.model, args.features)
        out["torch"] = torch.__version__
        print(json.dumps(out) if args.json else json.dumps(out, indent=1))
        return
    if args.check:
        out = run_check(args.check)
        ok = all(v <= 1e-4 for v in out.values())
        print(json.dumps(out) if args.json else
              "pytorch_twin --check: " + ", ".join(f"{k} {v:.3g}" for k, v in out.items()) +
              (" (ok)" if ok else " (ABOVE 1e-4)"))
        sys.exit(0 if ok else 1)
    if args.train_rss_only:
        out = run_train_rss(args)
    elif args.train_loop:
        out = run_train_loop(args)
    elif args.sampler:
        out = run_sampler(args)
    else:
        out = run_unet(args)
    out["torch"] = torch.__version__
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"  {k:22s} {v}")


if __name__ == "__main__":
    main()
