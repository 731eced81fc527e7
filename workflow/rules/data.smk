rule download:
    output:
        directory("data/raw/{dataset}"),
    params:
        params_file=PARAMS_FILE,
        source=lambda w: dataset_params(w, "source"),
    log:
        "logs/download/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro download --params {params.params_file} --dataset {wildcards.dataset} --out {output} 2> {log}"


rule validate:
    input:
        "data/raw/{dataset}",
    output:
        json="reports/validation/{dataset}.json",
        html="reports/validation/{dataset}.html",
    params:
        params_file=PARAMS_FILE,
    log:
        "logs/validate/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro validate --params {params.params_file} --dataset {wildcards.dataset} --raw {input}"
        " --out-json {output.json} --out-html {output.html} 2> {log}"


rule preprocess:
    input:
        raw="data/raw/{dataset}",
        validation="reports/validation/{dataset}.json",
    output:
        directory("data/processed/{dataset}"),
    params:
        params_file=PARAMS_FILE,
        split_seed=config["split_seed"],
        split=lambda w: dataset_params(w, "split"),
    log:
        "logs/preprocess/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro preprocess --params {params.params_file} --dataset {wildcards.dataset} --raw {input.raw}"
        " --validation {input.validation} --out {output} 2> {log}"
