import yaml

# A --configfile replaces params.yaml as a whole: the stages read that same file.
PARAMS_FILE = str(workflow.overwrite_configfiles[-1]) if workflow.overwrite_configfiles else "params.yaml"
if workflow.overwrite_configfiles:
    config.clear()
    config.update(yaml.safe_load(open(PARAMS_FILE)))
validate(config, "../schemas/params.schema.json")

DATASETS = config["datasets"]
METHODS = config["methods"]
SEEDS = config["seeds"]
FRACTION = config["ablations"]["data_fraction"]
ROBUST = config["ablations"]["robustness"]


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9-]*",
    method="[a-z0-9_]+",
    fraction="[0-9]+",
    seed="[0-9]+",


def dataset_params(wildcards, *keys):
    """The params slice a job depends on: a change re-runs it (Snakemake's params trigger)."""
    block = config["dataset"][wildcards.dataset]
    return {key: block[key] for key in keys}


def train_runs(dataset):
    """(method, fraction, seed) of every training run of a dataset: the main grid at 100% and
    the data-fraction ablation."""
    runs = [(m, 100, s) for m in METHODS for s in SEEDS]
    runs += [(m, f, s) for m in FRACTION["methods"] for f in FRACTION["fractions"] for s in SEEDS]
    return runs


def eval_files(dataset):
    return [f"metrics/eval/{dataset}/{m}/pct{f}/seed{s}.json" for m, f, s in train_runs(dataset)]


def train_logs(dataset):
    return [f"metrics/train_logs/{dataset}/{m}/pct{f}/seed{s}.json" for m, f, s in train_runs(dataset)]
