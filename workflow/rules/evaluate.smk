rule evaluate:
    input:
        processed="data/processed/{dataset}",
        model="models/train/{dataset}/{method}/pct{fraction}/seed{seed}",
    output:
        "metrics/eval/{dataset}/{method}/pct{fraction}/seed{seed}.json",
    params:
        params_file=PARAMS_FILE,
        model=lambda w: dataset_params(w, "model"),
    threads: 1
    log:
        "logs/evaluate/{dataset}/{method}/pct{fraction}/seed{seed}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro evaluate --params {params.params_file:q} --threads {threads} --dataset {wildcards.dataset}"
        " --method {wildcards.method} --fraction {wildcards.fraction} --seed {wildcards.seed}"
        " --processed {input.processed:q} --model {input.model:q} --out {output:q} 2> {log:q}"


rule robustness:
    input:
        processed="data/processed/{dataset}",
        model="models/train/{dataset}/{method}/pct100/seed{seed}",
    output:
        "metrics/robustness/{dataset}/{method}/seed{seed}.json",
    params:
        params_file=PARAMS_FILE,
        model=lambda w: dataset_params(w, "model"),
        robustness=config["ablations"]["robustness"],
    threads: 1
    log:
        "logs/robustness/{dataset}/{method}/seed{seed}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro robustness --params {params.params_file:q} --threads {threads} --dataset {wildcards.dataset}"
        " --method {wildcards.method} --seed {wildcards.seed} --processed {input.processed:q}"
        " --model {input.model:q} --out {output:q} 2> {log:q}"


rule reference:
    input:
        reference_inputs,
    output:
        "metrics/reference/{study}/{dataset}.json",
    params:
        params_file=PARAMS_FILE,
    log:
        "logs/reference/{study}/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro reference --params {params.params_file:q} --study {wildcards.study}"
        " --dataset {wildcards.dataset} --evals {input:q} --out {output:q} 2> {log:q}"
