"""Stage `examples`: the dataset's own (query, document) pairs a Promptagator-style prompt shows, and the queries to
leave out of evaluation.

Its settings are generate's (`prompt`, `n_examples`, `examples_source`, `seed`), so generate and evaluate take the
same draw without evaluate needing the generated queries. `examples.json` holds the `examples` in the order drawn
(what generate puts in its prompts) and `query_ids`: with `scope: shown`, the drawn examples' queries; with
`scope: source`, every query of the examples source (the train split's judged queries, or every row of the
published file), for a reranker trained elsewhere whose draw is not known (the runner decides, see
`harness.runner.OWN_INPUT_PARAMS`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Literal

from pydantic import Field, model_validator

from harness.errors import HarnessError
from harness.stages import Stage, StageParams


class Params(StageParams):
    # generate's settings that select the examples, with generate's defaults (tests/test_examples.py checks them).
    prompt: str = "inpars"
    n_examples: int = Field(3, ge=0, le=8)
    examples_source: str = "train-split"
    seed: int = 1
    scope: Literal["shown", "source"] = "shown"

    @model_validator(mode="after")
    def _check(self):
        from harness.refs import REGISTRY_PREFIX

        if self.examples_source != "train-split" and not self.examples_source.startswith(REGISTRY_PREFIX):
            raise ValueError(f"examples_source must be `train-split` or `{REGISTRY_PREFIX}<id>` (published examples, "
                             f"e.g. `{REGISTRY_PREFIX}inpars/fewshot/{{dataset}}`), not {self.examples_source!r}")
        return self


def few_shot_examples(params: Params, corpus, store) -> list:
    """The real (query, document) examples a dynamic prompt shows: from the train split or a published file."""
    from harness.prompts import published_examples, train_split_examples

    if params.n_examples == 0:
        raise HarnessError(f"Prompt {params.prompt!r} shows few-shot examples: set `n_examples` to 1..8.")
    if params.examples_source == "train-split":
        return train_split_examples(corpus, params.n_examples, params.seed)
    return published_examples(_published_file(params, store), params.n_examples, params.seed)


def source_query_ids(params: Params, corpus, store) -> list[str]:
    """Every query the examples could have been drawn from: the train split's judged queries, or the published
    file's rows."""
    from harness.data import beir
    from harness.prompts import published_examples

    if params.examples_source == "train-split":
        return sorted(beir.read_qrels(corpus.file("qrels/train.tsv")))
    return sorted({e.query_id for e in published_examples(_published_file(params, store), None, params.seed)})


def _published_file(params: Params, store):
    from harness.refs import registry_files

    files = sorted(p for p in registry_files(params.examples_source, store).rglob("*") if p.is_file())
    if len(files) != 1:
        raise HarnessError(f"{params.examples_source} holds {len(files)} files; expected one file of examples.")
    return files[0]


def read(artifact) -> list:
    """The examples of an `examples` artifact, in the order drawn (as `few_shot_examples` returned them)."""
    from harness.prompts import Example

    return [Example(**e) for e in json.loads(artifact.file("examples.json").read_text())["examples"]]


def run(inputs: dict, params: Params, out, ctx) -> None:
    corpus = inputs["corpus"]
    examples = few_shot_examples(params, corpus, ctx.store)
    shown = sorted({e.query_id for e in examples})
    query_ids = shown if params.scope == "shown" else source_query_ids(params, corpus, ctx.store)
    (out.path / "examples.json").write_text(json.dumps(
        {"examples": [asdict(e) for e in examples], "query_ids": query_ids}, indent=1) + "\n")
    out.summary.update({"examples": len(examples), "query_ids": len(query_ids), "scope": params.scope})


# Built as an own input of generate and evaluate (see their `own_inputs`), with the keys of the recipe's `generate`
# section; the runner keeps it only where the prompt shows the dataset's own examples (`INPUT_CONDITIONS`).
STAGE = Stage(name="examples", version=1, kind="examples", params=Params, run=run, include="input",
              inputs={"corpus": "corpus"}, settings_in="generate")
