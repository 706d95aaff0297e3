"""kd.load_teacher: RepDistiller's and mdistiller's CIFAR-100 checkpoints in kdviz's zoo models.

The checkpoints cannot be downloaded here, so each test writes one in the projects' layout. The names,
nesting and wrapper dicts below are written out from their public sources (RepDistiller models/resnet.py,
wrn.py, vgg.py and train_teacher.py; mdistiller mdistiller/models/cifar/ and engine/trainer.py), not
from kdviz's renaming table, and the reference forward passes compute the published networks from those
names with torch.nn.functional: a teacher loaded into kdviz must give their outputs.
"""

import argparse

import pytest
import torch
import torch.nn.functional as F

import kdviz as kd
from kdviz.data.base import DatasetInfo, DatasetSplits, Split

WIDE, NARROW = (32, 64, 128, 256), (16, 16, 32, 64)
VGG13 = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))
VGG8 = ((64,), (128,), (256,), (512,), (512,))


# ---------------------------------------------------------------- the published layouts
def _conv(sd, name, c_out, c_in, k, bias=False):
    sd[f"{name}.weight"] = torch.randn(c_out, c_in, k, k) * (2 / (c_in * k * k)) ** 0.5
    if bias:
        sd[f"{name}.bias"] = torch.randn(c_out) * 0.1


def _bn(sd, name, c):
    sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c)
    sd[f"{name}.bias"] = 0.1 * torch.randn(c)
    sd[f"{name}.running_mean"] = 0.1 * torch.randn(c)
    sd[f"{name}.running_var"] = 0.5 + torch.rand(c)
    sd[f"{name}.num_batches_tracked"] = torch.tensor(93840)


def _fc(sd, name, c_in, classes=100):
    sd[f"{name}.weight"] = torch.randn(classes, c_in) * c_in**-0.5
    sd[f"{name}.bias"] = 0.1 * torch.randn(classes)


def resnet_state(depth, widths):
    """RepDistiller ResNet(depth, num_filters, 'basicblock'): conv1, bn1, layer1-3 of BasicBlocks
    (conv1, bn1, conv2, bn2, downsample = Sequential(conv 1x1, BN) where stride != 1 or the width
    changes), fc."""
    torch.manual_seed(depth)
    sd, n = {}, (depth - 2) // 6
    _conv(sd, "conv1", widths[0], 3, 3)
    _bn(sd, "bn1", widths[0])
    inplanes = widths[0]
    for layer, (planes, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
        for i in range(n):
            p = f"layer{layer}.{i}"
            _conv(sd, f"{p}.conv1", planes, inplanes, 3)
            _bn(sd, f"{p}.bn1", planes)
            _conv(sd, f"{p}.conv2", planes, planes, 3)
            _bn(sd, f"{p}.bn2", planes)
            if i == 0 and (stride != 1 or inplanes != planes):
                _conv(sd, f"{p}.downsample.0", planes, inplanes, 1)
                _bn(sd, f"{p}.downsample.1", planes)
            inplanes = planes
    _fc(sd, "fc", widths[3])
    return sd


def wrn_state(depth, k):
    """RepDistiller WideResNet: conv1, block1-3 = NetworkBlock(.layer = Sequential of BasicBlocks with bn1,
    conv1, bn2, conv2 and convShortcut where the width changes), bn1 (the final BN), fc."""
    torch.manual_seed(depth + k)
    sd, n, channels = {}, (depth - 4) // 6, (16, 16 * k, 32 * k, 64 * k)
    _conv(sd, "conv1", 16, 3, 3)
    for b in (1, 2, 3):
        for i in range(n):
            c_in, c_out, p = channels[b - 1] if i == 0 else channels[b], channels[b], f"block{b}.layer.{i}"
            _bn(sd, f"{p}.bn1", c_in)
            _conv(sd, f"{p}.conv1", c_out, c_in, 3)
            _bn(sd, f"{p}.bn2", c_out)
            _conv(sd, f"{p}.conv2", c_out, c_out, 3)
            if c_in != c_out:
                _conv(sd, f"{p}.convShortcut", c_out, c_in, 1)
    _bn(sd, "bn1", channels[3])
    _fc(sd, "fc", channels[3])
    return sd


def vgg_state(cfg):
    """RepDistiller VGG(cfg, batch_norm=True): block0-4 = Sequential(conv, BN, ReLU, ..., conv, BN) (the
    last ReLU dropped), so block b's j-th conv is block{b}.{3j} and its BN block{b}.{3j+1}; classifier."""
    torch.manual_seed(len(cfg[0]))
    sd, c_in = {}, 3
    for b, widths in enumerate(cfg):
        for j, c in enumerate(widths):
            _conv(sd, f"block{b}.{3 * j}", c, c_in, 3, bias=True)
            _bn(sd, f"block{b}.{3 * j + 1}", c)
            c_in = c
    _fc(sd, "classifier", 512)
    return sd


STATES = {
    "resnet56": lambda: resnet_state(56, NARROW),
    "resnet110": lambda: resnet_state(110, NARROW),
    "resnet32x4": lambda: resnet_state(32, WIDE),
    "resnet8x4": lambda: resnet_state(8, WIDE),
    "wrn_40_2": lambda: wrn_state(40, 2),
    "wrn_16_2": lambda: wrn_state(16, 2),
    "vgg13": lambda: vgg_state(VGG13),
    "vgg8": lambda: vgg_state(VGG8),
}


# ---------------------------------------------------------------- the published forward passes
def bn(x, sd, p):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"])


def resnet_forward(sd, x):
    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1"))
    for layer, stride in zip((1, 2, 3), (1, 2, 2)):
        i = 0
        while f"layer{layer}.{i}.conv1.weight" in sd:
            p, s = f"layer{layer}.{i}", stride if i == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s, padding=1), sd, f"{p}.bn1"))
            out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s), sd, f"{p}.downsample.1")
            x, i = F.relu(out + x), i + 1
    return F.linear(F.avg_pool2d(x, 8).flatten(1), sd["fc.weight"], sd["fc.bias"])  # AvgPool2d(8) at 32 px


def wrn_forward(sd, x):
    x = F.conv2d(x, sd["conv1.weight"], padding=1)
    for b, stride in zip((1, 2, 3), (1, 2, 2)):
        i = 0
        while f"block{b}.layer.{i}.conv1.weight" in sd:
            p, s = f"block{b}.layer.{i}", stride if i == 0 else 1
            act = F.relu(bn(x, sd, f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(act, sd[f"{p}.conv1.weight"], stride=s, padding=1), sd, f"{p}.bn2"))
            out = F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1)
            short = sd.get(f"{p}.convShortcut.weight")
            x, i = out + (x if short is None else F.conv2d(act, short, stride=s)), i + 1
    x = F.relu(bn(x, sd, "bn1"))
    return F.linear(F.avg_pool2d(x, 8).flatten(1), sd["fc.weight"], sd["fc.bias"])


def vgg_forward(sd, x):
    for b in range(5):
        j = 0
        while f"block{b}.{3 * j}.weight" in sd:
            x = F.conv2d(x, sd[f"block{b}.{3 * j}.weight"], sd[f"block{b}.{3 * j}.bias"], padding=1)
            x, j = F.relu(bn(x, sd, f"block{b}.{3 * j + 1}")), j + 1
        if b < 3:  # pool0-2; pool3 only at 64 px
            x = F.max_pool2d(x, 2)
    return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), sd["classifier.weight"], sd["classifier.bias"])


def published_forward(name, sd, x):
    family = resnet_forward if name.startswith("resnet") else wrn_forward if name.startswith("wrn") else vgg_forward
    return family(sd, x)


# ---------------------------------------------------------------- the files
def repdistiller_file(tmp_path, name, sd):
    """train_teacher.py's regular save: save/models/<name>_vanilla/ckpt_epoch_240.pth."""
    path = tmp_path / f"{name}_vanilla" / "ckpt_epoch_240.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    optimizer = {"state": {}, "param_groups": [{"lr": 0.0005, "momentum": 0.9, "params": list(range(len(sd)))}]}
    torch.save({"epoch": 240, "model": sd, "accuracy": torch.tensor(79.42), "optimizer": optimizer}, path)
    return path


def mdistiller_student_file(tmp_path, sd):
    """engine/trainer.py's student_best: {"model": student.state_dict()}."""
    path = tmp_path / "student_best"
    torch.save({"model": sd}, path)
    return path


def mdistiller_distiller_file(tmp_path, student_sd, teacher_sd):
    """engine/trainer.py's best/latest: the DataParallel-wrapped distiller's state_dict (module.student.*,
    module.teacher.*), with the epoch, optimizer and best accuracy."""
    model = {f"module.student.{k}": v for k, v in student_sd.items()}
    model.update({f"module.teacher.{k}": v for k, v in teacher_sd.items()})
    path = tmp_path / "best"
    torch.save({"epoch": 240, "model": model, "optimizer": {"state": {}}, "best_acc": 76.32}, path)
    return path


SLOW = pytest.mark.slow  # the published teachers' full sizes; their small siblings run in the fast suite


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=SLOW) for n in ("resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13")]
    + ["resnet8x4", "wrn_16_2", "vgg8"],
)
@pytest.mark.parametrize("source", ["repdistiller", "mdistiller"])
def test_a_published_checkpoint_gives_the_published_networks_outputs(tmp_path, name, source):
    sd = STATES[name]()
    teacher = kd.load_teacher(name, repdistiller_file(tmp_path, name, sd), source=source)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = published_forward(name, sd, x)
        got = teacher.model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not teacher.model.training and teacher.name == name and teacher.source == source
    # The same weights in kdviz's own checkpoint (a native load) give the same outputs.
    native = kd.build_model(name, 100, (3, 32, 32))
    native.load_state_dict(teacher.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(native.eval()(x), got, rtol=0, atol=0)


@pytest.mark.slow
@SLOW
def test_each_published_teacher_has_its_published_accuracy(tmp_path):
    published = {"resnet56": 72.34, "resnet110": 74.31, "resnet32x4": 79.42, "wrn_40_2": 75.61, "vgg13": 74.64}
    for name, top1 in published.items():
        assert kd.load_teacher(name, repdistiller_file(tmp_path, name, STATES[name]())).published_top1 == top1
    assert kd.load_teacher("vgg8", repdistiller_file(tmp_path, "vgg8", STATES["vgg8"]())).published_top1 is None


@pytest.mark.slow
def test_mdistiller_students_and_distiller_checkpoints_load(tmp_path):
    student, teacher = STATES["resnet8x4"](), STATES["resnet32x4"]()
    x = torch.randn(2, 3, 32, 32)
    for path in (mdistiller_student_file(tmp_path, student), mdistiller_distiller_file(tmp_path, student, teacher)):
        loaded = kd.load_teacher("resnet8x4", path, source="mdistiller")
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), resnet_forward(student, x), rtol=1e-4, atol=1e-4)


def test_dataparallel_names_and_files_without_bn_counters_load(tmp_path):
    """nn.DataParallel saves "module." names; PyTorch 0.4.0, which CRD used, saved no num_batches_tracked."""
    sd = STATES["resnet8x4"]()
    wrapped = {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "dp.pth"
    torch.save({"model": wrapped}, path)
    loaded = kd.load_teacher("resnet8x4", path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), resnet_forward(sd, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "file_model, asked, first",
    [
        # resnet110 has 18 blocks per stage, resnet56 9: the first name resnet56's file lacks.
        ("resnet56", "resnet110", "no weights for 'layer1.9.conv1.weight'"),
        # Same names, other widths: the stem's conv is the first shape that differs.
        ("resnet32x4", "resnet56", r"'conv1.weight' \(kdviz 'stem.0.weight'\) has shape \(32, 3, 3, 3\)"),
        # Every resnet56 weight is in resnet110's file, which has more.
        ("resnet110", "resnet56", "weights 'layer1.9.conv1.weight' that the model lacks"),
        ("wrn_40_2", "vgg13", "no weights for 'blocks.0.0.weight'"),
        # vgg8's conv and BN shapes all occur in vgg13's file, whose second conv of each block is extra.
        ("vgg13", "vgg8", "weights 'block0.3.weight' that the model lacks"),
    ],
)
def test_a_file_of_another_model_is_refused_naming_the_first_mismatch(tmp_path, file_model, asked, first):
    path = repdistiller_file(tmp_path, file_model, STATES[file_model]())
    with pytest.raises(ValueError, match=first) as err:
        kd.load_teacher(asked, path)
    assert f"Its folder '{file_model}_vanilla' says '{file_model}'" in str(err.value)


def test_bad_files_and_names_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="kdviz has no ResNet50.*resnetv2"):
        kd.load_teacher("ResNet50", tmp_path / "x.pth")
    with pytest.raises(ValueError, match="unknown teacher format 'crd'.*repdistiller, mdistiller"):
        kd.load_teacher("resnet56", tmp_path / "x.pth", source="crd")
    with pytest.raises(FileNotFoundError, match="published_teachers.md"):
        kd.load_teacher("resnet56", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="'mobilenetv2' has no RepDistiller/mdistiller layout"):
        kd.load_teacher("mobilenetv2", tmp_path / "x.pth")
    last = tmp_path / "resnet56_last.pth"  # RepDistiller's final save keeps its argparse options
    torch.save({"opt": argparse.Namespace(model="resnet56"), "model": STATES["resnet56"]()}, last)
    with pytest.raises(ValueError, match="does not unpickle code.*ckpt_epoch_240.pth"):
        kd.load_teacher("resnet56", last)
    bare = tmp_path / "bare.pth"
    torch.save(STATES["resnet8x4"](), bare)
    with pytest.raises(ValueError, match="not a repdistiller checkpoint.*'model'"):
        kd.load_teacher("resnet8x4", bare)


def _cifar_like(name="cifar100", n=8):
    info = DatasetInfo(
        name=name,
        class_names=tuple(f"c{i}" for i in range(100)),
        image_shape=(3, 32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    g = torch.Generator().manual_seed(0)

    def split():
        return Split(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(n) % 100)

    return DatasetSplits(info, split(), split(), split())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_published_teacher_distills_and_is_recorded(tmp_path):
    teacher = kd.load_teacher("resnet8x4", repdistiller_file(tmp_path, "resnet8x4", STATES["resnet8x4"]()))
    run = kd.distill(
        _cifar_like(), teacher, "resnet8", "kd", epochs=1, batch_size=4, progress=False, out_dir=tmp_path / "s"
    )
    assert run.history["train_kd"].notna().all()
    config = (tmp_path / "s" / "config.json").read_text()
    assert "resnet8x4_vanilla/ckpt_epoch_240.pth" in config
    with pytest.raises(ValueError, match="trained on 'cifar100'.*'cifar10'"):
        kd.distill(_cifar_like("cifar10"), teacher, "resnet8", "kd", epochs=1, progress=False)


# ---------------------------------------------------------------- kdviz distill --teacher-checkpoint
@pytest.mark.slow
def test_distill_checks_a_published_teacher_on_the_test_split_before_training(tmp_path, capsys):
    from kdviz.cli import main
    from kdviz.data.base import normalize
    from kdviz.data.sample_files import write_cifar100

    write_cifar100(tmp_path / "cifar-100-python")
    data = kd.load_dataset("cifar100", root=tmp_path)
    sd = STATES["resnet32x4"]()
    # A teacher that favours the commonest test label, so that its accuracy is neither 0 nor 100 %.
    sd["fc.weight"] *= 1e-6
    sd["fc.bias"][data.test.labels.mode().values] += 10.0
    path = repdistiller_file(tmp_path / "cifar_teachers", "resnet32x4", sd)
    out = tmp_path / "student"
    flags = ["--recipe", "crd-cifar100", "--data-root", str(tmp_path), "--n-train", "6", "--epochs", "1"]
    args = ["distill", *flags, "--teacher-checkpoint", str(path), "--teacher-format", "mdistiller"]
    assert main([*args, "--model", "resnet8x4", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    with torch.no_grad():
        logits = resnet_forward(sd, normalize(data.test.images, data.info))
    top1 = 100 * (logits.argmax(1) == data.test.labels).float().mean().item()
    assert 0 < top1 < 100
    printed = capsys.readouterr().out
    assert f"teacher resnet32x4 (mdistiller, {path}): cifar100 test top-1 {top1:.2f} % (12 images)" in printed
    assert "published 79.42 %" in printed
    assert printed.index("published 79.42") < printed.index("best epoch")  # before training's summary
    assert str(path) in (out / "config.json").read_text()


def test_distill_refuses_incomplete_teacher_flags(tmp_path, capsys):
    from kdviz.cli import main

    path = repdistiller_file(tmp_path, "resnet8x4", STATES["resnet8x4"]())
    common = ["distill", "--recipe", "smoke", "--out", str(tmp_path / "s"), "--no-progress"]
    assert main([*common, "--teacher-checkpoint", str(path)]) == 2
    assert "needs --teacher-format repdistiller or mdistiller" in capsys.readouterr().err
    assert main([*common, "--teacher", "x/best.pt", "--teacher-format", "mdistiller"]) == 2
    assert "describe a --teacher-checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one teacher or the other
        main([*common, "--teacher", "x/best.pt", "--teacher-checkpoint", str(path)])
    assert "not allowed with argument" in capsys.readouterr().err
    # The smoke recipe's teacher is a CNN: no published layout, said before any data is read.
    assert main([*common, "--teacher-checkpoint", str(path), "--teacher-format", "repdistiller"]) == 2
    assert "'cnn' has no RepDistiller/mdistiller layout" in capsys.readouterr().err


def test_the_command_lines_teacher_formats_are_the_loaders():
    from kdviz.cli import TEACHER_FORMATS
    from kdviz.models.published import SOURCES

    assert TEACHER_FORMATS == SOURCES
