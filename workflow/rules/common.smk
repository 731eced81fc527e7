import sys

import yaml

# mtlrepro.params is the one definition of the grid: the studies expand into runs there.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from mtlrepro import checks, layout  # noqa: E402
from mtlrepro import params as P  # noqa: E402

# A --configfile replaces params.yaml as a whole: the stages read that same file. P.load checks it
# (schema, duplicate keys, the studies' cross-checks) and names the key at fault before any job runs.
PARAMS_FILE = str(workflow.overwrite_configfiles[-1]) if workflow.overwrite_configfiles else "params.yaml"
config.clear()
config.update(P.load(PARAMS_FILE))
validate(config, "../schemas/params.schema.json")
checks.check_methods(config, PARAMS_FILE)

STUDIES = {s.name: s for s in P.studies(config)}
DATASETS = P.all_datasets(config)
RUNS = P.train_runs(config)
WARM_START = checks.warm_start_methods()


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9-]*",
    method="[a-z0-9_]+",
    fraction="[0-9]+",
    seed="[0-9]+",
    study="[a-z0-9][a-z0-9_-]*",


def dataset_params(wildcards, *keys):
    """The params slice a job depends on: a change re-runs it (Snakemake's params trigger)."""
    block = config["dataset"][wildcards.dataset]
    return {key: block[key] for key in keys}


def run_of(wildcards):
    return P.Run(wildcards.dataset, wildcards.method, int(wildcards.fraction), int(wildcards.seed))


def pretrain_input(wildcards):
    """Only warm-start methods (and their sweep variants) start from the pretrain-LS checkpoint."""
    if P.base_method(config, wildcards.method) not in WARM_START:
        return []
    return layout.pretrain(P.pretrain_of(run_of(wildcards)))


def run_params(wildcards):
    """What a run's job depends on: the dataset's model and train blocks (a sweep variant's
    pretrain_epochs applied) and the method's hyper-parameters (a variant's point applied)."""
    block = P.run_config(config, wildcards.dataset, wildcards.method)
    return {"model": block["model"], "train": block["train"],
            "method": P.method_hparams(config, wildcards.method)}


def reference_inputs(wildcards):
    st = STUDIES[wildcards.study]
    return [layout.evaluation(P.Run(wildcards.dataset, st.reference, 100, s)) for s in st.seeds]


def study_inputs(wildcards):
    st = STUDIES[wildcards.study]
    return {
        "evals": [layout.evaluation(r) for r in st.runs()],
        "logs": [layout.train_log(r) for r in st.runs()],
        "references": [layout.reference(st.name, d) for d in st.datasets],
        "robustness": [layout.robustness(r) for r in st.robustness_runs()],
    }
