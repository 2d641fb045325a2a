"""The ``.motif`` accessor delegates to the public functions."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif import accessor, synthetic


@pytest.fixture(scope="module")
def image() -> xr.DataArray:
    return synthetic.perovskite(size=256, seed=0).image.compute()


def test_accessor_is_registered_by_importing_dmotif(image):
    assert isinstance(image.motif, dmotif.MotifAccessor)


@pytest.mark.parametrize("kw", [{}, {"refine": "gaussian", "min_snr": 3.0}, {"refine": None}])
def test_detect_is_detect_atoms(image, kw):
    xr.testing.assert_identical(image.motif.detect(**kw), dmotif.detect_atoms(image, **kw))


def test_detect_on_a_single_2d_image(image):
    single = image.isel(frame=0)
    assert single.dims == ("y", "x")
    atoms = single.motif.detect()
    assert (atoms["frame"] == 0).all()
    np.testing.assert_array_equal(atoms["x"], dmotif.detect_atoms(image)["x"])
    assert atoms.attrs["units"] == "nm"


def test_errors_pass_through(image):
    with pytest.raises(dmotif.ParameterError, match="refine"):
        image.motif.detect(refine="bogus")


def test_docstring_example_runs():
    failures, _ = doctest.testmod(accessor)
    assert failures == 0


def test_accessor_methods_delegate_to_the_functions(tmp_path) -> None:
    import numpy as np

    import dmotif

    img = dmotif.synthetic.tmd(size=256, seed=1).image
    atoms = img.motif.detect()
    assert img.motif.spacing() == dmotif.estimate_spacing(img)
    np.testing.assert_array_equal(img.motif.patches(atoms, radius=6).values,
                                  dmotif.extract_patches(img, atoms, radius=6).values)
    np.testing.assert_array_equal(img.motif.zernike(atoms).values,
                                  dmotif.zernike_features(img, atoms).values)
    res = img.motif.run(str(tmp_path / "r.zarr"), workers=1)
    assert res.atoms.sizes["atom"] == atoms.sizes["atom"]
    assert res.config["input"]["kind"] == "array"
