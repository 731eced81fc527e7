# The study as a Snakemake workflow. params.yaml is the single source of truth (dvc.yaml is
# generated from the same file); a complete alternative params file can be given with --configfile.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


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
    report,


rule all:
    input:
        rules.report.output,
        expand("reports/validation/{dataset}.html", dataset=DATASETS),
