import numpy as np
import pytest

import netloupe as nl


def test_sample_photos_are_bundled_colour_images():
    names = nl.samples.names()
    assert {"chelsea", "coffee", "rocket", "astronaut", "motorcycle"} <= set(names)
    for n in names:
        im = nl.samples.image(n)
        assert im.mode == "RGB" and min(im.size) >= 256
    with pytest.raises(nl.InputError, match="chelsea"):
        nl.samples.image("kitten")


def test_dataset_is_deterministic_and_varied():
    a, b = nl.samples.dataset(12, size=64), nl.samples.dataset(12, size=64)
    assert len(a) == 12 and len(set(a.names)) == 12
    assert all(a[i].tobytes() == b[i].tobytes() for i in range(12))
    assert all(a[i].size == (64, 64) for i in range(12))
    assert len({a[i].tobytes() for i in range(12)}) == 12
    with pytest.raises(nl.InputError):
        nl.samples.dataset(0)


def _mirror_distance(a, b):
    """Mean absolute difference (0..255) between image a mirrored and image b."""
    return np.abs(np.asarray(a, dtype=np.float32)[:, ::-1] - np.asarray(b, dtype=np.float32)).mean()


def test_first_crops_hold_no_mirrored_pair():
    """A top-k row must not show one picture twice: the first len(photos) * crops images are
    distinct crops, no mirror image among them; the mirrored ones come after."""
    photos = nl.samples.names()
    names = nl.samples.dataset(len(photos) * 20, size=8).names
    distinct = next(i for i, name in enumerate(names) if name.endswith("-flip"))
    assert distinct >= 6 * len(photos)  # full view, four quadrants, centre
    assert len(set(names[:distinct])) == distinct
    data = nl.samples.dataset(2 * distinct, size=32)
    assert all(name.endswith("-flip") for name in data.names[distinct:])
    images = [data[i] for i in range(2 * distinct)]
    for i in range(distinct):
        for j in range(distinct):
            if i != j:
                assert _mirror_distance(images[i], images[j]) > 2, (data.names[i], data.names[j])
        # the detector does find a real mirror image
        assert _mirror_distance(images[i], images[distinct + i]) < 2
