"""The shipped sample photographs open, are of a usable size, and each has a credit and a licence."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from explorer.core.model.samples import SAMPLES_DIR, read_licences, sample_image, sample_images


def test_every_image_in_the_folder_is_listed():
    on_disk = sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    listed = sorted(s.path.name for s in sample_images())
    assert listed == on_disk
    assert len(listed) >= 4


@pytest.mark.parametrize("sample", sample_images(), ids=lambda s: s.name)
def test_sample_opens_as_an_rgb_photo(sample):
    with Image.open(sample.path) as im:
        im.load()
        assert im.mode == "RGB"
        assert min(im.size) >= 224  # enough for GoogLeNet's centre crop without upscaling much
    assert sample.path.stat().st_size < 300_000


@pytest.mark.parametrize("sample", sample_images(), ids=lambda s: s.name)
def test_sample_has_a_licence_entry(sample):
    assert sample.credit, f"{sample.path.name} has no Credit line in LICENSE.md"
    assert sample.licence, f"{sample.path.name} has no Licence line in LICENSE.md"


def test_licence_file_has_no_entry_without_a_file():
    assert set(read_licences()) <= {s.path.name for s in sample_images()}


def test_an_image_without_a_licence_entry_is_listed_without_credit(tmp_path):
    shutil.copy(SAMPLES_DIR / "LICENSE.md", tmp_path / "LICENSE.md")
    first = sample_images()[0]
    shutil.copy(first.path, tmp_path / first.path.name)
    Image.new("RGB", (300, 300)).save(tmp_path / "unlicensed.png")
    by_name = {s.name: s for s in sample_images(tmp_path)}
    assert by_name[first.name].credit == first.credit
    assert by_name["unlicensed"].credit is None and by_name["unlicensed"].licence is None


def test_sample_image_by_name():
    assert sample_image("chelsea").path.name == "chelsea.png"
    with pytest.raises(KeyError, match="available"):
        sample_image("no-such-photo")


def test_missing_folder_gives_no_samples(tmp_path):
    assert sample_images(tmp_path / "absent") == []
