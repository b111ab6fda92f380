"""The one check of a training config, before anything is built.

Everything a training run needs from its config that the config file itself cannot guarantee is
checked here, once, with a message naming the key to change: a mistake becomes one line instead
of a failure deep inside a compiled step or hours into a run.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A training config that cannot work: reported to the user as one line, not a traceback."""


def min_crop(model: Any) -> int:
    """The smallest training crop a model takes: one window in the deepest stage of g_a.

    A crop whose deepest g_a stage has fewer tokens than its window changes the window geometry
    (shifted windows wrap onto themselves), which test-time images never see. The crop must also
    be a multiple of the model's downsampling factor (no padding inside a training batch).
    """
    from swinjax.transforms import downsampling_factor

    f = downsampling_factor(model)
    deepest = int(model.g_a.get("window", 1)) * 2 ** len(model.g_a.channels)
    return -(-max(f, deepest) // f) * f


def validate_train_config(config: Any, num_devices: int) -> None:
    """Checks a training config once, before anything is built; the one place it is checked.

    Args:
        config: the training config.
        num_devices: devices of the mesh the batch is split over.

    Raises:
        ConfigError: the first problem found, naming the config key to change.
    """
    from swinjax.lmbda import LmbdaError, lmbda_range
    from swinjax.models.registry import MODEL_IDS
    from swinjax.transforms import downsampling_factor

    model = config.model
    if model.id not in MODEL_IDS:
        raise ConfigError(f"unknown model.id {model.id!r}; known: {', '.join(MODEL_IDS)}")
    crop, f, smallest = int(config.crop), downsampling_factor(model), min_crop(model)
    if crop % f:
        raise ConfigError(f"crop={crop} must be a multiple of {model.id}'s downsampling factor {f}")
    if crop < smallest:
        raise ConfigError(
            f"crop={crop} is below {smallest}: the deepest stage of {model.id} would see fewer "
            "tokens than its window (use --config.crop=256, the papers' setting)"
        )
    batch = int(config.batch_size)
    if batch < 1 or batch % num_devices:
        raise ConfigError(
            f"batch_size={batch} is not a positive multiple of the {num_devices} devices of "
            "the mesh"
        )
    for key in ("total_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        if int(config[key]) < 1:
            raise ConfigError(f"{key}={config[key]} must be at least 1")
    if int(config.eval_every) < 0:
        raise ConfigError(f"eval_every={config.eval_every} must be >= 0 (0: no validation)")
    if not 0 <= int(config.seed) < 2**32:
        raise ConfigError(f"seed={config.seed} must be in [0, 2**32)")
    try:
        lmbda_range(config)
    except LmbdaError as e:
        raise ConfigError(str(e)) from e
    if int(config.get("stage", 1)) >= 2:
        pc = config.perceptual
        vgg = str(pc.get("vgg", "vgg19"))
        if vgg not in ("vgg16", "vgg19"):
            raise ConfigError(f"perceptual.vgg={vgg!r} must be 'vgg16' or 'vgg19'")
        if vgg == "vgg19" and not pc.vgg_weights:
            raise ConfigError(
                f"stage {config.stage} with perceptual.vgg=vgg19 needs VGG19 weights: set "
                "--config.perceptual.vgg_weights=/path/vgg19.npz (make it with "
                "scripts/convert_torch_weights.py; docs/perceptual.md), or use the packaged "
                "VGG16: --config.perceptual.vgg=vgg16"
            )
        if len(pc.layers) != len(pc.layer_weights):
            raise ConfigError("perceptual.layers and perceptual.layer_weights differ in length")
