"""Reads an export's model card (README.md) with huggingface_hub, as the Hub does, and checks its metadata:
the library, pipeline and tags; the model-index as huggingface_hub parses it into evaluation results;
and every result's value equal to the run's report.json (the student's dev metrics). Offline: the Hub's
own validation endpoint is not called.

    python3 tools/parity/check_model_card.py RUN_DIR     # RUN_DIR/export/README.md against RUN_DIR/report.json
"""

import json
import sys
from pathlib import Path

from huggingface_hub import ModelCard

HUB_NAMES = {"matthews": "matthews_correlation", "pearson": "pearsonr", "spearman": "spearmanr"}


def main():
    run = Path(sys.argv[1])
    card = ModelCard.load(run / "export" / "README.md")
    data = card.data
    problems = []
    if data.library_name != "transformers":
        problems.append(f"library_name {data.library_name!r}")
    if data.pipeline_tag != "text-classification":
        problems.append(f"pipeline_tag {data.pipeline_tag!r}")
    if "distillation" not in (data.tags or []):
        problems.append(f"tags {data.tags!r} lack distillation")
    # ModelCardData parses `model-index` into evaluation results (huggingface_hub's
    # model_index_to_eval_results); a malformed index leaves none.
    name, results = data.model_name, data.eval_results or []
    if not results:
        problems.append("no evaluation results parsed from model-index")
    report = json.loads((run / "report.json").read_text())
    want = {HUB_NAMES.get(k, k): v for k, v in report["student"]["dev"]["values"].items()}
    got = {r.metric_type: r.metric_value for r in results}
    if set(got) != set(want):
        problems.append(f"metrics {sorted(got)} != report {sorted(want)}")
    for k, v in want.items():
        if k in got and abs(got[k] - v) > 1e-4:
            problems.append(f"{k}: card {got[k]} != report {v}")
    for r in results:
        if r.task_type != "text-classification" or not r.dataset_type or not r.dataset_name:
            problems.append(f"result {r} lacks its task or dataset")
    if problems:
        sys.exit(f"{run}/export/README.md: " + "; ".join(problems))
    print(f"MODEL CARD OK: {name}, {len(results)} results ({', '.join(f'{k} {v}' for k, v in got.items())}), "
          f"tags {data.tags}")


if __name__ == "__main__":
    main()
