"""UniverSeg in Flax NNX: the only place the architecture lives.

Public layout is channels-last:

* ``query``           ``(B, H, W, 1)`` float, values in [0, 1]
* ``support_images``  ``(B, S, H, W, 1)`` or ``(1, S, H, W, 1)`` (one support set shared by all queries)
* ``support_labels``  same shape as ``support_images``, values in [0, 1] (binary masks or soft labels)
* returns logits      ``(B, H, W, 1)`` float32; ``jax.nn.sigmoid`` gives the foreground probability.

H and W must be divisible by ``2 ** (len(encoder_blocks) - 1)``; any batch size and any support size S >= 1.

The computation equals the official PyTorch model (JJGO/UniverSeg) but uses exact rewrites, which cut the
official forward's ~10.4 GFLOP per support element at 128x128 to ~5.6 (XLA's cost analysis) and halve the memory
of the widest tensors:

* a cross-convolution of the pair (u, v_i) is ``Conv_u(u) + Conv_v(v_i)``: the query half is computed once
  instead of S times and the concatenated pair tensor is never built;
* the support branch of the last block feeds nothing and is not computed; that block's query needs only the
  support mean of its interactions, which by linearity is one conv of the support mean (not S convs);
* the interactions themselves are never built: the support conv of ``query_half + support_half_i`` is
  ``conv(query_half) + conv(support_half_i)``.

For inference, ``encode_support`` computes the first block's query-independent support work once per support set
and ``segment_encoded`` runs any number of queries against many support sets in one pass.

Inside, support features are laid out ``(S, B, H, W, C)`` so that vmapping over the support folds it into the
conv batch for free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BlockSpec = Union[int, tuple[int, int]]
V1_ENCODER_BLOCKS = (64, 64, 64, 64)
LEAKY_SLOPE = 0.01


def as_pair(spec: BlockSpec) -> tuple[int, int]:
    """A block spec is ``features`` or ``(cross_features, conv_features)``."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        pair = (int(spec), int(spec))
    elif isinstance(spec, Sequence) and len(spec) == 2:
        pair = (int(spec[0]), int(spec[1]))
    else:
        raise ValueError(f"block spec must be an int or a (cross_features, conv_features) pair, got {spec!r}")
    if min(pair) < 1:
        raise ValueError(f"block features must be positive, got {spec!r}")
    return pair


def resolve_blocks(
    encoder_blocks: Sequence[BlockSpec], decoder_blocks: Sequence[BlockSpec] | None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Normalise block specs the way the official constructor does (decoder defaults to encoder[-2::-1])."""
    if isinstance(encoder_blocks, (int, str)) or len(encoder_blocks) == 0:
        raise ValueError(f"encoder_blocks must be a non-empty list of block specs, got {encoder_blocks!r}")
    encoder = [as_pair(b) for b in encoder_blocks]
    decoder = [as_pair(b) for b in decoder_blocks] if decoder_blocks else encoder[-2::-1]
    if len(decoder) > len(encoder) - 1:
        raise ValueError(
            f"decoder_blocks has {len(decoder)} blocks but only {len(encoder) - 1} skip levels exist "
            f"(len(encoder_blocks) - 1)"
        )
    return encoder, decoder


class Conv2d(nnx.Module):
    """'Same' zero-padded conv with bias, applied to ``(..., H, W, C)``; kernel is HWIO."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, rngs: nnx.Rngs):
        fan_in = in_features * kernel_size * kernel_size
        # Kaiming-normal (as the official ConvOp initialises), zero bias.
        std = np.sqrt(2.0 / fan_in)
        shape = (kernel_size, kernel_size, in_features, out_features)
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jax.Array, dtype=jnp.float32) -> jax.Array:
        return conv2d(x, self.kernel[...].astype(dtype)) + self.bias[...].astype(dtype)


def conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Bias-free 'same' conv over the last three axes; leading axes are folded into the batch."""
    lead, (h, w, c) = x.shape[:-3], x.shape[-3:]
    y = jax.lax.conv_general_dilated(
        x.reshape((-1, h, w, c)),
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y.reshape(lead + y.shape[1:])


def conv_parts(parts: Sequence[jax.Array], kernel: jax.Array) -> jax.Array:
    """Conv of the channel-concatenation of ``parts`` without building it: sum of per-part convs."""
    out, start = None, 0
    for part in parts:
        stop = start + part.shape[-1]
        y = conv2d(part, kernel[:, :, start:stop, :])
        out = y if out is None else out + y
        start = stop
    return out


class CrossConv(nnx.Module):
    """Convolution of every (query, support_i) pair, vmapped over the support axis.

    The kernel's input channels are ordered [query channels, support channels], as in the official
    ``CrossConv2d``. Each side may arrive as several channel blocks (decoder: upsampled + skip), which are
    convolved separately and summed rather than concatenated.
    """

    def __init__(self, query_features: int, support_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.query_features = query_features
        self.conv = Conv2d(query_features + support_features, out_features, 3, rngs=rngs)

    def __call__(self, query_parts, support_parts, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
        """``query_parts``: arrays ``(B, H, W, *)``; ``support_parts``: ``(S, B|1, H, W, *)``.

        Returns the two halves of the pair interactions, ``(B, H, W, out)`` (with the bias) and
        ``(S, B|1, H, W, out)``; interaction ``i`` of query ``b`` is their broadcast sum. The support axis leads so
        that vmapping over it folds into the conv's batch without a transpose.
        """
        kernel = self.conv.kernel[...].astype(dtype)
        query_kernel, support_kernel = kernel[:, :, : self.query_features], kernel[:, :, self.query_features :]
        query_half = conv_parts(query_parts, query_kernel) + self.conv.bias[...].astype(dtype)
        support_half = jax.vmap(lambda *v: conv_parts(v, support_kernel))(*support_parts)
        return query_half, support_half


class CrossBlock(nnx.Module):
    """CrossConv (no nonlinearity), mean over the support for the new query, then a conv + LeakyReLU on each side."""

    def __init__(
        self,
        query_features: int,
        support_features: int,
        cross_features: int,
        conv_features: int,
        *,
        support_output: bool = True,
        rngs: nnx.Rngs,
    ):
        self.cross = CrossConv(query_features, support_features, cross_features, rngs=rngs)
        self.target = Conv2d(cross_features, conv_features, 3, rngs=rngs)
        # The last block's support output feeds nothing: it keeps its weights (for loading) but is not run.
        self.support_output = support_output
        self.support = Conv2d(cross_features, conv_features, 3, rngs=rngs)

    def __call__(self, query_parts, support_parts, dtype=jnp.float32):
        query_half, support_half = self.cross(query_parts, support_parts, dtype)
        query = jax.nn.leaky_relu(self.target(query_half + support_mean(support_half)[0], dtype), LEAKY_SLOPE)
        if not self.support_output:
            return query, None
        # conv(query_half + support_half_i) = conv(query_half) + conv(support_half_i) (zero padding keeps the conv
        # linear): the interactions are never built, and the per-query term joins the bias.
        query_term = self.support(query_half, dtype)
        support = conv2d(support_half, self.support.kernel[...].astype(dtype)) + query_term
        return query, jax.nn.leaky_relu(support, LEAKY_SLOPE)


def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 over axes (-3, -2)."""
    *lead, h, w, c = x.shape
    return x.reshape(*lead, h // 2, 2, w // 2, 2, c).max(axis=(-4, -2))


def _upsample_axis(x: jax.Array, axis: int) -> jax.Array:
    """x2 linear upsampling along ``axis`` with align_corners=True (torch ``UpsamplingBilinear2d``).

    Source position of output i is i (n-1)/(2n-1). Output 2k lies between inputs k-1 and k with weight
    k/(2n-1) on k-1; output 2k+1 lies between k and k+1 with weight (n-1-k)/(2n-1) on k+1. Written with shifted
    copies and an interleave (no gather), so XLA fuses it into one pass.
    """
    n = x.shape[axis]
    if n == 1:
        return jnp.repeat(x, 2, axis=axis)
    k = np.arange(n)
    shape = [1] * x.ndim
    shape[axis] = n
    to_prev = jnp.asarray(k / (2 * n - 1), x.dtype).reshape(shape)
    to_next = jnp.asarray((n - 1 - k) / (2 * n - 1), x.dtype).reshape(shape)
    first, last = jax.lax.slice_in_dim(x, 0, 1, axis=axis), jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
    prev = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis)
    following = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), last], axis)
    even = x + to_prev * (prev - x)
    odd = x + to_next * (following - x)
    out = jnp.stack([even, odd], axis=axis + 1)
    return out.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1 :])


def upsample2(x: jax.Array) -> jax.Array:
    """Bilinear x2 upsampling of ``(..., H, W, C)`` with align_corners=True."""
    return _upsample_axis(_upsample_axis(x, x.ndim - 3), x.ndim - 2)


class UniverSeg(nnx.Module):
    """The UniverSeg U-Net of CrossBlocks; ``UniverSeg()`` is the v1 architecture (1,182,785 parameters)."""

    def __init__(
        self,
        encoder_blocks: Sequence[BlockSpec] = V1_ENCODER_BLOCKS,
        decoder_blocks: Sequence[BlockSpec] | None = None,
        *,
        dtype=jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        encoder, decoder = resolve_blocks(encoder_blocks, decoder_blocks)
        self.encoder_blocks = tuple(encoder)
        self.decoder_blocks = tuple(decoder)
        self.dtype = dtype
        # Training with large supports: keep only each block's inputs for the backward pass and recompute
        # the block, trading about one extra forward for most of the activation memory.
        self.remat = remat
        n_blocks = len(encoder) + len(decoder)

        enc, skips, q_ch, s_ch = [], [], 1, 2
        for i, (cross, conv) in enumerate(encoder):
            last = i == n_blocks - 1
            enc.append(CrossBlock(q_ch, s_ch, cross, conv, support_output=not last, rngs=rngs))
            q_ch = s_ch = conv
            skips.append(conv)
        dec = []
        for j, ((cross, conv), skip) in enumerate(zip(decoder, skips[-2::-1])):
            last = len(encoder) + j == n_blocks - 1
            dec.append(CrossBlock(q_ch + skip, s_ch + skip, cross, conv, support_output=not last, rngs=rngs))
            q_ch = s_ch = conv
        self.enc_blocks = nnx.List(enc)
        self.dec_blocks = nnx.List(dec)
        self.out_conv = Conv2d(q_ch, 1, 1, rngs=rngs)

    @property
    def levels(self) -> int:
        """Number of resolution levels; H and W must be divisible by ``2 ** (levels - 1)``."""
        return len(self.encoder_blocks)

    def __call__(self, query: jax.Array, support_images: jax.Array, support_labels: jax.Array) -> jax.Array:
        validate_inputs(query, support_images, support_labels, self.levels)
        dtype = self.dtype
        query = jnp.asarray(query, dtype)
        # Inside, support features are (S, B, H, W, C): see CrossConv.
        support = jnp.concatenate([jnp.asarray(support_images, dtype), jnp.asarray(support_labels, dtype)], -1)
        support = jnp.swapaxes(support, 0, 1)
        first = self.enc_blocks[0]
        s_parts = (support,) if first.support_output else (support_mean(support),)
        q, s = self._run(first, (query,), s_parts)
        return self._after_first_block(q, s)

    def _after_first_block(self, q, s):
        """The network from the first block's outputs (query ``(B, H, W, C)``, support ``(S, B, H, W, C)``) on."""
        dtype = self.dtype
        skips = []
        for i in range(1, self.levels):
            block = self.enc_blocks[i]
            skips.append((q, s))
            q_parts, s_parts = (max_pool2(q),), (max_pool2(s),)
            if not block.support_output:
                s_parts = tuple(map(support_mean, s_parts))
            q, s = self._run(block, q_parts, s_parts)
        for block in self.dec_blocks:
            q_skip, s_skip = skips.pop()
            if not block.support_output:
                s, s_skip = support_mean(s), support_mean(s_skip)
            q, s = self._run(block, (upsample2(q), q_skip), (upsample2(s), s_skip))
        return self.out_conv(q, dtype).astype(jnp.float32)

    # -- inference with support sets reused across queries -------------------------------------------------

    def encode_support(self, support_images: jax.Array, support_labels: jax.Array) -> dict[str, jax.Array]:
        """The query-independent work of the first block for G support sets ``(G, S, H, W, 1)``, computed once and
        reused for any number of queries by :meth:`segment_encoded`.

        The first block's cross-conv support half ``Conv_v(v_i)`` and its support conv ``conv(Conv_v(v_i))`` do not
        depend on the query (the rewrites in the module docstring). Returns ``{"mean": (G, H, W, C),
        "support": (S, G, H, W, C') or absent}``.
        """
        if support_images.ndim != 5 or support_labels.shape != support_images.shape:
            raise ValueError(
                f"support_images and support_labels must both have shape (G, S, H, W, 1), got "
                f"{tuple(support_images.shape)} and {tuple(support_labels.shape)}"
            )
        g, _, h, w, _ = support_images.shape
        validate_inputs(jnp.zeros((g, h, w, 1), jnp.float32), support_images, support_labels, self.levels)
        dtype = self.dtype
        support = jnp.concatenate([jnp.asarray(support_images, dtype), jnp.asarray(support_labels, dtype)], -1)
        support = jnp.swapaxes(support, 0, 1)  # (S, G, H, W, 2)
        first = self.enc_blocks[0]
        kernel = first.cross.conv.kernel[...].astype(dtype)
        support_kernel = kernel[:, :, first.cross.query_features :]
        half = jax.vmap(lambda v: conv_parts((v,), support_kernel))(support)
        encoded = {"mean": support_mean(half)[0]}
        if first.support_output:
            encoded["support"] = conv2d(half, first.support.kernel[...].astype(dtype))
        return encoded

    def segment_encoded(self, query: jax.Array, encoded: dict[str, jax.Array]) -> jax.Array:
        """Logits ``(G, B, H, W, 1)`` of ``B`` queries ``(B, H, W, 1)`` against each of the G support sets encoded by
        :meth:`encode_support`: equal to calling the model on every (set, query) pair, with the first block's
        support work done once per set and its query-only work once per query."""
        mean = encoded["mean"]
        g, h, w, _ = mean.shape
        if query.ndim != 4 or query.shape[1:] != (h, w, 1):
            raise ValueError(
                f"query must have shape (B, {h}, {w}, 1) like the encoded support, got {tuple(query.shape)}"
            )
        b = query.shape[0]
        dtype = self.dtype
        first = self.enc_blocks[0]
        kernel = first.cross.conv.kernel[...].astype(dtype)
        query_kernel = kernel[:, :, : first.cross.query_features]
        query_half = conv_parts((jnp.asarray(query, dtype),), query_kernel) + first.cross.conv.bias[...].astype(dtype)
        q = jax.nn.leaky_relu(first.target(query_half[None] + mean[:, None], dtype), LEAKY_SLOPE)
        q = q.reshape((g * b,) + q.shape[2:])
        s = None
        if first.support_output:
            query_term = first.support(query_half, dtype)  # (B, H, W, C'), with the bias
            support = encoded["support"]
            s = jax.nn.leaky_relu(support[:, :, None] + query_term[None, None], LEAKY_SLOPE)
            s = s.reshape((support.shape[0], g * b) + s.shape[3:])
        logits = self._after_first_block(q, s)
        return logits.reshape((g, b) + logits.shape[1:])

    def _run(self, block: CrossBlock, query_parts, support_parts):
        if self.remat:
            return nnx.remat(lambda b, q, s: b(q, s, self.dtype))(block, query_parts, support_parts)
        return block(query_parts, support_parts, self.dtype)


def support_mean(support: jax.Array) -> jax.Array:
    """Average over the support axis, kept as a support of one.

    The last block needs only the support mean of its pair interactions; the cross-conv and the upsampling are
    linear, so averaging their inputs first gives the same result with one conv instead of S.
    """
    # A contraction with a weight vector, not jnp.mean: XLA's CPU reduction over the leading axis is ~30x slower
    # than its dot here (benchmarks/bench_model.py figures in the README).
    weights = jnp.full((1, support.shape[0]), 1.0 / support.shape[0], support.dtype)
    return jnp.tensordot(weights, support, axes=1)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def validate_inputs(query, support_images, support_labels, levels: int) -> None:
    """Shape checks always; value checks (finite, in [0, 1]) whenever the arrays are concrete."""
    named = {"query": query, "support_images": support_images, "support_labels": support_labels}
    for name, x in named.items():
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if query.ndim != 4 or query.shape[-1] != 1:
        raise ValueError(f"query must have shape (B, H, W, 1), got {tuple(query.shape)}")
    for name in ("support_images", "support_labels"):
        x = named[name]
        if x.ndim != 5 or x.shape[-1] != 1:
            raise ValueError(f"{name} must have shape (B, S, H, W, 1), got {tuple(x.shape)}")
    if support_images.shape != support_labels.shape:
        raise ValueError(
            f"support_images {tuple(support_images.shape)} and support_labels {tuple(support_labels.shape)} "
            "must have the same shape"
        )
    b, h, w, _ = query.shape
    sb, s, sh, sw, _ = support_images.shape
    if s == 0:
        raise ValueError("support_images is empty: the support set needs at least one image/label pair (S >= 1)")
    if sb not in (b, 1):
        raise ValueError(f"support batch size {sb} must equal the query batch size {b} or be 1 (shared support)")
    if (sh, sw) != (h, w):
        raise ValueError(f"support images are {sh}x{sw} but the query is {h}x{w}: they must match")
    factor = 2 ** (levels - 1)
    if h % factor or w % factor or h == 0 or w == 0:
        raise ValueError(
            f"query height and width ({h}x{w}) must be positive multiples of {factor} "
            f"(2 ** (levels - 1) for {levels} levels); resize or pad the images"
        )
    for name, x in named.items():
        if not jnp.issubdtype(x.dtype, jnp.floating) and not jnp.issubdtype(x.dtype, jnp.integer) and x.dtype != bool:
            raise TypeError(f"{name} must be a real-valued array, got dtype {x.dtype}")
        if _concrete(x):
            values = np.asarray(x, dtype=np.float32)
            if not np.isfinite(values).all():
                raise ValueError(f"{name} contains NaN or inf values")
            lo, hi = float(values.min()), float(values.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(
                    f"{name} values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]; "
                    "normalise images first (universeg_jax.preprocess)"
                )


def count_params(model: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
