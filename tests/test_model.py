from __future__ import annotations

import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.stages.train.model import ModelConfig, build_model


def test_default_model_is_the_seed_architecture():
    model = build_model((28, 28, 1), 10, "mnist_cnn")
    summary = [(layer.__class__.__name__, layer.output.shape[1:]) for layer in model.layers]
    assert summary == [
        ("Conv2D", (26, 26, 32)),
        ("Conv2D", (24, 24, 32)),
        ("MaxPooling2D", (12, 12, 32)),
        ("Dropout", (12, 12, 32)),
        ("Flatten", (4608,)),
        ("Dense", (128,)),
        ("Dropout", (128,)),
        ("Dense", (10,)),
    ]
    assert model.count_params() == 600_810
    conv1, conv2 = model.layers[0], model.layers[1]
    assert conv1.padding == conv2.padding == "valid"
    assert [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"] == [0.25, 0.5]
    assert model.layers[-1].activation.__name__ == "softmax"


def test_hyperparameters_are_arguments():
    model = build_model((28, 28, 1), 10, "m", ModelConfig(conv_filters=(8, 16), kernel_size=5, pool_size=3, dense_units=32, conv_dropout=0.1, dense_dropout=0.2))
    assert model.layers[1].output.shape[1:] == (20, 20, 16)
    assert model.layers[2].output.shape[1:] == (6, 6, 16)
    assert model.layers[5].output.shape[1:] == (32,)


def test_the_network_follows_the_data_shape_and_classes():
    """Non-square RGB input with 3 classes; a large input gets extra stages instead of a huge dense layer."""
    small = build_model((40, 24, 3), 3, "m")
    assert small.input_shape == (None, 40, 24, 3) and small.output_shape == (None, 3)
    assert small.layers[2].output.shape[1:] == (18, 10, 32)  # no height/width swap
    large = build_model((128, 96, 1), 5, "m")
    assert large.layers[-4].output.shape[1] == 7 * 5 * 64 and large.count_params() < 1_000_000  # 128x96 pooled to 7x5
    with pytest.raises(EdgecnnError, match="at least 6x6"):
        build_model((8, 4, 1), 10, "m")
