"""Any tabular dataset, by configuration: a user's CSV on disk becomes a served, gated champion with
the README's commands and nothing else (issue 13's "done when").

Each case is a real table nobody tuned the project for, written as a CSV the way a user would have
it, plus a dataset config; then, as subprocesses on a fresh data dir and the embedded registry:
`land --from`, `contract infer`, `materialize`, `serve` (predict and feedback over HTTP), `gate`.

- statsmodels' `fair`: binary (`affairs > 0`), no time column, no key (the shipped
  data/configs/fair.yaml, exactly as the README walks through it);
- `fair` again, the wife's occupation as six string classes (multi-class);
- statsmodels' `randhie`: regression on doctor visits, no time column;
- NYC flights as a CSV export: the timestamp as text, a string target (`late` / `on_time`).

The four walkthroughs are independent (each its own data dir, registry, server and port), and each
step is a single-threaded subprocess: the module starts them two at a time, so both cores work,
and each test waits for its own walkthrough and fails with its own assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.serving.conftest import free_port, start, stop, wait_http

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CLI = str(BIN / "mlops-pipeline")
OCCUPATIONS = {1: "student", 2: "farming", 3: "white_collar", 4: "teacher", 5: "managerial",
               6: "professional"}
FLIGHT_FEATURES = ["carrier", "origin", "dest", "distance", "hour", "temp", "humid", "wind_speed",
                   "precip", "visib", "time_hour"]


#: The README's first step, verbatim: a user's table as a CSV on disk.
EXPORT_FAIR = ("import statsmodels.api as sm; "
               "sm.datasets.fair.load_pandas().data.to_csv('fair.csv', index=False)")


def _fair() -> pd.DataFrame:
    import statsmodels.api as sm

    return sm.datasets.fair.load_pandas().data


def _fair_as_the_readme_exports_it(flights, where: Path) -> pd.DataFrame:
    subprocess.run([sys.executable, "-c", EXPORT_FAIR], cwd=where, check=True, timeout=120)
    return pd.read_csv(where / "fair.csv")


def _fair_occupation() -> pd.DataFrame:
    frame = _fair()
    frame["occupation"] = frame["occupation"].astype(int).map(OCCUPATIONS)
    return frame


def _randhie() -> pd.DataFrame:
    import statsmodels.api as sm

    return sm.datasets.randhie.load_pandas().data


def _flights_csv(flights: pd.DataFrame, where: Path) -> pd.DataFrame:
    rows = flights[flights["month"].isin([1, 2])].sample(n=8000, random_state=3)
    rows = rows.dropna(subset=["arr_delay"])
    out = rows[["year", "month", "day", "sched_dep_time", "flight", *FLIGHT_FEATURES]].copy()
    out["status"] = (rows["arr_delay"] > 15).map({True: "late", False: "on_time"})
    out["time_hour"] = out["time_hour"].dt.strftime("%Y-%m-%d %H:%M:%S")  # text, as in any CSV
    return out


FAIR_OCCUPATION = """\
name: fair_occupation
task: classification
source: {path: landing/fair_occupation/*.csv, format: csv}
target: {name: occupation}
features:
  numerical: [rate_marriage, age, yrs_married, children, religious, educ, occupation_husb]
contract: CONTRACT
model: {seed: 7, params: {max_iter: 60}}
gate:
  accuracy: {floor: 0.3}
  log_loss: {tolerance: 0.05}
checks: {min_class_share: 0.001}
"""

FLIGHTS_CSV = """\
name: flights_status
task: classification
source: {path: landing/flights_status/*.csv, format: csv}
target: {name: status, positive: late}
time_column: time_hour
key_columns: [year, month, day, sched_dep_time, carrier, flight, origin]
features:
  categorical: [carrier, origin, dest]
  numerical: [distance, hour, temp, humid, wind_speed, precip, visib]
  datetime_parts: {time_hour: [dayofweek]}
contract: CONTRACT
model: {seed: 1, params: {max_iter: 80}}
gate:
  roc_auc: {floor: 0.55, tolerance: 0.02}
"""


@dataclass(frozen=True)
class Case:
    name: str
    table: Callable[..., pd.DataFrame]  # (flights, a folder to write in) -> the user's table
    config: str  # a shipped config file, or YAML text with CONTRACT for the contract path
    label_column: str  # what feedback carries
    check_answer: Callable[[dict], None]
    gate_args: tuple[str, ...] = ("--sample-rows", "3000")  # none: every landed row


def _binary_01(p: dict) -> None:
    assert p["prediction"] in (0, 1) and set(p["probabilities"]) == {"0", "1"}
    assert p["probability"] == pytest.approx(p["probabilities"]["1"])


def _occupation(p: dict) -> None:
    assert p["prediction"] in OCCUPATIONS.values() and set(p["probabilities"]) == set(OCCUPATIONS.values())
    assert p["probabilities"][p["prediction"]] == pytest.approx(max(p["probabilities"].values()))


def _visits(p: dict) -> None:
    assert isinstance(p["prediction"], float) and "probabilities" not in p


def _status(p: dict) -> None:
    assert p["prediction"] in ("late", "on_time") and set(p["probabilities"]) == {"late", "on_time"}
    assert p["probability"] == pytest.approx(p["probabilities"]["late"])  # the configured positive


CASES = [
    Case("fair", _fair_as_the_readme_exports_it, "data/configs/fair.yaml", "affairs", _binary_01),
    Case("fair_occupation", lambda flights, where: _fair_occupation(), FAIR_OCCUPATION, "occupation",
         _occupation),
    # Doctor visits are heavy-tailed: R² on a 3,000-row sample swings with a few large counts.
    Case("randhie", lambda flights, where: _randhie(), "data/configs/randhie.yaml", "mdvis", _visits, ()),
    Case("flights_status", _flights_csv, FLIGHTS_CSV, "status", _status, ()),
]


def _env(data: Path) -> dict[str, str]:
    env = {**os.environ, "MLOPS_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    for key in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_UI_URL", "MLOPS_DATASET_CONFIG",
                "MLOPS_SERVE_TOKEN"):
        env.pop(key, None)
    return env


def _cli(*argv: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *argv], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
                          timeout=timeout)
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def walkthroughs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 flights) -> Iterator[dict[str, Future]]:
    """The walkthrough of every case this session runs, started two at a time in threads; a future
    per case name."""
    wanted = {item.callspec.params["case"].name for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="byod") as pool:
        futures = {c.name: pool.submit(_walkthrough, c, tmp_path_factory.mktemp(c.name), flights)
                   for c in CASES if c.name in wanted}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_csv_on_disk_becomes_a_served_gated_champion(case: Case, walkthroughs: dict[str, Future]):
    walked = walkthroughs[case.name].result()  # a failed step's assertion is raised here
    assert walked == {"champion": "v1", "answers": 3, "feedback_rows": 1, "gate": "PASSED"}


def _walkthrough(case: Case, tmp_path: Path, flights) -> dict[str, object]:
    """land -> contract infer -> materialize -> serve (predict, feedback) -> gate, each step's
    output checked; what each step ended with."""
    data = tmp_path / "data"
    env = _env(data)
    table = case.table(flights, tmp_path)
    csv = tmp_path / f"{case.name}.csv"
    if not csv.exists():
        table.to_csv(csv, index=False)
    if case.config.endswith(".yaml"):  # a shipped config: its committed contract is redrafted here
        config = tmp_path / Path(case.config).name
        text = (PROJECT_ROOT / case.config).read_text()
        contract = tmp_path / "contract.yaml"
        config.write_text(text.replace(f"contract: data/contracts/{Path(case.config).stem}.yaml",
                                       f"contract: {contract}"))
        assert str(contract) in config.read_text()
    else:
        config = tmp_path / f"{case.name}.yaml"
        config.write_text(case.config.replace("CONTRACT", str(tmp_path / "contract.yaml")))
    cfg = str(config)

    landed = _cli("land", "--from", str(csv), "--config", cfg, env=env)
    assert "landed" in landed.stdout
    _cli("contract", "infer", "--config", cfg, env=env)
    run = _cli("materialize", "--config", cfg, env=env)
    assert "promoted v1 to champion" in run.stdout, run.stdout[-3000:]  # else serving has no model

    # Served: the answer in the dataset's own terms; feedback in the label's own type.
    port = free_port()
    log = tmp_path / "serve.log"
    serve_env = {**env, "MLOPS_SERVE_STATE_FILE": str(tmp_path / "server.json")}
    proc = start([CLI, "serve", "--config", cfg, "--port", str(port), "--predictions-url",
                  f"sqlite:///{tmp_path / 'predictions.db'}"], serve_env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", proc, log)
        # the user's pipeline is answered by its compiled form (serving.compiled: the same bits)
        assert httpx.get(f"{url}/health", timeout=30).json()["champion"]["compiled"] is True
        rows = table.head(3)
        records = json.loads(rows.drop(columns=[case.label_column]).to_json(orient="records"))
        answer = httpx.post(f"{url}/predict", json={"records": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        for p in predictions:
            case.check_answer(p)
        label = rows[case.label_column].iloc[0]
        label = label.item() if hasattr(label, "item") else label
        fed = httpx.post(f"{url}/feedback", json={"request_id": predictions[0]["request_id"],
                                                  "label": label}, timeout=30)
        assert fed.status_code == 200, fed.text
        feedback_rows = fed.json()["rows"]
    finally:
        stop(proc)

    gate = _cli("gate", "--config", cfg, *case.gate_args, env=env)
    assert "gate PASSED" in gate.stdout, gate.stdout[-3000:]
    # The registry `materialize` used; a champion trained on every row is retrained on the sample.
    assert f"reference: champion v1 of sqlite:///{data}" in gate.stdout, gate.stdout[-3000:]
    if "--sample-rows" in case.gate_args:
        assert "its recorded config retrained on this sample" in gate.stdout, gate.stdout[-3000:]
    return {"champion": "v1" if "promoted v1 to champion" in run.stdout else run.stdout[-300:],
            "answers": len(predictions), "feedback_rows": feedback_rows,
            "gate": "PASSED" if "gate PASSED" in gate.stdout else gate.stdout[-300:]}
