rule pretrain:
    input:
        "data/processed/{dataset}",
    output:
        directory("models/pretrain/{dataset}/pct{fraction}/seed{seed}"),
    params:
        params_file=PARAMS_FILE,
        cfg=lambda w: dataset_params(w, "model", "train"),
        lengths=lambda w: P.pretrain_epochs(config, w.dataset),  # a checkpoint after each
        fraction_subsets=config["ablations"]["data_fraction"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/pretrain/{dataset}/pct{fraction}/seed{seed}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro pretrain --params {params.params_file:q} --threads {threads} --dataset {wildcards.dataset}"
        " --fraction {wildcards.fraction} --seed {wildcards.seed} --processed {input:q} --out {output:q} 2> {log:q}"


rule train:
    input:
        processed="data/processed/{dataset}",
        pretrain=pretrain_input,
    output:
        model=directory("models/train/{dataset}/{method}/pct{fraction}/seed{seed}"),
        log="metrics/train_logs/{dataset}/{method}/pct{fraction}/seed{seed}.json",
    params:
        params_file=PARAMS_FILE,
        run=run_params,
        fraction_subsets=config["ablations"]["data_fraction"],
        pretrain=lambda w, input: f" --pretrain '{input.pretrain}'" if input.pretrain else "",
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
    log:
        "logs/train/{dataset}/{method}/pct{fraction}/seed{seed}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro train --params {params.params_file:q} --threads {threads} --dataset {wildcards.dataset}"
        " --method {wildcards.method} --fraction {wildcards.fraction} --seed {wildcards.seed}"
        " --processed {input.processed:q}{params.pretrain} --out {output.model:q} --log {output.log:q} 2> {log:q}"
