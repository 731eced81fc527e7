"""Where every artifact of the study lives, relative to the project root: the one definition that
the Snakemake rules, the generated dvc.yaml and the report stages share. Torch-free, so the
workflow can import it while it builds the DAG."""
from __future__ import annotations

from .params import Pretrain, Run


def raw(dataset: str) -> str:
    return f"data/raw/{dataset}"


def validation(dataset: str, ext: str = "json") -> str:
    return f"reports/validation/{dataset}.{ext}"


def processed(dataset: str) -> str:
    return f"data/processed/{dataset}"


def pretrain(p: Pretrain) -> str:
    return f"models/pretrain/{p.dataset}/pct{p.fraction}/seed{p.seed}"


def _run_path(run: Run) -> str:
    """The part of every per-run path that names the run."""
    return f"{run.dataset}/{run.method}/pct{run.fraction}/seed{run.seed}"


def model(run: Run) -> str:
    return f"models/train/{_run_path(run)}"


def train_log(run: Run) -> str:
    return f"{LOGS_DIR}/{_run_path(run)}.json"


EVAL_DIR = "metrics/eval"
ROBUSTNESS_DIR = "metrics/robustness"
LOGS_DIR = "metrics/train_logs"
REFERENCE_DIR = "metrics/reference"
REPORTS = "reports"


def evaluation(run: Run) -> str:
    return f"{EVAL_DIR}/{_run_path(run)}.json"


def robustness(run: Run) -> str:
    return f"{ROBUSTNESS_DIR}/{run.dataset}/{run.method}/seed{run.seed}.json"


def reference_dir(study: str) -> str:
    """A study's STL references: its seeds make them, so two studies never share one."""
    return f"{REFERENCE_DIR}/{study}"


def reference(study: str, dataset: str) -> str:
    return f"{reference_dir(study)}/{dataset}.json"


def study_reports(study: str) -> str:
    """reports/<study>/: its tables/, figures/ and summary.json."""
    return f"{REPORTS}/{study}"


def study_summary(study: str) -> str:
    return f"{study_reports(study)}/summary.json"


REPORT_INDEX = f"{REPORTS}/index.md"
SUMMARY = f"{REPORTS}/summary.json"  # every study's summary in one file: DVC's metrics
