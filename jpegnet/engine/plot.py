"""Speed / accuracy charts in the manner of the papers' figures: one point per model, the Pareto front drawn.

Input CSVs need a model-name column ('model' or 'name') and numeric speed and accuracy columns; several CSVs
(e.g. one per machine or run) are merged. When a CSV holds several rows of one model (a per-epoch training
log), the last row counts.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .checkpoint import atomic_write

SPEED_COLUMNS = ("images_per_s", "train_images_per_s", "inference_images_per_s", "gflops")
ACCURACY_COLUMNS = ("val_top1", "top1")
LOWER_IS_BETTER = {"gflops", "ms_per_image", "params_m"}


def read_points(csv_paths, x: str | None = None, y: str | None = None) -> tuple[list[dict], str, str]:
    """Merge CSV rows into points {'model', 'x', 'y'}; choose the default x / y columns if not given."""
    rows = []
    for path in csv_paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"result CSV not found: {path}")
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                row.setdefault("model", row.get("name") or path.stem)
                if not row["model"]:
                    row["model"] = path.stem
                rows.append(row)
    if not rows:
        raise ValueError("the result CSVs hold no rows")
    columns = set().union(*(r.keys() for r in rows))
    x = x or next((c for c in SPEED_COLUMNS if c in columns), None)
    y = y or next((c for c in ACCURACY_COLUMNS if c in columns), None)
    if x is None or y is None or x not in columns or y not in columns:
        raise ValueError(f"the CSVs need a speed column ({', '.join(SPEED_COLUMNS)} or --x) and an accuracy "
                         f"column ({', '.join(ACCURACY_COLUMNS)} or --y); they have {sorted(columns)}")
    points: dict[str, dict] = {}
    for row in rows:
        try:
            points[row["model"]] = {"model": row["model"], "x": float(row[x]), "y": float(row[y])}
        except (TypeError, ValueError):
            continue  # a row without numbers (e.g. a skipped benchmark) is no point
    if not points:
        raise ValueError(f"no row has numbers in both {x!r} and {y!r}")
    return list(points.values()), x, y


def pareto_front(points: list[dict], x_higher_is_better: bool = True) -> list[dict]:
    """Points no other point beats on both speed and accuracy, sorted by speed."""
    sign = 1.0 if x_higher_is_better else -1.0
    front = []
    for p in points:
        dominated = any(sign * q["x"] >= sign * p["x"] and q["y"] >= p["y"]
                        and (sign * q["x"] > sign * p["x"] or q["y"] > p["y"]) for q in points)
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: p["x"])


def plot_pareto(csv_paths, out_png: str | Path, x: str | None = None, y: str | None = None,
                title: str = "speed / accuracy") -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, x, y = read_points(csv_paths, x, y)
    higher = x not in LOWER_IS_BETTER
    front = pareto_front(points, higher)
    fig, ax = plt.subplots(figsize=(7, 5))
    for p in points:
        is_dct = p["model"].startswith("dct_")
        ax.scatter(p["x"], p["y"], s=50, marker="o" if is_dct else "s",
                   color="tab:orange" if is_dct else "tab:blue", zorder=3)
        ax.annotate(p["model"], (p["x"], p["y"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.plot([p["x"] for p in front], [p["y"] for p in front], "--", color="gray", zorder=2,
            label="Pareto front")
    ax.scatter([], [], marker="s", color="tab:blue", label="RGB input")
    ax.scatter([], [], marker="o", color="tab:orange", label="DCT input")
    ax.set_xlabel(x.replace("_", " ") + ("" if higher else " (lower is better)"))
    ax.set_ylabel(y.replace("_", " ") + (" (%)" if "top" in y else ""))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left" if higher else "lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=130))
    plt.close(fig)
    return {"png": str(out_png), "points": points, "front": [p["model"] for p in front], "x": x, "y": y}
