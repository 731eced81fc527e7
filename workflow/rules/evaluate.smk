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
        "python -m mtlrepro evaluate --params {params.params_file} --threads {threads} --dataset {wildcards.dataset}"
        " --method {wildcards.method} --fraction {wildcards.fraction} --seed {wildcards.seed}"
        " --processed {input.processed} --model {input.model} --out {output} 2> {log}"


rule reference:
    input:
        expand("metrics/eval/{{dataset}}/stl/pct100/seed{seed}.json", seed=SEEDS),
    output:
        "metrics/reference/{dataset}.json",
    params:
        params_file=PARAMS_FILE,
        seeds=SEEDS,
    log:
        "logs/reference/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro reference --params {params.params_file} --dataset {wildcards.dataset}"
        " --evals metrics/eval/{wildcards.dataset}/stl/pct100 --out {output} 2> {log}"


rule robustness:
    input:
        processed="data/processed/{dataset}",
        model="models/train/{dataset}/{method}/pct100/seed{seed}",
    output:
        "metrics/robustness/{dataset}/{method}/seed{seed}.json",
    params:
        params_file=PARAMS_FILE,
        model=lambda w: dataset_params(w, "model"),
        robustness=ROBUST,
    threads: 1
    log:
        "logs/robustness/{dataset}/{method}/seed{seed}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro robustness --params {params.params_file} --threads {threads} --dataset {wildcards.dataset}"
        " --method {wildcards.method} --seed {wildcards.seed} --processed {input.processed}"
        " --model {input.model} --out {output} 2> {log}"
