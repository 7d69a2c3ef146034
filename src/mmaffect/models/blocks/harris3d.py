"""Space-time (3-D) Harris corners as an attention map over grayscale clips (ST-3DH, seed 001).

ST-3DH weights its video network by where the face *moves and has corners at the same time*:
points where the image gradient is strong along x, y and t together (Laptev's space-time interest
points). Plain 2-D Harris would also fire on a static eye corner; the temporal derivative makes the
response vanish where nothing changes, so the map highlights motion at structured places.

Steps (SEEDS_SPEC §2.3, blocks 1-3; [A] values are arguments):

1. Gradients: Prewitt ``T_x``/``T_y`` per frame [P], central difference ``[-1, 0, 1] / 2`` along t [A].
2. Structure tensor ``M_3`` from the six products ``I_a I_b``, each smoothed by a separable Gaussian
   (σ_s = 1.5 px, σ_t = 1 frame) [A: without a window ``det M_3`` is 0 at every pixel].
3. Response ``R_3 = det(M_3) - k trace(M_3)^3`` with k = 0.005 [P formula, A value].
4. Key points: 3x3x3 local maxima with ``R_3 > rel_threshold * max R_3`` and ``R_3 > 0`` [A].
5. Weight map ``W = 1 + γ norm01(Σ_p R_3(p) G(· - p))``: every key point spreads its response as a
   Gaussian bump (σ = 1 frame, 2 px) over an all-ones map the size of the clip [P idea, A values].

Everything is plain torch on CPU, batched over any leading axes, and needs no gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PREWITT_X = torch.tensor([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
PREWITT_Y = PREWITT_X.T.contiguous()


def _as_volume(clip: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """``(..., T, H, W)`` -> ``(N, 1, T, H, W)`` float and the leading shape."""
    if clip.dim() < 3:
        raise ValueError(f"a clip must be (..., T, H, W), got shape {tuple(clip.shape)}")
    lead = tuple(clip.shape[:-3])
    return clip.reshape(-1, 1, *clip.shape[-3:]).float(), lead


def _conv_axis(x: Tensor, kernel: Tensor, axis: int) -> Tensor:
    """1-D convolution of ``(N, 1, T, H, W)`` along axis 2 (t), 3 (y) or 4 (x), replicate-padded so
    the clip border is not mistaken for an edge."""
    k = kernel.numel()
    shape = [1, 1, 1, 1, 1]
    shape[axis] = k
    pad = [0, 0, 0, 0, 0, 0]  # (x_lo, x_hi, y_lo, y_hi, t_lo, t_hi)
    slot = {4: 0, 3: 2, 2: 4}[axis]
    pad[slot] = pad[slot + 1] = k // 2
    return F.conv3d(F.pad(x, pad, mode="replicate"), kernel.to(x).view(shape))


def gaussian_kernel(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian with radius ``ceil(3σ)`` (a single tap of 1 for σ <= 0)."""
    if sigma <= 0:
        return torch.ones(1)
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def smooth3d(x: Tensor, sigma_t: float, sigma_s: float) -> Tensor:
    """Separable Gaussian smoothing of ``(N, 1, T, H, W)``."""
    x = _conv_axis(x, gaussian_kernel(sigma_t), 2)
    x = _conv_axis(x, gaussian_kernel(sigma_s), 3)
    return _conv_axis(x, gaussian_kernel(sigma_s), 4)


def gradients3d(clip: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(I_x, I_y, I_t)`` of ``(N, 1, T, H, W)``: Prewitt in space (per frame), central difference in time."""
    padded = F.pad(clip, (1, 1, 1, 1, 0, 0), mode="replicate")
    ix = F.conv3d(padded, PREWITT_X.to(clip).view(1, 1, 1, 3, 3))
    iy = F.conv3d(padded, PREWITT_Y.to(clip).view(1, 1, 1, 3, 3))
    it = _conv_axis(clip, torch.tensor([-0.5, 0.0, 0.5]), 2)
    return ix, iy, it


@torch.no_grad()
def harris3d_response(clip: Tensor, k: float = 0.005, sigma_s: float = 1.5, sigma_t: float = 1.0) -> Tensor:
    """``R_3 = det(M_3) - k trace(M_3)^3`` at every voxel of ``(..., T, H, W)`` clips (same shape back).

    Intensities are used as given; scale them to [0, 1] first so ``k`` and thresholds mean the same
    for every clip.
    """
    volume, lead = _as_volume(clip)
    ix, iy, it = gradients3d(volume)
    xx, yy, tt = (smooth3d(g * g, sigma_t, sigma_s) for g in (ix, iy, it))
    xy, xt, yt = (smooth3d(a * b, sigma_t, sigma_s) for a, b in ((ix, iy), (ix, it), (iy, it)))
    det = xx * (yy * tt - yt * yt) - xy * (xy * tt - yt * xt) + xt * (xy * yt - yy * xt)
    trace = xx + yy + tt
    return (det - k * trace ** 3).reshape(*lead, *clip.shape[-3:])


@torch.no_grad()
def harris3d_keypoints(response: Tensor, rel_threshold: float = 0.01, window: int = 3) -> Tensor:
    """Bool mask of space-time key points of ``(..., T, H, W)`` responses: local maxima in a
    ``window``^3 neighbourhood that are positive and above ``rel_threshold`` times the clip's maximum."""
    volume, lead = _as_volume(response)
    peak = F.max_pool3d(volume, window, stride=1, padding=window // 2)
    top = volume.flatten(1).amax(1).clamp(min=0.0).view(-1, 1, 1, 1, 1)
    keep = (volume >= peak) & (volume > 0) & (volume > rel_threshold * top)
    return keep.reshape(*lead, *response.shape[-3:])


@torch.no_grad()
def harris3d_weight_map(clip: Tensor, gamma: float = 1.0, k: float = 0.005, sigma_s: float = 1.5,
                        sigma_t: float = 1.0, rel_threshold: float = 0.01, bump_sigma_s: float = 2.0,
                        bump_sigma_t: float = 1.0) -> Tensor:
    """``W = 1 + γ norm01(Σ_p R_3(p) G(· - p))`` over ``(..., T, H, W)`` clips: 1 where no key point is
    near, up to ``1 + γ`` at the strongest one. A clip without key points (static, flat) gets all ones."""
    response = harris3d_response(clip, k, sigma_s, sigma_t)
    points = harris3d_keypoints(response, rel_threshold)
    volume, lead = _as_volume(torch.where(points, response, torch.zeros_like(response)))
    spread = smooth3d(volume, bump_sigma_t, bump_sigma_s)
    top = spread.flatten(1).amax(1).view(-1, 1, 1, 1, 1)
    norm = torch.where(top > 0, spread / top.clamp(min=1e-12), torch.zeros_like(spread))
    return (1.0 + gamma * norm).reshape(*lead, *clip.shape[-3:])


def hold_last_frame(clips: Tensor, mask: Tensor) -> Tensor:
    """``(N, T, H, W)`` clips with every padded frame (``mask`` False) replaced by the row's last real
    frame, so padding adds no temporal gradient (a jump to black would be a strong space-time corner).
    Rows without a real frame are left as they are."""
    last = (mask.long().sum(1) - 1).clamp(min=0)  # (N,)
    steps = torch.arange(clips.shape[1], device=clips.device)[None, :]
    source = torch.where(mask, steps, last[:, None])  # (N, T): index of the frame to show
    return torch.gather(clips, 1, source[:, :, None, None].expand_as(clips))


class Harris3DVideoEncoder(nn.Module):
    """ST-3DH's video network on grayscale clips ``(N, T, H, W)`` -> ``(N, out_dim)``, or per frame
    ``(N, T, out_dim)`` with :meth:`steps`.

    A C3D-style stack (``channels`` blocks of Conv3d 3x3x3 -> ReLU -> max-pool over space) whose
    input clip and every block's feature map are multiplied by the Harris weight map resized to that
    block's (T', H', W') (broadcast over channels), each followed by a 1x1x1 convolution initialised
    to the identity -- the paper's "convolution to adjust channel counts" [A, §2.3 block 3].
    ``harris=False`` drops the map (the ablation "no Harris attention").
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), out_dim: int = 128, harris: bool = True,
                 gamma: float = 1.0):
        super().__init__()
        self.harris, self.gamma = harris, gamma
        blocks, mixes, width = [], [], 1
        for c in channels:
            blocks.append(nn.Sequential(nn.Conv3d(width, c, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool3d((1, 2, 2), ceil_mode=True)))
            mix = nn.Conv3d(c, c, 1)
            with torch.no_grad():
                mix.weight.copy_(torch.eye(c).view(c, c, 1, 1, 1))
                mix.bias.zero_()
            mixes.append(mix)
            width = c
        self.blocks, self.mixes = nn.ModuleList(blocks), nn.ModuleList(mixes)
        self.out = nn.Linear(width, out_dim)

    def feature_map(self, clips: Tensor) -> Tensor:
        """The last block's Harris-weighted map ``(N, C, T, H', W')`` (pooling keeps T)."""
        x = clips.float()[:, None]  # (N, 1, T, H, W)
        weight = harris3d_weight_map(clips.float(), self.gamma)[:, None] if self.harris else None
        if weight is not None:
            x = x * weight
        for block, mix in zip(self.blocks, self.mixes, strict=True):
            x = block(x)
            if weight is not None:
                x = mix(x * F.interpolate(weight, size=x.shape[2:], mode="trilinear", align_corners=False))
        return x

    def forward(self, clips: Tensor) -> Tensor:
        return self.out(self.feature_map(clips).mean((2, 3, 4)))

    def steps(self, clips: Tensor, mask: Tensor) -> Tensor:
        """Per-frame features ``(N, T, out_dim)`` of padded clips (``mask`` (N, T), real frames first):
        padding repeats the last real frame (:func:`hold_last_frame`) so it neither creates corners nor
        leaks into real frames through the temporal convolutions; padded outputs are zeroed."""
        x = self.feature_map(hold_last_frame(clips, mask))
        return self.out(x.mean((3, 4)).transpose(1, 2)) * mask[..., None].to(x.dtype)
