"""A literal port of the official PyTorch forward pass: channels-first, concatenated pairs, every branch computed.

It reads an official-layout state_dict directly and shares no code with ``universeg_jax.model``, so comparing the
two checks the fast model's rewrites (split cross-conv, skipped dead branch, channels-last) for any shapes.
The benchmarks use it as "the concatenating form".
"""

import jax
import jax.numpy as jnp
import numpy as np


def _conv(x, weight, bias):
    """torch ``Conv2d(padding=k//2)`` on (N, C, H, W)."""
    y = jax.lax.conv_general_dilated(
        x,
        weight,
        (1, 1),
        "SAME",
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return y + bias[None, :, None, None]


def _batched(fn, x):
    """Apply ``fn`` to (B, S, C, H, W) by folding B and S, like the official ``vmap`` helper."""
    b, s = x.shape[:2]
    y = fn(x.reshape((b * s,) + x.shape[2:]))
    return y.reshape((b, s) + y.shape[1:])


def _upsample_matrix(n):
    """Interpolation matrix of torch ``UpsamplingBilinear2d(scale_factor=2)`` (align_corners=True) on one axis."""
    m = np.zeros((2 * n, n), np.float64)
    for i in range(2 * n):
        src = i * (n - 1) / (2 * n - 1) if n > 1 else 0.0
        lo = int(np.floor(src))
        hi = min(lo + 1, n - 1)
        m[i, lo] += 1 - (src - lo)
        m[i, hi] += src - lo
    return jnp.asarray(m, jnp.float32)


def _upsample(x):
    h, w = x.shape[-2:]
    x = jnp.einsum("oh,...hw->...ow", _upsample_matrix(h), x, precision="highest")
    return jnp.einsum("pw,...hw->...hp", _upsample_matrix(w), x, precision="highest")


def _maxpool(x):
    *lead, h, w = x.shape
    return x.reshape(*lead, h // 2, 2, w // 2, 2).max(axis=(-3, -1))


def _cross_block(state, name, target, support):
    """target (B, 1, C, H, W), support (B, S, C, H, W) -> new target, new support."""
    s = support.shape[1]
    pairs = jnp.concatenate([jnp.repeat(target, s, axis=1), support], axis=2)
    w, b = state[f"{name}.cross.cross_conv.weight"], state[f"{name}.cross.cross_conv.bias"]
    interaction = _batched(lambda x: _conv(x, w, b), pairs)
    new_target = interaction.mean(axis=1, keepdims=True)

    def conv_op(branch, x):
        w, b = state[f"{name}.{branch}.vmapped.conv.weight"], state[f"{name}.{branch}.vmapped.conv.bias"]
        return _batched(lambda y: jax.nn.leaky_relu(_conv(y, w, b), 0.01), x)

    return conv_op("target", new_target), conv_op("support", interaction)


def reference_forward(state, n_encoder, n_decoder, target_image, support_images, support_labels):
    """Official layout in and out: (B,1,H,W), (B,S,1,H,W) x2 -> logits (B,1,H,W)."""
    state = {k: jnp.asarray(v) for k, v in state.items()}
    target = target_image[:, None]
    support = jnp.concatenate([support_images, support_labels], axis=2)
    skips = []
    for i in range(n_encoder):
        target, support = _cross_block(state, f"enc_blocks.{i}", target, support)
        if i == n_encoder - 1:
            break
        skips.append((target, support))
        target, support = _maxpool(target), _maxpool(support)
    for j in range(n_decoder):
        target_skip, support_skip = skips.pop()
        target = jnp.concatenate([_upsample(target), target_skip], axis=2)
        support = jnp.concatenate([_upsample(support), support_skip], axis=2)
        target, support = _cross_block(state, f"dec_blocks.{j}", target, support)
    return _conv(target[:, 0], state["out_conv.conv.weight"], state["out_conv.conv.bias"])
