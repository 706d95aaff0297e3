"""The CRD model zoo: every registered model runs at 32 and 64 px for any class count, returns its pooled
features on request, and has exactly the parameter count of the published CIFAR-100 architecture."""

import pytest
import torch

from kdviz.models import MODELS, build_model, count_parameters
from kdviz.registry import UnknownNameError

# Parameter counts of the reference CIFAR-100 models (num_classes=100, 3 input channels), computed by hand
# arithmetic from the layer definitions in CRD's code, HobbitLong/RepDistiller `models/` (resnet.py, wrn.py,
# vgg.py `vgg8_bn`/`vgg13_bn`, mobilenetv2.py `mobile_half`, ShuffleNetv1.py `ShuffleV1`, ShuffleNetv2.py
# `configs`; identical in megvii-research/mdistiller `mdistiller/models/cifar/`), not from our modules.
# Formulas: conv = c_in/groups * c_out * k^2 (+ c_out bias for VGG only), BN = 2c, linear = d*100 + 100.
#   resnet (6n+2, widths w0..w3): stem 27*w0 + 2*w0; per basic block 9*c_in*c + 9*c^2 + 4c, plus a 1x1 conv + BN
#     shortcut (c_in*c + 2c) in a stage's first block when stride 2 or c_in != c; fc w3*100 + 100.
#     e.g. resnet20: 432+32 + 3*(2*2304+64) + (4608+9216+128 + 512+64) + 2*(18496) + (18432+36864+256 + 2048+128)
#     + 2*(73984) + 6500 = 278,324.
#   wrn (6n+4, k): conv 3->16; per pre-act block 2*c_in + 9*c_in*c + 2c + 9*c^2 (+ c_in*c if widths differ);
#     final BN 2*64k; fc 64k*100 + 100.
#   vgg8: (1792+128) + (73856+256) + (295168+512) + (1180160+1024) + (2359808+1024) + 51300 = 3,965,028.
#   mobile_half (t=6, width 0.5, last 1280): each block pw(c_in->6c_in) + dw 3x3 + pw-linear, all with BN.
#   ShuffleV1: groups 3, widths 240/480/960, blocks 4/8/4, branch width = width - c_in on stride-2 blocks.
#   ShuffleV2 sizes 0.5/1/1.5/2: stage widths (48,96,192|1024), (116,232,464|1024), (176,352,704|1024),
#     (224,488,976|2048), blocks 3/7/3 after a down block.
# These agree with the rounded sizes reported in the CRD benchmark literature: resnet56 0.86M, resnet110 1.7M,
# resnet32x4 7.43M, resnet8x4 1.23M, wrn_40_2 2.26M, wrn_16_2 0.70M, vgg13 9.46M, vgg8 3.96M (3.965M),
# ShuffleV1 0.95M, ShuffleV2 1.36M, MobileNetV2 0.81M. No published figure was found for resnet8/14/20/32/44,
# wrn_16_1, wrn_40_1 or ShuffleNetV2 0.5/1.5/2.0: those rest on the arithmetic above alone.
REFERENCE_PARAMS_CIFAR100 = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg13": 9_462_180,
    "mobilenetv2": 812_836,
    "shufflenetv1": 949_258,
    "shufflenetv2_0_5": 443_716,
    "shufflenetv2_1_0": 1_355_528,
    "shufflenetv2_1_5": 2_580_548,
    "shufflenetv2_2_0": 5_521_860,
}
# kdviz's own small models, which have no published counterpart (their size depends on image_shape).
NO_REFERENCE = {"cnn", "mlp"}

# planted_bayes is the planted dataset's Bayes posterior (tests/test_planted.py), not an architecture.
ALL_MODELS = [name for name in MODELS.names() if name != "planted_bayes"]


def _run(model, x, **kw):
    with torch.no_grad():
        return model(x, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_MODELS)
def test_any_class_count_at_32_and_64_px_with_features(name):
    torch.manual_seed(0)
    for num_classes in (100, 7):
        for size in (32, 64):
            model = build_model(name, num_classes, (3, size, size)).eval()
            x = torch.randn(2, 3, size, size)
            logits = _run(model, x)
            assert logits.shape == (2, num_classes), (name, num_classes, size)
            out = _run(model, x, return_features=True)
            assert isinstance(out, tuple) and len(out) == 2
            logits2, features = out
            assert features.ndim == 2 and features.shape[0] == 2
            assert features.shape[1] == model.classifier.in_features
            assert torch.isfinite(logits2).all()
            torch.testing.assert_close(logits2, logits)
            torch.testing.assert_close(_run(model.classifier, features), logits)
            if name in NO_REFERENCE:
                continue  # the MLP's input size is fixed by image_shape; the zoo's nets are size-agnostic
            if size == 32:  # the same network (same weights) runs at 64 px too: pooling is adaptive
                assert _run(model, torch.randn(2, 3, 64, 64)).shape == (2, num_classes)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_input_channels_come_from_image_shape(name):
    model = build_model(name, 5, (1, 32, 32)).eval()
    assert _run(model, torch.randn(2, 1, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_matches_published_cifar100_architecture(name):
    if name in NO_REFERENCE:
        pytest.skip(f"{name} is kdviz's own model, with no published reference")
    assert name in REFERENCE_PARAMS_CIFAR100, f"add the reference CIFAR-100 parameter count of {name!r} to this test"
    assert count_parameters(build_model(name, 100, (3, 32, 32))) == REFERENCE_PARAMS_CIFAR100[name]


def test_zoo_is_registered():
    assert set(REFERENCE_PARAMS_CIFAR100) | NO_REFERENCE <= set(ALL_MODELS)


def test_unknown_model_name_lists_choices():
    with pytest.raises(UnknownNameError) as err:
        build_model("resnet9", 10, (3, 32, 32))
    message = str(err.value)
    assert "resnet9" in message and "valid choices" in message
    for name in ("resnet8x4", "wrn_40_2", "vgg13", "mobilenetv2", "shufflenetv1", "shufflenetv2_1_0", "cnn"):
        assert name in message
    with pytest.raises(KeyError):  # also a KeyError (and a ValueError), for callers that catch those
        build_model("ShuffleV2", 10, (3, 32, 32))
