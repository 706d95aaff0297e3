"""Named stages of the model zoo (`kdviz/models/stages.py`): their shapes, and that asking for them
changes neither the outputs nor the parameters."""

import pytest
import torch

from kdviz.models import MODELS, build_model, stage_shapes


# Shapes at 32 px, 100 classes, worked out from each architecture's description (module docstrings and
# CRD's code): resolution stages of widths (c1, c2, c3) at (s1, s2, s3) px, then the pooled width.
def _conv(c, s, pool):
    return {"stage1": (c[0], s[0], s[0]), "stage2": (c[1], s[1], s[1]), "stage3": (c[2], s[2], s[2]), "pool": (pool,)}


RESNET = (32, 16, 8)  # stem at full size, layer2 and layer3 stride 2
SHUFFLE = (16, 8, 4)  # 1x1 stem at full size, every stage stride 2
EXPECTED_32PX = {
    **{f"resnet{d}": _conv((16, 32, 64), RESNET, 64) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": _conv((64, 128, 256), RESNET, 256),
    "resnet32x4": _conv((64, 128, 256), RESNET, 256),
    **{f"wrn_{d}_{k}": _conv((16 * k, 32 * k, 64 * k), RESNET, 64 * k) for d in (16, 40) for k in (1, 2)},
    # blocks 2 and 3 come after one and two max-pools; the last block after three
    "vgg8": _conv((128, 256, 512), (16, 8, 4), 512),
    "vgg13": _conv((128, 256, 512), (16, 8, 4), 512),
    # stride-2 stem; width 0.5 of the 24-, 32- and 96-channel settings; strides 1, 2, (2, 1)
    "mobilenetv2": _conv((12, 16, 48), (16, 8, 4), 1280),
    "shufflenetv1": _conv((240, 480, 960), SHUFFLE, 960),
    "shufflenetv2_0_5": _conv((48, 96, 192), SHUFFLE, 1024),
    "shufflenetv2_1_0": _conv((116, 232, 464), SHUFFLE, 1024),
    "shufflenetv2_1_5": _conv((176, 352, 704), SHUFFLE, 1024),
    "shufflenetv2_2_0": _conv((224, 488, 976), SHUFFLE, 2048),
    "cnn": _conv((16, 32, 64), (32, 16, 8), 64),  # width 16; max-pools after blocks 2 and 3
    "mlp": {"hidden1": (64,), "hidden2": (64,), "pool": (64,)},
}


# planted_bayes is the planted dataset's Bayes posterior (tests/test_planted.py): it has no stages.
ZOO = [name for name in MODELS.names() if name != "planted_bayes"]


def test_every_model_has_an_expected_shape_table():
    assert set(EXPECTED_32PX) == set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_stage_shapes_at_32px(name):
    model = build_model(name, 100, (3, 32, 32))
    assert stage_shapes(model, (3, 32, 32)) == EXPECTED_32PX[name]
    assert tuple(EXPECTED_32PX[name]) == model.feature_stages  # the declared names, in order


# The forward as it was before stages existed: the submodules composed in order (CRD's code's layout).
def _resnet(m, x):
    return m.classifier(m.pool(m.layer3(m.layer2(m.layer1(m.stem(x))))))


def _wrn(m, x):
    return m.classifier(m.pool(m.relu(m.bn(m.block3(m.block2(m.block1(m.conv1(x))))))))


def _vgg(m, x):
    for i, block in enumerate(m.blocks):
        x = block(x)
        x = m.maxpool(x) if i < 3 else x
    return m.classifier(m.pool(x))


def _trunk_head(m, x):
    return m.classifier(m.pool(m.head(m.blocks(m.stem(x)))))


def _shufflev1(m, x):
    return m.classifier(m.pool(m.blocks(m.stem(x))))


def _features(m, x):
    return m.classifier(m.features(x))


PLAIN_FORWARD = {
    "resnet": _resnet,
    "wrn": _wrn,
    "vgg": _vgg,
    "mobilenetv2": _trunk_head,
    "shufflenetv1": _shufflev1,
    "shufflenetv2": _trunk_head,
    "cnn": _features,
    "mlp": _features,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_asking_for_stages_changes_no_output(name):
    torch.manual_seed(0)
    model = build_model(name, 10, (3, 32, 32)).eval()
    x = torch.randn(3, 3, 32, 32)
    plain = next(f for prefix, f in PLAIN_FORWARD.items() if name.startswith(prefix))
    with torch.no_grad():
        expected = plain(model, x)
        logits = model(x)
        with_stages, stages = model(x, return_stages=True)
        with_features, features = model(x, return_features=True)
    for out in (logits, with_stages, with_features):
        assert torch.equal(out, expected)
    assert torch.equal(features, stages["pool"])
    assert list(stages) == list(model.feature_stages)


def test_stage_shapes_leave_the_model_in_training_mode_and_its_statistics_alone():
    model = build_model("resnet8", 10, (3, 32, 32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage_shapes(model, (3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_stages_follow_the_input_size():
    # 64 px (Tiny ImageNet): twice the sizes for resnets; VGG's extra pool keeps its last map at 4.
    assert stage_shapes(build_model("resnet8", 200, (3, 64, 64)), (3, 64, 64))["stage3"] == (64, 16, 16)
    assert stage_shapes(build_model("vgg8", 200, (3, 64, 64)), (3, 64, 64))["stage3"] == (512, 4, 4)
    assert stage_shapes(build_model("cnn", 10, (1, 8, 8)), (1, 8, 8))["stage3"] == (64, 2, 2)
