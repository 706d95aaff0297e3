"""predict_logits, which the tutorial uses to look at a model's outputs: the model in eval mode over
a split's standardised images, in the split's order, whatever the batch size."""

import torch

from kdviz.inference import predict_logits, topk_errors
from kdviz.models import build_model


def test_predict_logits_is_the_model_on_standardised_images_in_order(tiny_data):
    info = tiny_data.info
    torch.manual_seed(0)
    model = build_model("cnn", 4, info.image_shape, width=4)  # BatchNorm: eval mode changes the result
    model.train()
    logits = predict_logits(model, tiny_data.val, info, torch.device("cpu"), batch_size=5)
    assert model.training  # its mode is given back
    x = (tiny_data.val.images.float() / 255 - 0.5) / 0.25  # tiny_info: mean 0.5, std 0.25
    with torch.no_grad():
        expected = model.eval()(x)
    assert logits.shape == (len(tiny_data.val), 4) and not logits.requires_grad
    torch.testing.assert_close(logits, expected)


def test_topk_errors_count_labels_outside_the_k_largest_logits():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2, 0, 1])  # top-1 right, second, third, third
    errors = topk_errors(logits, labels, ks=(1, 2, 5))
    assert [float(errors[k]) for k in (1, 2, 5)] == [0.75, 0.5, 0.0]
