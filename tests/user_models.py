"""A user model factory, imported by path in tests (``tests.user_models:tiny_factory``)."""

from torch import nn


def tiny_factory(num_classes, input_size=16):
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    flat = 4 * (input_size // 2) ** 2
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 8), nn.ReLU(), nn.Linear(8, num_classes))
    return features, classifier
