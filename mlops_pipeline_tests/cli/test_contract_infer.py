"""`mlops-pipeline contract infer` on a user's CSV: dates become datetimes, the domain is drafted,
and every column left as plain text is named in a warning."""

from __future__ import annotations

import pandas as pd
import yaml

from mlops_pipeline.cli import main

CONFIG = """
name: churn
task: classification
source: {path: landing/churn/*.csv, format: csv}
target: {name: churned}
time_column: signed_up
features:
  categorical: [plan]
  numerical: [monthly_fee]
  datetime_parts: {last_login: [dayofweek]}
contract: {contract}
gate: {roc_auc: {floor: 0.5}}
"""


def test_infer_parses_dates_drafts_the_domain_and_warns_about_text(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    landing = tmp_path / "landing" / "churn"
    landing.mkdir(parents=True)
    n = 40
    pd.DataFrame({
        "plan": ["basic", "pro"] * (n // 2),
        "monthly_fee": [10.0 + i for i in range(n)],
        "signed_up": [f"2024-01-{1 + i % 28:02d}" for i in range(n)],
        "last_login": [f"2024-03-{1 + i % 28:02d}T10:00:00" for i in range(n)],
        "churned": [i % 2 for i in range(n)],
    }).to_csv(landing / "batch_1.csv", index=False)
    contract = tmp_path / "contract.yaml"
    config = tmp_path / "churn.yaml"
    config.write_text(CONFIG.replace("{contract}", str(contract)))

    assert main(["contract", "infer", "--config", str(config), "--horizon-days", "30"]) == 0

    err = capsys.readouterr().err
    assert "columns left as `object`" in err and "plan" in err
    doc = yaml.safe_load(contract.read_text())
    columns = doc["schema"]["columns"]
    assert columns["signed_up"]["dtype"].startswith("datetime64")
    assert columns["last_login"]["dtype"].startswith("datetime64")
    assert doc["domain"]["categories"]["plan"] == ["basic", "pro"]
    fee = doc["domain"]["ranges"]["monthly_fee"]
    assert fee["min"] < 10.0 and fee["max"] > 49.0
    assert pd.Timestamp(doc["domain"]["time_window"]["signed_up"]["end"]) >= pd.Timestamp("2024-02-27")
