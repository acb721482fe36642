"""Prompts for query generation: the InPars and Promptagator templates, a user's own file, few-shot examples.

Templates are this package's data files (`harness/prompts/*.txt`, `*.yaml`), copied verbatim from the papers
and the InPars toolkit.
A template has two slots, `{document}` and `{query}`. A *static* template holds its examples in its text
(`inpars`, `inpars-gbq`, a user's `.txt` file); a *dynamic* one (Promptagator) is written once per
few-shot example and once more for the target document with the query left empty.

The prompt ends where the query would start: the template is cut at `{query}` and trailing spaces are
removed (the toolkit's `format(query="").rstrip()` gives the same text for every built-in template, except
that it also strips the newline that ends fiqa's document line, after which a model that stops at the
first newline can only write an empty query; we keep that newline).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import HarnessError, close_matches

DOC, QUERY = "{document}", "{query}"
STATIC = ("inpars", "inpars-gbq")
PROMPTAGATOR = "promptagator-"


@dataclass(frozen=True)
class Template:
    name: str
    text: str  # with the `{document}` and `{query}` slots
    dynamic: bool  # written once per few-shot example (Promptagator), else the examples are in the text

    def __post_init__(self):
        if self.text.count(DOC) != 1 or self.text.count(QUERY) != 1 or self.text.index(DOC) > self.text.index(QUERY):
            raise HarnessError(
                f"Prompt template {self.name!r} must hold `{DOC}` once, then `{QUERY}` once (the query follows "
                "the document)."
            )

    def fill(self, document: str, query: str) -> str:
        """The template with both slots filled (a few-shot example, as the toolkit writes it)."""
        before, after = self.text.split(DOC, 1)
        return before + document + after.replace(QUERY, query, 1)

    def head(self, document: str) -> str:
        """The text before the query slot with the document filled in, trailing spaces removed."""
        before, after = self.text[: self.text.index(QUERY)].split(DOC, 1)
        return (before + document + after).rstrip(" \t")

    def static_prefix(self) -> str:
        """The part shared by every prompt of a static template: up to the last newline before `{document}`.

        Cutting after a newline keeps BPE tokenisation stable (a newline is its own pre-token), so the
        prefix's key/value cache can be computed once; the caller still verifies the token ids.
        """
        if self.dynamic:
            return ""
        before = self.text[: self.text.index(DOC)]
        return before[: before.rfind("\n") + 1]


def builtin_names() -> list[str]:
    return [*STATIC, *(PROMPTAGATOR + d for d in promptagator_templates())]


def promptagator_templates() -> dict[str, str]:
    import yaml

    text = resources.files("harness.prompts").joinpath("promptagator.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_template(name: str) -> Template:
    """A built-in template by name (`inpars`, `inpars-gbq`, `promptagator-<dataset>`) or a user's file.

    A user's `.txt` file is a static template (as the toolkit reads one); a `.yaml` file holds
    `template: ...` and `mode: static|dynamic`.
    """
    if name in STATIC:
        return Template(name, resources.files("harness.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8"),
                        dynamic=False)
    if name.startswith(PROMPTAGATOR):
        templates = promptagator_templates()
        dataset = name[len(PROMPTAGATOR):]
        if dataset not in templates:
            raise HarnessError(
                f"No Promptagator template for dataset {dataset!r}.{close_matches(dataset, templates)} "
                f"Templates exist for: {', '.join(templates)}; or give a template file path as `prompt`."
            )
        return Template(name, templates[dataset], dynamic=True)
    path = Path(name).expanduser()
    if not path.is_file():
        raise HarnessError(
            f"Prompt {name!r} is neither a built-in template ({', '.join(builtin_names())}) nor a file."
            + close_matches(name, builtin_names())
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
            raise HarnessError(f"{path}: not a valid prompt YAML file ({problem}).") from None
        if (not isinstance(data, dict) or not isinstance(data.get("template"), str)
                or data.get("mode", "static") not in ("static", "dynamic")):
            raise HarnessError(f"{path}: expected `template: <text>` and optionally `mode: static|dynamic`.")
        return Template(str(path), data["template"], dynamic=data.get("mode") == "dynamic")
    return Template(str(path), text, dynamic=False)


@dataclass(frozen=True)
class Example:
    """A real (query, relevant document) pair of the dataset, shown to the LLM."""

    query_id: str
    doc_id: str
    query: str
    document: str


def train_split_examples(corpus_artifact, n: int, seed: int) -> list[Example]:
    """`n` (query, relevant document) pairs drawn with `seed` from the dataset's train split qrels.

    One pair per query: its relevant document with the highest grade (then the smallest id). Queries are
    drawn from the sorted list of judged queries, so the draw does not depend on file order.
    """
    from harness.data import beir

    if "qrels/train.tsv" not in corpus_artifact.manifest["files"]:
        raise HarnessError(
            f"The dataset of {corpus_artifact.key} has no train split (qrels/train.tsv), so few-shot examples "
            "cannot come from it: use published ones (`examples_source: registry:inpars/fewshot/<dataset>`) "
            "or a static prompt."
        )
    qrels = beir.read_qrels(corpus_artifact.file("qrels/train.tsv"))
    queries = beir.read_queries(corpus_artifact.file("queries.jsonl"))
    pairs = {}
    for qid in sorted(qrels):
        relevant = sorted((-grade, doc) for doc, grade in qrels[qid].items() if grade > 0)
        if relevant and qid in queries:
            pairs[qid] = relevant[0][1]
    if len(pairs) < n:
        raise HarnessError(
            f"The train split of {corpus_artifact.key} has {len(pairs)} usable judged queries, fewer than the "
            f"{n} few-shot examples asked for (`n_examples`)."
        )
    chosen = random.Random(seed).sample(sorted(pairs), n)
    wanted = {pairs[q] for q in chosen}
    docs = {d.id: beir.doc_text(d.title, d.text) for d in beir.iter_corpus(corpus_artifact.file("corpus.jsonl"))
            if d.id in wanted}
    missing = sorted(wanted - set(docs))
    if missing:
        raise HarnessError(f"Few-shot example documents {missing[:3]} are not in the corpus of {corpus_artifact.key}.")
    return [Example(q, pairs[q], queries[q], docs[pairs[q]]) for q in chosen]


def published_examples(path: Path, n: int | None, seed: int) -> list[Example]:
    """`n` examples drawn with `seed` from a published file of (query_id, doc_id, query, document) rows (all of
    them, in the sorted order, when `n` is None).

    The file (`inpars/fewshot-examples`' `data/<dataset>.json`) may be one JSON list or JSON lines; rows are
    sorted by query id before the draw, so the draw does not depend on file order.
    """
    import json

    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except ValueError:
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise HarnessError(f"{path}: neither a JSON list nor JSON lines of few-shot examples ({exc}).") from None
    if isinstance(rows, dict):
        rows = [rows]
    examples = []
    for i, row in enumerate(rows if isinstance(rows, list) else [], 1):
        missing = [k for k in ("query_id", "doc_id", "query", "document") if not isinstance(row, dict) or k not in row]
        if missing:
            raise HarnessError(f"{path}: example {i} lacks {', '.join(missing)} (each needs query_id, doc_id, query, "
                               "document).")
        examples.append(Example(str(row["query_id"]), str(row["doc_id"]), str(row["query"]), str(row["document"])))
    examples.sort(key=lambda e: (e.query_id, e.doc_id))
    if n is None:
        return examples
    if len(examples) < n:
        raise HarnessError(
            f"{path} has {len(examples)} few-shot examples, fewer than the {n} asked for (`n_examples`).")
    return random.Random(seed).sample(examples, n)


class PromptBuilder:
    """Builds the prompt for one document: truncation to token budgets as the toolkit does, examples shuffled.

    `tokenizer` is the LLM's (a transformers tokenizer); texts are cut by tokenising without special
    tokens, keeping the first `n` ids and decoding them. With `max_prompt_tokens` (the tokens a prompt may
    take, special tokens included), the examples' documents of a dynamic template share what the examples'
    queries and a target document of `max_doc_tokens` leave: each is cut to at most `example_doc_tokens`,
    as the toolkit's `DynamicPrompt.build` cuts each example's document, so that every prompt fits.
    """

    def __init__(self, template: Template, tokenizer, *, max_doc_tokens: int | None = 256,
                 examples: Sequence[Example] = (), example_tokens: int | None = 256,
                 example_query_tokens: int | None = 200, seed: int = 1, max_prompt_tokens: int | None = None):
        self.template, self.tokenizer = template, tokenizer
        self.max_doc_tokens, self.seed = max_doc_tokens, seed
        if template.dynamic and not examples:
            raise HarnessError(f"Prompt {template.name!r} needs few-shot examples (`n_examples` > 0).")
        # Examples are truncated once: the same text in every prompt.
        shots = [Example(e.query_id, e.doc_id, self.truncate(e.query, example_query_tokens), e.document)
                 for e in (examples if template.dynamic else ())]
        self.example_doc_tokens = example_tokens
        if shots and max_prompt_tokens is not None and max_doc_tokens is not None:
            share = self._example_share(shots, max_prompt_tokens)
            self.example_doc_tokens = share if example_tokens is None else min(example_tokens, share)
        self.examples = [Example(e.query_id, e.doc_id, e.query, self.truncate(e.document, self.example_doc_tokens))
                         for e in shots]

    def _example_share(self, shots: list[Example], max_prompt_tokens: int) -> int:
        """Tokens each example's document may take so that the examples and the longest target fit."""
        def count(text: str, special: bool = False) -> int:
            return len(self.tokenizer(text, add_special_tokens=special)["input_ids"])

        target = count(self.template.head(""), special=True) + (self.max_doc_tokens or 0)
        share = (max_prompt_tokens - target - sum(count(self.template.fill("", e.query)) for e in shots)) // len(shots)
        if share < 1:
            raise HarnessError(
                f"Prompt {self.template.name!r}: {len(shots)} few-shot examples and a target document of "
                f"{self.max_doc_tokens} tokens leave no room in {max_prompt_tokens} prompt tokens; lower "
                "`n_examples`, `max_doc_tokens` or `example_query_tokens`, or raise `max_prompt_tokens`.")
        return share

    def truncate(self, text: str, n: int | None) -> str:
        """`text` cut to its first `n` tokens (unchanged when it already fits)."""
        if n is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= n else self.tokenizer.decode(ids[:n])

    def examples_for(self, doc_id: str) -> list[Example]:
        """The examples in this document's order: shuffled per document, as the toolkit's `random.sample`."""
        order = list(self.examples)
        random.Random(f"{self.seed}:{doc_id}").shuffle(order)
        return order

    def build(self, doc_id: str, document: str) -> tuple[str, list[str]]:
        """(prompt text, ids of the example queries shown, in order)."""
        document = self.truncate(document, self.max_doc_tokens)
        if not self.template.dynamic:
            return self.template.head(document), []
        examples = self.examples_for(doc_id)
        shots = "".join(self.template.fill(e.document, e.query) for e in examples)
        return shots + self.template.head(document), [e.query_id for e in examples]

    @property
    def prefix(self) -> str:
        """The text every prompt starts with ('' for dynamic templates, whose examples move)."""
        return self.template.static_prefix()
