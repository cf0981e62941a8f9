"""The monitoring board as on-call sees it at 3 a.m.: real Chromium opens the page the
`monitoring_board` asset wrote, in four states made on one trained loop (the session's, copied):

1. healthy — a day of the champion's answers captured as the server captures them: OK;
2. drift with estimated degradation — today's answers on inputs that moved (numeric inputs stuck
   at one legal value: answers alike), the real `production_monitoring` run measures the drift and
   estimates the quality before labels: ACT, retrain;
3. a blocked batch — a landed batch with a column of the wrong type, the real loop run stops at
   its blocking check: ACT, quarantine that file;
4. a canary breaching its SLO — a challenger registered and aliased, its canary answers captured
   at 160 ms: ACT, roll back.

Each state is asserted on the rendered page: the verdict, its command, the first screen
(1400x900) holds the verdict and the panels, and no text on it is a raw metric name or a Python
literal. Screenshots go to a temporary folder; with MLOPS_UPDATE_SCREENSHOTS=1 they refresh
docs/images/board_*.png (shown in the README and docs/monitoring.md).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import skip_or_fail

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREEN = {"width": 1400, "height": 900}


def _capture(spec, rows: pd.DataFrame, *, role: str = "champion", version: str = "1",
             latency_ms: float = 3.0, ts: datetime | None = None) -> None:
    """Score `rows` with the champion and write them to the store as the server does: one request
    per record, with its role, version and latency."""
    import mlflow

    from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore

    model = mlflow.sklearn.load_model(f"models:/{spec.name}@champion")
    proba = model.predict_proba(rows[spec.features.columns])[:, 1]
    records = rows[[*spec.features.columns, *spec.key_columns]].astype(object)
    records = records.where(records.notna(), None).to_dict("records")
    store = PredictionStore()
    store.write([PredictionBatch.from_records(
        [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()}],
        [float(p >= 0.5)], [float(p)], role=role, ts=ts, model_name=spec.name,
        model_version=version, latency_ms=latency_ms) for rec, p in zip(records, proba, strict=True)])
    store.close()


_SNAKE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")
_LITERALS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\bnan\b|\bNaN\b|[{}\[\]]")


def _first_screen_text(page, spec_name: str) -> str:
    """The words on the first screen: title, verdict and panels, without the command to copy,
    the model's own name and data file names (names a person gave, not metric names)."""
    text = page.evaluate("""() => ['h1', '#verdict', '#first']
        .map(q => document.querySelector(q).innerText).join('\\n')""")
    for code in page.locator("#verdict code").all_inner_texts():
        text = text.replace(code, "COMMAND")
    text = re.sub(r"\S+\.(parquet|csv|json)\b", "FILE", text)  # data files are named as they are
    return text.replace(spec_name, "MODEL")


class _Board:
    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, page, shots: Path, spec):
        self.defs, self.instance, self.page, self.shots, self.spec = defs, instance, page, shots, spec

    def open(self, state: str) -> tuple[str, str, str]:
        """Materialize the board, open it in Chromium, check the first screen, screenshot it;
        returns (level, words, command) as the page shows them."""
        result = self.defs.resolve_job_def("monitoring_board_job").execute_in_process(
            instance=self.instance)
        assert result.success
        meta = result.asset_materializations_for_node("monitoring_board")[0].metadata
        page = self.page
        page.goto(Path(meta["board_path"].value).as_uri())
        verdict = page.locator("#verdict")
        level = verdict.get_attribute("data-level")
        words = verdict.locator(".words").inner_text()
        command = verdict.locator("code").inner_text() if verdict.locator("code").count() else ""
        assert meta["verdict"].value.startswith(f"{level} — {words}")  # the alert's words, the same
        # the first screen holds the verdict and every panel (at most eight)
        panels = page.locator("#first .panel")
        assert 6 <= panels.count() <= 8
        for i in range(panels.count()):
            box = panels.nth(i).bounding_box()
            assert box is not None and box["y"] + box["height"] <= SCREEN["height"], (state, i, box)
        text = _first_screen_text(page, self.spec.name)
        assert not _SNAKE.findall(text), (state, _SNAKE.findall(text))
        assert not _LITERALS.findall(text), (state, _LITERALS.findall(text))
        assert page.locator("details").count() >= 4  # every table and check one click away
        assert not page.locator("details[open]").count()
        page.screenshot(path=str(self.shots / f"board_{state}.png"))
        return level, words, command


def test_the_board_in_four_states_made_by_real_runs(trained_flights, flights, tmp_path):
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    from mlops_pipeline.defs.definitions import build_definitions
    from mlops_pipeline.spec import load_spec

    if not CHROMIUM.exists():
        skip_or_fail("Debian chromium is missing: apt-get install -y chromium")
    data_dir = trained_flights
    spec = load_spec()
    refresh = os.environ.get("MLOPS_UPDATE_SCREENSHOTS") == "1"
    shots = PROJECT_ROOT / "docs" / "images" if refresh else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    defs = build_definitions()
    april = flights[flights["month"] == 4].dropna(subset=["arr_delay"])
    with dg.DagsterInstance.get() as instance, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        board = _Board(defs, instance, browser.new_page(viewport=SCREEN), shots, spec)
        try:
            # 1. healthy: yesterday's answers of the champion, fast
            _capture(spec, april.sample(150, random_state=1), ts=datetime.now(UTC) - timedelta(days=1))
            level, words, command = board.open("healthy")
            assert (level, command) == ("OK", ""), words
            assert words.startswith(f"all is well: {spec.name} champion v1 — 150 predictions served, p99 3")

            # 2. drift with estimated degradation: today's inputs moved, every answer alike
            moved = april.sample(400, random_state=2)
            for column in spec.features.numerical:  # stuck at a legal value (the contract holds)
                moved[column] = moved[column].quantile(0.9, interpolation="nearest")
            _capture(spec, moved)
            today = datetime.now(UTC).strftime("%Y-%m-%d")
            run = defs.resolve_job_def("production_monitoring").execute_in_process(
                instance=instance, partition_key=today, raise_on_error=False)
            assert run.asset_materializations_for_node("estimated_performance")
            level, words, command = board.open("drift")
            assert (level, command) == ("ACT", "mlops-pipeline materialize"), words
            assert re.match(r"inputs drifted in \d+ of \d+ columns; estimated ranking quality "
                            r"\(ROC AUC\) 0\.\d+ is below its floor 0\.\d+ and no retraining ran "
                            r"since: retrain", words), words

            # 3. a blocked batch: a landed file with a column of the wrong type stops the loop
            bad = sorted((data_dir / "landing" / "flights").glob("*.parquet"))[-1]
            batch = pd.read_parquet(bad)
            batch["distance"] = batch["distance"].astype(str) + " miles"
            batch.to_parquet(bad, index=False)
            loop = defs.resolve_job_def("mlops_loop").execute_in_process(instance=instance,
                                                                         raise_on_error=False)
            assert not loop.success
            level, words, command = board.open("blocked_batch")
            assert level == "ACT" and words.startswith(f"retraining blocked by batch {bad.name}, "
                                                       "column 'distance'"), words
            assert command.startswith(f"mlops-pipeline batches quarantine {bad.name} --reason")

            # 4. a canary breaching its SLO: a challenger gets canary traffic, answering in 160 ms
            uri = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            champion = client.get_model_version_by_alias(spec.name, "champion")
            canary = client.create_model_version(spec.name, champion.source, run_id=champion.run_id)
            client.set_registered_model_alias(spec.name, "challenger", canary.version)
            _capture(spec, april.sample(40, random_state=4), role="canary", version=canary.version,
                     latency_ms=160.0)
            level, words, command = board.open("canary_slo")
            assert level == "ACT" and words == (f"roll back v{canary.version}: canary p99 160 ms is "
                                                "3.2x the 50 ms target"), words
            assert command.startswith("mlops-pipeline rollback --reason")
        finally:
            browser.close()
