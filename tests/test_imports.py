"""What ``import dmotif`` does and does not do: the public names, the heavy imports it defers,
and the matplotlib backend it leaves alone. Each check runs in a fresh interpreter, since the
test session itself has imported everything long ago."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dmotif

ROOT = Path(__file__).resolve().parents[1]
#: Imported only when a function that needs them is first called.
DEFERRED = ("sklearn", "dask_ml", "bokeh", "matplotlib", "networkx", "distributed")


def _python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (dmotif from this tree); return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _loaded_after(statement: str) -> list[str]:
    code = (f"import sys\n{statement}\nimport json\n"
            f"print(json.dumps([m for m in {list(DEFERRED)!r} if m in sys.modules]))")
    return json.loads(_python(code))


def test_import_dmotif_defers_the_heavy_dependencies():
    assert _loaded_after("import dmotif") == []


def test_the_command_line_defers_them_too():
    assert _loaded_after("import dmotif.cli") == []


def test_the_figures_do_not_load_bokeh():
    # Only the explorer's document needs bokeh (the ``explore`` extra).
    assert "bokeh" not in _loaded_after("import dmotif.viz\ndmotif.viz.plot_layout([[0, 0]])")


def test_every_public_name_resolves_and_is_listed():
    names = set(dir(dmotif))
    for name in dmotif.__all__:
        assert name in names
        assert getattr(dmotif, name) is not None
    assert callable(dmotif.synthetic_4d.fourd) and callable(dmotif.synthetic.generate)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        dmotif.no_such_name  # noqa: B018


def test_no_public_function_shadows_a_module():
    import importlib
    import inspect

    for name in dmotif.__all__:
        value = getattr(dmotif, name)
        if inspect.isfunction(value):
            with pytest.raises(ModuleNotFoundError):
                importlib.import_module(f"dmotif.{name}")
    for module in ("dmotif.synthetic.fourd", "dmotif.motifs.cluster", "dmotif.viz.report"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(module)


_FIGURES = """
import numpy as np, xarray as xr
import dmotif
import matplotlib
print(matplotlib.get_backend())
from dmotif.viz.html_report import _png, plot_atoms_on_image, plot_frame_fractions
rng = np.random.default_rng(0)
labels = rng.integers(-1, 3, 200)
atoms = xr.Dataset({"frame": ("atom", np.repeat([0, 1], 100)),
                    "y": ("atom", rng.uniform(0, 63, 200)), "x": ("atom", rng.uniform(0, 63, 200))})
image = xr.DataArray(rng.random((2, 64, 64)), dims=("frame", "y", "x"))
for fig in (plot_atoms_on_image(image, atoms, labels),
            plot_frame_fractions(atoms["frame"].values, labels),
            dmotif.plot_layout(rng.normal(size=(200, 2)), labels)):
    assert _png(fig).startswith(b"\\x89PNG")
print(matplotlib.get_backend())
"""


def test_import_and_report_figures_keep_the_users_matplotlib_backend():
    before, after = _python(_FIGURES, MPLBACKEND="svg").splitlines()
    assert before == after == "svg"



def test_compiled_kernels_are_cached_in_the_users_cache_folder(tmp_path: Path) -> None:
    # A kernel compiled once is written under the user's cache folder (XDG_CACHE_HOME on
    # Linux), not beside the package, which may be read-only.
    code = ("import os, numpy as np, dmotif\n"
            "from dmotif.hierarchy._window_sums import window_sums\n"
            "img = np.ones((9, 9)); at = np.array([4])\n"
            "window_sums(img, at, at, np.array([0]), 1, 2)\n"
            "print(os.environ['NUMBA_CACHE_DIR'])")
    # An empty NUMBA_CACHE_DIR is an unset one.
    folder = Path(_python(code, NUMBA_CACHE_DIR="", XDG_CACHE_HOME=str(tmp_path)))
    assert folder == tmp_path / "dmotif" / "numba"
    assert any(p.name.startswith("_window_sums._accumulate") for p in folder.rglob("*.nbi"))


def test_a_numba_cache_dir_the_user_set_is_kept(tmp_path: Path) -> None:
    code = "import os, dmotif; print(os.environ['NUMBA_CACHE_DIR'])"
    assert _python(code, NUMBA_CACHE_DIR=str(tmp_path / "mine")) == str(tmp_path / "mine")
