"""Our model with and without the log target transform, on the same folds (our model only).

    python -m benchmarks.realdata.transform [--data ../shared/data/real]
        [--datasets bom] [--bom-years 2018,2019] [--modes none]

Prints our event-window RMSE at leads 1/3/6 h for ``target_transform`` none and log on each
data set (``datasets.set_transform`` rewrites the converted catalogue). This is how the BOM
transforms in ``datasets.BOM_TRANSFORM`` were chosen (on the 2018-2019 folds, before the
2020-2021 test years); docs/benchmarks_accuracy.md quotes its output.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.realdata import datasets
from benchmarks.realdata.run import BOM_SETTINGS, REPORT_LEADS, SETTINGS, hourly_frame
from forecast.frames import LEVEL
from forecast.modelling.metrics import attach_observed, event_windows, lead_scores
from forecast.pipeline.backtest_files import run_backtest_files


def event_rmse(ds: datasets.Dataset, mode: str, transform: str) -> list[float]:
    """Our event RMSE at ``REPORT_LEADS`` on ``ds`` with this target transform."""
    datasets.set_transform(ds, transform)
    river, hourly = hourly_frame(ds)
    hw = river.thresholds.ladder()[0][1]
    settings = BOM_SETTINGS if ds.name.startswith("bom") else SETTINGS
    res = run_backtest_files(ds.catalogue, ds.obs, ds.rain, ds.folds, mode, None,
                             models=("lgbm",), settings=settings)
    sc = lead_scores(attach_observed(res.all_forecasts, hourly[LEVEL]),
                     event_windows(hourly[LEVEL], hw), hw).set_index("horizon_h")
    return [float(sc.at[h, "rmse_event"]) for h in REPORT_LEADS]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=datasets.DEFAULT_DATA)
    ap.add_argument("--datasets", default="bom")
    ap.add_argument("--modes", default="none")
    ap.add_argument("--bom-years", default="2018,2019")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="realdata_tf_"))
    years = tuple(int(y) for y in args.bom_years.split(","))
    sets = [ds for name in args.datasets.split(",")
            for ds in datasets.convert(name, args.data, work, years)]
    print("| data set | mode | event RMSE " + "/".join(map(str, REPORT_LEADS))
          + " h: none | log |\n|---|---|---|---|")
    for ds in sets:
        for mode in args.modes.split(","):
            cells = [" / ".join(f"{v:.3f}" for v in event_rmse(ds, mode, tf))
                     for tf in ("none", "log")]
            print(f"| {ds.name} | {mode} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
