rule aggregate:
    input:
        unpack(study_inputs),
    output:
        tables=report(directory("reports/{study}/tables"), patterns=["{name}.md"],
                      caption="../report/tables.rst", category="{study}", subcategory="tables"),
        figures=report(directory("reports/{study}/figures"), patterns=["{name}.png"],
                       caption="../report/figures.rst", category="{study}", subcategory="figures"),
        summary="reports/{study}/summary.json",
    params:
        params_file=PARAMS_FILE,
        study=lambda w: STUDIES[w.study],
        ablations=config["ablations"],
    log:
        "logs/aggregate/{study}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro aggregate --params {params.params_file:q} --study {wildcards.study}"
        " --eval-dir metrics/eval --robustness-dir metrics/robustness --reference-dir metrics/reference/{wildcards.study}"
        " --logs-dir metrics/train_logs --tables {output.tables:q} --figures {output.figures:q}"
        " --summary {output.summary:q} 2> {log:q}"


rule report:
    input:
        expand("reports/{study}/summary.json", study=STUDIES),
    output:
        index=report("reports/index.md", caption="../report/index.rst", category="index"),
        summary="reports/summary.json",
    params:
        params_file=PARAMS_FILE,
    log:
        "logs/report.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m mtlrepro report --params {params.params_file:q} --summaries {input:q}"
        " --index {output.index:q} --summary {output.summary:q} 2> {log:q}"
