"""What training shows the demo network besides the drawn images: parts of them blurred.

The faithfulness curves insert an image's pixels into the image blurred (σ = 1/20 of its side) and delete them to
it. A network that only ever saw sharp, noisy backgrounds reads a sharp shape on a blurred background as something
it has never seen: inserting the object's own pixels first then restored the class no faster than random orders of
squares, which bring the background's noise back everywhere (30 drawn images of seed 4242: the object's mask
beat every random order on 37 % of them, Grad-CAM at the last block on 57 %). So training blurs (as ROAR retrains
on images with pixels removed, Hooker et al. 2019):

- a random part of the background of most images, never the target or a pixel next to its outline, so that a
  blurred background is ordinary;
- the target itself, and a random region around it or the whole image, of a few images, taught as no class (all
  six alike), so that a blurred-away target is no evidence: deletion to the blur takes the evidence away, and
  insertion starts from nothing.

With the shipped shares (training.py), the same images gave the mask 90 % and Grad-CAM 73 %, and Grad-CAM's area
lay above the random orders' mean on 93 % of them (73 % before); `tests/core/test_demo_attribution.py` measures
it on unseen images. A random part is random 2-px squares (the curves' random orders) or one random smooth region
(a thresholded upsampled random field, like a coarse map's region), of a uniformly random share.
"""

from __future__ import annotations

import numpy as np

from explorer.core.demo.drawing import dilate

#: Sides of the random fields whose low values choose the blurred region (upsampled to the image).
FIELD_SIDES = (4, 8, 16)
#: The side of the random squares.
SQUARE = 2


def blurred(x):
    """The images (N, C, H, W) blurred as the faithfulness curves blur them (σ = 1/20 of the longer side)."""
    from torchvision.transforms.functional import gaussian_blur

    sigma = max(x.shape[-2:]) / 20
    k = int(2 * round(3 * sigma) + 1)
    return gaussian_blur(x, [k, k], [sigma, sigma])


def random_region(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random share of an image's pixels (bool H × W): random squares, or one random smooth region."""
    import torch
    import torch.nn.functional as F

    h, w = shape
    share = rng.random()
    if rng.random() < 0.5:
        squares = rng.random((-(-h // SQUARE), -(-w // SQUARE))) < share
        return np.repeat(np.repeat(squares, SQUARE, 0), SQUARE, 1)[:h, :w]
    side = int(rng.choice(FIELD_SIDES))
    field = torch.from_numpy(rng.random((1, 1, side, side))).float()
    field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    return field < np.quantile(field, share)


def blur_regions(masks: np.ndarray, rng: np.random.Generator, background: float, objects: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(regions to blur (N, H, W), which images lose their target (N,)) for images whose targets are `masks`:
    about `objects` of them lose the target and a random region around it (half of those the whole image), about
    `background` of the others a random part of the background two pixels or more from the target."""
    regions = np.zeros(masks.shape, dtype=bool)
    lost = np.zeros(len(masks), dtype=bool)
    for i, mask in enumerate(masks):
        if rng.random() < objects:
            lost[i] = True
            whole = rng.random() < 0.5
            regions[i] = True if whole else random_region(mask.shape, rng) | dilate(dilate(dilate(mask)))
        elif rng.random() < background:
            regions[i] = random_region(mask.shape, rng) & ~dilate(dilate(mask))
    return regions, lost


def blur_images(x, masks: np.ndarray, rng: np.random.Generator, background: float, objects: float):
    """(the network inputs `x` (N, C, H, W) partly blurred as `blur_regions` chooses, which lost their target)."""
    import torch

    if background <= 0 and objects <= 0:
        return x, np.zeros(len(masks), dtype=bool)
    regions, lost = blur_regions(masks, rng, background, objects)
    return torch.where(torch.from_numpy(regions)[:, None], blurred(x), x), lost


__all__ = ["blur_images", "blur_regions", "blurred", "random_region"]
