"""The paper presets, params/*.yaml: each is a complete, valid params file, and Snakemake (with
`--configfile`, as the README says) and DVC (the preset over params.yaml, dvc.yaml regenerated)
build the same DAG from it. Their source paths are placeholders that do not exist: building the
DAG reads no source file (only the download stage does)."""
import shutil

import numpy as np
import pytest

from mtlrepro import params as P
from mtlrepro.checks import check_methods
from tests.conftest import REPO
from tests.workflow_utils import copy_workflow, dvc_dag, graph, parse_command, snakemake_dag

PRESETS = sorted((REPO / "params").glob("*.yaml"))


def test_one_preset_per_published_table():
    assert [p.name for p in PRESETS] == ["bayesagg-table1-qm9.yaml", "bayesagg-table2-chestx-ray14.yaml",
                                         "bayesagg-table2-cifar-mtl.yaml", "bayesagg-table3-utkface.yaml",
                                         "infomtl-table1-tweeteval-bert.yaml", "infomtl-table1-tweeteval-roberta.yaml"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_is_valid_and_both_tools_build_its_dag(tmp_path, preset):
    params = P.load(preset)
    check_methods(params, str(preset))
    (study,) = P.studies(params)
    (dataset,) = study.datasets
    work = copy_workflow(tmp_path / "wf", preset)  # DVC's way: the preset over params.yaml, dvc.yaml anew
    (work / "params").mkdir()
    shutil.copy(preset, work / "params" / preset.name)
    smk = snakemake_dag(work, "--configfile", f"params/{preset.name}")
    dvc = dvc_dag(work)
    smk_nodes, smk_edges = graph(smk)
    dvc_nodes, dvc_edges = graph([{**s, "input": [i for i in s["input"] if not i.startswith("src/")]} for s in dvc])
    assert len(smk) == len(dvc) and smk_nodes == dvc_nodes and smk_edges == dvc_edges
    # every Snakemake job reads the preset itself (Snakemake passes the configfile's absolute path)
    assert {parse_command(j["cmd"])[1].get("--params") for j in smk} == {str(work / "params" / preset.name)}
    outputs = {o for j in smk for o in j["output"]}
    last = study.seeds[-1]
    expected = {f"reports/{study.name}/summary.json", f"metrics/reference/{study.name}/{dataset}.json"}
    expected |= {f"models/train/{dataset}/{study.run_names(dataset, m)[-1]}/pct100/seed{last}" for m in study.methods}
    expected |= {f"models/train/{dataset}/{m}/pct{f}/seed{last}" for m in study.data_fraction_methods
                 for f in study.ablation_fractions}
    expected |= {f"metrics/robustness/{dataset}/{m}/seed{last}.json" for m in study.robustness_methods}
    if study.pretrain:
        expected.add(f"models/pretrain/{dataset}/pct100/seed{last}")
    assert expected <= outputs, expected - outputs
    runs = sum(len(study.run_names(dataset, m)) for m in study.methods)  # a swept method: one per point
    fraction_runs = len(study.data_fraction_methods) * len(study.ablation_fractions)
    assert sum(j["rule"] == "train" for j in smk) == (runs + fraction_runs) * len(study.seeds)


def test_the_qm9_preset_is_at_the_papers_data_scale_in_the_published_comparison():
    from mtlrepro import published
    from mtlrepro.report.comparison import at_paper_scale

    qm9 = published.counterparts("bayesagg")["qm9"]
    assert at_paper_scale(qm9, P.load(REPO / "params" / "bayesagg-table1-qm9.yaml"))
    assert not at_paper_scale(qm9, P.load(REPO / "params.yaml"))  # the embedded default's 600/200/400


@pytest.mark.parametrize("preset, dataset", [("bayesagg-table1-qm9.yaml", "qm9"),
                                             ("bayesagg-table2-cifar-mtl.yaml", "cifar-mtl"),
                                             ("bayesagg-table2-chestx-ray14.yaml", "chestx-ray14"),
                                             ("bayesagg-table3-utkface.yaml", "utkface")])
def test_every_preset_sets_its_published_tables_beside_ours_at_the_papers_scale(preset, dataset):
    """Each preset's study compares its data set with the paper's tables (Table 5's deep ensembles
    with QM9's and UTKFace's), at the paper's split, with every method those tables print."""
    from mtlrepro import published
    from mtlrepro.report.comparison import at_paper_scale, counterparts_of

    params = P.load(REPO / "params" / preset)
    (study,) = P.studies(params)
    cp = counterparts_of(study)[dataset]
    assert cp.same_dataset and at_paper_scale(cp, params)
    printed = {m for key in cp.tables for m, e in published.table(key).entries.items() if not e.by_definition}
    assert printed <= set(study.methods), printed - set(study.methods)
    assert ({"ensemble_heads", "ensemble_networks"} <= set(study.methods)) == (dataset in ("qm9", "utkface"))
    if "ensemble_heads" in study.methods:  # Table 5's sizes
        assert params["method"]["ensemble_heads"] == {"heads": 1024}
        assert params["method"]["ensemble_networks"] == {"networks": 10}


@pytest.mark.parametrize("preset, grid", [
    ("bayesagg-table1-qm9.yaml", {"power_regression": [0.75, 0.85, 0.95]}),
    ("bayesagg-table2-cifar-mtl.yaml", {"power_classification": [0.05, 0.005, 0.0005], "pretrain_epochs": [1, 3]}),
    ("bayesagg-table3-utkface.yaml", {"power_regression": [0.3, 0.5, 0.8], "power_classification": [0.005, 0.05, 0.1]}),
    ("bayesagg-table2-chestx-ray14.yaml", None)])
def test_presets_sweep_appendix_b_grids_on_validation(preset, grid):
    """BayesAgg-MTL's s (and CIFAR-MTL's LS epochs) are chosen on the validation split over the
    paper's grid; ChestX-ray14 has no published grid (the authors' values are used)."""
    params = P.load(REPO / "params" / preset)
    (study,) = P.studies(params)
    (dataset,) = study.datasets
    variants = study.variants(dataset, "bayesagg")
    if grid is None:
        assert not variants
        return
    assert {k: sorted({dict(v.settings)[k] for v in variants}) for k in grid} == {k: sorted(v) for k, v in grid.items()}
    assert len(variants) == int(np.prod([len(v) for v in grid.values()]))


@pytest.mark.parametrize("backbone, table8", [
    ("bert", {"alpha": 0.01, "beta": 1, "tau": 0.1, "dropout": 0.0}),
    ("roberta", {"alpha": 0.1, "beta": 0.01, "tau": 1.0, "dropout": 0.2})])
def test_the_infomtl_presets_follow_its_protocol(backbone, table8):
    """InfoMTL's Table 1 on TweetEval: its 12 baselines, STL and Table 4's ablations, at the
    official splits, with its appendix's training (Adamax 5e-5, 20 epochs, batch 128, patience 3,
    256 tokens), one task per batch, one head architecture with Table 8's dropout, selection on
    the tasks' scores; RoBERTa's adds Table 6's fractions and Figures 3-4's robustness."""
    from mtlrepro import published
    from mtlrepro.report.comparison import at_paper_scale, counterparts_of

    params = P.load(REPO / "params" / f"infomtl-table1-tweeteval-{backbone}.yaml")
    (study,) = P.studies(params)
    assert study.datasets == ("tweeteval",) and study.baseline == "ls" and not study.pretrain
    cp = counterparts_of(study)["tweeteval"]
    assert at_paper_scale(cp, params)
    for key in (f"infomtl_tweeteval_avg_{backbone}", f"infomtl_tweeteval_ablation_avg_{backbone}"):
        printed = {m for m, e in published.table(key).entries.items()}
        assert printed <= set(study.methods), printed - set(study.methods)
    assert "stl" in study.methods
    assert params["method"]["infomtl"] == table8
    train = params["dataset"]["tweeteval"]["train"]
    assert {k: train[k] for k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "early_stopping",
                                  "selection", "batching", "heads")} == {
        "epochs": 20, "batch_size": 128, "optimizer": "adamax", "lr": 5e-5, "weight_decay": 0.0,
        "early_stopping": {"patience": 3}, "selection": "primary", "batching": "one_task",
        "heads": {"hidden_dim": None, "dropout": table8["dropout"]}}
    model = params["dataset"]["tweeteval"]["model"]
    assert model["max_length"] == 256 and model["path"].endswith({"bert": "bert-base-uncased", "roberta": "roberta-base"}[backbone])
    assert params["dataset"]["tweeteval"]["source"]["tasks"] == ["emotion", "hate", "irony", "offensive", "sentiment", "stance"]
    if backbone == "roberta":
        assert study.ablation_fractions == (20, 40, 60, 80)
        table6 = {m for pct in (20, 40, 60, 80) for m in published.table(f"infomtl_tweeteval_avg_{pct}pct").entries}
        assert table6 == set(study.data_fraction_methods)
        assert {"ls", "infomtl"} <= set(study.robustness_methods)
        assert params["ablations"]["robustness"]["scale"] == "absolute"
    else:
        assert not study.ablation_fractions and not study.robustness_methods
