"""Known answers, each written from its source: SegFormer's and timm's tables, the DeCUR release's preprocessing
(``src/pretrain/datasets``), torchgeo's and TerraTorch's band names, and values computed by hand in the test.

Nothing here compares decur with decur: every expected value is a literal copied from the other project (named next
to it) or arithmetic done in the test.
"""

from __future__ import annotations

import math
from enum import Enum
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from decur.data.transforms import InputTransform, image_transform, sentinel_transform
from decur.models.mit import create_mit, mit_widths
from decur.weights import WeightsError, infer_arch, load_backbone, read_pretrained
from decur.weights.joint import MultimodalEncoder

# ---- the DeCUR release's statistics (src/pretrain/datasets/SSL4EO/ssl4eo_dataset*.py), copied literally -------
S2C_MEAN = [1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991, 2091.74883118, 2371.7172463,
            2299.90463006, 2560.29504086, 830.06605044, 22.10351321, 2177.07172323, 1524.06546312]  # fmt: skip
S2C_STD = [786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652, 1161.59187054, 1274.39184232,
           1248.42891965, 1345.52684884, 577.31607053, 51.15431158, 1336.09932639, 1136.53823676]  # fmt: skip
S1_MEAN, S1_STD = [-12.59, -20.26], [5.26, 5.91]
S2_NAMES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def release_code(x: float, mean: float, std: float) -> int:
    """The release's ``normalize``: (x − (mean − 2σ)) / 4σ · 255, clipped to [0, 255], ``astype(uint8)``."""
    return int(min(max((x - (mean - 2 * std)) / (4 * std) * 255.0, 0.0), 255.0))


def constant(values: list[float], side: int = 4) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1).expand(-1, side, side).clone()


# ---- weights formats: the architecture tables ---------------------------------------------------------------


# SegFormer mix_transformer.py (and the DeCUR release's segformer.py): depths and embed_dims of mit_b0..b5
SEGFORMER = {
    "mit_b0": ([2, 2, 2, 2], [32, 64, 160, 256]),
    "mit_b1": ([2, 2, 2, 2], [64, 128, 320, 512]),
    "mit_b2": ([3, 4, 6, 3], [64, 128, 320, 512]),
    "mit_b3": ([3, 4, 18, 3], [64, 128, 320, 512]),
    "mit_b4": ([3, 8, 27, 3], [64, 128, 320, 512]),
    "mit_b5": ([3, 6, 40, 3], [64, 128, 320, 512]),
}


def _mit_keys(depths: list[int], widths: list[int], bands: int) -> dict[str, torch.Tensor]:
    state = {f"block{i + 1}.{j}.attn.q.weight": torch.zeros(1) for i, d in enumerate(depths) for j in range(d)}
    state["patch_embed1.proj.weight"] = torch.zeros(widths[0], bands, 7, 7)
    return state


@pytest.mark.parametrize("arch", list(SEGFORMER))
def test_every_mit_size_is_read_from_segformers_depths_and_widths(arch):
    depths, widths = SEGFORMER[arch]
    assert infer_arch(_mit_keys(depths, widths, 4), "x") == (arch, 4)
    assert mit_widths(arch) == widths


def test_a_built_mit_has_segformers_stage_depths():
    for arch in ("mit_b0", "mit_b2"):
        net = create_mit(arch, 3)
        assert [len(getattr(net, f"block{i}")) for i in range(1, 5)] == SEGFORMER[arch][0]


# torchvision / timm: BasicBlock ResNets 18, 34; Bottleneck ResNets 50, 101, 152 with these blocks per stage
RESNETS = {"resnet18": (False, [2, 2, 2, 2]), "resnet34": (False, [3, 4, 6, 3]), "resnet50": (True, [3, 4, 6, 3]),
           "resnet101": (True, [3, 4, 23, 3]), "resnet152": (True, [3, 8, 36, 3])}  # fmt: skip


@pytest.mark.parametrize("arch", list(RESNETS))
def test_every_resnet_depth_is_read_from_its_blocks(arch):
    bottleneck, blocks = RESNETS[arch]
    state = {f"layer{i + 1}.{j}.conv1.weight": torch.zeros(1) for i, n in enumerate(blocks) for j in range(n)}
    if bottleneck:
        state |= {f"layer{i + 1}.{j}.conv3.weight": torch.zeros(1) for i, n in enumerate(blocks) for j in range(n)}
    state["conv1.weight"] = torch.zeros(64, 13, 7, 7)
    assert infer_arch(state, "x") == (arch, 13)


# timm vision_transformer.py: embed_dim 192 tiny, 384 small, 768 base, 1024 large
VITS = [(192, 16, "vit_tiny_patch16_224"), (384, 16, "vit_small_patch16_224"), (768, 14, "vit_base_patch14_224"),
        (1024, 8, "vit_large_patch8_224")]  # fmt: skip


@pytest.mark.parametrize(("width", "patch", "arch"), VITS)
def test_every_vit_width_and_patch_is_read_from_the_patch_embedding(width, patch, arch):
    state = {"cls_token": torch.zeros(1, 1, width), "patch_embed.proj.weight": torch.zeros(width, 2, patch, patch)}
    assert infer_arch(state, "x") == (arch, 2)


# ---- weights formats: the layouts -------------------------------------------------------------------------------


def _tiny(bands: int) -> nn.Module:
    return timm.create_model("resnet18", in_chans=bands, num_classes=0).eval()


def test_mmseg_backbone_prefix_and_state_dict_wrapper_are_read(tmp_path):
    net = _tiny(3)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "mmseg.pth")
    pre = read_pretrained(tmp_path / "mmseg.pth", ["rgb"], None)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(pre.encoder("rgb").eval()(x), net(x))


def test_a_one_encoder_file_whose_band_count_fits_several_modalities_is_refused_naming_them(tmp_path):
    torch.save(_tiny(3).state_dict(), tmp_path / "rgb.pth")
    with pytest.raises(WeightsError, match=r"modalities \['rgb', 'hha'\] all have 3") as err:
        read_pretrained(tmp_path / "rgb.pth", None, {"rgb": 3, "hha": 3})
    assert "pretrained_modalities" in str(err.value)


def _joint_file(tmp_path, b1=2, b2=13):
    n1, n2 = _tiny(b1), _tiny(b2)
    state = {f"module.backbone_{i}.{k}": v for i, n in ((1, n1), (2, n2)) for k, v in n.state_dict().items()}
    torch.save({"epoch": 99, "model": state}, tmp_path / "joint.pth")
    return tmp_path / "joint.pth", n1, n2


def test_a_joint_file_is_named_by_band_count_when_the_dataset_lists_the_modalities_the_other_way(tmp_path):
    path, _, n2 = _joint_file(tmp_path)
    pre = read_pretrained(path, None, {"s2": 13, "s1": 2})
    assert pre.bands == {"s1": 2, "s2": 13} and "band counts" in pre.card["modalities_from"]
    x = torch.randn(1, 13, 32, 32)
    torch.testing.assert_close(pre.encoder("s2").eval()(x), n2(x))
    with pytest.raises(WeightsError, match="backbone_1 has 2 input bands but modality 's2'"):
        read_pretrained(path, ["s2", "s1"], {"s2": 13, "s1": 2})  # named explicitly the wrong way: refused
    with pytest.raises(WeightsError, match=r"backbone_1 has 2 input bands .*set --modalities"):
        read_pretrained(path, ["s2", "s1"], None, "--modalities")  # decur import --modalities s2 s1


def test_load_backbone_reads_a_one_encoder_file_without_naming_its_modality(tmp_path):
    net = _tiny(13)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "backbone.pth")
    x = torch.randn(1, 13, 32, 32)
    torch.testing.assert_close(load_backbone(tmp_path / "backbone.pth").eval()(x), net(x))
    path, _, n2 = _joint_file(tmp_path)
    torch.testing.assert_close(load_backbone(path, "s2", ["s1", "s2"]).eval()(x), n2(x))
    with pytest.raises(WeightsError, match=r"say which with modality=") as err:
        load_backbone(path, None, ["s1", "s2"])
    assert "pretrained_modalities" not in str(err.value)


# ---- input transforms, against the release's / torchgeo's formulas ---------------------------------------------


def test_release_sentinel2_is_its_uint8_code_of_each_band_over_255():
    dn = [0.0, 1000.0, 1314.0, 4000.0, 20000.0, 2091.74, 0.0, 2300.0, 100.0, 830.0, 22.0, 2177.0, 1524.0]
    out = sentinel_transform("ssl4eo_release", "s2", 13)(constant(dn))[:, 0, 0]
    expected = [release_code(x, m, s) / 255 for x, m, s in zip(dn, S2C_MEAN, S2C_STD, strict=True)]
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-7)
    # by hand for B2: (1000 − (1390.78 − 2·850.35)) / (4·850.35) · 255 = 98.24 → code 98
    assert out[1].item() == pytest.approx(98 / 255)


def test_release_sentinel1_clips_to_the_images_1_and_99_percent_quantiles_then_codes_with_its_statistics():
    vv = torch.linspace(-30, 0, 101)  # 101 values: the 1 % / 99 % quantiles are -29.7 and -0.3
    image = torch.stack([vv, vv - 7]).view(2, 1, 101)
    out = sentinel_transform("ssl4eo_release", "s1", 2)(image)
    assert out[0, 0, 0].item() == pytest.approx(release_code(-29.7, S1_MEAN[0], S1_STD[0]) / 255)
    assert out[0, 0, 100].item() == pytest.approx(release_code(-0.3, S1_MEAN[0], S1_STD[0]) / 255)
    assert out[1, 0, 50].item() == pytest.approx(release_code(-22.0, S1_MEAN[1], S1_STD[1]) / 255)
    assert out[0, 0, 50].item() == pytest.approx(math.floor((-15 + 23.11) / 21.04 * 255) / 255)  # by hand


def test_torchgeo_rule_is_dn_over_10000_and_the_db_zscore_of_torchgeos_statistics():
    s2 = sentinel_transform("torchgeo", "s2", 13)(constant([1234.0] * 13))
    assert s2[4, 0, 0].item() == pytest.approx(0.1234)
    s1 = sentinel_transform("torchgeo", "s1", 2)(constant([-15.0, -25.0]))[:, 0, 0]
    np.testing.assert_allclose(s1.numpy(), [(-15 + 12.59) / 5.26, (-25 + 20.26) / 5.91], rtol=1e-6)


def test_twelve_band_weights_drop_b10_and_nothing_else():
    for rule in ("ssl4eo_release", "torchgeo", "decur"):
        t = sentinel_transform(rule, "s2", 12)
        assert t.bands == [b for b in S2_NAMES if b != "B10"], rule
    release = sentinel_transform("ssl4eo_release", "s2", 12).steps[-1]
    assert release["mean"] == S2C_MEAN[:10] + S2C_MEAN[11:] and release["std"] == S2C_STD[:10] + S2C_STD[11:]
    dn = [float(500 * i) for i in range(12)]
    out = sentinel_transform("ssl4eo_release", "s2", 12)(constant(dn))[:, 0, 0]
    keep = [i for i in range(13) if i != 10]
    np.testing.assert_allclose(out.numpy(), [release_code(dn[j], S2C_MEAN[i], S2C_STD[i]) / 255
                                             for j, i in enumerate(keep)], atol=1e-7)  # fmt: skip
    with pytest.raises(ValueError, match="neither Sentinel-1"):
        sentinel_transform("torchgeo", "s2", 11)


def test_decur_rule_starts_with_the_papers_8_bit_s2_and_the_2_percent_s1_cut():
    """The reader steps a card records: round(DN / 10000 · 255) / 255 for S2, a 2 % / 98 % clip for S1 (paper)."""
    assert sentinel_transform("decur", "s2", 13).steps[0] == {"op": "s2_8bit"}
    assert sentinel_transform("decur", "s1", 2).steps[0] == {"op": "cut_outliers", "fraction": 0.02}
    assert sentinel_transform("ssl4eo_release", "s1", 2).steps[0] == {"op": "cut_outliers", "fraction": 0.01}
    mean, std = [0.1] * 13, [0.2] * 13
    out = sentinel_transform("decur", "s2", 13, (mean, std))(constant([1000.0] * 13))
    assert out[0, 0, 0].item() == pytest.approx((round(1000 / 10000 * 255) / 255 - 0.1) / 0.2)  # 25.5 → 26


def test_padding_is_filled_with_the_transformed_value_of_the_raw_fill():
    fill = sentinel_transform("ssl4eo_release", "s2", 13).fill_value([0.0] * 13)
    assert fill == pytest.approx([release_code(0.0, m, s) / 255 for m, s in zip(S2C_MEAN, S2C_STD, strict=True)])
    assert fill[1] == pytest.approx(23 / 255)  # (0 + 309.9) / 3401.4 · 255 = 23.2 → 23
    fill = sentinel_transform("torchgeo", "s1", 2).fill_value([-12.59, -20.26])
    assert fill == pytest.approx([0.0, 0.0], abs=1e-6)


def test_release_rgb_is_opencvs_blue_first_order_then_imagenet_standardised():
    """cv2.imread gives B, G, R; the release's SUN-RGBD loader then applies ToTensor and Normalize(ImageNet)
    to the channels in that order (pretrain_mm.py)."""
    r, g, b = 200.0, 100.0, 50.0
    image = torch.tensor([[r, r + 1], [g, g + 1], [b, b + 1]]).view(3, 1, 2) / 255  # width 2: order must stay
    out = image_transform("ssl4eo_release", "rgb", 3, ([0.0] * 3, [1.0] * 3), imagenet=True)(image)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for c, value in enumerate((b, g, r)):
        assert out[c, 0, 0].item() == pytest.approx((value / 255 - mean[c]) / std[c], rel=1e-5)
        assert out[c, 0, 1].item() == pytest.approx(((value + 1) / 255 - mean[c]) / std[c], rel=1e-5)
    plain = image_transform("ssl4eo_release", "hha", 3, ([0.0] * 3, [1.0] * 3))(image)
    torch.testing.assert_close(plain, image.flip(0))  # GeoNRW / no ImageNet: reversed only


def test_release_dem_is_clipped_to_its_1_and_99_percentiles_and_stretched_to_8_bit():
    """geonrw_dataset.py: p1, p99 = np.percentile(dsm, (1, 99)); (clip − p1) / (p99 − p1 + 1e-5) · 255, uint8."""
    dem = torch.arange(101, dtype=torch.float32).view(1, 1, 101)  # p1 = 1, p99 = 99
    out = image_transform("ssl4eo_release", "dem", 1, ([0.0], [1.0]))(dem)[0, 0]
    assert out[0].item() == 0.0 and out[100].item() == pytest.approx(254 / 255)  # 98/98.00001 · 255 = 254.99
    assert out[50].item() == pytest.approx(math.floor(49 / (98 + 1e-5) * 255) / 255)


@pytest.mark.parametrize("dataset", ["sunrgbd", "nyuv2"])
def test_the_release_rgbd_transfers_standardise_with_imagenet_statistics(dataset, tmp_path):
    from decur.evaluate.start import starting_point

    torch.save(_tiny(3).state_dict(), tmp_path / "rgb.pth")
    run = SimpleNamespace(modalities=["rgb"], dataset=dataset, pretrained=str(tmp_path / "rgb.pth"),
                          pretrained_modalities=["rgb"], input_transform="ssl4eo_release", crop_size=None)  # fmt: skip
    data = SimpleNamespace(bands={"rgb": 3}, stats={"rgb": ([0.5] * 3, [0.1] * 3)}, raw=False)
    steps = starting_point(run, data).transforms["rgb"].steps  # type: ignore[arg-type]
    assert steps == [{"op": "reverse_bands"}, {"op": "standardize", "mean": [0.485, 0.456, 0.406],
                                               "std": [0.229, 0.224, 0.225]}]  # fmt: skip
    run.dataset = "geonrw"
    assert starting_point(run, data).transforms["rgb"].steps == [{"op": "reverse_bands"}]  # type: ignore[arg-type]


# ---- adapters ---------------------------------------------------------------------------------------------------

# TerraTorch models/backbones/torchgeo_resnet.py look_up_table (Sentinel-2 name -> TerraTorch's HLSBands name)
TERRATORCH_LOOKUP = {"B01": "COASTAL_AEROSOL", "B02": "BLUE", "B03": "GREEN", "B04": "RED", "B05": "RED_EDGE_1",
                     "B06": "RED_EDGE_2", "B07": "RED_EDGE_3", "B08": "NIR_BROAD", "B8A": "NIR_NARROW",
                     "B09": "WATER_VAPOR", "B10": "CIRRUS", "B11": "SWIR_1", "B12": "SWIR_2",
                     "VV": "VV", "VH": "VH"}  # fmt: skip
HLSBands = Enum("HLSBands", {v: v for v in TERRATORCH_LOOKUP.values()})  # TerraTorch datasets/utils.py: value = name


def test_every_terratorch_band_name_and_enum_maps_to_its_sentinel_band():
    from decur.weights.terratorch import resolve_bands

    known = {"s1": ["VV", "VH"], "s2": S2_NAMES}
    for s2_name, tt_name in TERRATORCH_LOOKUP.items():
        expected = s2_name.replace("B0", "B")  # decur's cards spell B1 … B9
        assert resolve_bands([tt_name], known) == [expected], tt_name
        assert resolve_bands([HLSBands[tt_name]], known) == [expected], tt_name
        assert resolve_bands([s2_name], known) == [expected], s2_name
    assert resolve_bands(["RED", "GREEN", "BLUE"], {"rgb": ["R", "G", "B"]}) == ["R", "G", "B"]
    with pytest.raises(WeightsError, match="THERMAL_INFRARED_1"):
        resolve_bands(["THERMAL_INFRARED_1"], known)


def _joint(arch="resnet18", bands=None, **kwargs):
    bands = bands or {"s1": ["VV", "VH"], "s2": S2_NAMES}
    from decur.models import create_encoder

    encoders = {m: create_encoder(arch, len(b)).eval() for m, b in bands.items()}
    return MultimodalEncoder(encoders, bands, **kwargs), encoders


def test_terratorch_out_indices_are_bounded_by_the_levels():
    from decur.weights.terratorch import DecurBackbone

    joint, _ = _joint(output="maps")
    assert DecurBackbone(joint, [-1]).out_channels == [512 + 512]  # the coarsest of five ResNet levels
    assert DecurBackbone(joint, [0, 4]).out_channels == [64 + 64, 512 + 512]
    for bad in ([5], [-6]):
        with pytest.raises(WeightsError, match="outside the 5 levels"):
            DecurBackbone(joint, bad)


def test_the_torchgeo_card_transform_changes_the_image_and_keeps_every_other_key():
    from decur.weights.torchgeo import CardTransform

    t = CardTransform(sentinel_transform("torchgeo", "s2", 13))
    mask, meta = torch.ones(4, 4), {"crs": "EPSG:32633"}
    out = t({"image": constant([5000.0] * 13), "mask": mask, "meta": meta, "bounds": (0, 1)})
    assert out["mask"] is mask and out["meta"] is meta and out["bounds"] == (0, 1)
    assert out["image"][0, 0, 0].item() == pytest.approx(0.5)


def test_a_stacked_input_without_a_modality_leaves_it_out_and_b10_is_zero_filled():
    joint, encoders = _joint(stack_bands=[b for b in S2_NAMES if b != "B10"])
    x = torch.randn(2, 12, 32, 32)
    expected = encoders["s2"](torch.cat([x[:, :10], torch.zeros(2, 1, 32, 32), x[:, 10:]], dim=1))
    torch.testing.assert_close(joint(x), expected)  # s1 absent: left out, not fed zeros
    with pytest.raises(ValueError, match=r"lack \['VH'\]"):
        _joint(stack_bands=["VV", *S2_NAMES])


@pytest.mark.parametrize(("arch", "strides"), [("resnet18", [8, 16, 32]), ("mit_b0", [4, 8, 16, 32]),
                                               ("vit_tiny_patch16_224", [4, 8, 16, 32])])  # fmt: skip
def test_default_map_levels_of_each_family(arch, strides):
    joint, _ = _joint(arch, {"rgb": ["R", "G", "B"]}, output="maps")
    maps = joint({"rgb": torch.randn(1, 3, 64, 64)})
    assert [64 // m.shape[-1] for m in maps] == strides


def test_out_channels_restores_each_encoders_mode():
    joint, encoders = _joint(output="maps")
    encoders["s1"].train()
    assert joint.out_channels() == [128 + 128, 256 + 256, 512 + 512]
    assert encoders["s1"].training and not encoders["s2"].training


def test_vit_pyramid_resamples_the_block_tokens_bilinearly():
    from decur.models.heads import pyramid

    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    tokens = vit.forward_intermediates(x, indices=[2, 5, 8, 11], intermediates_only=True)  # blocks 3, 6, 9, 12
    strides = (4, 8, 16, 32)
    expected = [
        F.interpolate(t, size=(64 // s, 64 // s), mode="bilinear") for t, s in zip(tokens, strides, strict=True)
    ]
    for got, want in zip(pyramid(vit, x), expected, strict=True):
        torch.testing.assert_close(got, want)


# ---- evaluation metrics -------------------------------------------------------------------------------------------


def test_retrieval_compares_standardised_embeddings_by_cosine():
    """Hand-made: after per-dimension standardisation, query 0 points along gallery 0 but gallery 1 is longer; a dot
    product without the per-row normalisation would rank gallery 1 first."""
    from decur.evaluate.retrieval import ranks

    def ref(q, g):  # numpy: population-std standardisation per dimension, then cosine, rank with ties against
        def prep(a):
            a = (a - a.mean(0)) / (a.std(0) + 1e-8)
            return a / np.linalg.norm(a, axis=1, keepdims=True)

        s = prep(q) @ prep(g).T
        return (s >= np.diag(s)[:, None]).sum(1)

    q = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    g = np.array([[1.0, 0.2], [3.0, 2.0], [-4.0, -2.2]])
    expected = ref(q, g)
    assert ranks(torch.tensor(q), torch.tensor(g)).tolist() == expected.tolist()
    sq = (q - q.mean(0)) / q.std(0)
    sg = (g - g.mean(0)) / g.std(0)
    assert (sq @ sg.T)[0].argmax() != 0 and expected[0] == 1  # the row norms decide it


def test_f1_counts_a_label_positive_when_its_probability_not_its_logit_passes_one_half():
    from decur.evaluate.module import TransferModule

    logits = torch.tensor([[0.3, -0.3, 2.0], [0.2, 0.4, -2.0]])  # sigmoid: 0.57 0.43 0.88 / 0.55 0.60 0.12

    class Fixed(nn.Module):
        encoders = nn.ModuleDict()

        def forward(self, x):
            return logits

    module = TransferModule(Fixed(), {}, True, None, 3)  # type: ignore[arg-type]
    target = torch.tensor([[1, 1, 1], [1, 0, 0]])
    module.test_step({"label": target}, 0)
    module.on_test_epoch_end()
    # positive where sigmoid > 0.5: (0,0) (0,2) (1,0) (1,1) -> TP 3, FP 1, FN 1 -> F1 = 2·3 / (2·3 + 1 + 1) = 0.75
    assert module.results["f1_micro"] == pytest.approx(0.75)


def test_adapt_batchnorm_leaves_batchnorm_momentum_as_it_was():
    from decur.augment import ViewPipeline
    from decur.evaluate.probe import adapt_batchnorm

    net = _tiny(2)
    momenta = [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    data = [{"s1": torch.randn(2, 32, 32)} for _ in range(4)]
    adapt_batchnorm({"s1": net}, {"s1": ViewPipeline("none", 2, 32, (1.0, 1.0), [0.0] * 2, [1.0] * 2)}, data)
    after = [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert after == momenta == [0.1] * len(momenta)  # torch's default: exponential averaging when fine-tuned
    assert not net.training


# ---- SSL4EO-S12 v1.1: the release README's statistics, and the offset of its S2 products -----------------------


def test_v11_statistics_remove_the_1000_dn_offset_from_both_s2_products_only():
    """Release README values (DN, 8-bit, dB): S2L1C B1 2607.345 ± 786.523, S2L2A B1 1793.243, S2RGB R 100.708 ± 68.550,
    S1GRD VV -12.577 ± 5.179. S2 products lose 1000 DN then scale by 1e-4; S2RGB scales by 1/255; S1 stays in dB."""
    from decur.data.ssl4eo_v11 import STATS

    assert STATS["s2l1c"][0][0] == pytest.approx((2607.345 - 1000) / 1e4)
    assert STATS["s2l1c"][1][0] == pytest.approx(786.523 / 1e4)
    assert STATS["s2l2a"][0][0] == pytest.approx((1793.243 - 1000) / 1e4)
    assert len(STATS["s2l1c"][0]) == 13 and len(STATS["s2l2a"][0]) == 12
    assert STATS["s2rgb"][0][0] == pytest.approx(100.708 / 255) and STATS["s2rgb"][1][0] == pytest.approx(68.55 / 255)
    assert STATS["s1grd"][0][0] == pytest.approx(-12.577) and STATS["s1grd"][1][0] == pytest.approx(5.179)


def test_v11_s2_digital_numbers_become_the_papers_8_bit_after_the_offset():
    """(DN − 1000) / 10000 · 255, rounded half up, clipped: by hand 1000 → 0, 2000 → 25.5 → 26, 1196 → 4.998 → 5,
    11000 → 255, 900 → 0 (below the offset), 30000 → 255."""
    from decur.data.ssl4eo_v11 import _preprocess

    dn = np.array([1000, 2000, 1196, 11000, 900, 30000], dtype=np.int16).reshape(6, 1, 1)
    assert _preprocess("s2l1c", dn).flatten().tolist() == [0, 26, 5, 255, 0, 255]
    assert _preprocess("s2l2a", dn.astype(np.uint16)).flatten().tolist() == [0, 26, 5, 255, 0, 255]


@pytest.mark.parametrize(("decay", "ok"), [(0.0, False), (-0.5, False), (1.5, False), (0.65, True), (1.0, True)])
def test_layer_decay_is_a_factor_in_0_1(decay, ok):
    from decur.config import ConfigError
    from decur.evaluate.transfer import TransferConfig

    run = TransferConfig(arch="vit_tiny_patch16_224", protocol="finetune", layer_decay=decay, crop_size=32)
    if ok:
        run.validate(check_paths=False)
    else:
        with pytest.raises(ConfigError, match=r"layer_decay`: a factor in \(0, 1\]"):
            run.validate(check_paths=False)


# ---- the cards each rule writes: the fields another program (or a later decur) reads back ------------------------

S2_DECUR_MEAN, S2_DECUR_STD = [m / 1e4 for m in S2C_MEAN], [s / 1e4 for s in S2C_STD]
NO_B10 = [i for i in range(13) if i != 10]
TORCHGEO_S1 = {"op": "standardize", "mean": [-12.59, -20.26], "std": [5.26, 5.91]}  # torchgeo models/resnet.py


def _card(rule, units, bands, steps):
    return {"rule": rule, "units": units, "bands": bands, "steps": steps}


SENTINEL_CARDS = {
    ("torchgeo", 2): _card("torchgeo", "dB", ["VV", "VH"], [TORCHGEO_S1]),
    ("torchgeo", 13): _card("torchgeo", "DN", S2_NAMES, [{"op": "scale", "factor": 1e-4}]),
    ("ssl4eo_release", 2): _card("ssl4eo_release", "dB", ["VV", "VH"], [
        {"op": "cut_outliers", "fraction": 0.01}, {"op": "release_8bit", "mean": S1_MEAN, "std": S1_STD}]),
    ("ssl4eo_release", 13): _card("ssl4eo_release", "DN", S2_NAMES, [
        {"op": "release_8bit", "mean": S2C_MEAN, "std": S2C_STD}]),
    ("decur", 13): _card("decur", "DN", S2_NAMES, [
        {"op": "s2_8bit"}, {"op": "standardize", "mean": S2_DECUR_MEAN, "std": S2_DECUR_STD}]),
    ("decur", 12): _card("decur", "DN", [S2_NAMES[i] for i in NO_B10], [{"op": "s2_8bit"}, {
        "op": "standardize", "mean": [S2_DECUR_MEAN[i] for i in NO_B10], "std": [S2_DECUR_STD[i] for i in NO_B10]}]),
}  # fmt: skip


@pytest.mark.parametrize("key", list(SENTINEL_CARDS))
def test_each_sentinel_rule_writes_the_card_of_its_source(key):
    card = sentinel_transform(key[0], "m", key[1]).to_card()
    expected = SENTINEL_CARDS[key]
    for k in ("rule", "units", "bands"):
        assert card[k] == expected[k]
    assert [s["op"] for s in card["steps"]] == [s["op"] for s in expected["steps"]]
    for got, want in zip(card["steps"], expected["steps"], strict=True):
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), (key, name)
    again = InputTransform.from_card(card)
    assert again.to_card() == card


def test_decur_s1_card_and_where_its_statistics_come_from():
    card = sentinel_transform("decur", "s1", 2).to_card()
    assert (card["units"], card["bands"], card["steps"][0]) == ("dB", ["VV", "VH"], {"op": "cut_outliers",
                                                                                     "fraction": 0.02})  # fmt: skip
    assert card["steps"][1]["op"] == "standardize" and card["steps"][1]["mean"][0] == pytest.approx(-12.5, abs=0.1)
    assert "SSL4EO-S12" in card["stats_source"]
    own = sentinel_transform("decur", "s1", 2, ([-10.0, -17.0], [4.0, 5.0])).to_card()
    assert own["steps"][1] == {"op": "standardize", "mean": [-10.0, -17.0], "std": [4.0, 5.0]}
    assert "pretraining run" in own["stats_source"] and "SSL4EO-S12" not in own["stats_source"]
    assert "uint8 LMDB" in sentinel_transform("ssl4eo_release", "s1", 2).stats_source
    assert "torchgeo" in sentinel_transform("torchgeo", "s1", 2).stats_source


IMAGE_CARDS = {
    ("decur", "rgb"): _card("decur", "8-bit/255", ["R", "G", "B"],
                            [{"op": "standardize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]}]),
    ("decur", "hha"): _card("decur", "8-bit/255", ["H", "H2", "A"],
                            [{"op": "standardize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]}]),
    ("ssl4eo_release", "rgb"): _card("ssl4eo_release", "8-bit/255", ["R", "G", "B"], [{"op": "reverse_bands"}]),
    ("ssl4eo_release", "hha"): _card("ssl4eo_release", "8-bit/255", ["H", "H2", "A"], [{"op": "reverse_bands"}]),
}  # fmt: skip


@pytest.mark.parametrize("key", list(IMAGE_CARDS))
def test_each_image_rule_writes_its_card(key):
    card = image_transform(key[0], key[1], 3, ([0.4, 0.5, 0.6], [0.2, 0.3, 0.4])).to_card()
    assert {k: card[k] for k in ("rule", "units", "bands", "steps")} == IMAGE_CARDS[key]
    assert ("release" in card["stats_source"]) == (key[0] == "ssl4eo_release")


def test_dem_cards_and_the_rules_an_image_has_not():
    dem = image_transform("ssl4eo_release", "dem", 1, ([0.0], [1.0])).to_card()
    assert (dem["units"], dem["bands"]) == ("m minus the patch mean", ["dem0"])
    assert dem["steps"] == [{"op": "percentile_stretch", "low": 1.0, "high": 99.0}]
    assert image_transform("decur", "dem", 1, ([2.0], [3.0])).steps == [{"op": "standardize", "mean": [2.0],
                                                                         "std": [3.0]}]  # fmt: skip
    for rule in ("torchgeo", "other"):
        with pytest.raises(ValueError, match=r"exists for Sentinel-1/2 weights only; use decur or ssl4eo_release"):
            image_transform(rule, "rgb", 3, ([0.0] * 3, [1.0] * 3))
    with pytest.raises(ValueError, match=r"input transform 'other' is not one of \['decur', 'ssl4eo_release'"):
        sentinel_transform("other", "s2", 13)


def test_release_dem_stretch_equals_the_releases_numpy_on_a_random_two_band_image():
    """geonrw_dataset.py per image: np.percentile(dsm, (1, 99)), clip, (x − p1) / (p99 − p1 + 1e-5) · 255, uint8;
    decur applies it per band (two bands here, each with its own percentiles)."""
    rng = np.random.default_rng(1)
    dem = np.stack([rng.gamma(2.0, 30.0, (33, 31)), rng.normal(500, 80, (33, 31))]).astype(np.float32)
    expected = []
    for band in dem.astype(np.float64):
        p1, p99 = np.percentile(band, (1, 99))
        expected.append((np.clip(band, p1, p99) - p1) / (p99 - p1 + 1e-5) * 255)
    codes = np.stack(expected).astype(np.uint8)
    out = image_transform("ssl4eo_release", "dem", 2, ([0.0] * 2, [1.0] * 2))(torch.from_numpy(dem))
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(np.round(out.numpy() * 255).astype(np.uint8), codes)


def test_per_band_values_must_match_the_band_count_and_stay_float32():
    t = InputTransform("custom", "DN", ["a", "b"], [{"op": "standardize", "mean": [1.0], "std": [2.0]}])
    with pytest.raises(ValueError, match=r"^1 per-band values for an image of 2 bands$"):
        t(torch.zeros(2, 4, 4))
    x = torch.full((2, 3, 3), 0.1)
    t = InputTransform("custom", "DN", ["a", "b"], [{"op": "standardize", "mean": [0.1, 1e-8], "std": [3.0, 1.0]}])
    out = t(x)
    assert out.dtype == torch.float32 and out[0].abs().max().item() == 0.0  # the mean subtracted exactly
    assert out.shape == (2, 3, 3) and out[1, 0, 0].item() == pytest.approx(0.1 - 1e-8)


# ---- the joint encoder's outputs, each computed by hand from its encoders ----------------------------------------


def test_joint_pooled_and_common_outputs_are_the_concatenation_and_the_mean_of_the_common_slices():
    bands = {"s1": ["VV", "VH"], "s2": S2_NAMES}
    pooled, encoders = _joint(bands=bands)
    projectors = {m: nn.Linear(512, 16).eval() for m in bands}
    common = MultimodalEncoder(encoders, bands, "common", projectors, 6)
    x = {"s1": torch.randn(3, 2, 32, 32), "s2": torch.randn(3, 13, 32, 32)}
    f = {m: encoders[m](x[m]) for m in bands}
    torch.testing.assert_close(pooled(x), torch.cat([f["s1"], f["s2"]], dim=1))
    expected = (projectors["s1"](f["s1"])[:, :6] + projectors["s2"](f["s2"])[:, :6]) / 2
    torch.testing.assert_close(common(x), expected)
    torch.testing.assert_close(common({"s2": x["s2"]}), projectors["s2"](f["s2"])[:, :6])  # one modality: its own


def test_joint_maps_concatenate_channels_per_level_and_take_the_asked_levels():
    joint, encoders = _joint(output="maps", levels=[0, 4])
    x = {"s1": torch.randn(1, 2, 64, 64), "s2": torch.randn(1, 13, 64, 64)}
    maps = joint(x)
    assert [tuple(m.shape) for m in maps] == [(1, 128, 32, 32), (1, 1024, 2, 2)]  # strides 2 and 32, 64 + 64 ...
    from decur.models.heads import pyramid

    torch.testing.assert_close(maps[1], torch.cat([pyramid(encoders[m], x[m])[4] for m in ("s1", "s2")], dim=1))


def test_joint_applies_each_modalitys_transform_to_its_input_first():
    t = InputTransform("torchgeo", "DN", S2_NAMES, [{"op": "scale", "factor": 1e-4}])
    joint, encoders = _joint(transforms={"s2": t})
    x = {"s2": torch.full((1, 13, 32, 32), 5000.0)}
    torch.testing.assert_close(joint(x), encoders["s2"](x["s2"] * 1e-4))


def test_out_channels_probes_a_vit_at_a_multiple_of_its_patch():
    vit = timm.create_model("vit_tiny_patch16_224", patch_size=14, num_classes=0, dynamic_img_size=True).eval()
    joint = MultimodalEncoder({"rgb": vit}, {"rgb": ["R", "G", "B"]}, "maps")
    assert joint.out_channels() == [192] * 4


def test_the_joint_encoders_refusals_say_what_is_missing():
    _, encoders = _joint()
    bands = {"s1": ["VV", "VH"], "s2": S2_NAMES}
    cases = [
        (lambda: MultimodalEncoder(encoders, bands, "tokens"), r"^output 'tokens' is not one of \['pooled', 'common'"),
        (lambda: MultimodalEncoder(encoders, bands, "common", None, 6), r"^output 'common' needs the projectors"),
        (lambda: MultimodalEncoder(encoders, bands, "common", {"s1": nn.Linear(512, 8)}, None), "needs the projectors"),
        (lambda: MultimodalEncoder(encoders, bands)(torch.zeros(1, 2, 8, 8)), r"^a stacked input needs stack_bands"),
        (lambda: MultimodalEncoder(encoders, bands)({"rgb": torch.zeros(1, 3, 8, 8)}),
         r"^no modality of \['s1', 's2'\] in the input \(\['rgb'\]\)"),
        (lambda: MultimodalEncoder(encoders, bands, stack_bands=["R", "G"]),
         r"^the stacked bands \['R', 'G'\] hold no"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_bigearthnets_12_band_statistics_drop_b10_and_nothing_else():
    from decur.data.bigearthnet import sentinel_stats

    mean, std = sentinel_stats(insert_b10=False)["s2"]
    assert mean == pytest.approx([S2_DECUR_MEAN[i] for i in NO_B10]) and std == pytest.approx(
        [S2_DECUR_STD[i] for i in NO_B10]
    )
    assert sentinel_stats(insert_b10=True)["s2"][0] == pytest.approx(S2_DECUR_MEAN)


def test_out_channels_count_only_the_modalities_a_stack_holds():
    from decur.models import create_encoder

    encoders = {"s1": create_encoder("resnet18", 2).eval(), "s2": create_encoder("resnet50", 13).eval()}
    bands = {"s1": ["VV", "VH"], "s2": S2_NAMES}
    joint = MultimodalEncoder(encoders, bands, "maps", stack_bands=S2_NAMES)  # no S1 band: s1 is left out
    maps = joint(torch.randn(1, 13, 64, 64))
    assert [int(m.shape[1]) for m in maps] == joint.out_channels() == [512, 1024, 2048]  # ResNet-50's, not 18's


def test_the_joint_encoder_of_a_release_mit_file_runs_its_head_before_the_projector(tmp_path):
    """The release's MiT files carry a Linear head (512 → 2048 for B5; 256 → 32 here) before the projector."""
    from decur.models import projector

    m1, m2 = create_mit("mit_b0", 3).eval(), create_mit("mit_b0", 3).eval()
    head, proj = nn.Linear(256, 32).eval(), projector(32, [16, 16]).eval()
    state = {f"module.backbone_{i}.{k}": v for i, m in ((1, m1), (2, m2)) for k, v in m.state_dict().items()}
    state |= {f"module.backbone_{i}.head.{k}": v for i in (1, 2) for k, v in head.state_dict().items()}
    state |= {f"module.projector{i}.{k}": v for i in (1, 2) for k, v in proj.state_dict().items()}
    torch.save({"model": state}, tmp_path / "mit.pth")
    x = {"rgb": torch.randn(2, 3, 64, 64), "hha": torch.randn(2, 3, 64, 64)}
    common = MultimodalEncoder.from_export(tmp_path / "mit.pth", "common", ["rgb", "hha"])
    assert common.common_dim == 6144  # the release scripts' --dim_common for RGB-X
    expected = (proj(head(m1(x["rgb"]))) + proj(head(m2(x["hha"])))) / 2
    torch.testing.assert_close(common(x), expected)
    pooled = MultimodalEncoder.from_export(tmp_path / "mit.pth", modalities=["rgb", "hha"])  # pooled by default
    torch.testing.assert_close(pooled(x), torch.cat([m1(x["rgb"]), m2(x["hha"])], dim=1))


def test_a_uint8_image_is_read_as_8_bit_over_255_and_cards_are_checked():
    t = image_transform("decur", "rgb", 3, ([0.5] * 3, [0.25] * 3))
    codes = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1)
    assert t(codes).flatten().tolist() == pytest.approx([(0 - 0.5) / 0.25, (0.2 - 0.5) / 0.25, (1 - 0.5) / 0.25])
    with pytest.raises(ValueError, match=r"^input transform card lacks \['units', 'steps'\]$"):
        InputTransform.from_card({"rule": "decur", "bands": ["R"]})
    with pytest.raises(ValueError, match=r"^input transform step \{'op': 'gamma'\}: unknown op; known: \["):
        InputTransform("custom", "DN", ["R"], [{"op": "gamma"}])


# ---- metrics, each number worked out by hand -------------------------------------------------------------------


def test_confusion_counts_drop_ignored_and_out_of_range_truth_and_clamp_predictions():
    from decur.evaluate.metrics import confusion_counts

    target = torch.tensor([0, 1, 2, 2, -1, 3, 255, 1])
    pred = torch.tensor([0, 2, 2, 9, 1, 0, 1, -4])  # 9 counts as class 2, -4 as class 0
    expected = torch.tensor([[1, 0, 0], [1, 0, 1], [0, 0, 2]])  # rows: truth 0, 1, 2; -1, 3 and 255 left out
    assert torch.equal(confusion_counts(pred, target, 3), expected)
    ignored = torch.tensor([[0, 0, 0], [1, 0, 1], [0, 0, 2]])  # ignore_index 0: the first pixel is left out
    assert torch.equal(confusion_counts(pred, target, 3, ignore_index=0), ignored)


def test_segmentation_scores_of_a_hand_made_confusion():
    from decur.evaluate.metrics import scores_from_confusion

    c = torch.tensor([[3, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    # IoU = tp / (row + column − tp): class 0 3/(4+4−3) = 0.6, class 1 2/(2+3−2) = 2/3, class 2 0/(1+0) = 0,
    # class 3 absent from truth and predictions: not counted; pixel accuracy 5/7
    out = scores_from_confusion(c)
    assert out["miou"] == pytest.approx((0.6 + 2 / 3 + 0) / 3)
    assert out["iou_per_class"] == pytest.approx([0.6, 2 / 3, 0.0, None]) and out["classes_present"] == 3
    assert out["pixel_accuracy"] == pytest.approx(5 / 7)
    ignored = scores_from_confusion(c, ignore_index=0)  # class 0 left out of the mean, not of the pixels
    assert ignored["miou"] == pytest.approx((2 / 3 + 0) / 2) and ignored["classes_present"] == 2
    empty = scores_from_confusion(torch.zeros(3, 3, dtype=torch.long))
    assert math.isnan(empty["miou"]) and math.isnan(empty["pixel_accuracy"]) and empty["classes_present"] == 0


def test_macro_average_precision_averages_the_classes_with_a_positive():
    from decur.evaluate.metrics import PositiveCounts, macro_average_precision

    out = macro_average_precision(torch.tensor([0.5, 0.0, 0.9, 0.2]), torch.tensor([3, 0, 1, 2]))
    assert out == {"map_macro": pytest.approx((0.5 + 0.9 + 0.2) / 3), "map_macro_classes": 3,
                   "ap_per_class": [0.5, None, pytest.approx(0.9), pytest.approx(0.2)]}  # fmt: skip
    assert math.isnan(macro_average_precision(torch.tensor([0.3]), torch.tensor([0]))["map_macro"])
    counts = PositiveCounts(3)
    counts.update(torch.tensor([[1, 0, 0], [1, 0, 1]]))
    counts.update(torch.tensor([[0, 0, 1]]))
    assert counts.compute().tolist() == [2, 0, 2] and counts.compute().dtype == torch.long


def test_predicted_classes_never_include_the_ignore_index_and_other_indices_change_nothing():
    from decur.evaluate.metrics import label_subset, predict_classes

    scores = torch.tensor([[0.1, 0.9, 0.5], [0.8, 0.1, 0.7]])
    assert predict_classes(scores, 1).tolist() == [2, 0] and predict_classes(scores, 2).tolist() == [1, 0]
    assert predict_classes(scores, 3).tolist() == [1, 0] == predict_classes(scores, None).tolist()  # not a class
    assert predict_classes(scores, 255).tolist() == [1, 0]
    assert label_subset(7, 1.0, 0) == list(range(7))
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"label_fraction must lie in \(0, 1\]"):
            label_subset(7, bad, 0)


def test_a_transfer_that_replaces_the_weights_own_transform_says_so(tmp_path):
    from decur.evaluate.start import starting_point
    from decur.weights import import_weights

    torch.save(_tiny(13).state_dict(), tmp_path / "s2.pth")
    import_weights(tmp_path / "s2.pth", tmp_path / "export", ["s2"], "ssl4eo_release")
    data = SimpleNamespace(bands={"s2": 13}, stats={"s2": ([0.1] * 13, [0.2] * 13)}, raw=True)
    run = SimpleNamespace(modalities=["s2"], dataset="bigearthnet", pretrained=str(tmp_path / "export"),
                          pretrained_modalities=None, input_transform="torchgeo", crop_size=None)  # fmt: skip
    start = starting_point(run, data)  # type: ignore[arg-type]
    assert start.transforms["s2"].rule == "torchgeo"
    assert "s2's weights were trained with the ssl4eo_release transform" in start.describe()
    run.input_transform = None
    start = starting_point(run, data)  # type: ignore[arg-type]
    assert start.transforms["s2"].rule == "ssl4eo_release" and "note:" not in start.describe()


def _ref_ranks(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The retrieval module's rule in numpy: per-dimension z-scores over the N samples (population std), cosine,
    the rank of the true partner counting every candidate at least as similar."""

    def prep(a):
        a = (a - a.mean(0)) / a.std(0)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    s = prep(q) @ prep(g).T
    return (s >= np.diag(s)[:, None]).sum(1)


def test_retrieval_ranks_and_scores_against_numpy_on_dimensions_of_very_different_scales():
    from decur.evaluate.retrieval import pairwise_retrieval, ranks, retrieval_scores

    rng = np.random.default_rng(3)
    shared = rng.normal(size=(25, 4))
    scales, offsets = np.array([0.01, 1.0, 30.0, 500.0]), np.array([-7.0, 2.0, 100.0, 0.0])
    q = (shared + 0.8 * rng.normal(size=(25, 4))) * scales + offsets
    g = (shared + 0.8 * rng.normal(size=(25, 4))) * scales[::-1] - offsets
    expected = _ref_ranks(q, g)
    assert ranks(torch.tensor(q), torch.tensor(g)).tolist() == expected.tolist()
    out = retrieval_scores(torch.tensor(q), torch.tensor(g), ks=(1, 5, 30))
    assert out["recall@1"] == pytest.approx(float((expected <= 1).mean()))
    assert out["recall@5"] == pytest.approx(float((expected <= 5).mean()))
    assert out["median_rank"] == float(np.sort(expected)[12])  # N = 25: the 13th smallest rank
    assert (out["random_recall@1"], out["random_recall@5"], out["random_recall@30"]) == pytest.approx((0.04, 0.2, 1))
    assert out["random_median_rank"] == 13.0 and out["candidates"] == 25.0
    with pytest.raises(ValueError, match="N >= 2"):
        ranks(torch.zeros(1, 3), torch.zeros(1, 3))
    ranks(torch.randn(2, 1), torch.randn(2, 1))  # two samples of one dimension are enough
    results = pairwise_retrieval({"a": torch.tensor(q), "b": torch.tensor(g)},
                                 {"a": torch.tensor(q), "b": torch.tensor(g)}, 1)  # fmt: skip
    assert set(results) == {"a->b", "b->a"} and set(results["a->b"]) == {"common", "embedding", "features"}
    common = retrieval_scores(torch.tensor(q[:, :1]), torch.tensor(g[:, :1]))
    assert results["a->b"]["common"] == common
    assert results["b->a"]["embedding"]["recall@1"] == pytest.approx(float((_ref_ranks(g, q) <= 1).mean()))
    three = {m: torch.tensor(x) for m, x in (("a", q), ("b", g), ("c", q[::-1].copy()))}
    assert sorted(pairwise_retrieval(three, three, 0)) == ["a->b", "a->c", "b->a", "b->c", "c->a", "c->b"]


def test_a_vit_transfer_crop_must_be_a_multiple_of_its_patch(tmp_path):
    from decur.config import ConfigError
    from decur.evaluate.start import starting_point

    data = SimpleNamespace(bands={"rgb": 3}, stats={"rgb": ([0.5] * 3, [0.2] * 3)}, raw=False, crop_size=64)
    run = SimpleNamespace(modalities=["rgb"], dataset="geonrw", pretrained=None, pretrained_modalities=None,
                          input_transform=None, arch="vit_tiny_patch16_224", crop_size=[30, 64])  # fmt: skip
    with pytest.raises(ConfigError, match=r"`crop_size`: \[30, 64\] is not a multiple of the .* patch \(16 px\)"):
        starting_point(run, data)  # type: ignore[arg-type]
    run.crop_size = None  # the dataset's 64: fine
    assert starting_point(run, data).arch == "vit_tiny_patch16_224"  # type: ignore[arg-type]


def test_decur_import_speaks_of_its_own_modalities_option(tmp_path, capsys):
    from decur.cli import main

    path, _, _ = _joint_file(tmp_path)
    assert main(["import", str(path), "--out", str(tmp_path / "x"), "--modalities", "s2,s1"]) == 1
    err = capsys.readouterr().err
    assert "set --modalities to the right order" in err and "pretrained_modalities" not in err
    assert main(["import", str(path), "--out", str(tmp_path / "x"), "--modalities", "sar"]) == 1
    assert "--modalities" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_the_joint_encoder_of_a_release_file_equals_its_encoders_and_projectors(tmp_path):
    """from_export on the release's joint layout: pooled = both encoders' features, common = the mean of both
    projectors' first K_c outputs (7168 of 8192 in the release; here the file's 64-wide projector keeps K_c)."""
    from decur.models import projector

    n1, n2 = _tiny(2), _tiny(13)
    p1, p2 = projector(512, [32, 64]).eval(), projector(512, [32, 64]).eval()
    state = {f"module.{prefix}.{k}": v for prefix, net in (("backbone_1", n1), ("backbone_2", n2),
             ("projector1", p1), ("projector2", p2)) for k, v in net.state_dict().items()}  # fmt: skip
    torch.save({"model": state}, tmp_path / "joint.pth")
    x = {"s1": torch.randn(2, 2, 32, 32), "s2": torch.randn(2, 13, 32, 32)}
    pooled = MultimodalEncoder.from_export(tmp_path / "joint.pth", "pooled", ["s1", "s2"])
    torch.testing.assert_close(pooled(x), torch.cat([n1(x["s1"]), n2(x["s2"])], dim=1))
    assert pooled.band_names == {"s1": ["VV", "VH"], "s2": S2_NAMES}  # named by the release's transform
    common = MultimodalEncoder.from_export(tmp_path / "joint.pth", "common", ["s1", "s2"])
    assert common.common_dim == 7168  # the release scripts' --dim_common for S1-S2
    expected = (p1(n1(x["s1"])) + p2(n2(x["s2"]))) / 2  # 64 < 7168: the whole embedding is the common slice
    torch.testing.assert_close(common(x), expected)
    raw = MultimodalEncoder.from_export(tmp_path / "joint.pth", "pooled", ["s1", "s2"], transforms=True)
    dn = {"s2": torch.full((1, 13, 32, 32), 3000.0)}
    transformed = sentinel_transform("ssl4eo_release", "s2", 13)(dn["s2"])
    torch.testing.assert_close(raw(dn), n2(transformed))


def test_the_retrieval_table_prints_each_direction_and_space_with_the_floors():
    from decur.evaluate.retrieval import format_retrieval

    scores = {"recall@1": 0.5, "recall@5": 0.75, "recall@10": 1.0, "median_rank": 2.0, "random_recall@1": 0.1,
              "random_recall@5": 0.5, "random_recall@10": 1.0, "random_median_rank": 5.5,
              "candidates": 10.0}  # fmt: skip
    text = format_retrieval({"sar->optical": {"common": scores, "features": {**scores, "recall@1": 0.125}}})
    lines = text.splitlines()
    assert lines[0] == ("Cross-modal retrieval among 10 candidates: recall@1 / @5 / @10, median rank "
                        "(random: 0.100 / 0.500 / 1.000, 5.5)")  # fmt: skip
    assert lines[1].split() == ["sar->optical", "common", "0.500", "/", "0.750", "/", "1.000", "2.0"]
    assert lines[2].split() == ["sar->optical", "features", "0.125", "/", "0.750", "/", "1.000", "2.0"]
    assert len(lines) == 3


def test_the_logistic_probe_solves_scikit_learns_one_vs_rest_problem():
    """decur's probe against the estimator it replaces: StandardScaler + OneVsRest(LogisticRegression(C=0.1))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    from decur.evaluate.probe import logistic_probe

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 40, generator=g) * torch.linspace(0.1, 5, 40) + 3  # scales and offsets to standardise
    x[:, 7] = 2.0  # a constant feature: StandardScaler leaves its scale at 1
    y = ((x[:, :8] - 3) @ torch.randn(8, 5, generator=g) + torch.randn(300, 5, generator=g) > 0).float()
    y[:, 4] = 1.0  # a label every training sample has: scikit-learn scores it 1 whatever the features
    train, test = slice(0, 200), slice(200, 300)
    x64 = x.double().numpy()  # scikit-learn in float64 (decur standardises in float64 too)
    scaler = StandardScaler().fit(x64[train])
    clf = OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=10000, tol=1e-10))
    clf.fit(scaler.transform(x64[train]), y[train].numpy().astype(int))
    want = torch.from_numpy(clf.decision_function(scaler.transform(x64[test]))).float()
    assert (want[:, 4] == 1).all() and want[:, :4].std() > 1
    torch.testing.assert_close(logistic_probe(x[train], y[train], x[test]), want, atol=1e-4, rtol=1e-4)


def test_a_transform_continues_after_the_steps_a_reader_applied():
    """``after``: data stored after decur's 8-bit step (a packed store) get the rest — the standardisation, by hand."""
    from decur.data.transforms import InputTransform, sentinel_transform

    full = sentinel_transform("decur", "s2", 13)
    rest = full.after([{"op": "s2_8bit"}])
    assert isinstance(rest, InputTransform) and [s["op"] for s in rest.steps] == ["standardize"]
    assert (rest.rule, rest.units, rest.bands, rest.stats_source) == (
        full.rule,
        full.units,
        full.bands,
        full.stats_source,
    )
    mean, std = full.steps[1]["mean"], full.steps[1]["std"]
    x = torch.full((13, 2, 2), 0.5)  # a value in 8-bit units / 255, as the packed store holds it
    want = torch.tensor([(0.5 - m) / s for m, s in zip(mean, std, strict=True)]).view(13, 1, 1).expand(13, 2, 2)
    torch.testing.assert_close(rest(x), want)
    assert full.after([]).steps == full.steps  # nothing applied: everything left
    with pytest.raises(ValueError, match=r"hold values after \['cut_outliers'\].*starts with \['s2_8bit'\]"):
        full.after([{"op": "cut_outliers", "fraction": 0.02}])
    s1 = sentinel_transform("decur", "s1", 2)
    assert [s["op"] for s in s1.after([{"op": "cut_outliers", "fraction": 0.02}]).steps] == ["standardize"]
    with pytest.raises(ValueError, match="cut_outliers"):
        s1.after([{"op": "cut_outliers", "fraction": 0.01}])  # another cut fraction: other units


def test_every_transform_card_names_where_its_statistics_come_from():
    """A card's ``stats_source`` says whose numbers standardise the input (the provenance a user checks)."""
    from decur.data.transforms import InputTransform, image_transform, sentinel_transform

    stats = ([0.5] * 3, [0.2] * 3)
    sources = {
        "decur rgb": image_transform("decur", "rgb", 3, stats).stats_source,
        "release rgb": image_transform("ssl4eo_release", "rgb", 3, stats, imagenet=True).stats_source,
        "decur s2": sentinel_transform("decur", "s2", 13).stats_source,
        "decur s2 run": sentinel_transform("decur", "s2", 13, ([0.1] * 13, [0.2] * 13)).stats_source,
        "release s2": sentinel_transform("ssl4eo_release", "s2", 13).stats_source,
        "torchgeo s2": sentinel_transform("torchgeo", "s2", 13).stats_source,
    }
    assert sources["decur rgb"] == "decur: the dataset's or run's band statistics"
    assert sources["release rgb"] == "DeCUR release: OpenCV reading, ImageNet statistics"
    assert sources["decur s2"] == "decur: SSL4EO-S12 band statistics (SSL4EO-S12 repository, 50k samples)"
    assert sources["decur s2 run"] == "decur: the pretraining run's statistics"
    assert sources["release s2"] == "DeCUR release: SSL4EO-S12 statistics of its uint8 LMDB (ssl4eo_dataset*.py)"
    assert sources["torchgeo s2"] == "torchgeo: ResNet50_Weights.SENTINEL*_ALL_DECUR transforms"
    card = sentinel_transform("torchgeo", "s1", 2).to_card()
    assert InputTransform.from_card(card).stats_source == card["stats_source"]
    assert InputTransform.from_card({k: v for k, v in card.items() if k != "stats_source"}).stats_source == ""


def test_a_tensor_through_the_torchgeo_card_transform_is_transformed_too():
    from decur.weights.torchgeo import CardTransform

    out = CardTransform(sentinel_transform("torchgeo", "s2", 13))(constant([2500.0] * 13))
    assert out[0, 0, 0].item() == pytest.approx(0.25)  # torchgeo's S2 rule: DN / 10000


def test_after_reader_keeps_a_raw_reader_s_transform_and_drops_only_the_reader_s_own_first_step():
    """What is left of each rule for readers returning raw values or decur's units (``weights/inputs.py``)."""
    from decur.weights.inputs import after_reader

    s2 = sentinel_transform("decur", "s2", 13)
    s1 = sentinel_transform("decur", "s1", 2)
    assert after_reader(s2, "s2", True, "here") is s2  # raw DN: every step still to do
    assert [s["op"] for s in s2.steps] == ["s2_8bit", "standardize"]
    assert [s["op"] for s in after_reader(s2, "s2", False, "here").steps] == ["standardize"]
    assert [s["op"] for s in s1.steps] == ["cut_outliers", "standardize"]
    assert [s["op"] for s in after_reader(s1, "s1", False, "here").steps] == ["standardize"]
    for rule, m, bands, units in (("ssl4eo_release", "s2", 13, "DN"), ("torchgeo", "s1", 2, "dB")):
        t = sentinel_transform(rule, m, bands)
        assert after_reader(t, m, True, "here") is t
        with pytest.raises(WeightsError) as err:
            after_reader(t, m, False, "the field")
        expected = f"the field: the {rule} transform of '{m}' starts from {units}, but these data"
        assert str(err.value).startswith(expected)
        assert "use the raw release tree, or input_transform: decur" in str(err.value)
    rgb = image_transform("ssl4eo_release", "rgb", 3, ([0.5] * 3, [0.25] * 3))
    assert after_reader(rgb, "rgb", False, "here").steps == rgb.steps  # 8-bit/255 images: nothing to drop


def test_the_recorded_sha256_of_a_file_of_several_chunks_is_hashlibs(tmp_path):
    import hashlib

    from decur.weights.formats import sha256

    data = np.random.default_rng(0).integers(0, 256, (5 << 19) + 7, dtype=np.uint8).tobytes()  # 2.5 MiB + 7 B
    (tmp_path / "f.pth").write_bytes(data)
    assert sha256(tmp_path / "f.pth") == hashlib.sha256(data).hexdigest()


def test_the_terratorch_builder_refuses_in_one_line_naming_what_to_fix(tmp_path):
    from decur.weights.terratorch import DecurBackbone, build, encoder

    ckpt = _joint_file(tmp_path)[0]
    with pytest.raises(WeightsError) as err:
        build(ckpt_data=None)
    assert str(err.value) == (
        "decur backbone: ckpt_data is required (a decur export folder: `decur export` or `decur import` write one)"
    )
    with pytest.raises(WeightsError) as err:
        build(ckpt_data=str(ckpt), names=["s1", "s2"], input_transform="imagenet")
    assert str(err.value) == "decur backbone: input_transform 'imagenet' is not one of ['card', 'none']"
    with pytest.raises(WeightsError) as err:
        build(ckpt_data=str(ckpt), names=["s1", "s2"], modalities=["s3"])
    assert str(err.value) == f"{ckpt}: has no modality ['s3']; it has ['s1', 's2']"
    with pytest.raises(WeightsError) as err:
        encoder(ckpt_data=str(ckpt))
    assert str(err.value) == "decur_encoder: say which modality with backbone_modality (e.g. s2)"
    net = build(ckpt_data=str(ckpt), names=["s1", "s2"], input_transform="none")  # the joint file named by the caller
    assert isinstance(net, DecurBackbone) and list(net.joint.encoders) == ["s1", "s2"]
    with pytest.raises(WeightsError) as err:
        net({"LIDAR": torch.randn(1, 2, 32, 32)})
    assert str(err.value) == (
        "decur backbone: input key 'LIDAR' is no modality of ['s1', 's2']; map it with modality_keys: "
        "{LIDAR: <modality>}"
    )


def test_an_export_as_a_torchvision_weights_member_without_torchgeo(tmp_path):
    """``torchgeo_weights`` needs torchvision's weights API only: its member carries the card's bands, the exported
    state dict and the card's transform; a missing modality or transform is named."""
    import json

    from decur.weights import import_weights
    from decur.weights.torchgeo import CardTransform, torchgeo_weights

    ckpt, _, n2 = _joint_file(tmp_path)
    import_weights(ckpt, tmp_path / "exp", ["s1", "s2"])
    member = torchgeo_weights(tmp_path / "exp", "s2")
    assert member.meta["in_chans"] == 13 and member.meta["model"] == "resnet18" and member.meta["bands"][10] == "B10"
    assert member.meta["ssl_method"] == "decur" and member.meta["decur_card"]["arch"] == "resnet18"
    assert member.meta["publication"] == "https://arxiv.org/abs/2309.05300" and member.meta["repo"] == "decur"
    assert member.meta["dataset"] == member.meta["decur_card"].get("dataset")  # torchgeo's meta keys, as torchgeo
    assert type(member).__name__ == "DecurWeights" and member.name == "S2"
    state = member.get_state_dict()
    assert state.keys() == n2.state_dict().keys()
    for k, v in n2.state_dict().items():
        torch.testing.assert_close(state[k], v)
    dn = constant([5000.0] * 13)
    assert isinstance(member.transforms, CardTransform)
    torch.testing.assert_close(member.transforms(dn), sentinel_transform("ssl4eo_release", "s2", 13)(dn))
    assert torchgeo_weights(tmp_path / "exp" / "card.json", "s1").meta["in_chans"] == 2  # the card file works too
    with pytest.raises(WeightsError) as err:
        torchgeo_weights(tmp_path / "exp", "s3")
    assert str(err.value) == f"{tmp_path / 'exp'}: no modality 's3' (it has ['s1', 's2'])"
    card = json.loads((tmp_path / "exp" / "card.json").read_text())
    card["modalities"]["s1"]["transform"] = None
    (tmp_path / "exp" / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError) as err:
        torchgeo_weights(tmp_path / "exp", "s1")
    assert str(err.value) == f"{tmp_path / 'exp'}: the card records no input transform for 's1'"


def test_a_runs_or_exports_encoders_are_renamed_in_order_with_everything_that_belongs_to_them(tmp_path):
    """``pretrained_modalities`` on an export: the file's first encoder (s1: 2 bands) takes the first name, with its
    bands, transform and projector; the rest of the card stays; a count that does not match is refused."""
    from decur.models import projector
    from decur.weights import import_weights

    ckpt, n1, _ = _joint_file(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    for prefix in ("projector1", "projector2"):
        state["model"].update({f"module.{prefix}.{k}": v for k, v in projector(512, [32, 32]).state_dict().items()})
    torch.save(state, ckpt)
    import_weights(ckpt, tmp_path / "exp", ["s1", "s2"])
    same = read_pretrained(tmp_path / "exp")
    assert read_pretrained(tmp_path / "exp", ["s1", "s2"]).modalities == ["s1", "s2"]
    pre = read_pretrained(tmp_path / "exp", ["radar", "optical"])
    assert pre.modalities == ["radar", "optical"] and pre.bands == {"radar": 2, "optical": 13}
    for k, v in n1.state_dict().items():
        torch.testing.assert_close(pre.encoders["radar"][k], v)
    assert pre.transforms["radar"].steps == same.transforms["s1"].steps
    assert pre.projectors["optical"].keys() == same.projectors["s2"].keys()
    torch.testing.assert_close(pre.projectors["optical"]["0.weight"], same.projectors["s2"]["0.weight"])
    assert (pre.source, pre.kind, pre.arch) == (same.source, same.kind, "resnet18")
    assert (pre.head_dim, pre.common_dim, pre.card) == (same.head_dim, same.common_dim, same.card)
    with pytest.raises(WeightsError) as err:
        read_pretrained(tmp_path / "exp", ["radar"], field="the field")
    assert str(err.value) == (
        f"{same.source}: holds encoders ['s1', 's2']; the field ['radar'] must name each once, in that order"
    )


def test_an_encoder_is_built_strictly_with_the_cards_pooling_or_refused_naming_the_first_bad_key(tmp_path):
    from decur.weights.formats import Pretrained

    net = _tiny(13)
    state = dict(net.state_dict())
    pre = Pretrained(tmp_path / "w.pth", "plain", "resnet18", {"s2": state}, {"s2": 13})
    with pytest.raises(WeightsError) as err:
        pre.encoder("s1")
    assert str(err.value) == f"{tmp_path / 'w.pth'}: has no encoder 's1'; it has ['s2']"
    extra = Pretrained(tmp_path / "w.pth", "plain", "resnet18", {"s2": {**state, "fc.weight": torch.zeros(1)}},
                       {"s2": 13})  # fmt: skip
    with pytest.raises(WeightsError) as err:  # strict: a key the encoder does not have is not dropped silently
        extra.encoder("s2")
    expected = f"{tmp_path / 'w.pth'}: the s2 weights do not fit resnet18 with 13 bands (Error(s) in loading state_dict"
    assert str(err.value).startswith(expected) and '"fc.weight"' in str(err.value) and "\n" not in str(err.value)
    from decur.models import create_encoder

    vit = create_encoder("vit_tiny_patch16_224", 3, "avg")
    pooled = Pretrained(tmp_path / "v.pth", "plain", "vit_tiny_patch16_224", {"rgb": vit.state_dict()}, {"rgb": 3},
                        card={"vit_pool": "avg"})  # fmt: skip
    assert pooled.encoder("rgb").global_pool == "avg"  # the card's pooling, not timm's default (the class token)


def test_joint_files_that_are_not_whole_are_refused_by_name_and_the_naming_is_recorded(tmp_path):
    ckpt, _, _ = _joint_file(tmp_path)
    state = torch.load(ckpt, weights_only=True)["model"]
    only_1 = {k: v for k, v in state.items() if "backbone_1" in k}
    torch.save({"model": only_1}, tmp_path / "half.pth")
    with pytest.raises(WeightsError) as err:
        read_pretrained(tmp_path / "half.pth", ["s1", "s2"])
    assert str(err.value) == (
        f"{tmp_path / 'half.pth'}: has backbone_1 but no backbone_2 keys; not a complete DeCUR joint checkpoint"
    )
    mixed = {**only_1, **{f"module.backbone_2.{k}": v for k, v in _tiny_34(13).state_dict().items()}}
    torch.save({"model": mixed}, tmp_path / "mixed.pth")
    with pytest.raises(WeightsError) as err:
        read_pretrained(tmp_path / "mixed.pth", ["s1", "s2"])
    assert str(err.value) == f"{tmp_path / 'mixed.pth'}: backbone_1 is a resnet18, backbone_2 a resnet34"
    junk = {**only_1, "module.backbone_2.something.weight": torch.zeros(3)}
    torch.save({"model": junk}, tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match=str(tmp_path / "junk.pth")):  # the file is named, not None
        read_pretrained(tmp_path / "junk.pth", ["s1", "s2"])
    pre = read_pretrained(ckpt, None, {"s2": 13, "s1": 2})  # the dataset lists them the other way round
    assert pre.card["modalities_from"] == "band counts: backbone_1 (2 bands) = s1, backbone_2 = s2"
    assert pre.head_dim is None  # no MiT head in a ResNet release file


def _tiny_34(bands: int) -> nn.Module:
    return timm.create_model("resnet34", in_chans=bands, num_classes=0).eval()


def test_a_one_encoder_file_is_named_by_the_dataset_before_the_callers_fallback(tmp_path):
    torch.save(_tiny(13).state_dict(), tmp_path / "s2.pth")
    assert read_pretrained(tmp_path / "s2.pth", None, {"s1": 2, "s2": 13}, single="encoder").modalities == ["s2"]
    assert read_pretrained(tmp_path / "s2.pth", None, None, single="encoder").modalities == ["encoder"]
    with pytest.raises(WeightsError) as err:
        read_pretrained(tmp_path / "s2.pth", ["a", "b"], field="the field")
    assert str(err.value) == f"{tmp_path / 's2.pth'}: holds one encoder, but the field names ['a', 'b']"


def test_a_card_that_is_not_json_or_not_decurs_is_refused_naming_it(tmp_path):
    from decur.weights.formats import card_json

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WeightsError) as err:
        card_json(tmp_path / "bad.json")
    assert str(err.value).startswith(f"{tmp_path / 'bad.json'}: not a readable JSON card (")
    for content in ("[1, 2]", '{"arch": "resnet18"}', '{"format": "other/1"}'):
        (tmp_path / "c.json").write_text(content)
        with pytest.raises(WeightsError) as err:
            card_json(tmp_path / "c.json")
        assert str(err.value) == (
            f"{tmp_path / 'c.json'}: not a decur weights card (no decur-export/... or decur-backbone/... format)"
        )
    (tmp_path / "ok.json").write_text('{"format": "decur-export/1"}')
    assert card_json(tmp_path / "ok.json") == {"format": "decur-export/1"}


def test_a_release_joint_file_s_common_dim_is_the_release_scripts_and_only_with_projectors(tmp_path):
    """The release scripts' --dim_common: 7168 of 8192 for SSL4EO-S12 (87.5 %, S1 first; FIDELITY.md, the paper's
    SAR-optical share) — recorded only when the file holds projectors (without them there are no embeddings)."""
    from decur.models import projector

    ckpt, _, _ = _joint_file(tmp_path)
    bare = read_pretrained(ckpt, ["s1", "s2"])
    assert bare.common_dim is None and bare.projectors == {}
    state = torch.load(ckpt, weights_only=True)
    for prefix in ("projector1", "projector2"):
        state["model"].update({f"module.{prefix}.{k}": v for k, v in projector(512, [32, 32]).state_dict().items()})
    torch.save(state, tmp_path / "with.pth")
    pre = read_pretrained(tmp_path / "with.pth", ["s1", "s2"])
    assert pre.common_dim == 7168 == round(0.875 * 8192)
    assert pre.card["common_dim_source"] == "the release scripts' --dim_common (7168 for S1-S2, 6144 for RGB-X)"


def test_default_transforms_give_images_their_own_rule_with_the_datasets_statistics(tmp_path):
    """``default_transforms`` for weights without a recorded transform: a DEM of 2 bands is an image, not
    Sentinel-1 (the band count alone would say so); decur's rule standardises with the dataset's statistics and
    refuses without them; an unknown rule is named."""
    from decur.weights.formats import Pretrained
    from decur.weights.inputs import default_transforms

    pre = Pretrained(tmp_path / "w.pth", "plain", "resnet18", {"dem": {}, "rgb": {}}, {"dem": 2, "rgb": 3})
    stats = {"dem": ([10.0, 20.0], [2.0, 4.0]), "rgb": ([0.5] * 3, [0.25] * 3)}
    out = default_transforms(pre, "decur", "here", stats)
    assert out["dem"].steps == [{"op": "standardize", "mean": [10.0, 20.0], "std": [2.0, 4.0]}]
    assert out["rgb"].steps[-1] == {"op": "standardize", "mean": [0.5] * 3, "std": [0.25] * 3}
    x = torch.tensor([14.0, 28.0]).view(2, 1, 1).expand(2, 3, 3)
    torch.testing.assert_close(out["dem"](x), torch.ones(2, 3, 3) * torch.tensor([2.0, 2.0]).view(2, 1, 1))
    with pytest.raises(WeightsError) as err:
        default_transforms(pre, "decur", "the field")
    assert str(err.value) == "the field: decur's transform of 'dem' needs band statistics; none are recorded"
    with pytest.raises(WeightsError) as err:
        default_transforms(pre, "imagenet", "the field")
    assert (
        str(err.value) == "the field: input transform 'imagenet' is not one of ['decur', 'ssl4eo_release', 'torchgeo']"
    )
    with pytest.raises(WeightsError) as err:  # no rule and no Sentinel band count: nothing to derive
        default_transforms(Pretrained(tmp_path / "w.pth", "plain", "resnet18", {"rgb": {}}, {"rgb": 3}), None, "f")
    assert (
        str(err.value) == f"{tmp_path / 'w.pth'}: no input transform is recorded for 'rgb' (3 bands); set f to one of "
        "['decur', 'ssl4eo_release', 'torchgeo']"
    )
