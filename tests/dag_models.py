"""Branching CNNs with torchvision's layer geometry, written out by hand (no torchvision dependency).

Kernel sizes, strides, paddings, pooling (ceil mode included), grouping and the order of branches follow
torchvision 0.2x (``resnet18``, ``mobilenet_v2``, ``squeezenet1_1``, ``inception_v3``); channel counts are
scaled by ``width`` (1.0 = torchvision's) so the tests run in seconds on two cores. Weights are random and
BatchNorm statistics are randomised, so exported graphs carry real (non-trivial) values.
"""

from __future__ import annotations

import torch
from torch import nn


def _c(channels: int, width: float, minimum: int = 4) -> int:
    return max(minimum, round(channels * width))


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random weights as torchvision initialises them (convs: Kaiming normal, fan out), so activations
    neither vanish nor explode through deep stacks, plus random BatchNorm statistics and affine parameters
    near the identity (eval mode then does real work). Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.8)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.8)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


# ---------------------------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
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
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision ``resnet18``: 7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, nhwc: bool = False):
        super().__init__()
        self.nhwc = nhwc
        widths = [_c(64 * 2 ** i, width) for i in range(4)]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        if self.nhwc:  # Keras-style input (N, H, W, C): the export starts with a Transpose
            x = x.permute(0, 3, 1, 2)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------------- MobileNetV2
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_relu6(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = round(cin * expand)
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn_relu6(cin, hidden, 1, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),  # depthwise
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision ``mobilenet_v2`` (``width_mult``): inverted residuals with depthwise 3x3 convs, ReLU6."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10, width: float = 1.0, last_channel: int = 1280):
        super().__init__()
        cin = _make_divisible(32 * width)
        last = _make_divisible(last_channel * max(1.0, width))
        features = [_conv_bn_relu6(3, cin, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_conv_bn_relu6(cin, last, 1, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------- SqueezeNet 1.1
class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self.squeeze(x))
        return torch.cat([self.relu(self.expand1x1(x)), self.relu(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    """torchvision ``squeezenet1_1``: 3x3/2 stem, ceil-mode 3x3/2 max pools, fire modules (Concat), conv head."""

    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()

        def fire(cin, s, e):
            return Fire(_c(cin, width), _c(s, width), _c(e, width), _c(e, width))

        self.features = nn.Sequential(
            nn.Conv2d(3, _c(64, width), 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(64, 16, 64), fire(128, 16, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(128, 32, 128), fire(256, 32, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256), fire(512, 64, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(2 * _c(256, width), num_classes, 1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# ---------------------------------------------------------------------------------------------- Inception-V3
class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int, w: float):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, _c(64, w), 1)
        self.branch5x5_1 = BasicConv2d(cin, _c(48, w), 1)
        self.branch5x5_2 = BasicConv2d(_c(48, w), _c(64, w), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, _c(64, w), 1)
        self.branch3x3dbl_2 = BasicConv2d(_c(64, w), _c(96, w), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(_c(96, w), _c(96, w), 3, padding=1)
        self.branch_pool = BasicConv2d(cin, _c(pool_features, w), 1)
        self.out_channels = _c(64, w) + _c(64, w) + _c(96, w) + _c(pool_features, w)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int, w: float):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, _c(384, w), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, _c(64, w), 1)
        self.branch3x3dbl_2 = BasicConv2d(_c(64, w), _c(96, w), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(_c(96, w), _c(96, w), 3, stride=2)
        self.out_channels = _c(384, w) + _c(96, w) + cin

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = nn.functional.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int, w: float):
        super().__init__()
        c7 = _c(channels_7x7, w)
        self.branch1x1 = BasicConv2d(cin, _c(192, w), 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, _c(192, w), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, _c(192, w), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, _c(192, w), 1)
        self.out_channels = 4 * _c(192, w)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int, w: float):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, _c(192, w), 1)
        self.branch3x3_2 = BasicConv2d(_c(192, w), _c(320, w), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, _c(192, w), 1)
        self.branch7x7x3_2 = BasicConv2d(_c(192, w), _c(192, w), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(_c(192, w), _c(192, w), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(_c(192, w), _c(192, w), 3, stride=2)
        self.out_channels = _c(320, w) + _c(192, w) + cin

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = nn.functional.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, w: float):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, _c(320, w), 1)
        self.branch3x3_1 = BasicConv2d(cin, _c(384, w), 1)
        self.branch3x3_2a = BasicConv2d(_c(384, w), _c(384, w), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(_c(384, w), _c(384, w), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, _c(448, w), 1)
        self.branch3x3dbl_2 = BasicConv2d(_c(448, w), _c(384, w), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(_c(384, w), _c(384, w), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(_c(384, w), _c(384, w), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, _c(192, w), 1)
        self.out_channels = _c(320, w) + 4 * _c(384, w) + _c(192, w)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionV3(nn.Module):
    """torchvision ``inception_v3`` (no auxiliary head, no ``transform_input``).

    ``blocks='all'``: the whole network (stem + Mixed_5b ... Mixed_7c; needs >= 75 px). ``blocks='stack'``: a
    light stem (Conv2d_1a_3x3, Conv2d_2b_3x3, 3x3/2 max pool) then one block of each kind A, B, C, D, E,
    for small inputs (>= 35 px).
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, blocks: str = "all"):
        super().__init__()
        w = width
        if blocks == "all":
            stem = [BasicConv2d(3, _c(32, w), 3, stride=2), BasicConv2d(_c(32, w), _c(32, w), 3),
                    BasicConv2d(_c(32, w), _c(64, w), 3, padding=1), nn.MaxPool2d(3, 2),
                    BasicConv2d(_c(64, w), _c(80, w), 1), BasicConv2d(_c(80, w), _c(192, w), 3), nn.MaxPool2d(3, 2)]
        elif blocks == "stack":
            stem = [BasicConv2d(3, _c(32, w), 3, stride=2), BasicConv2d(_c(32, w), _c(192, w), 3, padding=1),
                    nn.MaxPool2d(3, 2)]
        else:
            raise ValueError(f"blocks must be 'all' or 'stack', got {blocks!r}")
        cin = _c(192, w)
        mixed: list[nn.Module] = []

        def add(block):
            nonlocal cin
            mixed.append(block)
            cin = block.out_channels

        if blocks == "all":
            add(InceptionA(cin, 32, w))
            add(InceptionA(cin, 64, w))
            add(InceptionA(cin, 64, w))
            add(InceptionB(cin, w))
            for c7 in (128, 160, 160, 192):
                add(InceptionC(cin, c7, w))
            add(InceptionD(cin, w))
            add(InceptionE(cin, w))
            add(InceptionE(cin, w))
        else:
            add(InceptionA(cin, 32, w))
            add(InceptionB(cin, w))
            add(InceptionC(cin, 128, w))
            add(InceptionD(cin, w))
            add(InceptionE(cin, w))
        self.features = nn.Sequential(*stem, *mixed)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.fc(torch.flatten(x, 1))
