# The study as a Snakemake workflow. params.yaml is the single source of truth (dvc.yaml reads
# the same file); a complete alternative params file can be given with --configfile.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Quick jobs that need no node of their own (download may need the internet, which nodes often lack).
localrules:
    download,
    validate,
    aggregate,


rule all:
    input:
        rules.aggregate.output,
        pretrain_dirs(),
        expand("reports/validation/{dataset}.html", dataset=DATASETS),
