"""Hand-written torch references for the specs in specs/zoo/, from the papers and the reference code each
spec names (torchvision's layouts, milesial's U-Net, minGPT, pytorch-seq2seq).  Written out with torch.nn
layers only — no dlspec — so that a spec can be compared with them: the same parameters (registered in
the order the spec lists its layers, so weights can be copied one to one) and the same outputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# --- VGG-16 --------------------------------------------------------------------------------------------

class VGG16(nn.Module):
    CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --- ResNet --------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin: int, c: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c)) \
            if stride != 1 or cin != c else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, width * 4, 1, bias=False), nn.BatchNorm2d(width * 4)
        self.down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)) \
            if stride != 1 or cin != width * 4 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self, block: Any, counts: list[int], expansion: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        blocks = []
        cin = 64
        for i, (n, w) in enumerate(zip(counts, (64, 128, 256, 512), strict=True)):
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512 * expansion, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(x), 1), 1))


def resnet18() -> nn.Module:
    return ResNet(BasicBlock, [2, 2, 2, 2], 1)


def resnet50() -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3], 4)


# --- MobileNetV2 ---------------------------------------------------------------------------------------

def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1)] if t != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)]

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.TABLE:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- ShuffleNetV2 --------------------------------------------------------------------------------------

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                         nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(True))
        b_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(nn.Conv2d(b_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(True),
                                     nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
                                     nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(True))
        units: list[nn.Module] = []
        cin = 24
        for n, c in ((4, 116), (8, 232), (4, 464)):
            units += [ShuffleUnit(cin, c, 2)] + [ShuffleUnit(c, c, 1) for _ in range(n - 1)]
            cin = c
        self.units = nn.Sequential(*units)
        self.conv5 = nn.Sequential(nn.Conv2d(464, 1024, 1, bias=False), nn.BatchNorm2d(1024), nn.ReLU(True))
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 3, 2, 1)
        return self.fc(self.conv5(self.units(x)).mean([2, 3]))


# --- GoogLeNet -----------------------------------------------------------------------------------------

def basic_conv(cin: int, cout: int, **kw: Any) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, bias=False, **kw), nn.BatchNorm2d(cout, eps=0.001), nn.ReLU(True))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.b1 = basic_conv(cin, c1, kernel_size=1)
        self.b2 = nn.Sequential(basic_conv(cin, c3r, kernel_size=1), basic_conv(c3r, c3, kernel_size=3, padding=1))
        self.b3 = nn.Sequential(basic_conv(cin, c5r, kernel_size=1), basic_conv(c5r, c5, kernel_size=3, padding=1))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), basic_conv(cin, pool, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = basic_conv(cin, 128, kernel_size=1)
        self.fc1, self.fc2 = nn.Linear(2048, 1024), nn.Linear(1024, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.7, self.training))


class GoogLeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = basic_conv(3, 64, kernel_size=7, stride=2, padding=3)
        self.conv2 = basic_conv(64, 64, kernel_size=1)
        self.conv3 = basic_conv(64, 192, kernel_size=3, padding=1)
        self.i3a, self.i3b = Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64)
        self.i4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.aux1 = InceptionAux(512)
        self.i4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.i4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.i4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.aux2 = InceptionAux(528)
        self.i4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.i5a, self.i5b = Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pool = lambda t, k=3: F.max_pool2d(t, k, 2, ceil_mode=True)  # noqa: E731
        x = pool(self.conv3(self.conv2(pool(self.conv1(x)))))
        x = self.i4a(pool(self.i3b(self.i3a(x))))
        aux1 = self.aux1(x)
        x = self.i4d(self.i4c(self.i4b(x)))
        aux2 = self.aux2(x)
        x = self.i5b(self.i5a(pool(self.i4e(x), 2)))
        logits = self.fc(F.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), 0.2, self.training))
        return logits, aux2, aux1


# --- U-Net ---------------------------------------------------------------------------------------------

def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class UNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.ModuleList([double_conv(3, 64), double_conv(64, 128), double_conv(128, 256),
                                   double_conv(256, 512), double_conv(512, 1024)])
        ups: list[nn.Module] = []
        for c in (512, 256, 128, 64):
            ups += [nn.ConvTranspose2d(2 * c, c, 2, 2), double_conv(2 * c, c)]
        self.up = nn.ModuleList(ups)
        self.out = nn.Conv2d(64, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, d in enumerate(self.down):
            x = d(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for j in range(4):
            x = self.up[2 * j + 1](torch.cat([skips[3 - j], self.up[2 * j](x)], dim=1))
        return self.out(x)


# --- Transformers: ViT-Ti/16 and a GPT-style character model -------------------------------------------

class PreNormBlock(nn.Module):
    """x + attn(ln1(x)), then x + mlp(ln2(x)); registered in torch's TransformerEncoderLayer order."""

    def __init__(self, d: int, heads: int, ff: int, eps: float = 1e-5):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        t = x.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool).triu(1) if causal else None
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Holder(nn.Module):
    """A parameter in a module of its own, so that it is listed where the network uses it (a module's own
    parameters come before its submodules' in state_dict)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = nn.Parameter(value)


class ViT(nn.Module):
    def __init__(self, d: int = 192, depth: int = 12, heads: int = 3, ff: int = 768):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 16, 16)
        self.cls = Holder(torch.zeros(1, 1, d))
        self.pos = Holder(torch.randn(1, 197, d) * 0.02)
        self.blocks = nn.ModuleList([PreNormBlock(d, heads, ff, eps=1e-6) for _ in range(depth)])
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.value.expand(x.shape[0], -1, -1), x], dim=1) + self.pos.value
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x)[:, 0])


class GPT(nn.Module):
    def __init__(self, vocab: int = 65, d: int = 128, length: int = 128, depth: int = 4, heads: int = 4):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = Holder(torch.randn(1, length, d) * 0.02)
        self.blocks = nn.ModuleList([PreNormBlock(d, heads, 4 * d) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe.value[:, : idx.shape[1]]
        for b in self.blocks:
            x = b(x, causal=True)
        return self.head(self.ln_f(x))


# --- seq2seq GRU encoder -------------------------------------------------------------------------------

class Seq2SeqEncoder(nn.Module):
    def __init__(self, vocab: int = 1000, emb: int = 64, hid: int = 128, dec: int = 256):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.GRU(emb, hid, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hid, dec)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, hidden = self.rnn(F.dropout(self.embedding(src), 0.5, self.training))
        return outputs, torch.tanh(self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1)))


# --- conditional VAE -------------------------------------------------------------------------------------

class CVAE(nn.Module):
    """Sohn et al. 2015's q(z|x, y) and p(x|z, y) for MNIST, the label a learned vector read by both halves;
    the code sampled as mu + eps * exp(logvar / 2) while training, mu when evaluating."""

    def __init__(self, labels: int = 10, hidden: int = 400, code: int = 20):
        super().__init__()
        self.label = nn.Embedding(labels, labels)
        self.encoder = nn.Linear(784 + labels, hidden)
        self.mu = nn.Linear(hidden, code)
        self.logvar = nn.Linear(hidden, code)
        self.decoder1 = nn.Linear(code + labels, hidden)
        self.decoder2 = nn.Linear(hidden, 784)

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.label(label)
        h = F.relu(self.encoder(torch.cat([image.flatten(1), y], dim=1)))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        recon = torch.sigmoid(self.decoder2(F.relu(self.decoder1(torch.cat([z, y], dim=1)))))
        return recon.view(-1, 1, 28, 28), mu, logvar
