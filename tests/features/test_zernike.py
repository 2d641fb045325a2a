"""Zernike features: the basis against analytic orthonormality and the explicit radial sum,
the moments against mahotas and motif-learn, rotation invariance, orientation retained,
tiling and worker invariance, reconstruction and bad input."""

from __future__ import annotations

import itertools
import math

import dask
import mahotas
import numpy as np
import pytest
import xarray as xr
from mtflearn.features import ZPs
from scipy.special import factorial
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import cross_val_score

import dmotif
from dmotif.errors import ParameterError
from dmotif.features import _zernike
from dmotif.synthetic._render import render_columns


def _one_atom(y, x):
    return xr.Dataset({"frame": ("atom", [0]), "y": ("atom", [float(y)]),
                       "x": ("atom", [float(x)])})


def _motif(phi, cy, cx, size=64):
    """An asymmetric three-column motif turned by ``phi`` degrees about (cy, cx)."""
    img = np.zeros((size, size))
    t = math.radians(phi)
    for dy, dx, amp, s1, s2 in [(0, 0, 1.0, 2.0, 1.2), (3.5, 1, 0.6, 1.5, 1.5),
                                (-2, 3, 0.8, 1.8, 1.0)]:
        y = cy + dx * math.sin(t) + dy * math.cos(t)
        x = cx + dx * math.cos(t) - dy * math.sin(t)
        render_columns(img, 0.0, 0.0, np.array([y]), np.array([x]), np.array([amp]),
                       np.array([s1]), np.array([s2]), np.array([t + 0.3]))
    return img


# --------------------------------------------------------------------------- the basis


@pytest.mark.parametrize(("n", "m"), [(0, 0), (1, 1), (4, 0), (5, 3), (8, 4), (12, 2), (12, 12)])
def test_radial_polynomial_matches_the_factorial_sum(n, m):
    rho = np.linspace(0, 1, 101)
    want = sum(
        (-1) ** k * factorial(n - k)
        / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k))
        * rho ** (n - 2 * k)
        for k in range((n - m) // 2 + 1)
    )
    np.testing.assert_allclose(_zernike.radial_polynomial(n, m, rho), want, atol=1e-10)
    assert _zernike.radial_polynomial(n, m, np.array([1.0]))[0] == pytest.approx(1.0)


def test_coefficient_counts_and_labels():
    n, m, part = _zernike.nm_table(10)
    assert n.size == _zernike.n_coefficients(10) == 66
    assert ((n - m) % 2 == 0).all() and (m <= n).all()
    assert (part == "cos").sum() == 36 and not ((part == "sin") & (m == 0)).any()
    b = dmotif.zernike_basis(10, n_max=10)
    assert b.dims == ("zernike", "py", "px") and b.shape == (66, 21, 21)
    assert b.n.values.tolist() == n.tolist() and b.part.values.tolist() == part.tolist()


def test_basis_is_orthonormal_on_the_disk_and_improves_with_radius():
    errors = []
    for radius in (10, 15, 20, 30, 40):
        mat = _zernike.zernike_basis(float(radius), 10).matrix
        errors.append(np.abs(mat @ mat.T - np.eye(66)).max())
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[0] < 0.65 and errors[2] < 0.12 and errors[4] < 0.05
    # the piston is exactly normalised; cos and sin parts are exactly orthogonal (mirror symmetry)
    b = _zernike.zernike_basis(10.0, 10)
    gram = b.matrix @ b.matrix.T
    assert gram[0, 0] == pytest.approx(1.0, abs=1e-12)
    cos, sin = b.part == "cos", b.part == "sin"
    assert np.abs(gram[np.ix_(cos, sin)]).max() < 1e-12


def test_basis_is_cached():
    assert _zernike.zernike_basis(7.0, 6) is _zernike.zernike_basis(7.0, 6)
    assert not _zernike.zernike_basis(7.0, 6).matrix.flags.writeable


def test_real_coefficients_match_motif_learn_up_to_one_scale_per_function():
    rng = np.random.default_rng(1)
    patches = rng.random((300, 21, 21))
    zps = ZPs(n_max=10, size=21).transform(patches)
    ref = {(int(n), abs(int(m)), "sin" if m < 0 else "cos"): zps.data[:, k]
           for k, (n, m) in enumerate(zip(zps.n, zps.m, strict=True))}
    b = _zernike.zernike_basis(10.0, 10)
    ours = patches.reshape(300, -1)[:, (b.dy + 10) * 21 + b.dx + 10] @ b.matrix.T
    for k, key in enumerate(zip(b.n.tolist(), b.m.tolist(), b.part.tolist(), strict=True)):
        scale = ref[key] @ ours[:, k] / (ours[:, k] @ ours[:, k])
        np.testing.assert_allclose(scale * ours[:, k], ref[key], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- the features


@pytest.mark.parametrize(("radius", "n_max"), [(2.0, 2), (7.5, 7), (10.0, 10), (12.3, 12)])
def test_folded_kernel_equals_the_basis_times_the_patch(radius, n_max):
    # the kernel projects mirror-folded quadrants; the plain product over the disk is the truth
    rng = np.random.default_rng(3)
    img = rng.random((64, 70)).astype(np.float32)
    ys, xs = rng.uniform(-0.5, 63.49, 50), rng.uniform(-0.5, 69.49, 50)
    b = _zernike.zernike_basis(radius, n_max)
    h = b.half
    patches = _zernike.square_patches(img, 0, 0, img.shape, ys, xs, half=h, subpixel=True)
    want = patches.reshape(50, -1)[:, (b.dy + h) * (2 * h + 1) + b.dx + h] @ b.matrix.T
    got = _zernike.patch_features(img, 0, 0, img.shape, ys, xs, radius=radius, n_max=n_max,
                                  subpixel=True, rotinv=False, dtype=np.float64)
    # square_patches rounds to float32; a wrong parity or fold weight would be off by O(1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_kernels_called_by_dask_release_the_gil():
    # dask runs one tile per thread: a kernel holding the GIL would serialise them
    for kernel in (_zernike.spline_coefficients, _zernike.zernike_moments,
                   _zernike.sample_patches):
        assert kernel.targetoptions.get("nogil"), kernel


def test_magnitudes_match_mahotas_up_to_scale():
    rng = np.random.default_rng(2)
    s = dmotif.synthetic.tmd(size=192, seed=4)
    atoms = s.atoms.isel(atom=slice(0, 300))
    image = s.image.values[0] - s.image.values.min() + 0.1  # mahotas ignores pixels <= 0
    rand = rng.random((200, 21, 21)) + 0.05
    cases = [
        (dmotif.extract_patches(image, atoms, radius=10).values.astype(np.float64),
         dmotif.zernike_features(image, atoms, radius=10, n_max=10).values),
    ]
    big = np.zeros((21, 21 * 200))
    for k in range(200):
        big[:, 21 * k : 21 * k + 21] = rand[k]
    grid = xr.Dataset({"y": ("atom", np.full(200, 10.0)),
                       "x": ("atom", 21 * np.arange(200) + 10.0)})
    padded = np.pad(big, ((22, 22), (0, 0)), mode="symmetric")  # keep the radius <= size / 4
    cases.append((rand, dmotif.zernike_features(padded, grid.assign(y=grid.y + 22), radius=10,
                                               n_max=10).values))
    for patches, ours in cases:
        ref = np.array([mahotas.features.zernike_moments(p, 10, degree=10, cm=(10, 10))
                        for p in patches])
        # mahotas divides by the patch's sum, i.e. by the piston coefficient
        ratio = np.abs(ours.astype(np.float64)) / ours[:, :1]
        assert ratio.shape == ref.shape == (len(patches), 36)
        for k in range(1, 36):
            assert np.corrcoef(ratio[:, k], ref[:, k])[0, 1] >= 0.999


def test_rotinv_is_exact_for_quarter_turns():
    s = dmotif.synthetic.tmd(size=160, seed=5)
    img = s.image.values[0]
    base = dmotif.zernike_features(img, s.atoms, radius=9, n_max=9).values
    y, x = s.atoms.y.values, s.atoms.x.values
    n = img.shape[0] - 1
    turned = {1: (n - x, y), 2: (n - y, n - x), 3: (x, n - y)}  # np.rot90 k times
    for k, (ty, tx) in turned.items():
        atoms = s.atoms.assign(y=("atom", ty), x=("atom", tx))
        got = dmotif.zernike_features(np.rot90(img, k), atoms, radius=9, n_max=9).values
        np.testing.assert_allclose(got, base, rtol=1e-4, atol=1e-4 * np.abs(base).max())


@pytest.mark.parametrize("phi", [17.0, 45.0, 73.0, 130.0, 251.0])
def test_rotinv_holds_for_any_rotation_of_a_rendered_motif(phi):
    def features(angle, cy, cx):
        return dmotif.zernike_features(_motif(angle, cy, cx), _one_atom(cy, cx), radius=12,
                                       n_max=10).values[0].astype(np.float64)

    def rel(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    # centred on a pixel: only the pixel sampling of the rotated motif differs
    f0 = features(0.0, 32, 31)
    assert rel(features(phi, 32, 31), f0) < 1e-3
    # off the pixel grid the patch is interpolated; the cubic spline neither blurs one
    # orientation more than another nor moves the features with the sub-pixel offset (bilinear
    # interpolation missed both by up to 6e-3 and 3e-2)
    for cy, cx in [(32.3, 31.6), (32.5, 31.5), (31.75, 31.1), (32.9, 31.02)]:
        g0, g = features(0.0, cy, cx), features(phi, cy, cx)
        assert rel(g, g0) < 1e-3, (cy, cx)
        assert rel(g, f0) < 1e-3, (cy, cx)
    # the oriented coefficients do change
    o0, o = (dmotif.zernike_features(_motif(a, 32, 31), _one_atom(32, 31), radius=12, n_max=10,
                                     rotinv=False).values[0] for a in (0.0, phi))
    assert np.linalg.norm(o - o0) / np.linalg.norm(o0) > 0.1


def test_oriented_features_separate_the_shapes_that_rotinv_merges():
    s = dmotif.synthetic.shapes(size=448, seed=1)
    label = s.atoms.label.values
    scores = {}
    for rotinv in (False, True):
        f = dmotif.zernike_features(s.image, s.atoms, radius=8, n_max=8, rotinv=rotinv)
        keep = ~f.edge.values
        x, y = f.values[keep], label[keep]
        rods = y > 0
        scores[rotinv] = (cross_val_score(LinearDiscriminantAnalysis(), x, y, cv=5).mean(),
                          cross_val_score(LinearDiscriminantAnalysis(), x[rods], y[rods],
                                          cv=5).mean())
    assert scores[False][0] >= 0.99
    assert scores[True][1] < 0.7  # the two rod orientations are one motif once rotation goes


def test_features_equal_the_gram_row_of_a_basis_image():
    b = _zernike.zernike_basis(9.0, 8)
    img = np.zeros((48, 50))
    img[14:33, 15:34] = b.image()[7]
    f = dmotif.zernike_features(img, _one_atom(23, 24), radius=9, n_max=8, rotinv=False)
    np.testing.assert_allclose(f.values[0], (b.matrix @ b.matrix.T)[7], rtol=1e-5, atol=1e-6)
    assert f.dtype == np.float32 and f.attrs["radius"] == 9.0


@pytest.mark.parametrize("rotinv", [True, False])
def test_features_do_not_depend_on_the_tiling(rotinv):
    s = dmotif.synthetic.tmd(size=(1100, 1060), seed=6)
    image = s.image.compute()
    results = [
        dmotif.zernike_features(image.chunk({"y": c, "x": c}), s.atoms, radius=10,
                                rotinv=rotinv).values
        for c in (256, 1024, -1)
    ]
    # one thread, tiles in sequence: the same bits as two threads running tiles side by side
    with dask.config.set(scheduler="sync"):
        results.append(dmotif.zernike_features(image.chunk({"y": 256, "x": 256}), s.atoms,
                                                radius=10, rotinv=rotinv).values)
    assert results[0].shape == (s.atoms.sizes["atom"], 36 if rotinv else 66)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_features_are_the_same_on_a_process_cluster():
    distributed = pytest.importorskip("distributed")
    s = dmotif.synthetic.tmd(size=300, frames=2, seed=7, chunks=128)
    local = dmotif.zernike_features(s.image, s.atoms, radius=8, n_max=8).values
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster):
        remote = dmotif.zernike_features(s.image, s.atoms, radius=8, n_max=8).compute().values
    np.testing.assert_array_equal(remote, local)


def test_defaults_and_coords():
    s = dmotif.synthetic.tmd(size=192, seed=8)
    f = dmotif.zernike_features(s.image, s.atoms)
    # half the NN spacing (~12.2 px); n_max follows a radius below 10
    assert 5.9 < f.attrs["radius"] < 6.3 and f.attrs["n_max"] == 6
    assert f.dims == ("atom", "zernike") and f.sizes["zernike"] == 16
    assert set(f.part.values[f.m.values > 0]) == {"abs"}
    assert f.edge.dtype == bool and f.edge.values.any() and not f.edge.values.all()
    g = dmotif.zernike_features(s.image, s.atoms.assign_attrs(spacing_px=30.0), rotinv=False)
    assert g.attrs["radius"] == 15.0 and g.sizes["zernike"] == 66


# --------------------------------------------------------------------------- reconstruction


def test_reconstruction_converges_to_the_patch():
    img = _motif(30.0, 32, 31)
    disk = np.hypot(*np.mgrid[-14:15, -14:15]) <= 14
    patch = img[18:47, 17:46]
    f = dmotif.zernike_features(img, _one_atom(32, 31), radius=14, n_max=14, rotinv=False)
    rms = []
    for n_max in (4, 8, 14):
        rec = dmotif.reconstruct(f.where(f.n <= n_max, drop=True)).isel(atom=0)
        assert rec.dims == ("py", "px") and rec.shape == (29, 29)
        assert (rec.values[~disk] == 0).all()
        rms.append(np.sqrt(np.mean((rec.values - patch)[disk] ** 2)) / patch.max())
    assert rms[0] > rms[1] > rms[2] and rms[2] < 0.04, rms
    # close to the least-squares fit on the (nearly orthonormal) discrete basis
    b = _zernike.zernike_basis(14.0, 14)
    fit = np.linalg.lstsq(b.matrix.T, patch[disk], rcond=None)[0] @ b.matrix
    assert np.sqrt(np.mean((rec.values[disk] - fit) ** 2)) < 0.01 * patch.max()


def test_reconstruct_rejects_magnitudes_and_needs_a_radius():
    b = dmotif.zernike_basis(6, n_max=4)
    coef = xr.DataArray(np.ones(15), dims="zernike", coords=b["zernike"].coords)
    with pytest.raises(ParameterError, match="radius"):
        dmotif.reconstruct(coef)
    s = dmotif.synthetic.tmd(size=128, seed=0)
    f = dmotif.zernike_features(s.image, s.atoms, radius=6, n_max=4)
    with pytest.raises(ParameterError, match="magnitudes"):
        dmotif.reconstruct(f)
    sym = dmotif.reconstruct(f.where(f.m == 0, drop=True))
    assert sym.sizes["atom"] == s.atoms.sizes["atom"]
    with pytest.raises(ParameterError, match="dim 'zernike'"):
        dmotif.reconstruct(xr.DataArray(np.ones(3), dims="k"), 6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": 1.9}, "at least 2"),
        ({"radius": 40}, "quarter"),
        ({"radius": 8, "n_max": 9}, "larger than the radius"),
        ({"radius": 8, "n_max": -1}, "n_max must be"),
        ({"radius": 8, "n_max": 4.0}, "n_max must be"),
        ({"radius": 8, "n_max": True}, "n_max must be"),
    ],
)
def test_bad_parameters_raise_a_clear_error(kwargs, match):
    img = np.random.default_rng(0).random((128, 150))
    with pytest.raises(ParameterError, match=match):
        dmotif.zernike_features(img, _one_atom(60, 60), **kwargs)


@pytest.mark.parametrize(("radius", "n_max"), [(1, 0), (5, 6), (5, -2)])
def test_bad_basis_parameters_raise(radius, n_max):
    with pytest.raises(ParameterError):
        dmotif.zernike_basis(radius, n_max=n_max)
