"""User model factories, imported by path in tests (``tests.user_models:tiny_factory``...)."""

import torch
import torch.nn.functional as F
from torch import nn


def tiny_factory(num_classes, input_size=16):
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    flat = 4 * (input_size // 2) ** 2
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 8), nn.ReLU(), nn.Linear(8, num_classes))
    return features, classifier


# ---------------------------------------------------------------------------------------------------------
# torchvision layouts, written out (torchvision itself is not a dependency): the same module trees, layer
# geometry and forward as torchvision.models.AlexNet, VGG ("A", VGG-11) and ResNet (BasicBlock), with
# optional narrower widths so tests stay fast. Widths at their defaults are torchvision's.

class TVAlexNet(nn.Module):
    """torchvision.models.AlexNet: features / avgpool (6, 6) / classifier starting with Dropout."""

    def __init__(self, num_classes=1000, dropout=0.5, widths=(64, 192, 384, 256, 256), hidden=4096):
        super().__init__()
        w = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, w[0], kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(w[0], w[1], kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(w[1], w[2], kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[2], w[3], kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[3], w[4], kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(w[4] * 6 * 6, hidden), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class TVVGG(nn.Module):
    """torchvision.models.VGG (no batch norm): features / avgpool (7, 7) / Linear-ReLU-Dropout classifier."""

    def __init__(self, num_classes=1000, cfg=VGG11_CFG, width_div=1, hidden=4096, dropout=0.5):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = int(v) // width_div
                layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TVResNet(nn.Module):
    """torchvision.models.ResNet with BasicBlocks: conv1/bn1/relu/maxpool/layer1../avgpool/fc, flatten in forward.

    ``layers=(2, 2, 2, 2), widths=(64, 128, 256, 512)`` is ResNet-18.
    """

    def __init__(self, num_classes=1000, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (blocks, planes) in enumerate(zip(layers, widths), start=1):
            setattr(self, f"layer{i}", self._make_layer(planes, blocks, stride=1 if i == 1 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[len(layers) - 1], num_classes)
        self.depth = len(layers)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        out = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        out += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.depth + 1):
            x = getattr(self, f"layer{i}")(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class GapMobile(nn.Module):
    """MobileNetV2's layout: ``features`` of blocks, no avgpool child, global pooling in ``forward``,
    classifier ``Dropout -> Linear``."""

    def __init__(self, num_classes=1000, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU6()),
            BasicBlock(width, width),
            nn.Sequential(nn.Conv2d(width, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU6()),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class MaxPoolHead(nn.Module):
    """Looks like the features-gap layout, but ``forward`` pools with max: the import must refuse it."""

    def __init__(self, num_classes=1000, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(width, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_max_pool2d(self.features(x), 1), 1))


def tv_alexnet(num_classes, input_size=224):
    """torchvision's AlexNet at full width."""
    return TVAlexNet(num_classes)


def tv_alexnet_small(num_classes, input_size=96):
    """torchvision's AlexNet module tree and geometry at a quarter of its widths (dense 256)."""
    return TVAlexNet(num_classes, widths=(16, 48, 96, 64, 64), hidden=256)


def tv_vgg11_small(num_classes, input_size=64):
    """torchvision's VGG-11 module tree and geometry at an eighth of its widths (dense 128)."""
    return TVVGG(num_classes, width_div=8, hidden=128)


def tv_resnet_small(num_classes, input_size=64):
    """torchvision's ResNet layout with BasicBlocks, two stages (16, 32 channels): a GAP head."""
    return TVResNet(num_classes, layers=(1, 1), widths=(16, 32))


def gap_mobile(num_classes, input_size=64):
    return GapMobile(num_classes)


def max_pool_head(num_classes, input_size=32):
    return MaxPoolHead(num_classes)


def not_a_model(num_classes, input_size=32):
    return "features"
