"""Helpers several test files share (imported as `helpers`: tests/ is on sys.path, pytest's rootdir
conftest); fixtures live in conftest.py."""

import contextlib

import torch

from kdviz.losses import LOSS_TERMS

# Every registered term that reads only logits (the feature terms have their own tests).
LOGIT_TERMS = [name for name in LOSS_TERMS.names() if not {"features", "stages"} & set(LOSS_TERMS.get(name)().inputs)]


class HostSync(AssertionError):
    pass


_SYNCING_METHODS = ["item", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__"]


@contextlib.contextmanager
def no_host_sync():
    """Fails on anything in the block that makes the host wait for the device.

    Run it on meta tensors (shapes, no data): every op that needs a value on the host then
    raises, including those hidden in C++ (boolean-mask indexing calls nonzero). The patched
    methods name the Python-level culprits. CUDA's set_sync_debug_mode needs a GPU.
    """
    saved = {name: getattr(torch.Tensor, name) for name in _SYNCING_METHODS}

    def refuse(name):
        def method(self, *args, **kwargs):
            raise HostSync(f"Tensor.{name}() in the per-step path waits for the device")

        return method

    try:
        for name in _SYNCING_METHODS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)
