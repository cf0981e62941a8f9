"""How the suite is shared between workers: a folder with a shared session stack stays on one."""

from __future__ import annotations

from mlops_pipeline_tests.xdist_scopes import work_unit


def test_a_folder_with_a_shared_stack_is_one_unit_and_any_other_test_file_its_own():
    serving = "mlops_pipeline_tests/serving/test_app.py::test_predict"
    deep = "mlops_pipeline_tests/defs/monitoring/test_traffic.py::test_x[a-b]"
    assert work_unit(serving) == work_unit("mlops_pipeline_tests/serving/test_faults.py::t")
    assert work_unit(serving) == "mlops_pipeline_tests/serving"
    assert work_unit(deep) == "mlops_pipeline_tests/defs"
    assert work_unit("mlops_pipeline_tests/monitoring/test_drift.py::t") == (
        "mlops_pipeline_tests/monitoring/test_drift.py")
    assert work_unit("mlops_pipeline_tests/test_readme.py::t[a::b]") == "mlops_pipeline_tests/test_readme.py"
