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
        "python -m mtlrepro download --params {params.params_file:q} --dataset {wildcards.dataset} --out {output:q}"
        " 2> {log:q}"


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
        "python -m mtlrepro validate --params {params.params_file:q} --dataset {wildcards.dataset} --raw {input:q}"
        " --out-json {output.json:q} --out-html {output.html:q} 2> {log:q}"


rule preprocess:
    input:
        raw="data/raw/{dataset}",
        validation="reports/validation/{dataset}.json",
    output:
        directory("data/processed/{dataset}"),
    params:
        params_file=PARAMS_FILE,
        split_seed=config["split_seed"],
        # model: a text dataset's tokens are made here, for model.path and model.max_length
        split=lambda w: dataset_params(w, "split", "model"),
    log:
        "logs/preprocess/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro preprocess --params {params.params_file:q} --dataset {wildcards.dataset}"
        " --raw {input.raw:q} --validation {input.validation:q} --out {output:q} 2> {log:q}"
