"""The three image benchmarks (CIFAR-MTL, UTKFace, ChestX-ray14) as one study, on files in their
real on-disk formats (tests/fixtures_images.py), through the whole DAG: Snakemake from the local
sources to the tables, and `dvc repro` of the generated dvc.yaml to the same tables."""
import json

import pytest
import yaml

from tests import fixtures_images as fx
from tests.conftest import CI_PARAMS
from tests.test_e2e import check_tables, git_repo, sh
from tests.workflow_utils import BIN, copy_workflow, write_dvc_yaml

pytestmark = pytest.mark.slow

DATASETS = ("cifar-mtl", "utkface", "chestx-ray14")
TRAIN = {"epochs": 2, "pretrain_epochs": 1, "batch_size": 64, "lr": 1.0e-3, "weight_decay": 0.0,
         "scheduler": {"name": "none"}}


def image_study(sources) -> dict:
    """The CI params with one study of the three image datasets: STL, LS and BayesAgg-MTL (a
    warm-start method, so pretrain-LS runs too), LS under the perturbations."""
    params = yaml.safe_load(CI_PARAMS.read_text())
    params["seeds"] = [0]
    params["studies"] = {"images": {"datasets": list(DATASETS), "methods": ["stl", "ls", "bayesagg"],
                                    "published": "bayesagg", "ablations": {"robustness": {"methods": ["ls"]}}}}
    params["method"]["bayesagg"] = {"mc_samples": 64}
    (cifar, n_cifar), (utk, n_utk), (chest, n_chest) = sources
    small = {"crop": 16, "backend": "auto", "weights": None}
    params["dataset"].update({
        "cifar-mtl": {"source": {"kind": "path", "path": str(cifar), "url": None, "md5": None,
                                 "expected_images": n_cifar},
                      "split": {"val": 0.1}, "model": {"channels": 8, "kernel": 3}, "train": TRAIN},
        "utkface": {"source": {"kind": "path", "path": str(utk), "expected_images": n_utk},
                    "split": {"val": 0.1, "test": 0.2, "resize": 20}, "model": {"backbone": "resnet18", **small},
                    "train": TRAIN},
        "chestx-ray14": {"source": {"kind": "path", "path": str(chest), "expected_images": n_chest},
                         "split": {"val": 0.25, "resize": 20}, "model": {"backbone": "resnet34", **small},
                         "train": TRAIN},
    })
    return params


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return fx.write_cifar(root / "cifar"), fx.write_utkface(root / "utk"), fx.write_chestxray(root / "chest")


def workflow(tmp_path, params):
    work = copy_workflow(tmp_path / "study")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_dvc_yaml(work)
    return work


def check_image_tables(work, params):
    check_tables(work, params)
    summary = json.loads((work / "reports" / "images" / "summary.json").read_text())
    tables = work / "reports" / "images" / "tables"
    # CIFAR-MTL's 20 super-class tasks and ChestX-ray14's 14 findings are averaged (Acc., AUC);
    # UTKFace mixes an MSE with accuracies, so it has no average column
    assert "Avg. Acc." in (tables / "cifar-mtl_main.md").read_text()
    assert "Avg. AUC" in (tables / "chestx-ray14_main.md").read_text()
    utkface = (tables / "utkface_main.md").read_text()
    assert "Avg." not in utkface and "age (MSE, z-scored)" in utkface  # the published scale (STL 0.140)
    for method in params["studies"]["images"]["methods"][1:]:  # the MTL methods
        ev = json.loads((work / "metrics" / "eval" / "cifar-mtl" / method / "pct100" / "seed0.json").read_text())
        accuracies = [ev["tasks"][t]["metrics"]["accuracy"] for t in ev["task_order"]]
        assert len(accuracies) == 20
        assert summary["cifar-mtl"][method]["mean_score"] == pytest.approx(sum(accuracies) / 20, rel=1e-6)


def test_image_study_through_snakemake(sources, tmp_path):
    params = image_study(sources)
    work = workflow(tmp_path, params)
    sh([str(BIN / "snakemake"), "--cores", "2", "all"], work)
    check_image_tables(work, params)
    for dataset in DATASETS:  # the warm start and the validation page of each
        assert (work / "models" / "pretrain" / dataset / "pct100" / "seed0" / "checkpoint.pt").exists()
        assert (work / "reports" / "validation" / f"{dataset}.html").exists()


def test_image_study_through_dvc_repro(sources, tmp_path):
    params = image_study(sources)
    params["studies"]["images"]["methods"] = ["stl", "ls"]  # Snakemake's test runs BayesAgg-MTL
    work = workflow(tmp_path, params)
    git_repo(work)
    sh([str(BIN / "dvc"), "repro", "--quiet"], work)
    check_image_tables(work, params)
    assert "up to date" in sh([str(BIN / "dvc"), "status"], work)
