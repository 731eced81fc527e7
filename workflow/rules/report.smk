rule aggregate:
    input:
        evals=[f for d in DATASETS for f in eval_files(d)],
        logs=[f for d in DATASETS for f in train_logs(d)],
        references=expand("metrics/reference/{dataset}.json", dataset=DATASETS),
        robustness=[f for d in DATASETS for f in robustness_files(d)],
    output:
        tables=directory("reports/tables"),
        figures=directory("reports/figures"),
        summary="reports/summary.json",
    params:
        params_file=PARAMS_FILE,
        grid={"grids": GRIDS, "seeds": SEEDS, "ablations": config["ablations"]},
    log:
        "logs/aggregate.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro aggregate --params {params.params_file} --eval-dir metrics/eval --robustness-dir metrics/robustness"
        " --reference-dir metrics/reference --logs-dir metrics/train_logs --tables {output.tables}"
        " --figures {output.figures} --summary {output.summary} 2> {log}"
