"""Seeds 000-002: INT2-M3AP voting, ST-3DH bilinear fusion, DeepMSI-MER's contrastive loss, VSC and TCN.

Values are worked out by hand in the comments; shapes and masks are checked on padded batches.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmaffect.errors import ConfigError
from mmaffect.models import ModelSpec, create_model
from mmaffect.models.blocks.bilinear import (
    BilinearMatch,
    MatchAttention,
    TensorAttention,
    broadcast_tensor,
    fit_length,
)
from mmaffect.models.blocks.tcn import TCN
from mmaffect.models.blocks.voting import majority_vote, mean_probability, vote_distribution
from mmaffect.models.deepmsi import VisualCompression, cross_modal_supcon
from mmaffect.models.int2m3ap import FaceCropCNN

# ---------------------------------------------------------------- voting (INT2-M3AP decision fusion)


def probs(*rows: list[float]) -> torch.Tensor:
    """Voter probabilities for one sample: (V, 1, C)."""
    return torch.tensor(rows)[:, None, :]


def test_clear_majority_wins_whatever_the_tie_break():
    p = probs([0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1])  # votes 0, 0, 2, 0
    for tie_break in ("prob", "priority", "lowest"):
        assert majority_vote(p, tie_break).tolist() == [0]


def test_two_two_tie_broken_by_summed_probability():
    # votes 1, 1, 2, 2; summed probabilities: class 1 = .5+.6+.3+.1 = 1.5, class 2 = .4+.3+.7+.8 = 2.2
    p = probs([0.1, 0.5, 0.4], [0.1, 0.6, 0.3], [0.0, 0.3, 0.7], [0.1, 0.1, 0.8])
    assert majority_vote(p, "prob").tolist() == [2]
    assert majority_vote(p, "lowest").tolist() == [1]
    assert majority_vote(p, "priority", priority=0).tolist() == [1]  # voter 0 voted 1
    assert majority_vote(p, "priority").tolist() == [2]  # the last voter (Y_m) voted 2


def test_equal_sums_fall_back_to_the_priority_voter():
    # votes 0, 1, 0, 1 with equal summed probabilities (2.0 each, exact in binary): the last voter's class, 1
    p = probs([0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.75, 0.25, 0.0], [0.25, 0.75, 0.0])
    assert majority_vote(p, "prob").tolist() == [1]
    assert majority_vote(p, "prob", priority=0).tolist() == [0]


def test_four_way_tie_and_batch():
    # sample 0: votes 0, 1, 2, 3 (a four-way tie)
    p = torch.tensor([[[0.4, 0.2, 0.2, 0.2]], [[0.2, 0.4, 0.2, 0.2]], [[0.2, 0.2, 0.4, 0.2]], [[0.1, 0.1, 0.1, 0.7]]])
    # sums: 0.9, 0.9, 0.9, 1.3 -> class 3
    batch = torch.cat([p, probs([1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 1.0, 0, 0])], 1)
    assert majority_vote(batch, "prob").tolist() == [3, 1]  # sample 1: sums 2/2, last voter voted 1
    assert majority_vote(batch, "lowest").tolist() == [0, 0]
    dist = vote_distribution(batch, "prob")
    assert dist.argmax(-1).tolist() == [3, 1]
    assert torch.allclose(dist.sum(-1), torch.ones(2))
    assert torch.allclose(mean_probability(batch)[0], torch.tensor([0.225, 0.225, 0.225, 0.325]))
    with pytest.raises(ValueError, match="tie_break"):
        majority_vote(batch, "coin")


def _int2_batch(n: int = 5, seed: int = 0) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    spec = ModelSpec(dims={"t": 6, "a": 5, "v": 4}, seq_dims={"t": 6, "a": 5, "v": 4}, heads={"logits": 3})
    mask = torch.arange(4)[None, :] < torch.tensor([4, 2, 1, 3, 4])[:n, None]
    batch = {"t": torch.randn(n, 6, generator=gen), "a": torch.randn(n, 5, generator=gen),
             "v": torch.randn(n, 4, generator=gen), "t_seq": torch.randn(n, 4, 6, generator=gen), "t_mask": mask,
             "label": torch.tensor([0, 1, 2, 1, 0])[:n]}
    return spec, batch


def test_int2m3ap_seven_heads_and_the_vote():
    spec, batch = _int2_batch()
    torch.manual_seed(0)
    model = create_model("int2-m3ap", spec, text_hidden=(8, 5), image_hidden=7, audio_hidden=(6, 4)).eval()
    out = model(batch)
    heads = ["v", "t", "a", "vt", "va", "ta", "m"]
    assert all(out[f"logits_{h}"].shape == (5, 3) for h in heads)
    assert out["feat_vt"].shape[1] == 100 and out["feat_va"].shape[1] == 152 and out["feat_ta"].shape[1] == 76
    assert out["feat_m"].shape[1] == 50
    voters = torch.stack([out[f"logits_{h}"].softmax(-1) for h in ("v", "t", "a", "m")])
    assert torch.equal(out["logits"].argmax(-1), majority_vote(voters, "prob"))
    assert sorted(model.extra_losses(out, batch)) == sorted(f"label_{h}" for h in heads)
    # the training step trains the seven heads, not the (gradient-free) vote
    assert sorted(model.training_step(batch, task=None)) == sorted(f"label_{h}" for h in heads)


def test_int2m3ap_fusion_switches_and_bad_values():
    spec, batch = _int2_batch()
    torch.manual_seed(0)
    t_only = create_model("int2-m3ap", spec, fusion="t").eval()
    out = t_only(batch)
    assert torch.equal(out["logits"], out["logits_t"])
    mean = create_model("int2-m3ap", spec, fusion="mean").eval()(batch)
    voters = torch.stack([mean[f"logits_{h}"].softmax(-1) for h in ("v", "t", "a", "m")])
    assert torch.allclose(mean["logits"].exp(), voters.mean(0), atol=1e-6)
    with pytest.raises(ConfigError, match="fusion"):
        create_model("int2-m3ap", spec, fusion="median")
    with pytest.raises(ConfigError, match="voter"):
        create_model("int2-m3ap", spec, voters="x,y")
    two = ModelSpec(dims={"t": 6, "v": 4}, seq_dims={"t": 6, "v": 4}, heads={"logits": 3})
    model = create_model("int2-m3ap", two)
    assert model.voters == ["v", "t", "vt"]  # with two modalities the hierarchical voter is their bimodal head


def test_int2m3ap_face_crop_cnn_ignores_padding_and_empty_clips():
    torch.manual_seed(0)
    cnn = FaceCropCNN((3, 4)).eval()
    frames = torch.rand(2, 5, 48, 48)
    mask = torch.tensor([[True, True, True, False, False], [False] * 5])
    out = cnn(frames, mask)
    alone = cnn.net(frames[0, :3, None]).mean(0)  # the clip's three real frames, no padding
    assert torch.allclose(out[0], alone, atol=1e-6) and torch.equal(out[1], torch.zeros(4))
    frames[0, 3:] = 1.0  # what padding holds does not matter
    assert torch.allclose(cnn(frames, mask)[0], alone, atol=1e-6)
    spec, batch = _int2_batch()
    model = create_model("int2-m3ap", spec, image="crops", image_channels=(3, 4)).eval()
    batch = batch | {"v_frames": torch.rand(5, 2, 48, 48), "v_frames_mask": torch.ones(5, 2, dtype=torch.bool)}
    assert model(batch)["logits_v"].shape == (5, 3)
    with pytest.raises(ConfigError, match="image"):
        create_model("int2-m3ap", spec, image="pixels")


# ---------------------------------------------------------------- ST-3DH bilinear fusion


def test_bilinear_match_shapes_values_and_masking():
    torch.manual_seed(0)
    match = BilinearMatch(3, 2)
    ex, ey = torch.randn(2, 4, 3), torch.randn(2, 5, 2)
    mx = torch.tensor([[True] * 4, [True, True, False, False]])
    my = torch.tensor([[True] * 5, [True, True, True, False, False]])
    m = match(ex, ey, mx, my)
    assert m.shape == (2, 4, 5)
    expected = ex[0] @ match.weight @ ey[0].T / math.sqrt(2)
    assert torch.allclose(m[0], expected, atol=1e-6)
    assert (m[1, 2:] == 0).all() and (m[1, :, 3:] == 0).all()
    assert (m[1, :2, :3] != 0).all()


def test_match_attention_ignores_padded_rows():
    torch.manual_seed(0)
    att = MatchAttention(length_y=5, hidden=3)
    m = torch.randn(2, 4, 5)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    weighted, alpha = att(m, mask)
    assert alpha.shape == (2, 4)
    assert torch.allclose(alpha.sum(1), torch.ones(2))
    assert (alpha[1, 2:] == 0).all()
    assert torch.allclose(weighted, alpha[:, :, None] * m)


def test_broadcast_tensor_and_tensor_attention():
    mxy, mzy = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    p = broadcast_tensor(mxy, mzy)
    assert p.shape == (2, 3, 4, 5)
    assert torch.isclose(p[1, 2, 3, 4], mxy[1, 2, 3] + mzy[1, 4, 3])
    assert torch.isclose(broadcast_tensor(mxy, mzy, "product")[0, 1, 2, 3], mxy[0, 1, 2] * mzy[0, 3, 2])
    mask_z = torch.tensor([[True] * 5, [True, True, False, False, False]])
    for mode in ("full", "pooled"):
        out, alpha = TensorAttention(3, 4, hidden=6, mode=mode)(p, mask_z)
        assert out.shape == p.shape and alpha.shape == (2, 5)
        assert (alpha[1, 2:] == 0).all() and torch.allclose(alpha.sum(1), torch.ones(2))
        assert torch.allclose(out, p * alpha[:, None, None, :])
    same, none = TensorAttention(3, 4, hidden=6, mode="off")(p, mask_z)
    assert same is p and none is None


def test_fit_length_pads_and_cuts():
    seq, mask = torch.ones(2, 3, 4), torch.tensor([[True, True, True], [True, False, False]])
    padded, pmask = fit_length(seq, mask, 5)
    assert padded.shape == (2, 5, 4) and pmask.tolist()[1] == [True, False, False, False, False]
    assert (padded[:, 3:] == 0).all()
    cut, cmask = fit_length(seq, mask, 2)
    assert cut.shape == (2, 2, 4) and cmask.shape == (2, 2)


def test_st3dh_padding_does_not_change_the_prediction():
    spec = ModelSpec(dims={"t": 3, "a": 2, "v": 4}, seq_dims={"t": 3, "a": 2, "v": 4}, heads={"score": 1})
    torch.manual_seed(0)
    model = create_model("st3dh", spec, dim=6, max_len=6, hidden=5).eval()
    gen = torch.Generator().manual_seed(1)
    short = {f"{m}_seq": torch.randn(1, 3, d, generator=gen) for m, d in spec.seq_dims.items()}
    short |= {f"{m}_mask": torch.ones(1, 3, dtype=torch.bool) for m in spec.seq_dims}
    long = {k: torch.cat([v, torch.full_like(v[:, :2], 7.0) if v.dtype != torch.bool else torch.zeros_like(v[:, :2])],
                         1) for k, v in short.items()}
    a, b = model(short), model(long)
    assert torch.allclose(a["score"], b["score"], atol=1e-5)
    assert (b["alpha_x"][0, 3:] == 0).all() and (b["alpha_p"][0, 3:] == 0).all()


# ---------------------------------------------------------------- DeepMSI-MER


def test_cross_modal_supcon_hand_worked():
    # anchors (video) and contrast (text) on unit axes, τ = 1, labels [0, 0, 1]
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    contrast = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    same = labels[:, None] == labels[None, :]
    # s = [[1,1,0],[0,0,1],[1,1,0]]; positives (0,1) and (1,0); negatives: row 0 {2}, row 1 {2}, row 2 {0,1}
    # l_01 = -log(e^1 / (e^1 + e^0)) = log(1 + e^-1);  l_10 = -log(e^0 / (e^0 + e^1)) = log(1 + e)
    # rows divided by B - 1 = 2; row 2 has no positive -> 0; mean over 3 rows
    expected = (math.log(1 + math.exp(-1)) / 2 + math.log(1 + math.e) / 2 + 0.0) / 3
    got = cross_modal_supcon(anchor, contrast, same, temperature=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # temperature scales the similarities: τ = 0.5 doubles them
    expected_half = (math.log(1 + math.exp(-2)) / 2 + math.log(1 + math.exp(2)) / 2) / 3
    assert cross_modal_supcon(anchor, contrast, same, 0.5).item() == pytest.approx(expected_half, rel=1e-6)


def test_cross_modal_supcon_edge_cases():
    x = torch.randn(4, 3, requires_grad=True)
    all_same = torch.ones(4, 4, dtype=torch.bool)
    assert cross_modal_supcon(x, x, all_same).item() == pytest.approx(0.0, abs=1e-7)  # no negatives: -log 1
    none_same = torch.eye(4, dtype=torch.bool)
    loss = cross_modal_supcon(x, x, none_same)  # no positives at all
    assert loss.item() == 0.0
    loss.backward()  # still a graph


def test_vsc_keeps_the_most_relevant_tokens_in_time_order():
    vsc = VisualCompression(2, merge="off", straight_through=False).eval()
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, True, True, False]])  # the last token is padding
    h = torch.tensor([[10.0, 0.0]])  # guide points along x: tokens 0 and 2 are relevant
    tokens, new_mask, s = vsc(z, mask, h, torch.tensor([2]))
    assert new_mask.tolist() == [[True, True]]
    assert s[0, 4] == 0 and s[0, 0] > s[0, 1]
    expected = vsc.norm(torch.tensor([[1.0, 0.0], [0.9, 0.1]]))
    assert torch.allclose(tokens[0], expected, atol=1e-6)  # tokens 0 then 2, in time order


def test_vsc_argmax_merge():
    vsc = VisualCompression(2, merge="argmax", alpha=0.5, eta=0.6, straight_through=False)
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    kept = torch.tensor([[True, True, False, False]])
    merged = vsc._merge(z, kept, mask & ~kept)
    # token 2 (cos 0.8 to token 0, 0.6 to token 1) merges into token 0 with θ = softmax(0.8, 0.6)[0];
    # token 3 (cos -1 and 0) stays out (below η); token 1 receives nothing
    theta = math.exp(0.8) / (math.exp(0.8) + math.exp(0.6))
    expected0 = 0.5 * torch.tensor([1.0, 0.0]) + 0.5 * theta * torch.tensor([0.8, 0.6])
    assert torch.allclose(merged[0, 0], expected0, atol=1e-6)
    assert torch.equal(merged[0, 1], z[0, 1])


def test_tcn_is_causal_and_reads_the_last_real_step():
    torch.manual_seed(0)
    tcn = TCN(3, channels=(4, 4), kernel=2, dropout=0.0).eval()
    x = torch.randn(1, 6, 3)
    full = tcn.sequence(x)
    changed = x.clone()
    changed[:, 4:] = 9.0
    assert torch.allclose(tcn.sequence(changed)[:, :4], full[:, :4], atol=1e-6)  # the future never leaks back
    mask = torch.tensor([[True] * 4 + [False] * 2])
    assert torch.allclose(tcn(changed, mask), full[:, 3], atol=1e-6)


def test_deepmsi_forward_loss_and_ablations():
    spec = ModelSpec(dims={"t": 6, "a": 5, "v": 4}, seq_dims={"t": 6, "a": 5, "v": 4}, heads={"logits": 3})
    gen = torch.Generator().manual_seed(0)
    n = 6
    mask = torch.arange(7)[None, :] < torch.tensor([7, 5, 3, 1, 6, 2])[:, None]
    batch = {"t": torch.randn(n, 6, generator=gen), "a": torch.randn(n, 5, generator=gen),
             "v": torch.randn(n, 4, generator=gen), "v_seq": torch.randn(n, 7, 4, generator=gen), "v_mask": mask,
             "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    torch.manual_seed(0)
    model = create_model("deepmsi-mer", spec, token_dim=8, guide_hidden=8, tcn_channels=(8,), proj_dim=8,
                         classifier=(8,))
    out = model(batch)
    assert out["logits"].shape == (n, 3)
    assert out["relevance_0"].shape == (n, 7) and (out["relevance_0"][3, 1:] == 0).all()
    con = model.extra_losses(out, batch)["con"]
    expected = (cross_modal_supcon(out["proj_v"], out["proj_t"], batch["label"][:, None] == batch["label"], 0.5)
                + cross_modal_supcon(out["proj_v"], out["proj_a"], batch["label"][:, None] == batch["label"], 0.5)) / 2
    assert torch.allclose(con, expected)
    assert create_model("deepmsi-mer", spec, contrastive=False).extra_losses(out, batch) == {}
    no_vsc = create_model("deepmsi-mer", spec, vsc=False)
    assert len(no_vsc.vsc) == 0 and no_vsc(batch)["logits"].shape == (n, 3)
    with pytest.raises(ConfigError, match="keep_ratios"):
        create_model("deepmsi-mer", spec, keep_ratios=(0.5, 0.0))


# ---------------------------------------------------------------- cache: relabelled from a label file (4-class setup)


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_label_file_skips_missing_cells_and_rejects_bad_files(tmp_path):
    from mmaffect.data.cache import read_label_file
    from mmaffect.errors import DataError

    good = _write(tmp_path / "m.csv", 'utterance_id,transcript,superb4_label\n'
                                      'u1,"Hi, there",hap\nu2,Why?,\nu3,"said ""no""",NA\nu4,ok, sad \n')
    assert read_label_file(good, "superb4_label", "utterance_id") == {"u1": "hap", "u4": "sad"}
    with pytest.raises(DataError, match=r"m.csv: no column 'id', 'emo' \(columns: utterance_id, transcript"):
        read_label_file(good, "emo", "id")
    twice = _write(tmp_path / "twice.csv", "id,label\nu1,hap\nu2,\nu2,sad\n")
    with pytest.raises(DataError, match="twice.csv: row 4: id 'u2' appears twice in column 'id'"):
        read_label_file(twice, "label", "id")
    with pytest.raises(DataError, match="nope.csv: label file not found"):
        read_label_file(tmp_path / "nope.csv", "label", "id")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"id,label\nu1,\xff\xfe\n")
    with pytest.raises(DataError, match="bin.csv: not a readable UTF-8 CSV"):
        read_label_file(binary, "label", "id")


def test_cache_reader_takes_its_classes_from_a_label_file(tmp_path):
    """Three audio items extracted with 8-class labels, read back with the 4-class labels of a CSV: the
    item without one is left out, the features of the others are the ones of the plain read."""
    try:
        import media_factory as mf
    except ModuleNotFoundError:  # tests/ imported as a package
        from tests import media_factory as mf
    from mmaffect.data.cache import load_cache
    from mmaffect.errors import DataError
    from mmaffect.extraction.pipeline import ExtractItem, extract

    items = [ExtractItem(f"u{i}", mf.write_wav(tmp_path / f"u{i}.wav", mf.tone(0.5, 220.0 * (i + 1))), text="hello",
                         meta={"label": label}) for i, label in enumerate(("exc", "fru", "sad"))]
    extract(items, tmp_path / "cache", workers=1, progress=False)
    labels = _write(tmp_path / "labels.csv", "utterance_id,superb4_label\nu0,hap\nu1,\nu2,sad\n")
    plain = load_cache(str(tmp_path / "cache"))
    four = load_cache(str(tmp_path / "cache"), label_file=str(labels), label="superb4_label", label_id="utterance_id")
    assert plain.class_names == ["exc", "fru", "sad"] and four.class_names == ["hap", "sad"]
    assert four.ids.tolist() == ["u0", "u2"] and four.label.tolist() == [0, 1]
    assert four.meta["unlabelled"] == ["u1"] and "superb4_label" in four.meta["labels_from"]
    assert torch.equal(four.modalities["a"].vector, plain.modalities["a"].vector[[0, 2]])
    none = _write(tmp_path / "none.csv", "utterance_id,superb4_label\nx9,hap\n")
    with pytest.raises(DataError, match="none.csv: gives no item of the cache a 'superb4_label'"):
        load_cache(str(tmp_path / "cache"), label_file=str(none), label="superb4_label", label_id="utterance_id")
    with pytest.raises(ConfigError, match="label_file needs the label option"):
        load_cache(str(tmp_path / "cache"), label_file=str(labels), label=None)
