"""The space-time Harris response and attention map of ST-3DH (models/blocks/harris3d.py).

Hand-made clips: a bright square that moves right and turns back (a change of motion at a corner is
what a space-time corner is: constant-velocity motion leaves the 3x3 structure tensor rank 2, so
``det`` is 0 there, as in Laptev's detector), a static copy of one frame, and a flat clip. Then real
pixels: frames decoded from an IEMOCAP clip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmaffect.models import ModelSpec, create_model
from mmaffect.models.blocks.harris3d import (
    Harris3DVideoEncoder,
    harris3d_keypoints,
    harris3d_response,
    harris3d_weight_map,
    hold_last_frame,
)

OFFSETS = [0, 2, 4, 6, 8, 6, 4, 2, 0]  # the square turns back at frame 4


def turning_square(top: int = 10, left: int = 4, size: int = 12, side: int = 32) -> torch.Tensor:
    clip = torch.zeros(len(OFFSETS), side, side)
    for t, o in enumerate(OFFSETS):
        clip[t, top:top + size, left + o:left + o + size] = 1.0
    return clip


def test_turning_corner_gives_peaks_at_the_turn_near_the_corners():
    clip = turning_square()
    points = harris3d_keypoints(harris3d_response(clip)).nonzero().tolist()
    assert points, "a corner that changes direction must be a space-time key point"
    assert {t for t, _, _ in points} == {4}  # only at the turn
    # the square spans rows 10..21 and, around the turn, columns 10..23: every peak sits near a corner
    for _, y, x in points:
        assert min(abs(y - 10), abs(y - 21)) <= 2
        assert 8 <= x <= 24


@pytest.mark.parametrize("kind", ["static", "flat"])
def test_static_or_flat_patch_gives_no_peak(kind):
    clip = turning_square()[4:5].expand(9, -1, -1).clone() if kind == "static" else torch.full((9, 32, 32), 0.5)
    response = harris3d_response(clip)
    assert float(response.max()) <= 1e-9  # no temporal gradient: det M_3 = 0, R_3 = -k trace^3 <= 0
    assert not harris3d_keypoints(response).any()
    assert torch.equal(harris3d_weight_map(clip), torch.ones_like(clip))


def test_constant_velocity_is_not_a_space_time_corner():
    clip = torch.zeros(9, 32, 32)
    for t in range(9):
        clip[t, 8 + t:20 + t, 8 + t:20 + t] = 1.0
    assert not harris3d_keypoints(harris3d_response(clip)).any()


def test_attention_follows_the_corner():
    a = harris3d_weight_map(turning_square(top=4, left=2))
    b = harris3d_weight_map(turning_square(top=14, left=10))
    for w in (a, b):
        assert float(w.min()) == pytest.approx(1.0) and float(w.max()) == pytest.approx(2.0)
    peak_a = np.unravel_index(int(a.argmax()), a.shape)
    peak_b = np.unravel_index(int(b.argmax()), b.shape)
    assert peak_a[0] == peak_b[0] == 4
    assert (peak_b[1] - peak_a[1], peak_b[2] - peak_a[2]) == (10, 8)  # moved with the square
    assert float(a[:, 28:, :].max()) == pytest.approx(1.0, abs=1e-3)  # far from the square: weight ~1


def test_batched_clips_match_single_clips():
    clips = torch.stack([turning_square(), turning_square(top=14, left=10)])
    batched = harris3d_response(clips)
    assert torch.allclose(batched[1], harris3d_response(clips[1]), atol=1e-6)


def _real_frames(data_dir, n: int = 9, side: int = 64) -> torch.Tensor:
    import av
    path = data_dir / "iemocap_clips" / "Ses01F_impro03_F005.mp4"
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 3 == 0:  # ~10 fps: visible motion between samples
                gray = frame.to_ndarray(format="gray")
                h, w = gray.shape
                frames.append(gray[:, (w - h) // 2:(w + h) // 2][:: h // side, :: h // side][:side, :side])
            if len(frames) == n:
                break
    return torch.from_numpy(np.stack(frames).astype(np.float32) / 255.0)


def test_real_frames(data_dir):
    clip = _real_frames(data_dir)
    assert clip.shape == (9, 64, 64)
    response = harris3d_response(clip)
    assert torch.isfinite(response).all()
    assert harris3d_keypoints(response).any(), "a real talking face must have space-time corners"
    weight = harris3d_weight_map(clip)
    assert float(weight.max()) == pytest.approx(2.0) and float(weight.min()) >= 1.0
    frozen = clip[:1].expand(9, -1, -1).clone()
    assert not harris3d_keypoints(harris3d_response(frozen)).any()


def test_video_encoder_and_st3dh_on_frames():
    torch.manual_seed(0)
    clips = torch.stack([turning_square(), turning_square(top=14, left=10)])
    for harris in (True, False):
        enc = Harris3DVideoEncoder(channels=(4, 8), out_dim=5, harris=harris)
        out = enc(clips)
        assert out.shape == (2, 5) and torch.isfinite(out).all()
    spec = ModelSpec(dims={"t": 6, "a": 4, "v": 3}, seq_dims={"t": 6, "a": 4, "v": 3}, heads={"score": 1})
    model = create_model("st3dh", spec, dim=8, max_len=4, hidden=8, video_frames=True, video_channels=(4, 8))
    assert "frames" in model.needs
    mask = torch.tensor([[True, True, False], [True, False, False]])
    frames_mask = torch.arange(clips.shape[1])[None, :] < torch.tensor([[clips.shape[1]], [5]])
    batch = {"t_seq": torch.randn(2, 3, 6), "t_mask": mask, "a_seq": torch.randn(2, 3, 4), "a_mask": mask,
             "v_seq": torch.randn(2, 3, 3), "v_mask": mask, "t": torch.randn(2, 6), "a": torch.randn(2, 4),
             "v": torch.randn(2, 3), "v_frames": clips, "v_frames_mask": frames_mask}
    out = model(batch)
    assert out["score"].shape == (2,)
    out["score"].sum().backward()
    assert model.encoders["v"].out.weight.grad is not None
    steps = model.encoders["v"].steps(clips, frames_mask)
    assert steps.shape == (2, clips.shape[1], 8) and (steps[1, 5:] == 0).all() and (steps[1, :5] != 0).any()


def test_hold_last_frame_repeats_the_last_real_frame():
    clips = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).view(2, 4, 2, 2)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    held = hold_last_frame(clips, mask)
    assert torch.equal(held[0, :2], clips[0, :2]) and torch.equal(held[0, 2], clips[0, 1])
    assert torch.equal(held[0, 3], clips[0, 1]) and torch.equal(held[1], clips[1])
