"""Score dmotif's motifs, and motif-learn's, on images that dmotif did not make.

Images with truth are the ``.npz`` files of ``make_abtem.py`` (abTEM multislice); real
micrographs are any file :func:`dmotif.open_image` reads, for example those in ``tests/data``
(temul-toolkit's Se-implanted MoS2 and atomap's perovskite ADF, see its README). For each
image and each method the table gives: columns found against the truth (recall, precision,
RMSE in pixels), motifs found against true column types, the adjusted Rand index of the
motifs against the column types (matched columns), and the share of unassigned columns away
from the border; for real images, the motifs found and the unassigned share.

    python benchmarks/corpus/evaluate.py corpus/*.npz tests/data/real_* \
        --methods dmotif motif-learn --figure figures/

The dmotif method is the library chain with the defaults a run uses (detect → Zernike → PCA →
FR layout → motifs split by site), on the threaded scheduler. ``--figure DIR`` writes, per
image, the image with its columns coloured by motif and the motifs' mean patches side by side.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

METHODS = ("dmotif", "motif-learn")


def load(path: Path) -> tuple[np.ndarray, dict | None]:
    """The image (y, x) and, for a corpus ``.npz``, its truth."""
    if path.suffix == ".npz":
        data = np.load(path, allow_pickle=False)
        visible = data["column_visible"] if "column_visible" in data else slice(None)
        truth = {k: data[k][visible] for k in ("column_y", "column_x", "column_type")}
        return np.asarray(data["image"], dtype=np.float32), truth
    import dmotif

    img = dmotif.open_image(path)
    return np.asarray(img.isel(frame=0).values, dtype=np.float32), None


def run_dmotif(image: np.ndarray, seed: int) -> dict:
    import dask

    import dmotif
    from dmotif.pipeline import default_config

    with dask.config.set(scheduler="threads"):
        atoms = dmotif.detect_atoms(image)
        feats = dmotif.zernike_features(image, atoms)
        reduced = dmotif.pca(feats).compute()
        config = default_config()
        layout = dmotif.fr_layout(reduced, seed=seed, **{
            k: v for k, v in config["layout"].items() if k != "seed"})
        params = {k: v for k, v in config["cluster"].items() if k not in ("on", "seed")}
        labels = dmotif.cluster(layout, follow=feats["edge"].values, features=reduced,
                                atoms=atoms, seed=seed, **params)
    return {"y": atoms["y"].values, "x": atoms["x"].values, "label": labels.values,
            "radius": feats.attrs.get("radius"), "attrs": labels.attrs}


def run_motif_learn(image: np.ndarray, seed: int, spacing: float, contrast: str) -> dict:
    """The authors' chain: local maxima, ZPs, PCA, ForceGraph8, raster labels.

    It finds bright columns only: an image of dark columns (ABF) is negated first, as its
    user would do by hand.
    """
    from mtflearn.clustering import seg_lbs
    from mtflearn.features import ZPs, local_max
    from mtflearn.manifold import ForceGraph8
    from scipy import ndimage
    from sklearn.decomposition import PCA

    if contrast == "dark":
        image = -image
    smooth = ndimage.gaussian_filter(image.astype(np.float64), spacing / 8)
    min_distance = max(1, int(spacing * 0.4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peaks = local_max(smooth, min_distance=min_distance, threshold=smooth.mean())
    peaks = np.asarray(peaks)
    xy = peaks[:, :2].astype(int)  # local_max returns (x, y)
    r = max(2, round(spacing / 2))
    inside = ((xy[:, 0] >= r) & (xy[:, 0] < image.shape[1] - r) & (xy[:, 1] >= r)
              & (xy[:, 1] < image.shape[0] - r))
    xy = xy[inside]
    patches = np.stack([image[y - r:y + r + 1, x - r:x + r + 1] for x, y in xy])
    zps = ZPs(n_max=min(10, r), size=2 * r + 1).transform(patches)
    feats = np.abs(zps.data) if np.iscomplexobj(zps.data) else zps.data
    reduced = PCA(n_components=min(10, feats.shape[1]), random_state=seed).fit_transform(feats)
    # ForceGraph8 draws its negative samples from numpy's global generator.
    np.random.seed(seed)  # noqa: NPY002
    model = ForceGraph8(n_neighbors=10, metric="correlation", num_iterations=100)
    model.fit(reduced)
    labels = np.asarray(seg_lbs(model.y), dtype=np.int64)
    return {"y": xy[:, 1].astype(float), "x": xy[:, 0].astype(float), "label": labels,
            "radius": r, "attrs": {}}


def _lattice(image: np.ndarray) -> tuple[float, str]:
    """The column spacing (pixels) and contrast ("bright" or "dark") dmotif reads."""
    import dmotif

    atoms = dmotif.detect_atoms(image)
    return float(atoms.attrs["spacing_px"]), str(atoms.attrs["contrast"])


def score(found: dict, truth: dict | None, shape: tuple[int, int], margin: float) -> dict:
    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    label = found["label"]
    interior = ((found["y"] > margin) & (found["y"] < shape[0] - margin)
                & (found["x"] > margin) & (found["x"] < shape[1] - margin))
    row = {"atoms": label.size, "motifs": int(label.max() + 1),
           "unassigned %": 100 * float((label[interior] < 0).mean())}
    if truth is None:
        return row
    t_yx = np.c_[truth["column_y"], truth["column_x"]]
    nn = cKDTree(t_yx).query(t_yx, k=2)[0][:, 1]
    tol = 0.3 * np.median(nn)
    dist, idx = cKDTree(t_yx).query(np.c_[found["y"], found["x"]], k=1)
    hit = dist < tol
    # One detection per true column: the nearest wins.
    order = np.argsort(dist)
    taken = np.zeros(len(t_yx), dtype=bool)
    keep = np.zeros(label.size, dtype=bool)
    for i in order[hit[order]]:
        if not taken[idx[i]]:
            taken[idx[i]] = keep[i] = True
    t_inside = ((t_yx[:, 0] > margin) & (t_yx[:, 0] < shape[0] - margin)
                & (t_yx[:, 1] > margin) & (t_yx[:, 1] < shape[1] - margin))
    types = truth["column_type"][idx[keep]]
    row.update({
        "recall": float(taken[t_inside].mean()),
        "precision": float(keep[interior].mean()),
        "rmse px": float(np.sqrt(np.mean(dist[keep] ** 2))),
        "true types": int(np.unique(truth["column_type"]).size),
        "ARI": float(adjusted_rand_score(types, label[keep])),
    })
    return row


def figure(path: Path, image: np.ndarray, found: dict, name: str) -> None:
    from matplotlib.figure import Figure

    label = found["label"]
    k = int(label.max() + 1)
    r = int(np.ceil(found["radius"] or 6))
    fig = Figure(figsize=(12, 6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1.3, 1))
    ax = left.subplots()
    ax.imshow(image, cmap="gray")
    ax.scatter(found["x"], found["y"], c=label, s=6, cmap="tab20", vmin=-1, vmax=19)
    ax.set_title(f"{name}: {k} motifs, {int((label < 0).sum())} unassigned")
    ax.set_axis_off()
    cols = min(max(k, 1), 8)
    axes = np.atleast_1d(right.subplots(-(-max(k, 1) // cols), cols)).ravel()
    yi, xi = np.round(found["y"]).astype(int), np.round(found["x"]).astype(int)
    ok = (yi >= r) & (yi < image.shape[0] - r) & (xi >= r) & (xi < image.shape[1] - r)
    for m, a in enumerate(axes):
        a.set_axis_off()
        members = np.flatnonzero((label == m) & ok)
        if m >= k or members.size == 0:
            continue
        mean = np.mean([image[yi[i] - r:yi[i] + r + 1, xi[i] - r:xi[i] + r + 1]
                        for i in members[:2000]], axis=0)
        a.imshow(mean, cmap="gray")
        a.set_title(f"{m}: {members.size}", fontsize=8)
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--methods", nargs="+", default=["dmotif"], choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="folder for one figure per image")
    args = parser.parse_args()
    from dmotif import DmotifError

    cols = ("image", "method", "atoms", "recall", "precision", "rmse px", "true types",
            "motifs", "ARI", "unassigned %", "s")
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for path in args.images:
        image, truth = load(path)
        try:
            spacing, contrast = _lattice(image)
        except DmotifError as err:  # e.g. a low-dose image of light atoms: no lattice seen
            print(f"{path.stem} | {err}", flush=True)
            continue
        for method in args.methods:
            t0 = time.perf_counter()
            if method == "dmotif":
                found = run_dmotif(image, args.seed)
            else:
                found = run_motif_learn(image, args.seed, spacing, contrast)
            row = score(found, truth, image.shape, margin=spacing / 2)
            row.update(image=path.stem, method=method, s=time.perf_counter() - t0)
            print(" | ".join(_fmt(row.get(c, "")) for c in cols), flush=True)
            if args.figure is not None:
                args.figure.mkdir(parents=True, exist_ok=True)
                figure(args.figure / f"{path.stem}-{method}.png", image, found, path.stem)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


if __name__ == "__main__":
    main()
