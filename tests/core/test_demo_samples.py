"""The window's drawn samples: images of the demo task from a seed its training never draws, each with its mask."""

import numpy as np

from explorer.core.demo.drawing import draw_image, image_rng
from explorer.core.demo.samples import SAMPLE_CLASSES, SAMPLE_SEED, drawn_samples
from explorer.core.demo.task import SHAPE_CLASSES
from explorer.core.demo.training import EVAL_SEED, TrainingPlan


def test_one_sample_per_class_named_as_drawn():
    samples = drawn_samples()
    assert [s.name for s in samples] == list(SAMPLE_CLASSES)
    for s in samples:
        label = SHAPE_CLASSES.index(s.name)
        again = draw_image(image_rng(SAMPLE_SEED, label), label)  # image `label` of the seed is of class `label`
        assert s.label == label and np.array_equal(s.image, again.image) and np.array_equal(s.mask, again.mask)
        assert s.mask.any() and s.image.shape == (*s.mask.shape, 3)


def test_the_seed_is_none_the_training_draws():
    assert SAMPLE_SEED not in (TrainingPlan().seed, EVAL_SEED)
