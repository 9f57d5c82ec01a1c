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
