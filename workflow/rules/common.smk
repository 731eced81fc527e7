import yaml

# A --configfile replaces params.yaml as a whole: the stages read that same file.
PARAMS_FILE = str(workflow.overwrite_configfiles[-1]) if workflow.overwrite_configfiles else "params.yaml"
if workflow.overwrite_configfiles:
    config.clear()
    config.update(yaml.safe_load(open(PARAMS_FILE)))
validate(config, "../schemas/params.schema.json")

SEEDS = config["seeds"]
FRACTION = config["ablations"]["data_fraction"]
ROBUST = config["ablations"]["robustness"]
# Two grids (mtlrepro.params.Grid): the main one (`datasets` x `methods`, with the pretrain-LS stage)
# and InfoMTL's study (`infomtl_study`, no warm start). A dataset belongs to one grid.
MAIN = {"datasets": config["datasets"], "methods": config["methods"], "fractions": FRACTION["fractions"],
        "data_fraction": FRACTION["methods"], "robustness": ROBUST["methods"], "pretrain": True}
STUDY = config["infomtl_study"]
INFOMTL = {"datasets": STUDY["datasets"], "methods": STUDY["methods"],
           "fractions": STUDY["ablations"]["data_fraction"]["fractions"],
           "data_fraction": STUDY["ablations"]["data_fraction"]["methods"],
           "robustness": STUDY["ablations"]["robustness"]["methods"], "pretrain": False}
GRIDS = [MAIN, INFOMTL]
DATASETS = [d for g in GRIDS for d in g["datasets"]]


def grid(dataset):
    return next(g for g in GRIDS if dataset in g["datasets"])


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
    g = grid(dataset)
    runs = [(m, 100, s) for m in g["methods"] for s in SEEDS]
    runs += [(m, f, s) for m in g["data_fraction"] for f in g["fractions"] for s in SEEDS]
    return runs


def robustness_files(dataset):
    return [f"metrics/robustness/{dataset}/{m}/seed{s}.json" for m in grid(dataset)["robustness"] for s in SEEDS]


def pretrain_dirs():
    """Pretrain-LS checkpoints of the main grid, at every fraction (dvc.yaml builds them all)."""
    return expand("models/pretrain/{dataset}/pct{fraction}/seed{seed}", dataset=MAIN["datasets"],
                  fraction=[100, *FRACTION["fractions"]], seed=SEEDS)


def pretrain_input(wildcards):
    if not grid(wildcards.dataset)["pretrain"]:
        return []
    return f"models/pretrain/{wildcards.dataset}/pct{wildcards.fraction}/seed{wildcards.seed}"


def eval_files(dataset):
    return [f"metrics/eval/{dataset}/{m}/pct{f}/seed{s}.json" for m, f, s in train_runs(dataset)]


def train_logs(dataset):
    return [f"metrics/train_logs/{dataset}/{m}/pct{f}/seed{s}.json" for m, f, s in train_runs(dataset)]
