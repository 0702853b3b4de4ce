"""Speed / accuracy charts in the manner of the papers' figures: one point per model, the Pareto front drawn.

Input CSVs need numeric speed and accuracy columns and either a model-name column ('model' or 'name': a
results table) or a config.json beside them (a run's log.csv: one point per run, its last epoch, labelled by
the model and representation of the run's configuration). Several CSVs are merged; anything else is refused.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .checkpoint import atomic_write
from .errors import EngineError

SPEED_COLUMNS = ("images_per_s", "train_images_per_s", "inference_images_per_s", "gflops")
ACCURACY_COLUMNS = ("val_top1", "top1")
LOWER_IS_BETTER = {"gflops", "ms_per_image", "params_m"}


class ResultsFileError(EngineError, ValueError):
    """A file given to `jpegnet plot` that is not a results CSV."""


def _run_label(path: Path) -> tuple[str | None, str | None]:
    """(label, representation) of a run's log.csv from the run's config.json beside it."""
    from .runs import read_run_config

    config = read_run_config(path.parent)
    if not config or "model" not in config:
        return None, None
    rep = config.get("representation")
    return f"{config['model']} ({rep}, {path.parent.name})" if rep else config["model"], rep


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResultsFileError(f"{path} is not a results CSV ({type(exc).__name__})") from None
    return rows


def read_points(csv_paths, x: str | None = None, y: str | None = None) -> tuple[list[dict], str, str]:
    """Points {'model', 'x', 'y', 'representation'}, one per model of a results table and one per run of a
    training log (its last epoch, labelled by the model and representation in the run's config.json);
    choose the default x / y columns if not given. A file without a speed and an accuracy column is refused."""
    points: dict[str, dict] = {}
    x_col = y_col = None
    for path in map(Path, csv_paths):
        if not path.is_file():
            raise FileNotFoundError(f"result CSV not found: {path}")
        rows = _read_csv(path)
        columns = set(rows[0].keys()) if rows else set()
        fx = x or next((c for c in SPEED_COLUMNS if c in columns), None)
        fy = y or next((c for c in ACCURACY_COLUMNS if c in columns), None)
        if not rows or fx not in columns or fy not in columns:
            raise ResultsFileError(f"{path} is not a results CSV: it needs a speed column "
                                   f"({x or ' / '.join(SPEED_COLUMNS)}) and an accuracy column "
                                   f"({y or ' / '.join(ACCURACY_COLUMNS)})")
        if (x_col, y_col) != (None, None) and (fx, fy) != (x_col, y_col):
            raise ResultsFileError(f"{path} has {fx} / {fy} where the files before have {x_col} / {y_col}; "
                                   f"choose with --x and --y")
        x_col, y_col = fx, fy
        run_label, run_rep = (None, None) if ("model" in columns or "name" in columns) else _run_label(path)
        for row in rows:
            name = row.get("model") or row.get("name") or run_label or f"{path.parent.name}/{path.stem}"
            try:
                point = {"model": name, "x": float(row[fx]), "y": float(row[fy]),
                         "representation": run_rep or ("dct" if name.startswith("dct_") else "rgb")}
            except (TypeError, ValueError):
                continue  # a row without numbers (e.g. a skipped benchmark) is no point
            points[name] = point  # a training log's rows are its epochs: the last one stands for the run
    if not points:
        raise ResultsFileError(f"no row has numbers in both {x_col!r} and {y_col!r}")
    return list(points.values()), x_col, y_col


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
        is_dct = p["representation"] == "dct"
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
