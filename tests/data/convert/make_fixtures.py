#!/usr/bin/python3
# Makes the PyTorch checkpoints tests/test_convert.cpp reads, once, with
# Debian's python3-torch (1.13):   /usr/bin/python3 tests/data/convert/make_fixtures.py
# Each checkpoint is saved in both formats (NAME.pt: zip, NAME_legacy.pth:
# _use_new_zipfile_serialization=False), and NAME.expected.safetensors holds
# what `mdps convert` must produce from either: the same names (without
# `module.`), float tensors as F32 and integer/bool ones as I64, contiguous.
# The expected files come from the small writer below, not from mdps.
# resnet.features.safetensors holds the tiny ResNet's stage outputs for a
# fixed input (eval mode), so the converted weights can be checked end to end.
import collections
import json
import os
import struct

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20240609)


def write_safetensors(path, tensors):
    """A minimal safetensors writer (F32 / I64, names sorted)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = "F32" if t.dtype == torch.float32 else "I64"
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def expected_of(state_dict):
    out = {}
    for name, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            continue
        if name.startswith("module."):
            name = name[len("module."):]
        v = v.detach()
        out[name] = v.float() if v.is_floating_point() else v.long()
    return out


def save_both(name, obj, state_dict):
    torch.save(obj, os.path.join(HERE, name + ".pt"))
    torch.save(obj, os.path.join(HERE, name + "_legacy.pth"), _use_new_zipfile_serialization=False)
    write_safetensors(os.path.join(HERE, name + ".expected.safetensors"), expected_of(state_dict))


# 1. Several dtypes, a transposed (non-contiguous) tensor, a zero-size one, a
#    0-dim one, two views of one storage (one at an offset) and a Parameter.
base = torch.randn(4, 6)
dtypes = collections.OrderedDict()
dtypes["f32"] = torch.randn(3, 4)
dtypes["f64"] = torch.randn(5, dtype=torch.float64)
dtypes["f16"] = torch.randn(2, 3).half()
dtypes["bf16"] = torch.randn(4).bfloat16()
dtypes["i64"] = torch.tensor([-3, 0, 1 << 40], dtype=torch.int64)
dtypes["i32"] = torch.tensor([[7, -8], [9, 2**31 - 1]], dtype=torch.int32)
dtypes["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
dtypes["i8"] = torch.tensor([-128, 127, 5], dtype=torch.int8)
dtypes["u8"] = torch.tensor([0, 200, 255, 1], dtype=torch.uint8)
dtypes["bool"] = torch.tensor([True, False, True])
dtypes["transposed"] = base.t()                # stride (1, 6)
dtypes["column_slice"] = base[1:, 2:5]         # offset 8, stride (6, 1)
dtypes["empty"] = torch.zeros(0, 3)
dtypes["scalar"] = torch.tensor(2.5)
dtypes["param"] = nn.Parameter(torch.randn(2, 2))
save_both("dtypes", dtypes, dtypes)
# The same under other pickle protocols: 4 (FRAME, MEMOIZE, STACK_GLOBAL,
# SHORT_BINUNICODE) in the zip format, 1 (text LONG magic number) in the legacy one.
torch.save(dtypes, os.path.join(HERE, "dtypes_p4.pt"), pickle_protocol=4)
torch.save(dtypes, os.path.join(HERE, "dtypes_p1_legacy.pth"), pickle_protocol=1, _use_new_zipfile_serialization=False)

# 2. A DataParallel checkpoint: `module.` names under "state_dict", next to
#    non-tensor entries, and one non-tensor value inside the state dict.
dp = collections.OrderedDict()
dp["module.conv.weight"] = torch.randn(2, 1, 3, 3)
dp["module.conv.bias"] = torch.randn(2)
dp["module.bn.running_mean"] = torch.randn(2)
dp["module.bn.num_batches_tracked"] = torch.tensor(12)
dp["module.extra"] = 3
save_both("dataparallel", {"state_dict": dp, "epoch": 7, "arch": "tiny", "best_loss": 0.25}, dp)


# 3. A torchvision-style ResNet (BasicBlock, one block per stage, widths
#    4/8/16, stem to layer3) with torchvision's parameter names.
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(4, 4, 1))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, 2))
        self.layer3 = nn.Sequential(BasicBlock(8, 16, 2))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        return f1, f2, self.layer3(f2)


net = TinyResNet()
for m in net.modules():
    if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, as trained weights have
        m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.uniform_(-0.2, 0.2)
        m.running_mean.uniform_(-0.3, 0.3)
        m.running_var.uniform_(0.5, 2.0)
        m.num_batches_tracked.fill_(5)
net.eval()
sd = net.state_dict()  # an OrderedDict with _metadata (pickled via BUILD)
save_both("resnet", sd, sd)
x = torch.rand(1, 3, 32, 32) * 2 - 1  # an image in [-1, 1]; mdps normalises it for ImageNet
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
with torch.no_grad():
    f1, f2, f3 = net(((x + 1) / 2 - mean) / std)
write_safetensors(os.path.join(HERE, "resnet.features.safetensors"),
                  {"image": x, "layer1": f1, "layer2": f2, "layer3": f3})


# 4. A malicious checkpoint: unpickling it with Python's pickle would call
#    os.system (harmlessly here). mdps convert must refuse it unexecuted.
class Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


torch.save(collections.OrderedDict([("w", torch.ones(2)), ("payload", Exploit())]), os.path.join(HERE, "evil.pt"))
