"""Training the demo model, in a quick mode (a few steps of a few images): deterministic, and the command
writes a weights file that loads like any other, with its progress on stderr."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.cli import main
from explorer.core.demo import training
from explorer.core.demo.drawing import draw_batch
from explorer.core.demo.training import EVAL_SEED, TrainingPlan, network_input, train
from explorer.core.model.weights import apply_state_dict, read_state_dict, safetensors_metadata
from explorer.core.model.zoo import get_spec

_QUICK = TrainingPlan(steps=3, batch=6, eval_images=0)


def test_same_seed_same_weights_and_the_caller_s_torch_settings_kept():
    threads = torch.get_num_threads()
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    a = train(_QUICK)
    assert torch.equal(torch.rand(3), before)  # training used a forked generator
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    b = train(_QUICK)
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    c = train(TrainingPlan(steps=3, batch=6, eval_images=0, seed=1))
    assert not torch.equal(a.state_dict["fc.weight"], c.state_dict["fc.weight"])
    fresh = get_spec("shapes_inception").build().state_dict()
    assert not torch.equal(a.state_dict["conv1.conv.weight"], fresh["conv1.conv.weight"])  # it did train


def test_same_settings_write_the_same_file_in_another_process(tmp_path):
    """safetensors orders its header from a hash map that differs between processes: the file is written
    with its keys sorted, so that two runs make the same bytes (and the zoo's sha256 can be checked by
    training again)."""
    code = ("import sys, hashlib; from explorer.core.demo.training import TrainingPlan, train, weights_bytes;"
            "print(hashlib.sha256(weights_bytes(train(TrainingPlan(steps=2, batch=6, eval_images=6)))).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip() for _ in range(2)}
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_training_lowers_the_loss():
    losses = []
    train(TrainingPlan(steps=40, batch=12, eval_images=0, lr=3e-3), on_step=lambda p: losses.append(p.loss),
          report_every=1)
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_network_input_is_the_zoo_s_preprocessing():
    """What training feeds the network is what the zoo's transform (torchvision's) makes of the same image."""
    images, _ = draw_batch(3, 7)
    x = network_input(images)
    tf = get_spec("shapes_inception").transforms()
    expected = torch.stack([tf(Image.fromarray(im)) for im in images])
    assert torch.allclose(x, expected, atol=1e-6)


def test_the_accuracy_is_measured_on_the_evaluation_seed(monkeypatch):
    seen = []
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda m, n, seed: seen.append((n, seed)) or real(m, n, seed))
    result = train(TrainingPlan(steps=1, batch=6, eval_images=12))
    assert seen == [(12, EVAL_SEED)]
    assert result.accuracy in {i / 12 for i in range(13)}
    with pytest.raises(ValueError, match="accuracy is measured on"):
        train(TrainingPlan(steps=1, seed=EVAL_SEED))


def test_cli_writes_weights_that_load_with_weights_only(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"an older file")
    argv = ["train-demo", "-o", str(out), "--steps", "2", "--batch", "6", "--eval-images", "12", "--seed", "3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "step 1/2" in captured.err and "step 2/2" in captured.err
    line = captured.out.strip()
    assert line.startswith(f"{out}\taccuracy ") and f"on 12 fresh images (seed {EVAL_SEED})" in line
    assert os.listdir(tmp_path) == ["w.safetensors"]  # replaced whole: no temporary file left
    model = get_spec("shapes_inception").build()
    apply_state_dict(model, read_state_dict(out))  # the project's checked, all-or-nothing path
    meta = safetensors_metadata(out)
    assert (meta["seed"], meta["steps"], meta["batch"], meta["eval_seed"]) == ("3", "2", "6", str(EVAL_SEED))
    assert meta["classes"] == "circle,square,triangle,star,cross,ring"
    reference = train(TrainingPlan(steps=2, batch=6, seed=3, eval_images=0))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.state_dict.items())


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "must be positive"),
    (["--seed", str(EVAL_SEED)], "accuracy is measured on"),
    (["-o", "weights.pth"], "name the file .safetensors"),
])
def test_cli_refuses_bad_settings_before_training(tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained"))
    assert main(["train-demo", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_cli_checks_the_output_folder_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained"))
    assert main(["train-demo", "-o", str(tmp_path / "missing" / "w.safetensors")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_interrupted_training_leaves_no_file(tmp_path, capsys, monkeypatch):
    def interrupted(plan, on_step=None, **kwargs):
        on_step(training.TrainingProgress(1, plan.steps, 1.0, 0.1))
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    assert main(["train-demo", "-o", str(tmp_path / "w.safetensors")]) == 130
    assert os.listdir(tmp_path) == []


def test_blurred_parts_are_the_curves_blur_and_a_blurred_target_teaches_no_class():
    """The training's blurred pixels are the faithfulness curves' substrate (attribution's own blur, computed
    there independently). An image keeping its target changes only in background pixels at least two pixels from
    the target's outline, and is learnt as its class; one whose target was blurred away changes on every target
    pixel, and is learnt as no class (all six alike)."""
    from explorer.core.attribution.methods import baseline_for
    from explorer.core.demo.augment import blur_images
    from explorer.core.demo.drawing import dilate, draw_images

    drawn = draw_images(24, 77)
    x = network_input(np.stack([d.image for d in drawn]))
    masks = np.stack([d.mask for d in drawn])
    out, lost = blur_images(x, masks, np.random.default_rng(3), background=1.0, objects=0.3)
    changed = (out != x).any(1).numpy()
    assert 3 <= lost.sum() <= 14 and changed[~lost].any(axis=(1, 2)).sum() >= len(drawn) - lost.sum() - 2
    for i, d in enumerate(drawn):
        if lost[i]:
            assert changed[i][d.mask].mean() > 0.9  # the blur leaves a flat target's inner pixels nearly as they were
        else:
            assert not (changed[i] & dilate(dilate(d.mask))).any()
    where = torch.from_numpy(changed)[:, None]
    assert torch.equal(out, torch.where(where, baseline_for(x, "blur"), x))
    assert torch.equal(blur_images(x, masks, np.random.default_rng(3), 0.0, 0.0)[0], x)

    plan = TrainingPlan(steps=1, batch=24, eval_images=0, seed=5, background_blur=0.5, object_blur=0.3)
    x1, targets = training.training_batch(plan, 0)
    images, labels = draw_batch(24, plan.seed)
    kept = (targets.max(1).values == 1).numpy()
    assert 0 < kept.sum() < 24 and torch.allclose(targets[~kept], torch.full((int((~kept).sum()), 6), 1 / 6))
    assert (targets[kept].argmax(1).numpy() == labels[kept]).all()
    x0, y0 = training.training_batch(TrainingPlan(steps=1, batch=6, eval_images=0, background_blur=0, object_blur=0), 0)
    assert torch.equal(x0, network_input(draw_batch(6, 0)[0])) and (y0.argmax(1).numpy() == draw_batch(6, 0)[1]).all()
